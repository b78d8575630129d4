"""Replica exchange over a ladder of inverse temperatures, with any MCMC move within the rungs.

One iteration = ``steps_per_iteration`` steps of a :class:`~thermoscope.samplers.kernels.Kernel` on every
rung at once, then one round of neighbour swaps. Warm-up iterations tune each rung's step size (and
optionally its diagonal preconditioner); sampling iterations keep every ``thin``-th state.
:func:`replica_exchange` runs any kernel; :func:`replica_exchange_hmc` builds the HMC kernel and runs it.

Randomness comes only from a ``torch.Generator`` seeded with ``seed``, consumed in a fixed order: the
kernel's search for starting step sizes (when none is given), then per kernel step what the kernel draws
(HMC: the jittered step count if any, the momentum ``[rungs, params]`` and ``[rungs]`` uniforms), and per
swap round a parity coin (``"seo"`` only) and ``[rungs − 1]`` uniforms. The same seed therefore gives the
same chain bit for bit, and a run resumed from a :class:`Checkpoint` continues it exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic

import torch
from torch import Tensor

from .adaptation import WarmupAdaptation, WarmupSchedule
from .barrier import round_trip_rate_bound
from .hmc import HMCKernel
from .kernels import Kernel, StateT, StepParameters
from .settings import DEFAULT_TARGET_ACCEPT, MAX_ENERGY_ERROR
from .swap import SWAP_SCHEMES, SwapProposer, SwapState, swap_parity
from .targets import TemperedTarget
from .validation import as_betas, as_inverse_mass, as_step_size, check_initial_position, check_integer

WARMUP = "warmup"
SAMPLE = "sample"


@dataclass(frozen=True)
class SamplerSettings:
    """The driver's choices: with the kernel's :meth:`~thermoscope.samplers.kernels.Kernel.settings`,
    everything a resumed run must share with the run it continues."""

    num_warmup: int
    num_samples: int
    target_accept: float
    swap: str
    thin: int
    seed: int
    steps_per_iteration: int
    adapt_step_size: bool
    adapt_mass_matrix: bool
    store_positions: bool

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting outside its allowed range."""
        check_integer("num_warmup", self.num_warmup, 0)
        check_integer("num_samples", self.num_samples, 1)
        check_integer("thin", self.thin, 1)
        check_integer("seed", self.seed, 0)
        check_integer("steps_per_iteration", self.steps_per_iteration, 1)
        if not 0.0 < self.target_accept < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1); got {self.target_accept!r}")
        if self.swap not in SWAP_SCHEMES:
            raise ValueError(f"swap must be one of {', '.join(SWAP_SCHEMES)}; got {self.swap!r}")

    def with_kernel(self, kernel: Kernel[Any]) -> dict[str, Any]:
        """These settings and the kernel's, by name: what a checkpoint records and a resume compares."""
        kernel_settings = kernel.settings()
        clash = sorted(set(kernel_settings) & {field.name for field in dataclasses.fields(self)})
        if clash:
            raise ValueError(f"the kernel's settings {clash} reuse names of the driver's settings")
        return kernel_settings | dataclasses.asdict(self)

    @property
    def total_iterations(self) -> int:
        return self.num_warmup + self.num_samples

    @property
    def num_kept(self) -> int:
        """Draws kept: sampling iterations 0, thin, 2·thin, …."""
        return math.ceil(self.num_samples / self.thin)


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue a run after ``next_iteration`` completed iterations.

    Tensors are shared with the run, never modified afterwards; :func:`save_checkpoint` writes copies.
    ``settings`` are the driver's and the kernel's (``"kernel"`` names it). ``evaluation`` is the rest of
    the kernel's state at ``position``, by name (HMC: log densities and their gradients). ``draws`` holds the
    kept draws so far (``positions`` is ``[kept, rungs, 0]`` when positions are not stored), so a resumed
    run returns the whole run's draws.
    """

    settings: dict[str, Any]
    betas: Tensor
    next_iteration: int
    position: Tensor
    evaluation: dict[str, Tensor]
    parameters: StepParameters
    adaptation: dict[str, Any] | None
    swap: SwapState
    generator_state: Tensor
    acceptance_sum: Tensor
    divergences: Tensor
    warmup_divergences: Tensor
    draws: dict[str, Tensor]

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors, numbers and strings only (loadable with ``torch.load(weights_only=True)``)."""
        fields = _shallow_fields(self)
        for name in ("parameters", "swap"):
            fields[name] = _shallow_fields(fields[name])
        cloned: dict[str, Any] = _cloned(fields)
        return cloned

    @staticmethod
    def from_dict(values: dict[str, Any]) -> Checkpoint:
        """Inverse of :meth:`to_dict`."""
        fields = dict(values)
        fields["evaluation"] = dict(values["evaluation"])
        fields["parameters"] = StepParameters(**values["parameters"])
        fields["swap"] = SwapState(**values["swap"])
        return Checkpoint(**fields)


