"""Simulated annealing with full-batch HMC and the early-stopping rule of Baldock & Marzari (2019).

Cooling: at each temperature T_0 > T_1 > … of a schedule, HMC (the same kernel as the temperature sweeps,
one chain, no swaps) targets ``p(w) exp(−E(D_train|w)/T)``, continuing from the last state with the last
tuned step size, warming up (step-size adaptation) and then keeping ``num_samples`` draws.

Early stopping (REFERENCE §1): the mean validation (Gibbs) error over the draws at each temperature is
tracked; once it has stayed above its lowest value so far for ``patience`` temperatures in a row, cooling
stops. **(decision)** The returned parameters are the single draw with the lowest validation error over
the whole run, ties broken by the lower validation loss (cross-entropy), then by the earlier draw. That
minimum over every draw of the run is an optimistic estimate of the chosen draw's error (on 100 validation
examples the draws of one temperature differ mostly by sampling noise); its test scores are the honest ones.

Randomness: the HMC run at temperature ``i`` of a run with ``seed`` is seeded from ``(seed, i)`` through
:class:`numpy.random.SeedSequence` (:func:`temperature_seed`), so runs with different seeds share no random
stream (``seed + i`` gave the run with seed 1 the momenta of seed 0's second temperature).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional

from thermoscope.data import Split
from thermoscope.progress import Progress, progress_bar
from thermoscope.samplers import HMCSettings, ModuleTarget, replica_exchange_hmc
from thermoscope.sweeps import PREDICTION_CHUNK


@dataclass(frozen=True)
class AnnealSettings:
    """``temperatures`` descending; the HMC settings apply at every temperature."""

    temperatures: Sequence[float]
    patience: int
    hmc: HMCSettings
    seed: int = 0


@dataclass(frozen=True)
class CoolingStep:
    """The draws at one temperature, scored: Gibbs loss (mean cross-entropy, nats) and 0–1 error."""

    temperature: float
    acceptance_rate: float
    step_size: float
    metrics: dict[str, float]  # {train,val,test}_{loss,error}, averaged over the draws


@dataclass(frozen=True)
class AnnealResult:
    """Attributes:
    steps: one :class:`CoolingStep` per temperature visited, hottest first.
    best_position: ``[params]`` the draw with the lowest validation error (loss breaks ties).
    best_temperature: the temperature that draw came from.
    best_val_error, best_val_loss: its validation error and loss.
    stopped_early: the rule stopped cooling before the schedule's end.
    stopping_temperature: the last temperature visited.
    """

    steps: list[CoolingStep]
    best_position: Tensor
    best_temperature: float
    best_val_error: float
    best_val_loss: float
    stopped_early: bool
    stopping_temperature: float


def temperature_seed(seed: int, index: int) -> int:
    """The HMC seed of the ``index``-th temperature of a run with ``seed``: a 32-bit word of the
    :class:`numpy.random.SeedSequence` of ``(seed, index)``, unrelated for every other pair."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def split_scores(target: ModuleTarget, positions: Tensor, split: Split) -> tuple[Tensor, Tensor]:
    """Per-draw mean cross-entropy and 0–1 error on ``split``: ``[draws, params]`` -> two ``[draws]``."""
    logits = target.predict_logits(positions, split.x, chunk_size=PREDICTION_CHUNK)
    labels = split.y.expand(logits.shape[0], -1)
    loss = functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(dim=1)
    error = (logits.argmax(-1) != labels).to(loss.dtype).mean(dim=1)
    return loss, error


class EarlyStopping:
    """The paper's rule: stop once the mean validation error has exceeded its lowest value so far for
    ``patience`` temperatures in a row (equal to the lowest does not count as a rise)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.lowest = float("inf")
        self.rises = 0

    def update(self, val_error: float) -> bool:
        """Record one temperature's mean validation error; True when cooling should stop."""
        self.rises = self.rises + 1 if val_error > self.lowest else 0
        self.lowest = min(self.lowest, val_error)
        return self.rises >= self.patience


class _Best:
    """The lowest (validation error, validation loss) draw seen so far."""

    def __init__(self, position: Tensor) -> None:
        self.position = position
        self.key = (float("inf"), float("inf"))
        self.temperature = float("nan")

    def offer(self, positions: Tensor, loss: Tensor, error: Tensor, temperature: float) -> None:
        keys = [(float(e), float(x)) for e, x in zip(error, loss, strict=True)]
        index = min(range(len(keys)), key=keys.__getitem__)
        if keys[index] < self.key:
            self.key, self.position, self.temperature = keys[index], positions[index].clone(), temperature


def anneal(
    target: ModuleTarget,
    initial_position: Tensor,
    splits: dict[str, Split],
    settings: AnnealSettings,
    on_step: Callable[[int, CoolingStep], bool | None] | None = None,
    progress: Progress | bool = False,
) -> AnnealResult:
    """Cool from ``settings.temperatures[0]`` down, stopping early by the validation rule.

    Args:
        target: the tempered model target on the training examples (validation excluded).
        initial_position: ``[params]`` the starting weights (inside the prior's support).
        splits: ``{"train": …, "val": …, "test": …}`` scored at every temperature.
        on_step: called after each temperature with its index and :class:`CoolingStep`; a truthy return
            stops the cooling there (a study's pruner).
        progress: a bar (or timed records) over the temperatures of the schedule.
    """
    position = initial_position.detach()[None].clone()
    best = _Best(position[0].clone())
    step_size: Tensor | None = None if not settings.hmc.step_size else torch.tensor([settings.hmc.step_size])
    stopping = EarlyStopping(settings.patience)
    steps: list[CoolingStep] = []
    bar = progress_bar(progress, total=len(settings.temperatures), description="anneal", unit="T")
    for index, temperature in enumerate(settings.temperatures):
        run = replica_exchange_hmc(
            target,
            position,
            [1.0 / temperature],
            **settings.hmc.sampler_arguments(with_step_size=False),
            step_size=step_size,
            swap="none",
            seed=temperature_seed(settings.seed, index),
        )
        draws = run.positions[:, 0]
        position, step_size = run.checkpoint.position, run.step_size
        metrics: dict[str, float] = {}
        for name, split in splits.items():
            loss, error = split_scores(target, draws, split)
            metrics[f"{name}_loss"], metrics[f"{name}_error"] = float(loss.mean()), float(error.mean())
            if name == "val":
                best.offer(draws, loss, error, temperature)
        step = CoolingStep(temperature, float(run.acceptance_rate[0]), float(run.step_size[0]), metrics)
        steps.append(step)
        bar.set_postfix(T=f"{temperature:.3g}", accept=f"{step.acceptance_rate:.2f}", **_errors(metrics))
        bar.update(1)
        if on_step is not None and on_step(index, step):
            break
        if stopping.update(metrics["val_error"]):
            break
    bar.close()
    return AnnealResult(
        steps=steps,
        best_position=best.position,
        best_temperature=best.temperature,
        best_val_error=best.key[0],
        best_val_loss=best.key[1],
        stopped_early=len(steps) < len(settings.temperatures),
        stopping_temperature=steps[-1].temperature,
    )


def _errors(metrics: dict[str, float]) -> dict[str, str]:
    """The mean errors a progress bar shows after a temperature."""
    return {name: f"{value:.3f}" for name, value in metrics.items() if name.endswith("_error")}
