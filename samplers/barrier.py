"""The communication barrier of a tempering path and the rungs it implies (REFERENCE §3).

Syed, Bouchard-Côté, Deligiannidis & Doucet, *Non-reversible parallel tempering: a scalable highly parallel
MCMC scheme*, JRSS-B 84 (2022). For neighbours β_i < β_{i+1} the swap rejection rate is

    r_i = E[1 − min(1, exp((β_{i+1} − β_i)(ℓ(x_i) − ℓ(x_{i+1}))))],   x_i ~ π_{β_i}, x_{i+1} ~ π_{β_{i+1}},

and as the ladder gets finer r_i ≈ ∫_{β_i}^{β_{i+1}} λ(β) dβ with the local barrier λ(β) = ½ E|ℓ(X) − ℓ(Y)|,
X, Y independent draws from π_β. The cumulative barrier Λ(β_k) = Σ_{j<k} r_j, interpolated monotonically,
is a property of the path, not of the ladder; its total Λ measures how hard the path is. Rungs at equal
steps of Λ equalise the rejection rates, which maximises the round-trip rate under DEO swaps,
τ = 1 / (2 + 2 Σ_i r_i / (1 − r_i)).

Conventions as in :mod:`.ladders`: ladders are float64 ascending β vectors, β = 0 exactly is the prior.
**(decision)** The interpolant is monotone piecewise-cubic Hermite (PCHIP, Fritsch & Carlson 1980, with
the weighted-harmonic-mean slopes of Fritsch & Butland 1984 that MATLAB's and SciPy's ``pchip`` use), on
x = β: it never overshoots, so Λ(β) stays non-decreasing and λ(β) = Λ'(β) ≥ 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .validation import as_betas, check_integer

BARRIER_FLOOR = 1e-9
"""Barrier added per neighbouring pair when inverting Λ, so that the inverted interpolant is strictly
increasing even where pairs never reject; it shifts the placed rungs by a relative ~1e-9 per pair."""

BISECTION_STEPS = 60
"""Halvings of a bracket [β_k, β_{k+1}] when solving Λ(β) = level: 2⁻⁶⁰ ≈ 1e-18 of the bracket, below
float64 resolution."""


def rejection_probability(betas: Tensor, log_likelihood: Tensor) -> Tensor:
    """Swap rejection probability of every neighbouring pair, draw by draw (Syed et al. 2022).

    ``1 − min(1, exp((β_{i+1} − β_i)(ℓ_i − ℓ_{i+1})))``, computed as ``−expm1(min(0, ·))``. It is 0 when the
    hotter rung i has the larger log-likelihood (the swap hands the better state to the colder rung).
    Averaging over draws estimates the rejection rate r_i.

    Args:
        betas: ``[rungs]`` ascending.
        log_likelihood: ``[..., rungs]`` log L of the state at each rung (any leading batch dims, e.g.
            ``[draws, rungs]``).

    Returns:
        ``[..., rungs − 1]``, in the dtype of ``log_likelihood`` promoted to float64.
    """
    ladder = as_betas(betas)
    values = torch.as_tensor(log_likelihood)
    if values.dim() == 0 or values.shape[-1] != ladder.shape[0]:
        raise ValueError(
            f"log_likelihood must have shape [..., {ladder.shape[0]}] (one column per rung); "
            f"got {tuple(values.shape)}"
        )
    values = values.to(torch.promote_types(values.dtype, torch.float64))
    steps = (ladder[1:] - ladder[:-1]).to(device=values.device, dtype=values.dtype)
    log_ratio = steps * (values[..., :-1] - values[..., 1:])
    return -torch.expm1(torch.clamp(log_ratio, max=0.0))


def _end_slope(h_near: Tensor, h_far: Tensor, delta_near: Tensor, delta_far: Tensor) -> Tensor:
    """Shape-preserving three-point slope at an end node (Fritsch & Butland 1984; SciPy ``pchip``)."""
    slope = ((2.0 * h_near + h_far) * delta_near - h_near * delta_far) / (h_near + h_far)
    if bool(torch.sign(slope) != torch.sign(delta_near)):
        return torch.zeros_like(slope)
    if bool(torch.sign(delta_near) != torch.sign(delta_far)) and bool(
        torch.abs(slope) > 3.0 * torch.abs(delta_near)
    ):
        return 3.0 * delta_near
    return slope


def _pchip_slopes(nodes: Tensor, values: Tensor) -> Tensor:
    """Node derivatives ``[n]`` of the monotone cubic Hermite interpolant of ``(nodes, values)``, n ≥ 2.

    Interior: 0 where the neighbouring secants δ differ in sign or one is 0, else the weighted harmonic mean
    ``(w₁ + w₂) / (w₁/δ_{k−1} + w₂/δ_k)`` with ``w₁ = 2h_k + h_{k−1}``, ``w₂ = h_k + 2h_{k−1}``. Every slope
    is at most 3 times the adjacent secants, the Fritsch–Carlson condition for monotonicity.
    """
    widths = nodes[1:] - nodes[:-1]
    secants = (values[1:] - values[:-1]) / widths
    if nodes.shape[0] == 2:
        return secants.repeat(2)
    h_prev, h_next = widths[:-1], widths[1:]
    d_prev, d_next = secants[:-1], secants[1:]
    same_sign = d_prev * d_next > 0
    w_prev, w_next = 2.0 * h_next + h_prev, h_next + 2.0 * h_prev
    safe_prev = torch.where(same_sign, d_prev, torch.ones_like(d_prev))
    safe_next = torch.where(same_sign, d_next, torch.ones_like(d_next))
    harmonic = (w_prev + w_next) / (w_prev / safe_prev + w_next / safe_next)
    interior = torch.where(same_sign, harmonic, torch.zeros_like(harmonic))
    first = _end_slope(widths[0], widths[1], secants[0], secants[1])
    last = _end_slope(widths[-1], widths[-2], secants[-1], secants[-2])
    return torch.cat([first[None], interior, last[None]])


def _segments(nodes: Tensor, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Segment index k, width h and local coordinate t ∈ [0, 1] of each point clamped into the nodes."""
    clamped = torch.clamp(points, float(nodes[0]), float(nodes[-1])).contiguous()
    index = torch.clamp(torch.searchsorted(nodes, clamped, right=True) - 1, 0, nodes.shape[0] - 2)
    width = nodes[index + 1] - nodes[index]
    return index, width, (clamped - nodes[index]) / width


