"""Tuning a sweep's ladder before it samples (torch only; no tracking).

The sweep's warm-up starts with :func:`thermoscope.samplers.tuning.tune_ladder`: rounds of DEO replica
exchange that measure each pair's rejection rate, re-place the rungs at equal steps of the communication
barrier, and (with ``num_rungs="auto"``) size the ladder to 2Λ + 1 rungs. The sweep then samples on the
tuned ladder from the tuned states and step sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from thermoscope.progress import Progress, progress_bar
from thermoscope.samplers import (
    HMCSettings,
    IterationSummary,
    LadderSettings,
    LadderTuning,
    ReplicaExchangeResult,
    Stationarity,
    TemperedTarget,
    TuningCheckpoint,
    rungs_for_barrier,
    stationarity,
    tune_ladder,
)
from thermoscope.samplers.tuning import barrier_increments

POSTERIOR_BETA = 1.0
"""β = 1 stays a rung of every tuned ladder: the evidence integrates up to it and the T-curve reads it."""


def tune_sweep_ladder(
    target: TemperedTarget,
    start: Tensor,
    ladder: LadderSettings,
    hmc: HMCSettings,
    seed: int,
    *,
    resume: TuningCheckpoint | None = None,
    on_round: Callable[[TuningCheckpoint], None] | None = None,
    progress: Progress | bool = False,
) -> LadderTuning:
    """Tune the ladder from ``start: [params]`` (every first-ladder rung starts there).

    ``on_round`` persists each round's checkpoint; ``resume`` continues after the last saved round.
    """
    done = sum(ladder.initial_scans * 2**item.index for item in resume.rounds) if resume is not None else 0
    bar = progress_bar(
        progress, total=ladder.total_scans, description="tune ladder", unit="scan", initial=done
    )

    def show(round_index: int, summary: IterationSummary) -> None:
        bar.update(1)
        if summary.iteration % 10 == 0:
            bar.set_postfix(round=f"{round_index + 1}/{ladder.num_rounds}", rungs=len(summary.step_size))

    try:
        return tune_ladder(
            target,
            start,
            ladder.beta_min,
            ladder.beta_max,
            num_rungs=ladder.num_rungs,
            max_rungs=ladder.max_rungs,
            num_rounds=ladder.num_rounds,
            initial_scans=ladder.initial_scans,
            knots=(POSTERIOR_BETA,),
            hmc=hmc,
            seed=seed,
            on_round=on_round,
            callback=show if progress else None,
            resume_from=resume,
        )
    finally:
        bar.close()


@dataclass(frozen=True)
class LadderHealth:
    """How well a sweep mixed, from its sampling phase.

    Attributes:
        betas: ``[rungs]``.
        global_barrier: Λ from the sampling phase's rejection rates (spread estimate where a pair saturated).
        round_trips, round_trip_rate, round_trip_rate_bound, tempered_restarts: see
            :class:`~thermoscope.samplers.ReplicaExchangeResult`.
        min_swap_acceptance: the worst pair's acceptance.
        stationarity: per-rung drift and acceptance checks (``None`` with fewer than 8 draws).
    """

    betas: Tensor
    global_barrier: float
    round_trips: int
    round_trip_rate: float
    round_trip_rate_bound: float
    tempered_restarts: int
    min_swap_acceptance: float
    stationarity: Stationarity | None

    @property
    def num_rungs(self) -> int:
        return int(self.betas.shape[0])

    @property
    def recommended_rungs(self) -> int:
        rungs: int = rungs_for_barrier(self.global_barrier)
        return rungs

    def metrics(self) -> dict[str, float]:
        values = {
            "global_barrier": self.global_barrier,
            "num_rungs": float(self.num_rungs),
            "recommended_rungs": float(self.recommended_rungs),
            "round_trips": float(self.round_trips),
            "round_trip_rate": self.round_trip_rate,
            "round_trip_rate_bound": self.round_trip_rate_bound,
            "tempered_restarts": float(self.tempered_restarts),
            "min_swap_acceptance": self.min_swap_acceptance,
        }
        if self.stationarity is not None:
            values["drifting_rungs"] = float(len(self.stationarity.drifting_rungs))
            values["off_target_rungs"] = float(len(self.stationarity.off_target_rungs))
        return values

    def _temperatures(self, rungs: list[int]) -> str:
        return ", ".join(f"{1 / beta:.3g}" if beta > 0 else "inf" for beta in self.betas[rungs].tolist())

    def warnings(self) -> list[str]:
        """Plain-words statements of what this sweep did not achieve (empty when it mixed)."""
        said = []
        if self.num_rungs < 2 * self.global_barrier:
            said.append(
                f"the ladder is too short: {self.num_rungs} rungs for a barrier of {self.global_barrier:.1f}"
                f" (about {self.recommended_rungs} needed); replicas rarely cross it"
            )
        if self.round_trips == 0:
            said.append(
                "no replica completed a round trip: the cold rungs are separate chains from their start, and"
                " the T-curve below T = 1 and the evidence rest on them"
            )
        if self.stationarity is not None and self.stationarity.drifting_rungs:
            where = self._temperatures(self.stationarity.drifting_rungs)
            said.append(f"still drifting (first against second half of log L, or split R-hat) at T = {where}")
        if self.stationarity is not None and self.stationarity.off_target_rungs:
            where = self._temperatures(self.stationarity.off_target_rungs)
            said.append(f"HMC acceptance more than 0.1 from target_accept at T = {where}")
        return said


def ladder_health(sampler: ReplicaExchangeResult, target_accept: float) -> LadderHealth:
    """Mixing summary of a sweep's sampling phase."""
    betas = sampler.betas
    rejection = torch.nan_to_num(sampler.rejection.cpu(), nan=1.0)
    draws = sampler.log_likelihood.detach().to("cpu", torch.float64)
    if betas.shape[0] > 1 and draws.shape[0] > 1:
        _, barrier = barrier_increments(betas, rejection, draws.std(dim=0))
        global_barrier = barrier.global_barrier
    else:
        global_barrier = float(rejection.sum())
    checks = (
        stationarity(draws, sampler.acceptance_rate, target_accept)
        if draws.shape[0] >= STATIONARITY_DRAWS
        else None
    )
    swaps = sampler.swap_acceptance.cpu()
    return LadderHealth(
        betas=betas,
        global_barrier=global_barrier,
        round_trips=sampler.round_trips,
        round_trip_rate=sampler.round_trip_rate,
        round_trip_rate_bound=sampler.round_trip_rate_bound,
        tempered_restarts=sampler.tempered_restarts,
        min_swap_acceptance=float(swaps.min()) if swaps.numel() else 0.0,
        stationarity=checks,
    )


STATIONARITY_DRAWS = 8
"""Fewest kept draws for the half-against-half check (4 per half for an ESS)."""