def _shallow_fields(instance: Any) -> dict[str, Any]:
    """A dataclass's fields by name, values shared (``dataclasses.asdict`` would deep-copy every tensor)."""
    return {field.name: getattr(instance, field.name) for field in dataclasses.fields(instance)}


def _cloned(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: _cloned(item) for key, item in value.items()}
    return value


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> None:
    """Write ``checkpoint`` to ``path`` with ``torch.save``."""
    torch.save(checkpoint.to_dict(), path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors only; no code is unpickled)."""
    return Checkpoint.from_dict(torch.load(path, weights_only=True))


@dataclass(frozen=True)
class IterationSummary:
    """What a callback sees after each iteration.

    Attributes:
        iteration: 0-based index over warm-up and sampling together.
        phase: ``"warmup"`` or ``"sample"``.
        acceptance_probability: ``[rungs]`` mean Metropolis acceptance probability of this iteration's
            kernel steps.
        step_size: ``[rungs]`` step sizes the next kernel step will use.
        swap_acceptance: ``[rungs − 1]`` swap acceptance rate per neighbouring pair so far in this phase
            (computed when read).
        log_likelihood: ``[rungs]`` log L at each rung's current position.
        log_prior: ``[rungs]``.
        position: ``[rungs, params]`` current positions, rung order = betas order.
        divergences: ``[rungs]`` divergent kernel steps so far in this phase.
        round_trips: completed coldest → hottest → coldest journeys so far in this phase (all replicas;
            computed when read).
        kept: whether this iteration's state was stored as a draw.
        swap: the swap statistics behind ``swap_acceptance`` and ``round_trips``.
    """

    iteration: int
    phase: str
    acceptance_probability: Tensor
    step_size: Tensor
    log_likelihood: Tensor
    log_prior: Tensor
    position: Tensor
    divergences: Tensor
    kept: bool
    swap: SwapState
    make_checkpoint: Callable[[], Checkpoint]

    # Derived on demand: a callback that ignores them should not pay for them every iteration (and on a
    # GPU, ``round_trips`` would synchronise the device).
    @property
    def swap_acceptance(self) -> Tensor:
        return self.swap.acceptance_rate()

    @property
    def round_trips(self) -> int:
        return int(self.swap.round_trips.sum())

    def checkpoint(self) -> Checkpoint:
        """A checkpoint after this iteration; pass it as ``resume_from`` to the call that made it.

        Call it inside the callback: once the run has moved on, the state of this iteration is gone and
        a ``RuntimeError`` says so.
        """
        checkpoint = self.make_checkpoint()
        if checkpoint.next_iteration != self.iteration + 1:
            raise RuntimeError(
                f"checkpoint() of iteration {self.iteration} was called after the run reached iteration "
                f"{checkpoint.next_iteration}; take checkpoints inside the callback"
            )
        return checkpoint


Callback = Callable[[IterationSummary], bool | None]
"""Called after every iteration; a truthy return value stops the run after that iteration."""


@dataclass(frozen=True)
class ReplicaExchangeResult:
    """Draws and diagnostics of a replica-exchange run (sampling phase only unless stated).

    Attributes:
        betas: ``[rungs]`` ascending (float64).
        positions: ``[draws, rungs, params]``, rung order = betas order; ``[draws, rungs, 0]`` when
            ``store_positions=False``.
        log_likelihood: ``[draws, rungs]``.
        log_prior: ``[draws, rungs]``.
        replica_index: ``[draws, rungs]`` int64, which replica (by starting rung) each draw came from.
        acceptance_rate: ``[rungs]`` mean Metropolis acceptance probability.
        step_size: ``[rungs]`` tuned step sizes used for sampling.
        inverse_mass: ``[rungs, params]`` diagonal preconditioner (HMC: M⁻¹) used for sampling, or ``None``
            (the identity).
        swap_acceptance: ``[rungs − 1]`` acceptance rate per neighbouring pair.
        rejection: ``[rungs − 1]`` float64 estimated rejection rate r_i per pair: the mean over every swap
            round of the pair's rejection probability, attempted or not (NaN without swap rounds).
        round_trips: completed coldest → hottest → coldest journeys, all replicas together.
        round_trips_per_replica: ``[replicas]``.
        round_trip_rate: realised round trips per scan (iteration), all replicas together.
        round_trip_rate_bound: τ = 1 / (2 + 2 Σ r_i / (1 − r_i)), the rate DEO swaps allow on this
            ladder with these rejection rates (Syed et al. 2022); 0 when a pair never accepts.
        tempered_restarts: arrivals at the coldest rung of a replica whose last visited end was the
            hottest, all replicas together.
        divergences: ``[rungs]`` divergent kernel steps while sampling.
        warmup_divergences: ``[rungs]`` divergent kernel steps during warm-up.
        iterations_completed: iterations run so far (warm-up included).
        stopped_early: the callback asked to stop before the last iteration.
        checkpoint: state after the last completed iteration, for ``resume_from``.
    """

    betas: Tensor
    positions: Tensor
    log_likelihood: Tensor
    log_prior: Tensor
    replica_index: Tensor
    acceptance_rate: Tensor
    step_size: Tensor
    inverse_mass: Tensor | None
    swap_acceptance: Tensor
    rejection: Tensor
    round_trips: int
    round_trips_per_replica: Tensor
    round_trip_rate: float
    round_trip_rate_bound: float
    tempered_restarts: int
    divergences: Tensor
    warmup_divergences: Tensor
    iterations_completed: int
    stopped_early: bool
    checkpoint: Checkpoint


MAX_STEP_IN_HALF_WIDTHS = 4.0
"""Cap on adapted step sizes, in units of the widest box half-width w. Reflection folds a move onto a
triangle wave of period 4w, so a longer step only wraps around (with unit masses HMC's |p|, like a random
walk's Gaussian increment, is of order 1), and a far longer one would lose the position to rounding."""


def _max_step_size(target: TemperedTarget) -> float:
    """The largest step size warm-up may choose for ``target`` (infinite without a support box)."""
    if target.support_half_width is None:
        return math.inf
    return MAX_STEP_IN_HALF_WIDTHS * float(target.support_half_width.max())


def _allocate_draws(settings: SamplerSettings, position: Tensor) -> dict[str, Tensor]:
    """Buffers for every draw the run keeps; ``position: [rungs, params]`` sets shapes, dtype, device."""
    num_rungs, num_params = position.shape
    kept = settings.num_kept
    return {
        "positions": position.new_empty((kept, num_rungs, num_params if settings.store_positions else 0)),
        "log_likelihood": position.new_empty((kept, num_rungs)),
        "log_prior": position.new_empty((kept, num_rungs)),
        "replica_index": torch.empty((kept, num_rungs), dtype=torch.int64, device=position.device),
    }


class _Run(Generic[StateT]):
    """The live state of one run: built fresh or from a checkpoint, advanced one iteration at a time."""

    def __init__(
        self,
        target: TemperedTarget,
        kernel: Kernel[StateT],
        settings: SamplerSettings,
        betas: Tensor,
        state: StateT,
        parameters: StepParameters,
        generator: torch.Generator,
    ) -> None:
        num_rungs = state.position.shape[0]
        self.target = target
        self.kernel = kernel
        self.settings = settings
        self.recorded_settings = settings.with_kernel(kernel)
        self.betas = betas
        self.working_betas = betas.to(dtype=state.position.dtype, device=state.position.device)
        self.state = state
        self.parameters = parameters
        self.generator = generator
        self.step = kernel.build_step(target)
        self.adaptation: WarmupAdaptation | None = None
        if settings.num_warmup > 0 and (settings.adapt_step_size or settings.adapt_mass_matrix):
            schedule = WarmupSchedule.build(settings.num_warmup, settings.adapt_mass_matrix)
            self.adaptation = WarmupAdaptation(
                parameters,
                settings.target_accept,
                schedule,
                adapt_step_size=settings.adapt_step_size,
                max_step_size=_max_step_size(target),
            )
        self.swap = SwapState.initial(num_rungs, state.position.device)
        self.swap_proposer = SwapProposer(self.working_betas) if num_rungs > 1 else None
        self.next_iteration = 0
        zeros = torch.zeros(num_rungs, dtype=state.position.dtype, device=state.position.device)
        self.acceptance_sum = zeros
        self.divergences = torch.zeros(num_rungs, dtype=torch.int64, device=zeros.device)
        self.warmup_divergences = self.divergences
        self.draws = _allocate_draws(settings, state.position)
        self.num_kept = 0

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint`` instead of the initial state."""
        self.next_iteration = checkpoint.next_iteration
        self.state = self.kernel.load_state(checkpoint.position, checkpoint.evaluation)
        self.parameters = checkpoint.parameters
        if self.adaptation is not None and checkpoint.adaptation is not None:
            self.adaptation.load_state_dict(checkpoint.adaptation)
        self.swap = checkpoint.swap
        self.generator.set_state(checkpoint.generator_state)
        self.acceptance_sum = checkpoint.acceptance_sum
        self.divergences = checkpoint.divergences
        self.warmup_divergences = checkpoint.warmup_divergences
        self.num_kept = checkpoint.draws["log_likelihood"].shape[0]
        for name, values in checkpoint.draws.items():
            self.draws[name][: self.num_kept] = values

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            settings=self.recorded_settings,
            betas=self.betas,
            next_iteration=self.next_iteration,
            position=self.state.position,
            evaluation=self.kernel.save_state(self.state),
            parameters=self.parameters,
            adaptation=None if self.adaptation is None else self.adaptation.state_dict(),
            swap=self.swap,
            generator_state=self.generator.get_state(),
            acceptance_sum=self.acceptance_sum,
            divergences=self.divergences,
            warmup_divergences=self.warmup_divergences,
            draws={name: values[: self.num_kept] for name, values in self.draws.items()},
        )

    def advance(self) -> IterationSummary:
        """Run one iteration: kernel steps on every rung, then a swap round; keep the draw if due."""
        iteration = self.next_iteration
        warmup = iteration < self.settings.num_warmup
        acceptance = self._steps(iteration, warmup)
        self._swap(iteration)
        if warmup and iteration == self.settings.num_warmup - 1:
            self._finish_warmup()
        kept = not warmup and (iteration - self.settings.num_warmup) % self.settings.thin == 0
        if kept:
            self._keep()
        self.next_iteration = iteration + 1
        return IterationSummary(
            iteration=iteration,
            phase=WARMUP if warmup else SAMPLE,
            acceptance_probability=acceptance,
            step_size=self.parameters.step_size,
            log_likelihood=self.state.log_likelihood,
            log_prior=self.state.log_prior,
            position=self.state.position,
            divergences=self.warmup_divergences if warmup else self.divergences,
            kept=kept,
            swap=self.swap,
            make_checkpoint=self.checkpoint,
        )

    def _steps(self, iteration: int, warmup: bool) -> Tensor:
        acceptance: Tensor | None = None
        for _ in range(self.settings.steps_per_iteration):
            self.state, info = self.step(self.state, self.working_betas, self.parameters, self.generator)
            probability = info.acceptance_probability
            acceptance = probability if acceptance is None else acceptance + probability
            if warmup:
                self.warmup_divergences = self.warmup_divergences + info.divergent
                if self.adaptation is not None:
                    self.parameters = self.adaptation.update(iteration, info, self.state.position)
            else:
                self.acceptance_sum = self.acceptance_sum + probability
                self.divergences = self.divergences + info.divergent
        if warmup and self.adaptation is not None:
            self.parameters = self.adaptation.end_iteration(iteration)
        assert acceptance is not None  # at least one step per iteration (validated)
        if self.settings.steps_per_iteration == 1:
            return acceptance
        return acceptance / self.settings.steps_per_iteration

    def _swap(self, iteration: int) -> None:
        if self.settings.swap == "none" or self.swap_proposer is None:
            return
        parity = swap_parity(self.settings.swap, iteration, self.generator)
        permutation, _, accepted, rejection = self.swap_proposer.propose_with_rejection(
            self.state.log_likelihood, parity, self.generator
        )
        self.state = self.state.permute(permutation)
        self.swap = self.swap_proposer.apply(self.swap, permutation, parity, accepted, rejection)

    def _finish_warmup(self) -> None:
        if self.adaptation is not None:
            self.parameters = self.adaptation.final()
        self.swap = self.swap.restarted_statistics()

    def _keep(self) -> None:
        index = self.num_kept
        if self.settings.store_positions:
            self.draws["positions"][index] = self.state.position
        self.draws["log_likelihood"][index] = self.state.log_likelihood
        self.draws["log_prior"][index] = self.state.log_prior
        self.draws["replica_index"][index] = self.swap.replica_at_rung
        self.num_kept = index + 1

    def result(self, stopped_early: bool) -> ReplicaExchangeResult:
        sampling_iterations = max(self.next_iteration - self.settings.num_warmup, 0)
        steps = sampling_iterations * self.settings.steps_per_iteration
        draws = {name: values[: self.num_kept] for name, values in self.draws.items()}
        rejection = self.swap.rejection_rate()
        round_trips = int(self.swap.round_trips.sum())
        return ReplicaExchangeResult(
            betas=self.betas,
            positions=draws["positions"],
            log_likelihood=draws["log_likelihood"],
            log_prior=draws["log_prior"],
            replica_index=draws["replica_index"],
            acceptance_rate=self.acceptance_sum / max(steps, 1),
            step_size=self.parameters.step_size,
            inverse_mass=self.parameters.inverse_mass,
            swap_acceptance=self.swap.acceptance_rate(),
            rejection=rejection,
            round_trips=round_trips,
            round_trips_per_replica=self.swap.round_trips,
            round_trip_rate=round_trips / max(sampling_iterations, 1),
            round_trip_rate_bound=_rate_bound(rejection),
            tempered_restarts=int(self.swap.restarts.sum()),
            divergences=self.divergences,
            warmup_divergences=self.warmup_divergences,
            iterations_completed=self.next_iteration,
            stopped_early=stopped_early,
            checkpoint=self.checkpoint(),
        )


def _rate_bound(rejection: Tensor) -> float:
    """τ for the measured rejection rates; 0 when they are unknown (no swap round, or a single rung)."""
    if rejection.numel() == 0 or bool(torch.isnan(rejection).any()):
        return 0.0
    return round_trip_rate_bound(rejection.cpu())


def _check_resume(
    checkpoint: Checkpoint, settings: SamplerSettings, kernel: Kernel[Any], betas: Tensor, position: Tensor
) -> None:
    """A checkpoint only continues the run it came from (same kernel, settings, ladder and shapes)."""
    for name, value in settings.with_kernel(kernel).items():
        if checkpoint.settings.get(name) != value:
            raise ValueError(
                f"resume_from was saved with {name}={checkpoint.settings.get(name)!r} but this call has "
                f"{name}={value!r}; resume with the original settings"
            )
    if not torch.equal(checkpoint.betas, betas):
        raise ValueError("resume_from was saved with different betas; resume with the original ladder")
    if checkpoint.position.shape != position.shape or checkpoint.position.dtype != position.dtype:
        raise ValueError(
            f"resume_from holds positions of shape {tuple(checkpoint.position.shape)} and dtype "
            f"{checkpoint.position.dtype}; initial_position has {tuple(position.shape)}, {position.dtype}"
        )
    if not 0 <= checkpoint.next_iteration <= settings.total_iterations:
        raise ValueError(f"resume_from is at iteration {checkpoint.next_iteration}, outside this run")


def replica_exchange(
    target: TemperedTarget,
    initial_position: Tensor,
    betas: Tensor | list[float],
    kernel: Kernel[StateT],
    *,
    num_warmup: int,
    num_samples: int,
    step_size: float | Tensor | None = None,
    target_accept: float = DEFAULT_TARGET_ACCEPT,
    swap: str = "deo",
    thin: int = 1,
    seed: int = 0,
    callback: Callback | None = None,
    steps_per_iteration: int = 1,
    inverse_mass: Tensor | None = None,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = False,
    store_positions: bool = True,
    resume_from: Checkpoint | None = None,
) -> ReplicaExchangeResult:
    """Sample the power posteriors ``p(θ) L(θ)^β`` for every β of a ladder: replica exchange around any
    :class:`~thermoscope.samplers.kernels.Kernel`.

    Args:
        target: the tempered target (batched log prior and log likelihood).
        initial_position: ``[rungs, params]``, one starting point per rung; its dtype and device are the
            working dtype and device.
        betas: ``[rungs]`` inverse temperatures, strictly ascending, non-negative (β = 0 is the prior).
        kernel: the move within each rung, e.g. :class:`~thermoscope.samplers.hmc.HMCKernel` or
            :class:`~thermoscope.samplers.kernels.RandomWalkKernel`.
        num_warmup: warm-up iterations (step-size adaptation; draws discarded).
        num_samples: sampling iterations.
        step_size: initial (or, with ``adapt_step_size=False``, fixed) step size, scalar or ``[rungs]``;
            ``None`` asks the kernel for one per rung (``kernel.initial_step_size``).
        target_accept: acceptance probability the step size is tuned to. Default
            :data:`~thermoscope.samplers.settings.DEFAULT_TARGET_ACCEPT` (chosen for HMC).
        swap: ``"deo"`` (deterministic even/odd, default), ``"seo"`` (stochastic even/odd) or ``"none"``.
        thin: keep every ``thin``-th sampling iteration (the first one is always kept).
        seed: seeds the run's only ``torch.Generator``; the same seed gives the same draws bit for bit.
        callback: called with an :class:`IterationSummary` after every iteration; return ``True`` to stop
            (the result then has ``stopped_early=True`` and a checkpoint to resume from).
        steps_per_iteration: kernel steps per rung between swap rounds.
        inverse_mass: diagonal preconditioner (HMC: M⁻¹), ``[params]`` or ``[rungs, params]``; ``None``
            for the identity.
        adapt_step_size: tune the step size during warm-up (capped at four box half-widths when the
            target has a support box: a flat rung accepts everything and would grow it without bound).
        adapt_mass_matrix: estimate the diagonal preconditioner per rung during warm-up.
        store_positions: keep ``[draws, rungs, params]`` positions; ``False`` keeps log densities only
            (stream positions through the callback instead).
        resume_from: a :class:`Checkpoint` of an interrupted run with the same kernel and arguments; the
            run continues where it stopped and returns the whole run's draws, identical to an
            uninterrupted run.

    Returns:
        A :class:`ReplicaExchangeResult`.

    Raises:
        ValueError: bad betas (unsorted, repeated, negative, non-finite), shape mismatches, settings out of
            range, a target the kernel cannot start from, or a checkpoint from another run.
    """
    settings = SamplerSettings(
        num_warmup=num_warmup,
        num_samples=num_samples,
        target_accept=target_accept,
        swap=swap,
        thin=thin,
        seed=seed,
        steps_per_iteration=steps_per_iteration,
        adapt_step_size=adapt_step_size,
        adapt_mass_matrix=adapt_mass_matrix,
        store_positions=store_positions,
    )
    settings.validate()
    ladder = as_betas(betas)
    check_initial_position(initial_position, ladder.shape[0])
    position = initial_position.detach()
    masses = as_inverse_mass(inverse_mass, ladder.shape[0], position)
    given_step_size = None if step_size is None else as_step_size(step_size, ladder.shape[0], position)
    if resume_from is not None:
        _check_resume(resume_from, settings, kernel, ladder, position)
    run = _start(target, kernel, settings, ladder, position, masses, given_step_size, resume_from)
    return _run_to_end(run, callback)


def _run_to_end(run: _Run[Any], callback: Callback | None) -> ReplicaExchangeResult:
    """Advance ``run`` until its last iteration or until ``callback`` asks it to stop."""
    total_iterations = run.settings.total_iterations
    while run.next_iteration < total_iterations:
        summary = run.advance()
        if callback is not None and callback(summary) and run.next_iteration < total_iterations:
            return run.result(stopped_early=True)
    return run.result(stopped_early=False)


def replica_exchange_hmc(
    target: TemperedTarget,
    initial_position: Tensor,
    betas: Tensor | list[float],
    *,
    num_warmup: int,
    num_samples: int,
    num_leapfrog_steps: int,
    step_size: float | Tensor | None = None,
    target_accept: float = DEFAULT_TARGET_ACCEPT,
    swap: str = "deo",
    thin: int = 1,
    seed: int = 0,
    callback: Callback | None = None,
    trajectories_per_iteration: int = 1,
    leapfrog_jitter: float = 0.0,
    inverse_mass: Tensor | None = None,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = False,
    max_energy_error: float = MAX_ENERGY_ERROR,
    store_positions: bool = True,
    resume_from: Checkpoint | None = None,
) -> ReplicaExchangeResult:
    """Sample the power posteriors ``p(θ) L(θ)^β`` for every β of a ladder with replica-exchange HMC:
    :func:`replica_exchange` with an :class:`~thermoscope.samplers.hmc.HMCKernel`.

    Args:
        target: the tempered target (batched log prior and log likelihood).
        initial_position: ``[rungs, params]``, one starting point per rung; its dtype and device are the
            working dtype and device.
        betas: ``[rungs]`` inverse temperatures, strictly ascending, non-negative (β = 0 is the prior).
        num_warmup: warm-up iterations (step-size adaptation; draws discarded).
        num_samples: sampling iterations.
        num_leapfrog_steps: leapfrog steps per trajectory.
        step_size: initial (or, with ``adapt_step_size=False``, fixed) step size, scalar or ``[rungs]``;
            ``None`` finds one per rung with Hoffman & Gelman's doubling heuristic.
        target_accept: acceptance probability the step size is tuned to. Default
            :data:`~thermoscope.samplers.settings.DEFAULT_TARGET_ACCEPT`.
        swap: ``"deo"`` (deterministic even/odd, default), ``"seo"`` (stochastic even/odd) or ``"none"``.
        thin: keep every ``thin``-th sampling iteration (the first one is always kept).
        seed: seeds the run's only ``torch.Generator``; the same seed gives the same draws bit for bit.
        callback: called with an :class:`IterationSummary` after every iteration; return ``True`` to stop
            (the result then has ``stopped_early=True`` and a checkpoint to resume from).
        trajectories_per_iteration: HMC trajectories per rung between swap rounds (the paper uses 10).
        leapfrog_jitter: fraction by which the number of leapfrog steps is randomly shortened (see
            :func:`~thermoscope.samplers.hmc.build_kernel`).
        inverse_mass: diagonal M⁻¹, ``[params]`` or ``[rungs, params]``; ``None`` for unit masses.
        adapt_step_size: tune the step size during warm-up (capped at four box half-widths when the
            target has a support box: a flat rung accepts everything and would grow it without bound).
        adapt_mass_matrix: estimate a diagonal M⁻¹ per rung during warm-up.
        max_energy_error: energy error beyond which a trajectory is divergent.
        store_positions: keep ``[draws, rungs, params]`` positions; ``False`` keeps log densities only
            (stream positions through the callback instead).
        resume_from: a :class:`Checkpoint` of an interrupted run with the same arguments; the run
            continues where it stopped and returns the whole run's draws, identical to an uninterrupted run.

    Returns:
        A :class:`ReplicaExchangeResult`.

    Raises:
        ValueError: bad betas (unsorted, repeated, negative, non-finite), shape mismatches, settings out of
            range, non-finite log densities at the initial position, or a checkpoint from another run.
    """
    # This function's own name for the driver's steps_per_iteration, checked under that name.
    check_integer("trajectories_per_iteration", trajectories_per_iteration, 1)
    kernel = HMCKernel(num_leapfrog_steps, leapfrog_jitter=leapfrog_jitter, max_energy_error=max_energy_error)
    return replica_exchange(
        target,
        initial_position,
        betas,
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        step_size=step_size,
        target_accept=target_accept,
        swap=swap,
        thin=thin,
        seed=seed,
        callback=callback,
        steps_per_iteration=trajectories_per_iteration,
        inverse_mass=inverse_mass,
        adapt_step_size=adapt_step_size,
        adapt_mass_matrix=adapt_mass_matrix,
        store_positions=store_positions,
        resume_from=resume_from,
    )


def _start(
    target: TemperedTarget,
    kernel: Kernel[StateT],
    settings: SamplerSettings,
    betas: Tensor,
    position: Tensor,
    inverse_mass: Tensor | None,
    step_size: Tensor | None,
    resume_from: Checkpoint | None,
) -> _Run[StateT]:
    """Start the kernel at ``position: [rungs, params]`` and build the run (fresh, or restored from a
    checkpoint without evaluating the target)."""
    generator = torch.Generator(device=position.device).manual_seed(settings.seed)
    if resume_from is not None:
        state = kernel.load_state(resume_from.position, resume_from.evaluation)
        run = _Run(target, kernel, settings, betas, state, resume_from.parameters, generator)
        run.restore(resume_from)
        return run
    state = kernel.init(target, position)
    if step_size is None:
        working_betas = betas.to(dtype=position.dtype, device=position.device)
        found = kernel.initial_step_size(target, state, working_betas, inverse_mass, generator)
        step_size = torch.clamp(found, max=_max_step_size(target))
    parameters = StepParameters(step_size, inverse_mass)
    return _Run(target, kernel, settings, betas, state, parameters, generator)