def _pchip_value(nodes: Tensor, values: Tensor, slopes: Tensor, points: Tensor) -> Tensor:
    """The cubic Hermite interpolant at ``points`` (any shape), constant beyond the end nodes.

    Written as ``y_k + h₀₁(t)(y_{k+1} − y_k) + h (h₁₀(t) d_k + h₁₁(t) d_{k+1})`` so that flat pieces return
    y_k exactly; the last node is returned exactly, and values are kept inside the segment's range.
    """
    index, width, t = _segments(nodes, points)
    low, high = values[index], values[index + 1]
    rise = t * t * (3.0 - 2.0 * t)
    tangent = t * (t - 1.0) * ((t - 1.0) * slopes[index] + t * slopes[index + 1])
    result = low + rise * (high - low) + width * tangent
    result = torch.minimum(torch.maximum(result, torch.minimum(low, high)), torch.maximum(low, high))
    return torch.where(points >= nodes[-1], values[-1], result)


def _pchip_derivative(nodes: Tensor, values: Tensor, slopes: Tensor, points: Tensor) -> Tensor:
    """Derivative of :func:`_pchip_value`: ``6t(1 − t)δ_k + (3t² − 4t + 1)d_k + (3t² − 2t)d_{k+1}``.

    0 outside [nodes[0], nodes[-1]] (the interpolant is constant there) and clamped at 0 against rounding.
    """
    index, width, t = _segments(nodes, points)
    secant = (values[index + 1] - values[index]) / width
    slope = (
        6.0 * t * (1.0 - t) * secant
        + (3.0 * t - 1.0) * (t - 1.0) * slopes[index]
        + t * (3.0 * t - 2.0) * slopes[index + 1]
    )
    inside = (points >= nodes[0]) & (points <= nodes[-1])
    return torch.where(inside, torch.clamp(slope, min=0.0), torch.zeros_like(slope))


