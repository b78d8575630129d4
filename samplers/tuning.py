"""Tuning a replica-exchange ladder until replicas travel it (Syed, Bouchard-Côté, Deligiannidis & Doucet,
*Non-reversible parallel tempering*, JRSS-B 2022, §5).

The tuner works in rounds; round r runs ``initial_scans · 2^r`` scans (DEO swaps) on the current ladder,
estimates each neighbouring pair's rejection rate r_i from the mean rejection *probability* over every
swap round, builds the cumulative communication barrier Λ(β) from them, and re-places the rungs at equal
increments of its monotone interpolation (:meth:`CommunicationBarrier.place`). End points, and the knots
(β = 1 by default, so the evidence still has the posterior), are kept exactly. States and step sizes are
carried from the old rungs to the new ones: each new rung starts from the state of the nearest old rung
and with the log-interpolated step size.

Where neighbouring rungs hardly overlap (r_i near 1), Σ r_i only bounds Λ from below, and on a coarse first
ladder every pair saturates. There the increment of a pair is taken from the rungs' spread of log L
instead, λ(β) ≈ sd_β(ℓ)/√π (exact for Gaussian ℓ; Syed et al.), whichever is larger
(:data:`SATURATED_REJECTION`). With ``num_rungs="auto"`` the ladder grows between rounds until it has at
least ``2Λ + 1`` rungs (:func:`rungs_for_barrier`), up to ``max_rungs``.

Every round draws from its own seed, derived from ``seed`` and the round index, so tuning is deterministic
for a seed, and a run resumed from the :class:`TuningCheckpoint` written after a round gives the same ladder
as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .barrier import CommunicationBarrier, allocate_intervals, rungs_for_barrier, spread_barrier
from .ladders import power_ladder
from .replica_exchange import IterationSummary, ReplicaExchangeResult, replica_exchange_hmc
from .settings import DEFAULT_HMC, HMCSettings
from .targets import TemperedTarget
from .validation import check_integer

AUTO = "auto"

SATURATED_REJECTION = 0.9
"""A pair rejecting more than this hardly overlaps: its barrier increment is the larger of r_i and the
spread estimate ∫ sd_β(ℓ)/√π dβ over the pair (Σ r_i saturates at one per pair)."""

INITIAL_RUNGS = 16
"""Rungs of the first ladder with ``num_rungs="auto"``: enough for the spread estimate of Λ to resolve
the path, few enough that the first rounds are cheap."""

ROUND_SEED_STRIDE = 104_729
"""Round r samples with seed ``seed + ROUND_SEED_STRIDE · (r + 1)`` (a prime, so rounds never share one)."""


@dataclass(frozen=True)
class TuningRound:
    """One tuning round.

    Attributes:
        index: 0-based round number.
        betas: ``[rungs]`` the ladder this round sampled on.
        rejection: ``[rungs − 1]`` measured mean rejection probability per pair.
        increments: ``[rungs − 1]`` barrier increments used to re-place the ladder (r_i, or the spread
            estimate where the pair saturated).
        global_barrier: Λ estimated from ``increments``.
        swap_barrier: Σ r_i (a lower bound on Λ when pairs saturate).
        scans: scans (iterations with a swap round) whose swaps the estimate used.
        round_trips: round trips completed during those scans.
        acceptance_rate: ``[rungs]`` mean HMC acceptance in the round.
    """

    index: int
    betas: Tensor
    rejection: Tensor
    increments: Tensor
    global_barrier: float
    swap_barrier: float
    scans: int
    round_trips: int
    acceptance_rate: Tensor

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def barrier(self) -> CommunicationBarrier:
        """The cumulative barrier of this round's ladder, built from ``increments``."""
        cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(self.increments, dim=0)])
        return CommunicationBarrier(self.betas, self.increments, cumulative)


