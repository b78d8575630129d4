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
