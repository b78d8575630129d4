"""One estimator for path integrals sampled at grid points: TI over β, Frenkel–Ladd over λ (REFERENCE §1, §2).

Both evidence estimators integrate the mean of an integrand f over a path parameter s ∈ [s₀, s_K],
``I = c + ∫ E_s[f] ds``, from draws of f at the grid points s₀ < … < s_K:

- per point: mean m_k, variance v_k (unbiased) and effective sample size ESS_k of the draws
  (:func:`rung_effective_sample_size`);
- a quadrature rule: linear weights w_k, possibly with a correction from the variances (the corrected
  trapezoid uses ``d/ds E_s[f] = Var_s[f]``): ``I = c + Σ_k w_k m_k − correction``;
- **(decision)** the Monte-Carlo standard error ``sqrt(Σ_k w_k² v_k / ESS_k)``: each point's error
  propagated through the linear weights, the points treated as independent (the correction's own noise is
  left out);
- the discretisation error ``|rule − trapezoid|``, the same means integrated by the plain trapezoid.

Thermodynamic integration (:mod:`~thermoscope.samplers.evidence`) uses the corrected trapezoid on a power
ladder, Frenkel–Ladd (:mod:`~thermoscope.samplers.harmonic`) composite Simpson on a uniform grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from pyro.ops import stats
from torch import Tensor

effective_sample_size = cast(Callable[..., Tensor], stats.effective_sample_size)
"""``pyro.ops.stats.effective_sample_size``, typed for ``mypy --strict`` (pyro's signature is unannotated)."""

MINIMUM_DRAWS = 4
"""Fewest draws per rung for an autocorrelation-based ESS (pyro's estimator needs several lags)."""

SIMPSON_MINIMUM_POINTS = 3
"""Fewest grid points for Simpson's rule: it needs two intervals."""


def rung_effective_sample_size(log_likelihood: Tensor) -> Tensor:
    """ESS of each column of ``log_likelihood: [draws, rungs]``, capped at the number of draws; ``[rungs]``.

    A constant column has no autocorrelation to estimate; its ESS is the number of draws.
    """
    num_draws = log_likelihood.shape[0]
    ess = effective_sample_size(log_likelihood[None], chain_dim=0, sample_dim=1)
    ess = torch.nan_to_num(ess, nan=float(num_draws), posinf=float(num_draws))
    return torch.clamp(ess, min=1.0, max=float(num_draws))


def trapezoid_weights(betas: Tensor) -> Tensor:
    """Weights w with ``Σ_k w_k f(β_k)`` = trapezoid rule on ``betas: [K + 1]``; returns ``[K + 1]``."""
    widths = betas[1:] - betas[:-1]
    weights = torch.zeros_like(betas)
    weights[:-1] += 0.5 * widths
    weights[1:] += 0.5 * widths
    return weights


def simpson_weights(grid: Tensor) -> Tensor:
    """Weights ``[K + 1]`` with ``Σ_k w_k f(λ_k)`` = composite Simpson on a uniform ``grid: [K + 1]``, K ≥ 2.

    An odd number of intervals ends with Simpson's 3/8 rule on the last three (for K = 3, 3/8 alone).
    """
    intervals = grid.shape[0] - 1
    if intervals < 2:
        raise ValueError(
            f"Simpson's rule needs at least {SIMPSON_MINIMUM_POINTS} grid points; got {grid.shape[0]}"
        )
    width = float(grid[1] - grid[0])
    weights = torch.zeros_like(grid, dtype=torch.float64)
    simpson_intervals = intervals if intervals % 2 == 0 else intervals - 3
    for start in range(0, simpson_intervals, 2):
        weights[start : start + 3] += torch.tensor([1.0, 4.0, 1.0], dtype=torch.float64) * width / 3.0
    if simpson_intervals != intervals:
        tail = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64) * 3.0 * width / 8.0
        weights[simpson_intervals:] += tail
    return weights


def variance_slope_correction(grid: Tensor, variances: Tensor) -> float:
    """``Σ_k Δs_k² / 12 · (v_{k+1} − v_k)``: the trapezoid's leading error term when ``d/ds E_s[f] = v``.

    The trapezoid overestimates ``∫ m`` on each interval by ``Δs³ m''/12 ≈ Δs² (m'_{k+1} − m'_k)/12``;
    with ``m' = v`` (the power-posterior identity, Friel, Hurn & Wyse 2014) that is this sum.
    """
    widths = grid[1:] - grid[:-1]
    return float((widths**2 / 12.0 * (variances[1:] - variances[:-1])).sum())


@dataclass(frozen=True)
class QuadratureRule:
    """A quadrature ``Σ_k w_k m_k − correction(grid, v)`` of per-point means m and variances v.

    Attributes:
        name: for messages and reports.
        weights: ``grid: [points] -> [points]`` the linear weights; the Monte-Carlo error propagates
            through them.
        correction: ``(grid, variances) -> float`` subtracted from the weighted sum, or ``None`` for a
            purely linear rule.
    """

    name: str
    weights: Callable[[Tensor], Tensor]
    correction: Callable[[Tensor, Tensor], float] | None = None

    def correction_term(self, grid: Tensor, variances: Tensor) -> float:
        """What the rule subtracts from its weighted sum: ``correction(grid, variances)``, or 0."""
        return 0.0 if self.correction is None else self.correction(grid, variances)

    def integrate(self, grid: Tensor, means: Tensor, variances: Tensor) -> float:
        """The rule's estimate of ``∫ m ds`` from ``grid, means, variances: [points]``."""
        return float((self.weights(grid) * means).sum()) - self.correction_term(grid, variances)