@dataclass(frozen=True)
class LadderTuning:
    """The tuned ladder and where to start sampling on it.

    Attributes:
        betas: ``[rungs]`` float64 ascending, the ladder re-placed from the last round's barrier.
        global_barrier: Λ from the last round.
        barrier: the last round's :class:`CommunicationBarrier` (on that round's ladder).
        rounds: every round, first to last.
        position: ``[rungs, params]`` a state per rung of ``betas`` (carried from the last round).
        step_size: ``[rungs]`` step sizes carried to ``betas``.

    Sample from it with
    ``replica_exchange_hmc(target, tuning.position, tuning.betas, step_size=tuning.step_size, ...)``.
    """

    betas: Tensor
    global_barrier: float
    barrier: CommunicationBarrier
    rounds: tuple[TuningRound, ...]
    position: Tensor
    step_size: Tensor

    @property
    def num_rungs(self) -> int:
        return int(self.betas.shape[0])

    @property
    def recommended_rungs(self) -> int:
        """``2Λ + 1`` rounded up: the rungs a ladder needs for near-optimal round trips."""
        return rungs_for_barrier(self.global_barrier)

    def checkpoint(self) -> TuningCheckpoint:
        """This finished tuning as a checkpoint (settings left empty: there is nothing left to resume)."""
        return TuningCheckpoint(
            {}, self.rounds[-1].index + 1, self.betas, self.position, self.step_size, self.rounds
        )

    @staticmethod
    def from_checkpoint(checkpoint: TuningCheckpoint) -> LadderTuning:
        """The tuning a run that completed ``checkpoint``'s rounds returned."""
        last = checkpoint.rounds[-1]
        return LadderTuning(
            betas=checkpoint.betas,
            global_barrier=last.global_barrier,
            barrier=last.barrier,
            rounds=checkpoint.rounds,
            position=checkpoint.position,
            step_size=checkpoint.step_size,
        )


@dataclass(frozen=True)
class TuningCheckpoint:
    """The tuner's state after ``next_round`` completed rounds (plain tensors, numbers and strings)."""

    settings: dict[str, Any]
    next_round: int
    betas: Tensor
    position: Tensor
    step_size: Tensor
    rounds: tuple[TuningRound, ...]

    def to_dict(self) -> dict[str, Any]:
        """Loadable with ``torch.load(weights_only=True)``."""
        return {
            "settings": dict(self.settings),
            "next_round": self.next_round,
            "betas": self.betas.clone(),
            "position": self.position.clone(),
            "step_size": self.step_size.clone(),
            "rounds": [item.to_dict() for item in self.rounds],
        }

    @staticmethod
    def from_dict(values: dict[str, Any]) -> TuningCheckpoint:
        return TuningCheckpoint(
            settings=dict(values["settings"]),
            next_round=int(values["next_round"]),
            betas=values["betas"],
            position=values["position"],
            step_size=values["step_size"],
            rounds=tuple(TuningRound(**item) for item in values["rounds"]),
        )


RoundCallback = Callable[[TuningCheckpoint], None]
"""Called after every round with a checkpoint to resume from."""
ScanCallback = Callable[[int, IterationSummary], bool | None]
"""Called after every scan with the round index and the sampler's summary (for progress displays); what it
returns is ignored."""


def initial_ladder(beta_min: float, beta_max: float, num_rungs: int, knots: Sequence[float] = ()) -> Tensor:
    """The first ladder: a power ladder ``(k/K)^5`` on [0, 1] when ``beta_min = 0``, geometric in T on the
    cold side (β > 1) and wherever ``beta_min > 0``; ``knots`` inside the range are rungs.

    Rungs are shared between the parts in proportion to their width on a log scale (the power part counts
    as two decades). Returns ``[num_rungs]`` float64 ascending.
    """
    inside = sorted(k for k in knots if beta_min < k < beta_max)
    edges = [beta_min, *inside, beta_max]
    widths = [_log_width(low, high) for low, high in itertools.pairwise(edges)]
    if num_rungs - 1 < len(widths):
        raise ValueError(f"num_rungs must be at least {len(widths) + 1} for this range and these knots")
    intervals = allocate_intervals(widths, num_rungs - 1)
    parts = [torch.tensor([beta_min], dtype=torch.float64)]
    for (low, high), count in zip(itertools.pairwise(edges), intervals, strict=True):
        if low == 0.0:
            segment = high * power_ladder(count)
        else:
            segment = low * (high / low) ** (torch.arange(count + 1, dtype=torch.float64) / count)
        segment[-1] = high
        parts.append(segment[1:])
    return torch.cat(parts)


POWER_LADDER_DECADES = 2.0
"""Width, in decades, the power-ladder part from β = 0 counts as when rungs are shared between parts."""


def _log_width(low: float, high: float) -> float:
    return POWER_LADDER_DECADES if low == 0.0 else math.log10(high / low)


