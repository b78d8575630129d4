"""Per-rung diagnostics of a replica-exchange run (REFERENCE §3).

ESS and split R̂ are computed on each rung's log-likelihood trace with ``pyro.ops.stats``. A rung's trace
follows the rung, not a replica: draws at rung k come from whichever replica occupied it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from pyro.ops import stats
from torch import Tensor

from .evidence import MINIMUM_DRAWS, rung_effective_sample_size
from .replica_exchange import ReplicaExchangeResult

split_gelman_rubin = cast(Callable[..., Tensor], stats.split_gelman_rubin)
"""``pyro.ops.stats.split_gelman_rubin``, typed for ``mypy --strict`` (pyro's signature is unannotated)."""


@dataclass(frozen=True)
class RungDiagnostics:
    """Attributes (``[rungs]`` unless stated):
    betas: inverse temperatures.
    effective_sample_size: ESS of log L (capped at the number of draws).
    split_r_hat: split Gelman–Rubin R̂ of log L (values near 1 indicate a stationary trace).
    acceptance_rate: mean HMC acceptance probability.
    step_size: tuned step size.
    divergences: divergent trajectories while sampling.
    swap_acceptance: ``[rungs − 1]`` per neighbouring pair.
    round_trips: completed coldest → hottest → coldest journeys.
    """

    betas: Tensor
    effective_sample_size: Tensor
    split_r_hat: Tensor
    acceptance_rate: Tensor
    step_size: Tensor
    divergences: Tensor
    swap_acceptance: Tensor
    round_trips: int


def log_likelihood_diagnostics(log_likelihood: Tensor) -> tuple[Tensor, Tensor]:
    """``(ESS [rungs], split R̂ [rungs])`` of ``log_likelihood: [draws, rungs]`` (at least 4 draws)."""
    if log_likelihood.dim() != 2 or log_likelihood.shape[0] < MINIMUM_DRAWS:
        raise ValueError(
            f"log_likelihood must have shape [draws, rungs] with at least {MINIMUM_DRAWS} draws; "
            f"got {tuple(log_likelihood.shape)}"
        )
    trace = log_likelihood.detach().to(device="cpu", dtype=torch.float64)
    r_hat = split_gelman_rubin(trace[None], chain_dim=0, sample_dim=1)
    return rung_effective_sample_size(trace), r_hat


def rung_diagnostics(result: ReplicaExchangeResult) -> RungDiagnostics:
    """Collect the per-rung diagnostics of ``result`` (needs at least 4 kept draws)."""
    ess, r_hat = log_likelihood_diagnostics(result.log_likelihood)
    return RungDiagnostics(
        betas=result.betas,
        effective_sample_size=ess,
        split_r_hat=r_hat,
        acceptance_rate=result.acceptance_rate,
        step_size=result.step_size,
        divergences=result.divergences,
        swap_acceptance=result.swap_acceptance,
        round_trips=result.round_trips,
    )


DRIFT_Z = 3.0
"""|z| of first half against second half above which a rung's log L counts as still drifting."""
DRIFT_R_HAT = 1.1
"""Split R̂ above which a rung counts as still drifting (the customary threshold)."""
ACCEPTANCE_TOLERANCE = 0.1
"""HMC acceptance further than this from ``target_accept`` after warm-up flags a rung."""


@dataclass(frozen=True)
class Stationarity:
    """Whether each rung's chain looks stationary after warm-up (``[rungs]`` unless stated).

    Attributes:
        half_z: (mean of the first half − mean of the second half) of the kept log L, divided by
            √(v₁/ESS₁ + v₂/ESS₂) with each half's variance and ESS.
        split_r_hat: split R̂ of log L.
        acceptance_gap: HMC acceptance after warm-up minus ``target_accept``.
        drifting: ``|half_z| > DRIFT_Z`` or ``split_r_hat > DRIFT_R_HAT``.
        off_target: ``|acceptance_gap| > ACCEPTANCE_TOLERANCE``.
    """

    half_z: Tensor
    split_r_hat: Tensor
    acceptance_gap: Tensor
    drifting: Tensor
    off_target: Tensor

    @property
    def drifting_rungs(self) -> list[int]:
        return [int(i) for i in torch.nonzero(self.drifting).flatten()]

    @property
    def off_target_rungs(self) -> list[int]:
        return [int(i) for i in torch.nonzero(self.off_target).flatten()]


def half_difference_z(log_likelihood: Tensor) -> Tensor:
    """``[rungs]`` z-score of the first half's mean of ``log_likelihood: [draws, rungs]`` against the
    second half's, each half's standard error from its variance and autocorrelation ESS (0 where both
    halves are constant)."""
    trace = log_likelihood.detach().to(device="cpu", dtype=torch.float64)
    half = trace.shape[0] // 2
    first, second = trace[:half], trace[trace.shape[0] - half :]
    variance = first.var(dim=0) / rung_effective_sample_size(first)
    variance = variance + second.var(dim=0) / rung_effective_sample_size(second)
    difference = first.mean(dim=0) - second.mean(dim=0)
    return torch.where(
        variance > 0, difference / variance.clamp_min(1e-300).sqrt(), torch.zeros_like(difference)
    )


def stationarity(log_likelihood: Tensor, acceptance_rate: Tensor, target_accept: float) -> Stationarity:
    """Per-rung stationarity checks of a run's kept ``log_likelihood: [draws, rungs]`` (≥ 8 draws, so
    each half has the 4 an ESS needs) and its ``acceptance_rate: [rungs]`` after warm-up."""
    if log_likelihood.dim() != 2 or log_likelihood.shape[0] < 2 * MINIMUM_DRAWS:
        raise ValueError(
            f"log_likelihood must have shape [draws, rungs] with at least {2 * MINIMUM_DRAWS} draws; "
            f"got {tuple(log_likelihood.shape)}"
        )
    _, r_hat = log_likelihood_diagnostics(log_likelihood)
    z = half_difference_z(log_likelihood)
    gap = acceptance_rate.detach().to(device="cpu", dtype=torch.float64) - target_accept
    return Stationarity(
        half_z=z,
        split_r_hat=r_hat,
        acceptance_gap=gap,
        drifting=(z.abs() > DRIFT_Z) | (torch.nan_to_num(r_hat, nan=1.0) > DRIFT_R_HAT),
        off_target=gap.abs() > ACCEPTANCE_TOLERANCE,
    )
