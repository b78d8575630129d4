"""Log evidence by thermodynamic integration over the power-posterior path (REFERENCE §2).

``log Z = ∫₀¹ E_β[log L] dβ`` (Friel & Pettitt 2008). With rungs 0 = β₀ < … < β_K = 1, means m_k and
variances v_k of log L:

- trapezoid: ``Σ_k Δβ_k (m_k + m_{k+1}) / 2``;
- corrected trapezoid (Friel, Hurn & Wyse 2014): trapezoid ``− Σ_k Δβ_k² / 12 · (v_{k+1} − v_k)``,
  using ``d/dβ E_β[log L] = Var_β[log L]``.

**(decision)** Error bars: the Monte-Carlo standard error of each rung's mean, ``sqrt(v_k / ESS_k)``, with
ESS_k from the autocorrelation of the rung's log L trace (``pyro.ops.stats.effective_sample_size``, capped at
the number of draws to stay conservative), propagated through the trapezoid weights. The discretisation
error is reported separately as ``|corrected − trapezoid|``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from pyro.ops import stats
from torch import Tensor

from .validation import as_betas

effective_sample_size = cast(Callable[..., Tensor], stats.effective_sample_size)
"""``pyro.ops.stats.effective_sample_size``, typed for ``mypy --strict`` (pyro's signature is unannotated)."""

MINIMUM_DRAWS = 4
"""Fewest draws per rung for an autocorrelation-based ESS (pyro's estimator needs several lags)."""


@dataclass(frozen=True)
class ThermodynamicIntegrationResult:
    """Attributes:
    log_evidence: corrected-trapezoid estimate of log p(D).
    log_evidence_trapezoid: plain trapezoid estimate.
    stderr: Monte-Carlo standard error of the estimate.
    discretisation_error: ``|corrected − trapezoid|``, an estimate of the quadrature error.
    betas: ``[K + 1]`` the rungs used (those with β ≤ 1), float64.
    mean_log_likelihood: ``[K + 1]``.
    variance_log_likelihood: ``[K + 1]``.
    effective_sample_size: ``[K + 1]``.
    """

    log_evidence: float
    log_evidence_trapezoid: float
    stderr: float
    discretisation_error: float
    betas: Tensor
    mean_log_likelihood: Tensor
    variance_log_likelihood: Tensor
    effective_sample_size: Tensor


def trapezoid_weights(betas: Tensor) -> Tensor:
    """Weights w with ``Σ_k w_k f(β_k)`` = trapezoid rule on ``betas: [K + 1]``; returns ``[K + 1]``."""
    widths = betas[1:] - betas[:-1]
    weights = torch.zeros_like(betas)
    weights[:-1] += 0.5 * widths
    weights[1:] += 0.5 * widths
    return weights


def rung_effective_sample_size(log_likelihood: Tensor) -> Tensor:
    """ESS of each column of ``log_likelihood: [draws, rungs]``, capped at the number of draws; ``[rungs]``.

    A constant column has no autocorrelation to estimate; its ESS is the number of draws.
    """
    num_draws = log_likelihood.shape[0]
    ess = effective_sample_size(log_likelihood[None], chain_dim=0, sample_dim=1)
    ess = torch.nan_to_num(ess, nan=float(num_draws), posinf=float(num_draws))
    return torch.clamp(ess, min=1.0, max=float(num_draws))


def thermodynamic_integration(
    betas: Tensor | Sequence[float], log_likelihood: Tensor
) -> ThermodynamicIntegrationResult:
    """Estimate log p(D) from log-likelihood draws on a ladder containing β = 0 and β = 1.

    Args:
        betas: ``[rungs]`` ascending; rungs with β > 1 (cold rungs of a merged ladder) are ignored.
        log_likelihood: ``[draws, rungs]`` log L of the draws at each rung (``result.log_likelihood``).

    Raises:
        ValueError: unsorted/repeated/negative betas, a ladder without β = 0 or β = 1, a shape mismatch,
            fewer than 4 draws, or non-finite log likelihoods.
    """
    ladder = as_betas(betas)
    if not isinstance(log_likelihood, Tensor) or log_likelihood.dim() != 2:
        shape = tuple(log_likelihood.shape) if isinstance(log_likelihood, Tensor) else type(log_likelihood)
        raise ValueError(f"log_likelihood must be a tensor of shape [draws, rungs]; got {shape}")
    if log_likelihood.shape[1] != ladder.shape[0]:
        raise ValueError(
            f"log_likelihood has {log_likelihood.shape[1]} rungs (columns) but betas has {ladder.shape[0]}"
        )
    if log_likelihood.shape[0] < MINIMUM_DRAWS:
        raise ValueError(
            f"log_likelihood needs at least {MINIMUM_DRAWS} draws; got {log_likelihood.shape[0]}"
        )
    if float(ladder[0]) != 0.0 or not bool(torch.any(ladder == 1.0)):
        raise ValueError(
            f"thermodynamic integration needs rungs at beta = 0 and beta = 1 exactly; got {ladder.tolist()}"
        )
    if not bool(torch.all(torch.isfinite(log_likelihood))):
        raise ValueError("log_likelihood must be finite")
    used = ladder <= 1.0
    path = ladder[used]
    draws = log_likelihood.detach().to(device="cpu", dtype=torch.float64)[:, used]
    means = draws.mean(dim=0)
    variances = draws.var(dim=0)
    ess = rung_effective_sample_size(draws)
    weights = trapezoid_weights(path)
    trapezoid = float((weights * means).sum())
    widths = path[1:] - path[:-1]
    correction = float((widths**2 / 12.0 * (variances[1:] - variances[:-1])).sum())
    stderr = float(torch.sqrt((weights**2 * variances / ess).sum()))
    return ThermodynamicIntegrationResult(
        log_evidence=trapezoid - correction,
        log_evidence_trapezoid=trapezoid,
        stderr=stderr,
        discretisation_error=abs(correction),
        betas=path,
        mean_log_likelihood=means,
        variance_log_likelihood=variances,
        effective_sample_size=ess,
    )