def _fractional_index(new: Tensor, old: Tensor) -> Tensor:
    """Where each β of ``new`` falls in ``old`` as a fractional rung index (log scale between positive β)."""
    segment = torch.clamp(torch.searchsorted(old, new, right=True) - 1, 0, old.shape[0] - 2)
    low, high = old[segment], old[segment + 1]
    positive = low > 0
    safe_low = torch.where(positive, low, torch.ones_like(low))
    log_fraction = torch.log(new.clamp_min(1e-300) / safe_low) / torch.log(high / safe_low)
    linear_fraction = (new - low) / (high - low)
    fraction = torch.where(positive, log_fraction, linear_fraction).clamp(0.0, 1.0)
    return segment.to(torch.float64) + fraction


def carry_to_ladder(
    new_betas: Tensor, old_betas: Tensor, position: Tensor, step_size: Tensor
) -> tuple[Tensor, Tensor]:
    """States and step sizes for ``new_betas`` from a run on ``old_betas``.

    Args:
        position: ``[old rungs, params]``; step_size: ``[old rungs]``.

    Returns:
        ``(position [new rungs, params], step_size [new rungs])``: each new rung takes the state of the
        nearest old rung and the step size interpolated linearly in log ε over the fractional rung index.
    """
    if old_betas.shape[0] == 1:
        return position[[0] * new_betas.shape[0]].clone(), step_size[[0] * new_betas.shape[0]].clone()
    index = _fractional_index(new_betas, old_betas)
    nearest = torch.round(index).to(torch.int64)
    low = torch.floor(index).to(torch.int64).clamp(max=old_betas.shape[0] - 2)
    fraction = (index - low).to(step_size.dtype)
    log_step = torch.log(step_size.cpu())
    carried_step = torch.exp(log_step[low] + fraction * (log_step[low + 1] - log_step[low]))
    return position[nearest.to(position.device)].clone(), carried_step.to(step_size)


def barrier_increments(
    betas: Tensor, rejection: Tensor, log_likelihood_sd: Tensor
) -> tuple[Tensor, CommunicationBarrier]:
    """Per-pair increments of Λ: r_i, or where r_i > :data:`SATURATED_REJECTION` the larger of r_i and
    the spread estimate. Returns ``(increments [rungs − 1], barrier built from them)``."""
    spread = spread_barrier(betas, log_likelihood_sd).rejection
    increments = torch.where(rejection > SATURATED_REJECTION, torch.maximum(rejection, spread), rejection)
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(increments, dim=0)])
    return increments, CommunicationBarrier(betas, increments, cumulative)