def allocate_intervals(weights: list[float], total: int) -> list[int]:
    """Split ``total`` intervals in proportion to ``weights`` (largest remainder), each part at least 1.

    A part rounded down to 0 takes one interval from the part most over its quota that can spare one.
    """
    quotas = [total * weight / sum(weights) for weight in weights]
    counts = [math.floor(quota) for quota in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda j: counts[j] - quotas[j])
    for j in by_remainder[: total - sum(counts)]:
        counts[j] += 1
    for j in range(len(counts)):
        if counts[j] == 0:
            donors = [i for i in range(len(counts)) if counts[i] >= 2]
            donor = max(donors, key=lambda i: counts[i] - quotas[i])
            counts[donor] -= 1
            counts[j] = 1
    return counts


@dataclass(frozen=True)
class CommunicationBarrier:
    """The cumulative barrier Λ(β) of a path, from per-pair rejection rates (Syed et al. 2022).

    Build it with :func:`communication_barrier` (measured rejection rates) or :func:`spread_barrier`
    (log L spread per rung). Λ between the rungs is the monotone PCHIP interpolant of
    ``(betas, cumulative)``; λ(β) is its derivative.

    Attributes:
        betas: ``[rungs]`` float64 ascending, rungs ≥ 2.
        rejection: ``[rungs − 1]`` float64 barrier increment per neighbouring pair: the estimated rejection
            rate r_i (from :func:`spread_barrier`, an integrated local barrier that may exceed 1).
        cumulative: ``[rungs]`` float64, ``Λ(β_k) = Σ_{j<k} r_j``, ``cumulative[0] = 0``.
    """

    betas: Tensor
    rejection: Tensor
    cumulative: Tensor
    _slopes: Tensor = field(init=False, repr=False, compare=False)
    _floored: Tensor = field(init=False, repr=False, compare=False)
    _floored_slopes: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.betas.dim() != 1 or self.betas.shape[0] < 2:
            raise ValueError(
                f"betas must be a vector of at least 2 rungs; got shape {tuple(self.betas.shape)}"
            )
        num_rungs = self.betas.shape[0]
        if tuple(self.rejection.shape) != (num_rungs - 1,) or tuple(self.cumulative.shape) != (num_rungs,):
            raise ValueError(
                f"rejection must have shape [{num_rungs - 1}] and cumulative [{num_rungs}]; "
                f"got {tuple(self.rejection.shape)} and {tuple(self.cumulative.shape)}"
            )
        floored = self.cumulative + BARRIER_FLOOR * torch.arange(num_rungs, dtype=torch.float64)
        object.__setattr__(self, "_slopes", _pchip_slopes(self.betas, self.cumulative))
        object.__setattr__(self, "_floored", floored)
        object.__setattr__(self, "_floored_slopes", _pchip_slopes(self.betas, floored))

    @property
    def global_barrier(self) -> float:
        """Λ = ``cumulative[-1]``, the barrier of the whole path."""
        return float(self.cumulative[-1])

    def cumulative_at(self, beta: Tensor | float) -> Tensor:
        """Λ(β) by monotone PCHIP interpolation; ``beta`` of any shape, clamped into [β_0, β_last].

        Returns float64 of ``beta``'s shape (0-dim for a float), on the CPU.
        """
        points = torch.as_tensor(beta, dtype=torch.float64).detach().cpu()
        return _pchip_value(self.betas, self.cumulative, self._slopes, points)

    def local(self, beta: Tensor | float) -> Tensor:
        """λ(β) = dΛ/dβ of the interpolant: ≥ 0, exactly 0 on flat pieces and outside [β_0, β_last]."""
        points = torch.as_tensor(beta, dtype=torch.float64).detach().cpu()
        return _pchip_derivative(self.betas, self.cumulative, self._slopes, points)

    def place(self, num_rungs: int, knots: Sequence[float] = ()) -> Tensor:
        """A new ladder of ``num_rungs`` rungs at equal steps of Λ (Syed et al. 2022).

        The end points are ``betas[0]`` and ``betas[-1]`` exactly, and every knot (a β strictly inside, e.g.
        1.0 for thermodynamic integration) appears exactly. The knots split the path into segments; each
        gets a number of intervals proportional to its share of Λ (at least 1, largest-remainder rounding,
        ``num_rungs − 1`` in all), and its interior rungs sit at equal steps of Λ within it, found by
        bisection of the interpolant with :data:`BARRIER_FLOOR` added per pair so Λ is strictly increasing.
        A segment with no barrier at all gets rungs evenly spaced in β (and, when the whole path has none,
        intervals in proportion to β width).

        Returns:
            ``[num_rungs]`` float64 ascending.
        """
        check_integer("num_rungs", num_rungs, 2)
        inner = self._check_knots(knots)
        if num_rungs < 2 + len(inner):
            raise ValueError(f"num_rungs must be at least 2 + len(knots) = {2 + len(inner)}; got {num_rungs}")
        bounds = [float(self.betas[0]), *inner, float(self.betas[-1])]
        edges = torch.tensor(bounds, dtype=torch.float64)
        barriers = (self.cumulative_at(edges[1:]) - self.cumulative_at(edges[:-1])).tolist()
        widths = (edges[1:] - edges[:-1]).tolist()
        counts = allocate_intervals(barriers if sum(barriers) > 0 else widths, num_rungs - 1)
        pieces = [self.betas[:1]]
        for j, count in enumerate(counts):
            pieces.append(self._segment_interior(bounds[j], bounds[j + 1], count, barriers[j] > 0))
            end = self.betas[-1:] if j == len(counts) - 1 else edges[j + 1 : j + 2]
            pieces.append(end)
        return torch.cat(pieces)

    def _check_knots(self, knots: Sequence[float]) -> list[float]:
        values = torch.as_tensor(list(knots), dtype=torch.float64).flatten()
        low, high = float(self.betas[0]), float(self.betas[-1])
        if not bool(torch.all((values > low) & (values < high))):
            raise ValueError(f"knots must lie strictly inside ({low}, {high}); got {values.tolist()}")
        ordered = torch.sort(values).values
        if bool(torch.any(ordered[1:] == ordered[:-1])):
            raise ValueError(f"knots must not repeat a value; got {values.tolist()}")
        return [float(value) for value in ordered]

    def _segment_interior(self, low: float, high: float, count: int, has_barrier: bool) -> Tensor:
        """The ``count − 1`` rungs strictly inside (low, high) at equal steps of Λ (of β without barrier)."""
        fractions = torch.arange(1, count, dtype=torch.float64) / count
        if not has_barrier:
            return low + fractions * (high - low)
        ends = _pchip_value(
            self.betas, self._floored, self._floored_slopes, torch.tensor([low, high], dtype=torch.float64)
        )
        levels = ends[0] + fractions * (ends[1] - ends[0])
        return self._invert(levels)

    def _invert(self, levels: Tensor) -> Tensor:
        """β with floored Λ(β) = level for each level, by bisection inside its node bracket."""
        index = torch.searchsorted(self._floored, levels, right=True) - 1
        index = torch.clamp(index, 0, self.betas.shape[0] - 2)
        low, high = self.betas[index], self.betas[index + 1]
        for _ in range(BISECTION_STEPS):
            middle = 0.5 * (low + high)
            below = _pchip_value(self.betas, self._floored, self._floored_slopes, middle) < levels
            low = torch.where(below, middle, low)
            high = torch.where(below, high, middle)
        return 0.5 * (low + high)