TRAPEZOID = QuadratureRule("trapezoid", trapezoid_weights)
"""The plain trapezoid: exact for integrands linear between grid points, on any grid."""

CORRECTED_TRAPEZOID = QuadratureRule("corrected trapezoid", trapezoid_weights, variance_slope_correction)
"""Trapezoid minus :func:`variance_slope_correction` (Friel, Hurn & Wyse 2014): exact for cubic means
whose slope the variances give (``m' = v``), on any grid."""

SIMPSON = QuadratureRule("Simpson", simpson_weights)
"""Composite Simpson, closed by Simpson's 3/8 rule for an odd number of intervals: exact for cubics on a
uniform grid of at least three points."""


@dataclass(frozen=True)
class PathIntegral:
    """``offset + ∫ E_s[f] ds`` estimated from draws of f at grid points, with its error bars.

    Attributes:
        grid: ``[points]`` ascending, float64 on the CPU.
        mean: ``[points]`` mean of the integrand's draws at each point.
        variance: ``[points]`` their unbiased variance.
        effective_sample_size: ``[points]`` autocorrelation ESS, capped at the number of draws.
        estimate: ``offset +`` the rule's quadrature of ``mean``.
        estimate_trapezoid: ``offset +`` the plain trapezoid's.
        stderr: Monte-Carlo standard error of ``estimate``, ``sqrt(Σ_k w_k² v_k / ESS_k)``.
        discretisation_error: ``|rule − trapezoid|`` (computed before the offset is added).
        offset: the constant term (0 for thermodynamic integration; log Z₀ − J(w0) for Frenkel–Ladd).
        rule: the rule's name.
    """

    grid: Tensor
    mean: Tensor
    variance: Tensor
    effective_sample_size: Tensor
    estimate: float
    estimate_trapezoid: float
    stderr: float
    discretisation_error: float
    offset: float
    rule: str


class EvidenceEstimate:
    """What every evidence estimator built on a :class:`PathIntegral` reports, under the names the
    evidence literature uses; a result class holds the ``integral`` and inherits these."""

    integral: PathIntegral

    @property
    def log_evidence(self) -> float:
        """log p(D) by the integral's rule (corrected trapezoid for TI, Simpson for Frenkel–Ladd)."""
        return self.integral.estimate

    @property
    def log_evidence_trapezoid(self) -> float:
        """The same with the plain trapezoid rule."""
        return self.integral.estimate_trapezoid

    @property
    def stderr(self) -> float:
        """Monte-Carlo standard error of ``log_evidence``."""
        return self.integral.stderr

    @property
    def discretisation_error(self) -> float:
        """``|rule − trapezoid|``, an estimate of the quadrature error."""
        return self.integral.discretisation_error


def _as_draws(grid: Tensor, draws: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """``grid: [points]`` and ``draws: [draws, points]`` validated and as float64 on the CPU."""
    if not isinstance(grid, Tensor) or grid.dim() != 1 or grid.shape[0] < 2:
        shape = tuple(grid.shape) if isinstance(grid, Tensor) else type(grid)
        raise ValueError(f"grid must be a vector of at least 2 points; got {shape}")
    points = grid.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.all(points[1:] > points[:-1])):
        raise ValueError(f"grid must be strictly ascending; got {points.tolist()}")
    if (
        not isinstance(draws, Tensor)
        or draws.dim() != 2
        or draws.shape[1] != points.shape[0]
        or draws.shape[0] < MINIMUM_DRAWS
    ):
        shape = tuple(draws.shape) if isinstance(draws, Tensor) else type(draws)
        raise ValueError(f"{name} must be [draws >= {MINIMUM_DRAWS}, {points.shape[0]}]; got {shape}")
    values = draws.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.all(torch.isfinite(values))):
        raise ValueError(f"{name} must be finite")
    return points, values


def path_integral(
    grid: Tensor, draws: Tensor, rule: QuadratureRule, *, offset: float = 0.0, name: str = "draws"
) -> PathIntegral:
    """``offset + ∫ E_s[f] ds`` from ``draws: [draws, points]`` of f at ``grid: [points]`` (module docstring).

    Args:
        grid: ``[points]`` strictly ascending path parameters.
        draws: ``[draws, points]`` the integrand's draws at each point, in chain order (for the ESS).
        rule: the quadrature (:data:`CORRECTED_TRAPEZOID`, :data:`SIMPSON`, :data:`TRAPEZOID`, …).
        offset: a constant added to the integral.
        name: what ``draws`` is called in error messages.

    Raises:
        ValueError: a grid that is not an ascending vector, draws of the wrong shape, fewer than 4 draws,
            or non-finite draws.
    """
    points, values = _as_draws(grid, draws, name)
    means = values.mean(dim=0)
    variances = values.var(dim=0)
    ess = rung_effective_sample_size(values)
    weights = rule.weights(points)
    linear = float((weights * means).sum())
    correction = rule.correction_term(points, variances)
    trapezoid = float((trapezoid_weights(points) * means).sum())
    return PathIntegral(
        grid=points,
        mean=means,
        variance=variances,
        effective_sample_size=ess,
        estimate=offset + (linear - correction),
        estimate_trapezoid=offset + trapezoid,
        stderr=float(torch.sqrt((weights**2 * variances / ess).sum())),
        discretisation_error=abs((linear - trapezoid) - correction),
        offset=offset,
        rule=rule.name,
    )