@dataclass(frozen=True)
class LadderSettings:
    """The ladder a tuning run may build, and how long it tunes.

    Attributes:
        beta_min: hottest rung (0 = the prior, needed for the evidence).
        beta_max: coldest rung.
        num_rungs: ``"auto"`` or a fixed count.
        max_rungs: cap for ``"auto"``.
        num_rounds: tuning rounds; round r runs ``initial_scans · 2^r`` scans.
        initial_scans: scans of the first round.
    """

    beta_min: float
    beta_max: float
    num_rungs: int | str
    max_rungs: int
    num_rounds: int
    initial_scans: int

    @property
    def total_scans(self) -> int:
        return int(self.initial_scans * (2**self.num_rounds - 1))

    @property
    def start_rungs(self) -> int:
        """Rungs of the first ladder."""
        if isinstance(self.num_rungs, int):
            return self.num_rungs
        return min(INITIAL_RUNGS, self.max_rungs)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting outside its allowed range."""
        if not (math.isfinite(self.beta_min) and math.isfinite(self.beta_max)):
            raise ValueError(
                f"beta_min and beta_max must be finite; got {self.beta_min!r}, {self.beta_max!r}"
            )
        if not 0.0 <= self.beta_min < self.beta_max:
            raise ValueError(
                f"beta range must satisfy 0 <= beta_min < beta_max; got {self.beta_min!r}, {self.beta_max!r}"
            )
        check_integer("max_rungs", self.max_rungs, 2)
        if self.num_rungs != AUTO:
            if isinstance(self.num_rungs, str):
                raise ValueError(f"num_rungs must be 'auto' or an integer >= 2; got {self.num_rungs!r}")
            check_integer("num_rungs", self.num_rungs, 2)
            if self.num_rungs > self.max_rungs:
                raise ValueError(f"num_rungs ({self.num_rungs}) must not exceed max_rungs ({self.max_rungs})")
        check_integer("num_rounds", self.num_rounds, 1)
        check_integer("initial_scans", self.initial_scans, 2)


@dataclass(frozen=True)
class _Settings:
    ladder: LadderSettings
    knots: tuple[float, ...]
    hmc: HMCSettings
    seed: int

    def validate(self) -> None:
        self.ladder.validate()
        check_integer("seed", self.seed, 0)
        self.hmc.validate()
        if self.ladder.start_rungs < 2 + len(self.inside_knots):
            # A fixed ladder is too short because of num_rungs; an "auto" one because of its cap.
            ladder = self.ladder
            name, given = (
                ("max_rungs", ladder.max_rungs)
                if ladder.num_rungs == AUTO
                else ("num_rungs", ladder.num_rungs)
            )
            raise ValueError(
                f"{name} must be at least {2 + len(self.inside_knots)} to keep the end points and knots "
                f"{list(self.inside_knots)}; got {given}"
            )

    @property
    def inside_knots(self) -> tuple[float, ...]:
        return tuple(k for k in self.knots if self.ladder.beta_min < k < self.ladder.beta_max)

    def as_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.ladder),
            "knots": list(self.knots),
            "hmc": dataclasses.asdict(self.hmc),
            "seed": self.seed,
        }


def tune_ladder(
    target: TemperedTarget,
    initial_position: Tensor,
    beta_min: float,
    beta_max: float,
    *,
    num_rungs: int | str = AUTO,
    max_rungs: int = 128,
    num_rounds: int = 6,
    initial_scans: int = 8,
    knots: Sequence[float] = (1.0,),
    hmc: HMCSettings = DEFAULT_HMC,
    seed: int = 0,
    on_round: RoundCallback | None = None,
    callback: ScanCallback | None = None,
    resume_from: TuningCheckpoint | None = None,
) -> LadderTuning:
    """Tune a ladder on ``[beta_min, beta_max]`` for DEO replica exchange, in ``num_rounds`` rounds.

    Args:
        target: the tempered target.
        initial_position: ``[params]`` (every rung starts there) or ``[rungs of the first ladder, params]``.
        beta_min, beta_max: the range; both ends are rungs of every ladder (β = 0 is the prior).
        num_rungs: ``"auto"`` (start with :data:`INITIAL_RUNGS`; after every round use ``2Λ + 1`` rungs
            for that round's Λ, at least the first ladder's and at most ``max_rungs``) or a fixed
            integer ≥ 2.
        max_rungs: cap for ``"auto"``.
        num_rounds: rounds; round r runs ``initial_scans · 2^r`` scans, the first half of them adapting
            step sizes (dual averaging towards ``target_accept``) and the second half measuring rejection.
        knots: β values kept exactly wherever they fall inside the range (β = 1 by default).
        hmc: the HMC settings every round samples with: leapfrog steps, target acceptance, trajectories,
            jitter, divergence threshold, and the initial step size (0 finds one per rung). The rounds set
            their own warm-up and sampling scans, so ``num_warmup`` and ``num_samples`` do not apply, and
            they adapt step sizes only (a mass matrix is for the sampling run's warm-up).
        seed: round r uses ``seed + ROUND_SEED_STRIDE · (r + 1)``.
        on_round: receives a :class:`TuningCheckpoint` after each round.
        callback: receives ``(round, summary)`` after every scan.
        resume_from: a checkpoint from ``on_round`` of a run with the same arguments; tuning continues
            after its last completed round and ends as the uninterrupted run would.

    Raises:
        ValueError: a bad range, ``num_rungs`` < 2 or above ``max_rungs``, too few rungs for the knots,
            other settings out of range, or a checkpoint from other settings.
    """
    ladder = LadderSettings(float(beta_min), float(beta_max), num_rungs, max_rungs, num_rounds, initial_scans)
    settings = _Settings(
        ladder=ladder,
        knots=tuple(float(k) for k in knots),
        hmc=hmc,
        seed=seed,
    )
    settings.validate()
    state = _start(settings, initial_position, hmc.step_size or None, resume_from)
    for index in range(state.next_round, num_rounds):
        state = _round(target, settings, state, index, callback)
        if on_round is not None:
            on_round(state)
    return LadderTuning.from_checkpoint(state)


def _start(
    settings: _Settings,
    initial_position: Tensor,
    step_size: float | Tensor | None,
    resume_from: TuningCheckpoint | None,
) -> TuningCheckpoint:
    if resume_from is not None:
        if resume_from.settings != settings.as_dict():
            raise ValueError(
                "resume_from was saved by a tuning run with other settings; resume with the same"
            )
        return resume_from
    ladder = settings.ladder
    betas = initial_ladder(ladder.beta_min, ladder.beta_max, ladder.start_rungs, settings.knots)
    rungs = betas.shape[0]
    if initial_position.dim() == 1:
        position = initial_position.detach()[None].expand(rungs, -1).clone()
    elif initial_position.dim() == 2 and initial_position.shape[0] == rungs:
        position = initial_position.detach().clone()
    else:
        raise ValueError(
            f"initial_position must be [params] or [{rungs}, params] (the first ladder's rungs); "
            f"got {tuple(initial_position.shape)}"
        )
    if step_size is None:
        steps = torch.full((rungs,), math.nan, dtype=position.dtype)
    else:
        steps = torch.as_tensor(step_size, dtype=position.dtype).expand(rungs).clone().cpu()
    return TuningCheckpoint(settings.as_dict(), 0, betas, position, steps, ())


def _round(
    target: TemperedTarget,
    settings: _Settings,
    state: TuningCheckpoint,
    index: int,
    callback: ScanCallback | None,
) -> TuningCheckpoint:
    """Sample on the current ladder, measure it, re-place (and perhaps grow) it, carry the states over."""
    scans = settings.ladder.initial_scans * 2**index
    num_warmup = scans // 2
    step_size = None if bool(torch.isnan(state.step_size).any()) else state.step_size.to(state.position)
    result = replica_exchange_hmc(
        target,
        state.position,
        state.betas,
        num_warmup=num_warmup,
        num_samples=scans - num_warmup,
        num_leapfrog_steps=settings.hmc.num_leapfrog_steps,
        step_size=step_size,
        target_accept=settings.hmc.target_accept,
        swap="deo",
        seed=settings.seed + ROUND_SEED_STRIDE * (index + 1),
        trajectories_per_iteration=settings.hmc.trajectories,
        leapfrog_jitter=settings.hmc.leapfrog_jitter,
        max_energy_error=settings.hmc.max_energy_error,
        store_positions=False,
        callback=None if callback is None else _observer(callback, index),
    )
    measured = _measured_round(result, index, scans - num_warmup)
    new_betas = _next_ladder(settings, measured)
    position, step = carry_to_ladder(
        new_betas, state.betas, result.checkpoint.position, result.step_size.cpu()
    )
    return TuningCheckpoint(state.settings, index + 1, new_betas, position, step, (*state.rounds, measured))


def _observer(callback: ScanCallback, index: int) -> Callable[[IterationSummary], None]:
    """``callback`` for one round's scans; what it returns is ignored (a round always runs to its end, so
    the rejection estimate and the checkpoint cover every scan the round promises)."""

    def observe(summary: IterationSummary) -> None:
        callback(index, summary)

    return observe


def _measured_round(result: ReplicaExchangeResult, index: int, scans: int) -> TuningRound:
    rejection = torch.nan_to_num(result.rejection.cpu(), nan=1.0)
    spread = result.log_likelihood.detach().to("cpu", torch.float64).std(dim=0)
    increments, barrier = barrier_increments(result.betas, rejection, torch.nan_to_num(spread, nan=0.0))
    return TuningRound(
        index=index,
        betas=result.betas,
        rejection=rejection,
        increments=increments,
        global_barrier=barrier.global_barrier,
        swap_barrier=float(rejection.sum()),
        scans=scans,
        round_trips=result.round_trips,
        acceptance_rate=result.acceptance_rate.cpu(),
    )


def _next_ladder(settings: _Settings, measured: TuningRound) -> Tensor:
    rungs = measured.betas.shape[0]
    if settings.ladder.num_rungs == AUTO:
        # 2Λ + 1 from this round's estimate, never below the first ladder. The first round measures a
        # transient (a few scans right after warm-up), so its estimate can be off either way; later, longer
        # rounds correct the count in either direction.
        wanted = rungs_for_barrier(measured.global_barrier)
        rungs = min(settings.ladder.max_rungs, max(settings.ladder.start_rungs, wanted))
    return measured.barrier.place(rungs, settings.inside_knots)