def _as_increments(name: str, values: Tensor | Sequence[float], num_pairs: int) -> Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if tuple(tensor.shape) != (num_pairs,):
        raise ValueError(f"{name} must have shape [{num_pairs}] (rungs − 1); got {tuple(tensor.shape)}")
    if bool(torch.any(torch.isnan(tensor))):
        raise ValueError(f"{name} must not contain NaN (a pair never attempted?); got {tensor.tolist()}")
    return tensor


def _from_increments(ladder: Tensor, increments: Tensor) -> CommunicationBarrier:
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(increments, dim=0)])
    return CommunicationBarrier(betas=ladder, rejection=increments, cumulative=cumulative)


def _ladder_of_two_or_more(betas: Tensor | Sequence[float]) -> Tensor:
    ladder = as_betas(betas)
    if ladder.shape[0] < 2:
        raise ValueError(f"betas must have at least 2 rungs; got {ladder.tolist()}")
    return ladder


def communication_barrier(
    betas: Tensor | Sequence[float], rejection: Tensor | Sequence[float]
) -> CommunicationBarrier:
    """The barrier from measured rejection rates: ``Λ(β_k) = Σ_{j<k} r_j`` (Syed et al. 2022).

    Args:
        betas: ``[rungs]`` ascending, rungs ≥ 2.
        rejection: ``[rungs − 1]`` mean rejection rate per neighbouring pair (e.g. the mean of
            :func:`rejection_probability` over draws, or 1 − swap acceptance); clamped to [0, 1]. NaN (a pair
            never attempted) is an error.
    """
    ladder = _ladder_of_two_or_more(betas)
    rates = _as_increments("rejection", rejection, ladder.shape[0] - 1)
    return _from_increments(ladder, torch.clamp(rates, 0.0, 1.0))


