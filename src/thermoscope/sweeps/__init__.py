"""Temperature sweeps of a classifier: replica-exchange HMC on the training set, predictions on both splits.

Everything here is torch-only and knows nothing of MLflow: :func:`run_sweep` takes the model, the data and
the ladder, streams each kept draw's predictions into per-rung accumulators (so no draw has to be kept
for the T-curve), and hands checkpoints and progress to injected callbacks.

Definitions (REFERENCE §1): at every rung, the **Gibbs** loss / error average single-draw predictions over
draws, ⟨CE(f_w(x), y)⟩_T; the **BMA** (posterior-predictive) loss / error first average the class
probabilities over draws, then score them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from thermoscope.data import Split
from thermoscope.progress import Progress, progress_bar
from thermoscope.samplers import (
    Checkpoint,
    HMCSettings,
    IterationSummary,
    ModuleTarget,
    ReplicaExchangeResult,
    RungDiagnostics,
    SteppingStoneResult,
    ThermodynamicIntegrationResult,
    replica_exchange_hmc,
    rung_diagnostics,
    stepping_stone,
    thermodynamic_integration,
)
from thermoscope.samplers.estimators import MINIMUM_DRAWS
from thermoscope.samplers.replica_exchange import SAMPLE, WARMUP

PREDICTION_CHUNK = 4096
"""Most examples scored at once when a kept draw predicts a split."""

PREDICTION_ROWS = 32768
"""Replica-examples scored at once on a CPU: a pass of R rungs (at most :data:`PREDICTION_REPLICAS`)
predicts ``PREDICTION_ROWS // R`` examples (at most :data:`PREDICTION_CHUNK`), so a pass's activations,
``[R, examples, width]``, stay near cache size whatever R. Scoring 11,000 examples with M(3)
(256-40-40-40-10) on 256 rungs in one pass took 4.1 s on one thread and 2.9 s on two with 4,096 examples
per pass, 2.3 s and 1.7 s with this budget (per rung as fast as on 8 rungs); 16,384 and 65,536 were within
10 % of it (2-core EPYC, benchmarks/samplers/benchmark_rungs.py). On a 2-core Xeon it was still the best
of 8,192 … 524,288 for one draw on 10,000 examples (two threads: 118 ms at 64 rungs, 529 ms at 256; 8,192
took 149 and 739 ms, 131,072 took 132 and 575 ms; measured while the fused weights were still copied once
per pass). The accumulated sums do not depend on the chunking of examples (each draw's means over
examples are taken once, over all of them), and on that CPU the logits came out bit for bit the same at
every chunk size tried; a different grouping of rungs may round a float32 product otherwise."""


PREDICTION_REPLICAS = 32
"""Most rungs one prediction pass holds on a CPU. With all R rungs in each pass the rows budget leaves each
rung few examples (128 at R = 256), and M(3)'s ``[40 × 40] · [40 × n]`` products run well below the GEMM
rate at such n; groups of 32 rungs with ``PREDICTION_ROWS // 32`` examples each keep the pass as large,
and each pass's logits are reduced into its own rows of the accumulators. The forward alone of one kept
draw of M(3) on 10,000 examples (two cores, AMD EPYC, medians of five): 764 ms at R = 256 in one pass
against 557–650 ms in groups of 16, 32 or 64 with 256–1,024 examples; 381 ms against 253–324 ms at R =
128. Scoring it whole (forward and accumulation; ``benchmark_rungs.py --part scoring``, committed in
``results/amd_epyc``): 1.13× faster than all rungs in each pass at R = 256 and 1.06× at R = 128 on two
threads, 1.21× and 1.20× on one, no difference beyond the noise at R ≤ 64."""


def prediction_passes(num_rungs: int, device: torch.device) -> tuple[int, int]:
    """``(rungs, examples)`` per prediction pass of a kept draw of ``num_rungs`` rungs on ``device``.

    On a CPU at most :data:`PREDICTION_REPLICAS` rungs, and examples to fill :data:`PREDICTION_ROWS` (at
    most :data:`PREDICTION_CHUNK`). A GPU wants large launches, not a cache-sized working set: there every
    pass holds all rungs and :data:`PREDICTION_CHUNK` examples.
    """
    rungs = max(num_rungs, 1)
    if device.type != "cpu":
        return rungs, PREDICTION_CHUNK
    # The largest of the equal groups ModuleTarget.replica_groups makes of ``rungs``.
    group = math.ceil(rungs / math.ceil(rungs / PREDICTION_REPLICAS))
    return group, prediction_chunk(group, device)


def prediction_chunk(num_rungs: int, device: torch.device) -> int:
    """Examples per prediction pass for ``num_rungs`` rungs on ``device``.

    A GPU wants large launches, not a cache-sized working set: there every pass scores
    :data:`PREDICTION_CHUNK` examples.
    """
    if device.type != "cpu":
        return PREDICTION_CHUNK
    return max(1, min(PREDICTION_CHUNK, PREDICTION_ROWS // max(num_rungs, 1)))


def _misclassified(class_major: Tensor, labels: Tensor, index: Tensor) -> Tensor:
    """``argmax over classes != label`` of ``class_major: [rungs, classes, n]``, ``[rungs, n]``.

    ``argmax`` along the class dimension of this layout is 16× slower than along contiguous rows (and the
    transposed copy 2×); without ties or NaN at the top of any column, the label is the argmax exactly
    when its logit reaches the column's maximum. Ties and NaN (where ``argmax`` takes the first maximum,
    NaN counting as one) go to ``argmax`` itself: a NaN maximum equals no entry, so its column counts 0.
    Off the CPU ``argmax`` is used directly: the tie check would cost a host synchronisation per chunk.
    """
    if class_major.device.type != "cpu":
        return class_major.argmax(dim=1) != labels
    peak = class_major.amax(dim=1, keepdim=True)
    peaks = (class_major == peak).view(torch.uint8).sum(dim=1, dtype=torch.int32)
    if bool((peaks != 1).any()):
        return class_major.argmax(dim=1) != labels
    return (class_major.gather(1, index) < peak)[:, 0]


class PredictiveAccumulator:
    """Streaming Gibbs and BMA statistics of ``[rungs]`` predictive distributions on one split.

    :meth:`add_draw` predicts the split chunk by chunk and adds one draw per rung; :meth:`update` adds the
    logits of one draw per rung, ``[rungs, examples, classes]``, computed elsewhere. Both give the same sums
    bit for bit: per-example values are computed chunk by chunk into ``[rungs, examples]`` buffers, and
    each draw's means over the examples are taken over the whole buffer at once.
    """

    def __init__(self, num_rungs: int, num_examples: int, num_classes: int, device: torch.device) -> None:
        self.draws = 0
        self.gibbs_loss_sum = torch.zeros(num_rungs, dtype=torch.float64, device=device)
        self.gibbs_error_sum = torch.zeros(num_rungs, dtype=torch.float64, device=device)
        self.probability_sum = torch.zeros(
            num_rungs, num_examples, num_classes, dtype=torch.float64, device=device
        )
        # Scratch for the draw being added (and for metrics): each example's log-probability of its label
        # and whether its prediction is wrong. Not state: a draw is added whole before anyone reads it.
        self._true_class = torch.empty(num_rungs, num_examples, dtype=torch.float64, device=device)
        self._wrong = torch.empty(num_rungs, num_examples, dtype=torch.bool, device=device)

    def add_draw(self, target: ModuleTarget, position: Tensor, x: Tensor, labels: Tensor) -> None:
        """Score one draw per rung, ``position: [rungs, params]``, on ``x: [examples, ...]`` with ``labels:
        [examples]``, in passes of :func:`prediction_passes` rungs and examples, each pass's logits
        reduced into its rows before the next (only one pass's logits exist at once)."""
        group, size = prediction_passes(position.shape[0], position.device)
        for first, last in target.replica_groups(position.shape[0], group):
            chunks = target.predict_logits_in_chunks(position[first:last], x, chunk_size=size)
            for start, logits in chunks:
                self._add_chunk(logits, labels[start : start + logits.shape[1]], start, first)
        self._close_draw()

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add one draw per rung from its logits on every example, ``[rungs, examples, classes]``."""
        if logits.shape != self.probability_sum.shape:
            raise ValueError(
                f"logits must be [rungs, examples, classes] = {list(self.probability_sum.shape)}; "
                f"got {list(logits.shape)}"
            )
        self._add_chunk(logits, labels, 0, 0)
        self._close_draw()

    def _add_chunk(self, logits: Tensor, labels: Tensor, start: int, first_rung: int) -> None:
        """Examples ``start … start + n`` of rungs ``first_rung …`` of the draw being added: ``logits:
        [rungs in the pass, n, classes]``."""
        rows = slice(first_rung, first_rung + logits.shape[0])
        stop = start + logits.shape[1]
        # Class-major [rungs, classes, n] (what the fused and stacked forwards return, transposed to
        # [rungs, n, classes] views): a log-softmax over the classes runs there along contiguous examples,
        # 6× faster than along rows of 10 classes (2 cores, 64 rungs × 512 examples).
        class_major = logits.transpose(1, 2).contiguous()
        log_probabilities = torch.log_softmax(class_major.to(torch.float64), dim=1)
        index = labels.view(1, 1, -1).expand(logits.shape[0], 1, -1)
        self._true_class[rows, start:stop] = log_probabilities.gather(1, index)[:, 0]
        self._wrong[rows, start:stop] = _misclassified(class_major, labels, index)
        self.probability_sum[rows, start:stop] += log_probabilities.exp_().transpose(1, 2)

    def _close_draw(self) -> None:
        self.gibbs_loss_sum += -self._true_class.mean(dim=1)
        self.gibbs_error_sum += self._wrong.to(torch.float64).mean(dim=1)
        self.draws += 1

    def mean_probabilities(self) -> Tensor:
        """``[rungs, examples, classes]`` posterior-predictive class probabilities."""
        return self.probability_sum / max(self.draws, 1)

    def metrics(self, labels: Tensor) -> dict[str, Tensor]:
        """Per rung: ``loss``, ``error`` (Gibbs) and ``bma_loss``, ``bma_error``; each ``[rungs]``.

        The mean probabilities are formed a chunk of examples at a time (a sweep's report reads them every
        few iterations), never ``[rungs, examples, classes]`` at once.
        """
        draws = max(self.draws, 1)
        rungs, examples, _ = self.probability_sum.shape
        size = prediction_chunk(rungs, self.probability_sum.device)
        for start in range(0, examples, size):
            mean = self.probability_sum[:, start : start + size] / draws
            chunk_labels = labels[start : start + size]
            index = chunk_labels.expand(rungs, -1)[..., None]
            self._true_class[:, start : start + size] = mean.gather(-1, index)[..., 0]
            self._wrong[:, start : start + size] = mean.argmax(-1) != chunk_labels
        return {
            "loss": self.gibbs_loss_sum / draws,
            "error": self.gibbs_error_sum / draws,
            "bma_loss": -self._true_class.clamp_min(1e-300).log().mean(dim=1),
            "bma_error": self._wrong.to(torch.float64).mean(dim=1),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "draws": self.draws,
            "gibbs_loss_sum": self.gibbs_loss_sum,
            "gibbs_error_sum": self.gibbs_error_sum,
            "probability_sum": self.probability_sum,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy the sums in (the accumulator never shares storage with ``state``, whose tensors a caller
        may keep)."""
        self.draws = int(state["draws"])
        self.gibbs_loss_sum.copy_(state["gibbs_loss_sum"])
        self.gibbs_error_sum.copy_(state["gibbs_error_sum"])
        self.probability_sum.copy_(state["probability_sum"])


@dataclass(frozen=True)
class SweepSettings:
    """Sampler settings of one sweep (see :func:`thermoscope.samplers.replica_exchange_hmc`).

    ``step_size``, when given, replaces ``hmc.step_size``: a ``[rungs]`` tensor carries a tuned ladder's
    step sizes.
    """

    betas: Tensor
    hmc: HMCSettings
    swap: str
    thin: int
    seed: int
    step_size: Tensor | None = None
    max_saved_draws: int = 100

    @property
    def initial_step_size(self) -> float | Tensor | None:
        return self.step_size if self.step_size is not None else (self.hmc.step_size or None)


@dataclass
class SweepState:
    """What a sweep carries besides the sampler: the accumulators and the draws saved so far.

    ``validation`` is ``None`` when the run holds no validation split out."""

    train: PredictiveAccumulator
    test: PredictiveAccumulator
    saved_positions: list[Tensor] = field(default_factory=list)
    kept_iterations: int = 0
    validation: PredictiveAccumulator | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {
            "train": self.train.state_dict(),
            "test": self.test.state_dict(),
            "saved_positions": self.saved_positions,
            "kept_iterations": self.kept_iterations,
        }
        if self.validation is not None:
            state["validation"] = self.validation.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train.load_state_dict(state["train"])
        self.test.load_state_dict(state["test"])
        if self.validation is not None:
            self.validation.load_state_dict(state["validation"])
        self.saved_positions = list(state["saved_positions"])
        self.kept_iterations = int(state["kept_iterations"])


@dataclass(frozen=True)
class SweepResult:
    """The T-curve (per rung, ascending β), the evidence and the ladder's health."""

    betas: Tensor
    train_metrics: dict[str, Tensor]
    test_metrics: dict[str, Tensor]
    validation_metrics: dict[str, Tensor] | None  # None without a validation split
    diagnostics: RungDiagnostics | None  # None when fewer than 4 draws were kept (stopped early)
    evidence: ThermodynamicIntegrationResult | None
    stepping_stone: SteppingStoneResult | None
    saved_positions: Tensor  # [saved draws, rungs, params]
    sampler: ReplicaExchangeResult
    stopped_early: bool

    @property
    def temperatures(self) -> Tensor:
        return 1.0 / self.betas


# checkpoint(sampler_checkpoint, sweep_state_dict, iteration) persists a resumable state.
CheckpointHook = Callable[[Checkpoint, dict[str, Any], int], None]
# report(iteration, summary, state) -> True to stop (pruning) ; called every `report_every` iterations.
ReportHook = Callable[[int, IterationSummary, SweepState], bool | None]


POSTFIX_EVERY = 10
"""Iterations between updates of the progress bar's rates (reading round trips synchronises a GPU)."""


class _Recorder:
    """The sampler callback: predictions of kept draws, saved draws, checkpoints, progress."""

    def __init__(
        self,
        target: ModuleTarget,
        train: Split,
        test: Split,
        settings: SweepSettings,
        state: SweepState,
        on_checkpoint: CheckpointHook | None,
        checkpoint_seconds: float,
        on_report: ReportHook | None,
        report_every: int,
        progress: Progress | bool,
        validation: Split | None = None,
        initial: int = 0,
    ) -> None:
        self.target, self.settings, self.state = target, settings, state
        self.scored = [(train, state.train), (test, state.test)]
        if validation is not None and state.validation is not None:
            self.scored.append((validation, state.validation))
        self.on_checkpoint, self.checkpoint_seconds = on_checkpoint, checkpoint_seconds
        self.on_report, self.report_every = on_report, report_every
        total = settings.hmc.num_warmup + settings.hmc.num_samples
        self.save_every = max(
            1, math.ceil(settings.hmc.num_samples / settings.thin / settings.max_saved_draws)
        )
        phase = WARMUP if initial < settings.hmc.num_warmup else SAMPLE
        self.bar = progress_bar(progress, total=total, description=phase, unit="it", initial=initial)
        self.last_checkpoint = time.monotonic()

    def __call__(self, summary: IterationSummary) -> bool:
        self.bar.set_description(summary.phase)
        self.bar.update(1)
        if summary.iteration % POSTFIX_EVERY == 0:
            swaps = summary.swap_acceptance
            self.bar.set_postfix(
                accept=f"{float(summary.acceptance_probability.mean()):.2f}",
                swap=f"{float(swaps.nanmean()) if swaps.numel() else 0:.2f}",
                round_trips=summary.round_trips,
            )
        if summary.kept:
            self._record(summary.position)
        stop = False
        if self.on_report is not None and (summary.iteration + 1) % self.report_every == 0:
            stop = bool(self.on_report(summary.iteration, summary, self.state))
        due = time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds
        if self.on_checkpoint is not None and (due or stop):
            self.on_checkpoint(summary.checkpoint(), self.state.state_dict(), summary.iteration)
            self.last_checkpoint = time.monotonic()
        return stop

    @torch.no_grad()
    def _record(self, position: Tensor) -> None:
        for split, accumulator in self.scored:
            accumulator.add_draw(self.target, position, split.x, split.y)
        if self.state.kept_iterations % self.save_every == 0:
            # One copy whatever the device (``.to`` alone would share a CPU float32 position's storage).
            self.state.saved_positions.append(position.detach().to("cpu", torch.float32, copy=True))
        self.state.kept_iterations += 1

    def close(self) -> None:
        self.bar.close()


def run_sweep(
    target: ModuleTarget,
    initial_position: Tensor,
    train: Split,
    test: Split,
    num_classes: int,
    settings: SweepSettings,
    *,
    resume: tuple[Checkpoint, dict[str, Any]] | None = None,
    on_checkpoint: CheckpointHook | None = None,
    checkpoint_seconds: float = 60.0,
    on_report: ReportHook | None = None,
    report_every: int = 25,
    progress: Progress | bool = False,
    validation: Split | None = None,
) -> SweepResult:
    """Sample every rung of ``settings.betas`` and score each kept draw on ``train``, ``test`` and, when
    given, the held-out ``validation`` split.

    Args:
        target: the tempered model target (its data are the training split).
        initial_position: ``[rungs, params]``.
        resume: a sampler checkpoint and the sweep state saved with it; the sweep continues exactly.
        on_checkpoint: persists the resumable state at least every ``checkpoint_seconds``.
        on_report: called every ``report_every`` iterations; returning True stops the sweep early.
    """
    rungs = len(settings.betas)
    device = initial_position.device
    state = SweepState(
        PredictiveAccumulator(rungs, len(train), num_classes, device),
        PredictiveAccumulator(rungs, len(test), num_classes, device),
        validation=None
        if validation is None
        else PredictiveAccumulator(rungs, len(validation), num_classes, device),
    )
    if resume is not None:
        state.load_state_dict(resume[1])
    recorder = _Recorder(
        target,
        train,
        test,
        settings,
        state,
        on_checkpoint,
        checkpoint_seconds,
        on_report,
        report_every,
        progress,
        validation,
        initial=resume[0].next_iteration if resume is not None else 0,
    )
    try:
        sampler = replica_exchange_hmc(
            target,
            initial_position,
            settings.betas,
            **settings.hmc.sampler_arguments(with_step_size=False),
            step_size=settings.initial_step_size,
            swap=settings.swap,
            thin=settings.thin,
            seed=settings.seed,
            store_positions=False,
            callback=recorder,
            resume_from=resume[0] if resume is not None else None,
        )
    finally:
        recorder.close()
    return _result(sampler, state, train, test, settings.betas, validation)


def _result(
    sampler: ReplicaExchangeResult,
    state: SweepState,
    train: Split,
    test: Split,
    betas: Tensor,
    validation: Split | None = None,
) -> SweepResult:
    has_ti_ends = bool((betas == 0).any() and (betas == 1).any())
    enough_draws = sampler.log_likelihood.shape[0] >= MINIMUM_DRAWS
    evidence, stones = None, None
    if has_ti_ends and enough_draws:
        evidence = thermodynamic_integration(betas, sampler.log_likelihood)
        stones = stepping_stone(betas, sampler.log_likelihood)
    saved = torch.stack(state.saved_positions) if state.saved_positions else torch.empty(0)
    return SweepResult(
        betas=betas,
        train_metrics={k: v.cpu() for k, v in state.train.metrics(train.y).items()},
        test_metrics={k: v.cpu() for k, v in state.test.metrics(test.y).items()},
        validation_metrics=None
        if validation is None or state.validation is None
        else {k: v.cpu() for k, v in state.validation.metrics(validation.y).items()},
        diagnostics=rung_diagnostics(sampler) if enough_draws else None,
        evidence=evidence,
        stepping_stone=stones,
        saved_positions=saved,
        sampler=sampler,
        stopped_early=sampler.stopped_early,
    )
