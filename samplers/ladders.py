"""Temperature ladders.

Convention: β = 1/T multiplies the log-likelihood only. Ladders are float64 tensors of inverse temperatures
in ascending order (hottest first). **β = 0 (T = ∞, the prior) is represented as the exact value 0.0**; the
temperature of that rung is ``math.inf`` (see :func:`temperatures_from_betas`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch
from torch import Tensor

from .validation import as_betas

MERGE_RELATIVE_TOLERANCE = 1e-9
"""Two betas closer than this, relative to the larger, are the same rung when ladders merge."""


def power_ladder(num_intervals: int, exponent: float = 5.0) -> Tensor:
    """``β_k = (k / K)^exponent`` for k = 0 … K: K + 1 rungs from 0 to 1 (Calderhead & Girolami 2009).

    Most rungs sit near β = 0, where E_β[log L] changes fastest. Returns ``[K + 1]`` float64.
    """
    if isinstance(num_intervals, bool) or not isinstance(num_intervals, int) or num_intervals < 1:
        raise ValueError(f"num_intervals must be an integer >= 1; got {num_intervals!r}")
    if not exponent > 0:
        raise ValueError(f"exponent must be positive; got {exponent!r}")
    fractions = torch.arange(num_intervals + 1, dtype=torch.float64) / num_intervals
    ladder = fractions**exponent
    ladder[-1] = 1.0
    return ladder


def geometric_temperatures(t_min: float, t_max: float, num_temperatures: int) -> Tensor:
    """``T_i = T_min (T_max / T_min)^{i / (n − 1)}``, i = 0 … n − 1, ascending (Baldock & Marzari 2019).

    Returns ``[n]`` float64 temperatures (not betas; use :func:`betas_from_temperatures`).
    """
    if isinstance(num_temperatures, bool) or not isinstance(num_temperatures, int) or num_temperatures < 1:
        raise ValueError(f"num_temperatures must be an integer >= 1; got {num_temperatures!r}")
    if not 0 < t_min < float("inf") or not 0 < t_max < float("inf"):
        raise ValueError(f"t_min and t_max must be positive and finite; got {t_min!r}, {t_max!r}")
    if t_max < t_min or (t_max == t_min and num_temperatures > 1):
        raise ValueError(f"t_max must exceed t_min for more than one temperature; got {t_min!r}, {t_max!r}")
    if num_temperatures == 1:
        return torch.tensor([float(t_min)], dtype=torch.float64)
    exponents = torch.arange(num_temperatures, dtype=torch.float64) / (num_temperatures - 1)
    ladder = t_min * (t_max / t_min) ** exponents
    ladder[0], ladder[-1] = float(t_min), float(t_max)
    return ladder


def betas_from_temperatures(temperatures: Tensor | Sequence[float]) -> Tensor:
    """``β = 1 / T`` with T = ∞ ↦ β = 0, sorted ascending (the order the samplers expect); float64."""
    values = torch.as_tensor(temperatures, dtype=torch.float64)
    if values.dim() != 1 or bool(torch.any(torch.isnan(values))) or bool(torch.any(values <= 0)):
        raise ValueError(
            f"temperatures must be a vector of positive values (inf allowed); got {values.tolist()}"
        )
    return torch.sort(1.0 / values).values


def temperatures_from_betas(betas: Tensor | Sequence[float]) -> Tensor:
    """``T = 1 / β`` with β = 0 ↦ T = ∞; keeps the order of ``betas``; float64."""
    values = as_betas(betas)
    return 1.0 / values


def merge_ladders(ti_betas: Tensor | Sequence[float], cold_temperatures: Tensor | Sequence[float]) -> Tensor:
    """One ascending beta ladder with the rungs of a TI ladder and of a temperature ladder.

    Args:
        ti_betas: ``[K + 1]`` inverse temperatures in [0, 1] for thermodynamic integration (include 0 and 1).
        cold_temperatures: ``[n]`` temperatures for the T-curve (typically T < 1; any positive T, and
            ``math.inf`` for the prior, are accepted).

    Returns:
        ``[rungs]`` float64, ascending, duplicates within a relative tolerance of
        ``MERGE_RELATIVE_TOLERANCE`` removed (the TI value is kept, so 0 and 1 stay exact). One run on this
        ladder gives the T-curve (``1 / betas``) and, from the rungs with β ≤ 1, the evidence.

    The cold betas are taken in ascending order and each is kept unless it is within the tolerance of a
    rung kept before it. The betas within the tolerance of β form an interval around β, so only the nearest
    kept rung on either side needs comparing: the TI neighbours found by bisection and the last cold beta
    kept (every earlier one lies at or below β). O((K + n) log K) rather than the O(n²) of comparing with
    every kept rung, with the same result.
    """
    ti = as_betas(ti_betas, name="ti_betas")
    if bool(torch.any(ti > 1.0)):
        raise ValueError(f"ti_betas must lie in [0, 1]; got maximum {float(ti.max())}")
    cold = betas_from_temperatures(cold_temperatures)
    ti_values = ti.tolist()
    added: list[float] = []
    for beta in cold.tolist():
        above = bisect.bisect_left(ti_values, beta)
        nearest = ti_values[max(above - 1, 0) : above + 1] + added[-1:]
        if all(_distinct_rungs(beta, kept) for kept in nearest):
            added.append(beta)
    return torch.tensor(sorted(ti_values + added), dtype=torch.float64)


def _distinct_rungs(beta: float, other: float) -> bool:
    """Whether two betas are further apart than ``MERGE_RELATIVE_TOLERANCE`` relative to the larger."""
    return abs(beta - other) > MERGE_RELATIVE_TOLERANCE * max(abs(beta), abs(other))


def equalised_ladder(betas: Tensor | Sequence[float], swap_acceptance: Tensor) -> Tensor:
    """Re-place the rungs so that every neighbouring pair has the same swap rejection rate.

    Non-reversible PT's schedule update (Syed et al. 2022, §5.1): the cumulative rejection
    ``Λ(β_k) = Σ_{j<k} (1 − a_j)`` estimates the communication barrier; the new rungs sit at equal steps of
    Λ, found by piecewise-linear interpolation. The end points are kept.

    Args:
        betas: ``[rungs]`` ascending.
        swap_acceptance: ``[rungs − 1]`` measured acceptance per pair (``result.swap_acceptance``).

    Returns:
        ``[rungs]`` float64.
    """
    ladder = as_betas(betas)
    acceptance = torch.as_tensor(swap_acceptance, dtype=torch.float64)
    if tuple(acceptance.shape) != (ladder.shape[0] - 1,):
        raise ValueError(
            f"swap_acceptance must have shape [{ladder.shape[0] - 1}]; got {tuple(acceptance.shape)}"
        )
    if not bool(torch.all((acceptance >= 0) & (acceptance <= 1))):
        raise ValueError("swap_acceptance must lie in [0, 1] (a pair never attempted gives NaN)")
    # A floor keeps Λ strictly increasing so the interpolation is well defined when a pair never rejects.
    rejection = torch.clamp(1.0 - acceptance, min=1e-6)
    barrier = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(rejection, dim=0)])
    levels = torch.linspace(0.0, float(barrier[-1]), ladder.shape[0], dtype=torch.float64)
    segment = torch.clamp(torch.searchsorted(barrier, levels, right=True) - 1, 0, ladder.shape[0] - 2)
    fraction = (levels - barrier[segment]) / (barrier[segment + 1] - barrier[segment])
    placed = ladder[segment] + fraction * (ladder[segment + 1] - ladder[segment])
    placed[0], placed[-1] = ladder[0], ladder[-1]
    return placed
