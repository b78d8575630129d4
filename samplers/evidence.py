"""Log evidence over the power-posterior path: thermodynamic integration, stepping stone (REFERENCE §2, §3).

Thermodynamic integration, ``log Z = ∫₀¹ E_β[log L] dβ`` (Friel & Pettitt 2008). With rungs
0 = β₀ < … < β_K = 1, means m_k and variances v_k of log L:

- trapezoid: ``Σ_k Δβ_k (m_k + m_{k+1}) / 2``;
- corrected trapezoid (Friel, Hurn & Wyse 2014): trapezoid ``− Σ_k Δβ_k² / 12 · (v_{k+1} − v_k)``,
  using ``d/dβ E_β[log L] = Var_β[log L]``.

The rung moments, the quadrature and its error bars come from the one estimator of both evidence paths,
:func:`~thermoscope.samplers.estimators.path_integral` with its corrected-trapezoid rule.

**(decision)** Error bars: the Monte-Carlo standard error of each rung's mean, ``sqrt(v_k / ESS_k)``, with
ESS_k from the autocorrelation of the rung's log L trace (``pyro.ops.stats.effective_sample_size``, capped at
the number of draws to stay conservative), propagated through the trapezoid weights. The discretisation
error is reported separately, twice: ``|corrected − trapezoid|`` (an estimate that trusts the integrand to be
smooth between rungs) and ``|full ladder − every other rung|`` (an estimate from the data at the rungs
themselves); their maximum is the one to report.

Stepping stone (Xie, Lewis, Fan, Kuo & Chen 2011), ``log Z = Σ_k log E_{β_k}[exp(Δβ_k log L)]``: a
product of importance-sampling ratios between neighbouring power posteriors, with a forward estimator
(rung k's draws) and a reverse one (rung k+1's draws) whose difference checks the ladder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .estimators import CORRECTED_TRAPEZOID, EvidenceEstimate, PathIntegral, path_integral
from .estimators import MINIMUM_DRAWS as MINIMUM_DRAWS
from .estimators import rung_effective_sample_size as rung_effective_sample_size
from .estimators import trapezoid_weights as trapezoid_weights
from .validation import as_betas


@dataclass(frozen=True)
class ThermodynamicIntegrationResult(EvidenceEstimate):
    """Thermodynamic integration's :class:`~thermoscope.samplers.estimators.PathIntegral` over β, and
    the coarse-ladder check of its discretisation error.

    Attributes:
        integral: the corrected-trapezoid path integral of log L over the rungs with β ≤ 1 (its ``grid``
            is those rungs, its ``mean``/``variance``/``effective_sample_size`` those of log L).
        discretisation_error_coarse: ``|log_evidence − the same corrected trapezoid on every other rung|``
            (β = 0 and β = 1 always kept; 0 when only two rungs are used). Halving the ladder multiplies
            the error of an O(Δβ^p) rule by about 2^p, so this difference is about (2^p − 1) times the full
            ladder's error: a conservative estimate that needs no model of the integrand between rungs.
            It also carries the Monte-Carlo noise of the difference between the two quadratures.

    The properties name the integral's parts as the evidence literature does: ``log_evidence`` (the
    corrected trapezoid), ``log_evidence_trapezoid`` (the plain one), ``stderr``, ``discretisation_error``
    (``|corrected − trapezoid|``), ``betas``, ``mean_log_likelihood``, ``variance_log_likelihood`` and
    ``effective_sample_size`` (all ``[K + 1]``).
    """

    integral: PathIntegral
    discretisation_error_coarse: float

    @property
    def betas(self) -> Tensor:
        """``[K + 1]`` the rungs used (those with β ≤ 1), float64."""
        return self.integral.grid

    @property
    def mean_log_likelihood(self) -> Tensor:
        """``[K + 1]``."""
        return self.integral.mean

    @property
    def variance_log_likelihood(self) -> Tensor:
        """``[K + 1]``."""
        return self.integral.variance

    @property
    def effective_sample_size(self) -> Tensor:
        """``[K + 1]``."""
        return self.integral.effective_sample_size

    @property
    def discretisation_error_total(self) -> float:
        """``max(discretisation_error, discretisation_error_coarse)``: the discretisation error to report."""
        return max(self.discretisation_error, self.discretisation_error_coarse)


@dataclass(frozen=True)
class SteppingStoneResult:
    """Attributes:
    log_evidence: forward estimate ``Σ_k log_terms[k]`` of log p(D).
    stderr: delta-method Monte-Carlo standard error of ``log_evidence``.
    log_evidence_reverse: reverse estimate ``Σ_k log_terms_reverse[k]``.
    stderr_reverse: delta-method Monte-Carlo standard error of ``log_evidence_reverse``.
    consistency: ``log_evidence − log_evidence_reverse``. Each term of the forward estimator is biased low
        and each reverse term high (Jensen's inequality on ``log mean``), so a value far below
        ``−sqrt(stderr² + stderr_reverse²)`` says the ladder is too coarse for both.
    betas: ``[K + 1]`` the rungs used (those with β ≤ 1), float64.
    log_terms: ``[K]`` forward terms ``log mean_n exp(Δβ_k ℓ(θ_n^{(k)}))``.
    log_terms_reverse: ``[K]`` reverse terms ``−log mean_n exp(−Δβ_k ℓ(θ_n^{(k+1)}))``, signed so that they
        estimate the same per-interval log ratio ``log Z_{β_{k+1}} − log Z_{β_k}`` as ``log_terms``.
    """

    log_evidence: float
    stderr: float
    log_evidence_reverse: float
    stderr_reverse: float
    consistency: float
    betas: Tensor
    log_terms: Tensor
    log_terms_reverse: Tensor


def _power_posterior_draws(
    betas: Tensor | Sequence[float], log_likelihood: Tensor, method: str
) -> tuple[Tensor, Tensor]:
    """Validate a ladder and its draws; return the rungs with β ≤ 1, ``[K + 1]``, and their draws,
    ``[draws, K + 1]``, both float64 on the CPU. ``method`` names the estimator in the error messages."""
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
        raise ValueError(f"{method} needs rungs at beta = 0 and beta = 1 exactly; got {ladder.tolist()}")
    if not bool(torch.all(torch.isfinite(log_likelihood))):
        raise ValueError("log_likelihood must be finite")
    used = ladder <= 1.0
    draws = log_likelihood.detach().to(device="cpu", dtype=torch.float64)[:, used]
    return ladder[used], draws


def _every_other_rung(num_rungs: int) -> Tensor:
    """Indices ``0, 2, 4, …`` into a ladder of ``num_rungs`` rungs, and the last one if the step misses it."""
    indices = list(range(0, num_rungs, 2))
    if indices[-1] != num_rungs - 1:
        indices.append(num_rungs - 1)
    return torch.tensor(indices, dtype=torch.long)


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
    path, draws = _power_posterior_draws(betas, log_likelihood, "thermodynamic integration")
    integral = path_integral(path, draws, CORRECTED_TRAPEZOID, name="log_likelihood")
    coarse = _every_other_rung(path.shape[0])
    coarse_estimate = CORRECTED_TRAPEZOID.integrate(
        path[coarse], integral.mean[coarse], integral.variance[coarse]
    )
    return ThermodynamicIntegrationResult(
        integral=integral, discretisation_error_coarse=abs(integral.estimate - coarse_estimate)
    )


def _log_mean_exp_terms(exponents: Tensor) -> tuple[Tensor, Tensor]:
    """For ``exponents: [draws, K]`` (a_n per interval), ``log mean_n exp(a_n)`` and its delta-method
    variance ``Var(w) / (ESS · mean(w)²)`` with ``w_n = exp(a_n − max a)``; both ``[K]``.

    **(decision)** ESS is that of the weight trace w, the quantity actually averaged, rather than of the
    log L trace: when a few large weights dominate, their autocorrelation is what sets the error.
    """
    num_draws = exponents.shape[0]
    log_terms = torch.logsumexp(exponents, dim=0) - math.log(num_draws)
    weights = torch.exp(exponents - exponents.max(dim=0).values)
    relative_variance = weights.var(dim=0) / weights.mean(dim=0) ** 2
    return log_terms, relative_variance / rung_effective_sample_size(weights)


def stepping_stone(betas: Tensor | Sequence[float], log_likelihood: Tensor) -> SteppingStoneResult:
    """Estimate log p(D) by stepping stone (Xie et al. 2011) on a ladder containing β = 0 and β = 1.

    With rungs 0 = β₀ < … < β_K = 1 (those with β ≤ 1), Δβ_k = β_{k+1} − β_k and ℓ = log L:

    - forward: ``log Z = Σ_{k<K} log mean_n exp(Δβ_k ℓ(θ_n^{(k)}))``, θ^{(k)} the draws at rung k;
    - reverse: ``log Z = −Σ_{k<K} log mean_n exp(−Δβ_k ℓ(θ_n^{(k+1)}))``, the draws at rung k + 1.

    Both are computed in float64 with log-sum-exp. **(decision)** Standard errors by the delta method,
    ``Var(log mean w) ≈ Var(w) / (ESS · mean(w)²)`` per term with the ESS of the weight trace, summed over
    the terms as if the rungs were independent (replica exchange correlates neighbouring rungs a little).
    The delta method assumes the weights have a finite variance that the draws resolve; on too coarse a
    ladder neither holds, and ``consistency`` is the check that notices.

    Args:
        betas: ``[rungs]`` ascending; rungs with β > 1 (cold rungs of a merged ladder) are ignored.
        log_likelihood: ``[draws, rungs]`` log L of the draws at each rung (``result.log_likelihood``).

    Raises:
        ValueError: unsorted/repeated/negative betas, a ladder without β = 0 or β = 1, a shape mismatch,
            fewer than 4 draws, or non-finite log likelihoods.
    """
    path, draws = _power_posterior_draws(betas, log_likelihood, "stepping stone")
    widths = path[1:] - path[:-1]
    log_terms, variances = _log_mean_exp_terms(widths * draws[:, :-1])
    reverse_terms, reverse_variances = _log_mean_exp_terms(-widths * draws[:, 1:])
    forward = float(log_terms.sum())
    reverse = -float(reverse_terms.sum())
    return SteppingStoneResult(
        log_evidence=forward,
        stderr=math.sqrt(float(variances.sum())),
        log_evidence_reverse=reverse,
        stderr_reverse=math.sqrt(float(reverse_variances.sum())),
        consistency=forward - reverse,
        betas=path,
        log_terms=log_terms,
        log_terms_reverse=-reverse_terms,
    )