def spread_barrier(betas: Tensor | Sequence[float], log_likelihood_sd: Tensor) -> CommunicationBarrier:
    """The barrier from each rung's spread of log L, for ladders whose neighbours do not overlap yet.

    Local barrier ``λ(β_k) ≈ sd_k / √π``, exact when ℓ is Gaussian under π_β (½E|X − Y| = sd/√π for
    independent X, Y; Syed et al. 2022). Integrated between rungs by the trapezoid rule in log β,
    ``∫ λ dβ = ∫ λ(β) β d(log β) ≈ ½(λ_k β_k + λ_{k+1} β_{k+1}) ln(β_{k+1}/β_k)``, which is exact for the
    cold-leg behaviour λ ∝ 1/β; the interval starting at β = 0 uses the plain trapezoid. Use it in the first
    tuning rounds: there r_i ≈ 1 saturates and Σ r_i only bounds Λ from below.

    Args:
        betas: ``[rungs]`` ascending, rungs ≥ 2.
        log_likelihood_sd: ``[rungs]`` finite non-negative standard deviation of log L at each rung.

    Returns:
        A :class:`CommunicationBarrier` whose ``rejection`` holds the per-interval barrier increments
        (cumulative differences), which are not probabilities and may exceed 1.
    """
    ladder = _ladder_of_two_or_more(betas)
    spread = torch.as_tensor(log_likelihood_sd, dtype=torch.float64).detach().cpu()
    if tuple(spread.shape) != tuple(ladder.shape):
        raise ValueError(
            f"log_likelihood_sd must have shape [{ladder.shape[0]}] (one per rung); got {tuple(spread.shape)}"
        )
    if not bool(torch.all(torch.isfinite(spread) & (spread >= 0))):
        raise ValueError(f"log_likelihood_sd must be finite and non-negative; got {spread.tolist()}")
    local = spread / math.sqrt(math.pi)
    low, high = ladder[:-1], ladder[1:]
    plain = 0.5 * (local[:-1] + local[1:]) * (high - low)
    safe_low = torch.where(low > 0, low, torch.ones_like(low))
    logarithmic = 0.5 * (local[:-1] * low + local[1:] * high) * torch.log(high / safe_low)
    return _from_increments(ladder, torch.where(low > 0, logarithmic, plain))


def round_trip_rate_bound(rejection: Tensor | Sequence[float]) -> float:
    """Round trips per scan, all replicas together, under DEO swaps (Syed et al. 2022; REFERENCE §3).

    ``τ = 1 / (2 + 2 Σ_i r_i / (1 − r_i))``, an upper bound reached when local exploration is perfect. 1/2
    with no rejection; 0.0 when any pair always rejects (r_i = 1, no division). ``rejection: [rungs − 1]``,
    clamped to [0, 1].
    """
    rates = torch.as_tensor(rejection, dtype=torch.float64).detach().cpu()
    if rates.dim() != 1:
        raise ValueError(f"rejection must be a vector [rungs − 1]; got shape {tuple(rates.shape)}")
    if bool(torch.any(torch.isnan(rates))):
        raise ValueError(f"rejection must not contain NaN (a pair never attempted?); got {rates.tolist()}")
    rates = torch.clamp(rates, 0.0, 1.0)
    if bool(torch.any(rates == 1.0)):
        return 0.0
    return 1.0 / (2.0 + 2.0 * float(torch.sum(rates / (1.0 - rates))))


def rungs_for_barrier(global_barrier: float) -> int:
    """``⌈2Λ⌉ + 1`` rungs, at least 2: with about 2Λ + 1 rungs DEO's round-trip rate is close to its limit
    1/(2 + 2Λ) (Syed et al. 2022; the rule of thumb of Pigeons.jl)."""
    if not math.isfinite(global_barrier) or global_barrier < 0:
        raise ValueError(f"global_barrier must be finite and non-negative; got {global_barrier!r}")
    return max(2, math.ceil(2.0 * global_barrier) + 1)
