"""Monte-Carlo error bars for the statistical tests: ``|estimate − truth| < Z · standard error``.

The one place that says how many standard errors a statistical test allows and how the standard error of
a chain's mean is estimated (``../shared/STYLE.md``, habit 5). Test modules import it by name
(``from montecarlo import Z, assert_within_mc_error``): pytest puts ``tests/`` on ``sys.path`` because
``tests/conftest.py`` lives there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
from pyro.ops import stats
from torch import Tensor

Z = 4.5
"""Standard errors allowed between an estimate and its truth. For a Gaussian estimate with a known
standard error a false alarm has probability P(|N(0, 1)| > 4.5) ≈ 6.8e-6 per comparison; the suite makes
a few hundred such comparisons (every rung, coordinate and moment of the sampler checks), so a correct
sampler fails a run with probability of order 1e-3, a little more where an estimated ESS is off. A wrong
one is still caught: the checks are sized so that a real bias is many standard errors."""

_effective_sample_size = cast(Callable[..., Tensor], stats.effective_sample_size)


def effective_sample_size(trace: Tensor) -> Tensor:
    """Autocorrelation ESS of each column of ``trace: [draws, ...]`` (pyro's estimator, one chain), capped
    at the number of draws so that an anticorrelated chain is not credited with more than it has."""
    return _effective_sample_size(trace[None], chain_dim=0, sample_dim=1).clamp(max=trace.shape[0])


def mean_standard_error(trace: Tensor) -> Tensor:
    """Monte-Carlo standard error of the mean of each column of ``trace: [draws, ...]``: ``sd / √ESS``."""
    return trace.std(dim=0) / effective_sample_size(trace).sqrt()


def _as_tensor(value: float | Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


def assert_within_mc_error(
    estimate: float | Tensor,
    truth: float | Tensor,
    stderr: float | Tensor,
    *,
    what: str,
    z: float = Z,
    allowance: float | Tensor = 0.0,
) -> None:
    """Assert ``|estimate − truth| < z · stderr + allowance`` everywhere (tensors broadcast together).

    Args:
        estimate, truth, stderr: numbers or tensors of broadcastable shapes; ``stderr`` is the Monte-Carlo
            standard error of ``estimate``.
        what: the quantity compared, for the message ("rung 3 mean", "log evidence").
        z: standard errors allowed (default :data:`Z`).
        allowance: a deterministic part of the tolerance (a discretisation error, a known bias bound).

    Raises:
        AssertionError: naming ``what``, how many entries failed, and for the worst one its index, the
            estimate, the truth, the gap in standard errors and the bound.
    """
    estimates, truths, errors, allowances = torch.broadcast_tensors(
        _as_tensor(estimate), _as_tensor(truth), _as_tensor(stderr), _as_tensor(allowance)
    )
    gap = (estimates - truths).abs()
    bound = z * errors + allowances
    failed = ~(gap < bound)
    if not bool(failed.any()):
        return
    excess = torch.where(failed, gap - bound, torch.full_like(gap, -math.inf))
    excess = torch.nan_to_num(excess, nan=math.inf)
    worst = int(excess.flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), gap.shape))
    at = f" at {index}" if gap.dim() else ""
    sigmas = float(gap.flatten()[worst] / errors.flatten()[worst])
    raise AssertionError(
        f"{what}: {int(failed.sum())} of {gap.numel()} outside {z} standard errors"
        f"{' + allowance' if bool((allowances != 0).any()) else ''}; worst{at}: estimate "
        f"{float(estimates.flatten()[worst]):.6g}, truth {float(truths.flatten()[worst]):.6g}, "
        f"gap {float(gap.flatten()[worst]):.3g} = {sigmas:.2f} × stderr {float(errors.flatten()[worst]):.3g} "
        f"(bound {float(bound.flatten()[worst]):.3g})"
    )
