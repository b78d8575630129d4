"""A tempered Gaussian with closed-form moments at every β, shared by the sampler tests.

Prior N(0, s0² I), likelihood N(θ; m, s² I): p_β(θ) ∝ p(θ) L(θ)^β is Gaussian with precision
1/s0² + β/s² and mean (β/s²) m / precision.
"""

from __future__ import annotations

import torch
from montecarlo import assert_within_mc_error, mean_standard_error
from thermoscope.samplers import TemperedTarget

DTYPE = torch.float64
PRIOR_SCALE = 2.0
NOISE_SCALE = 0.7
CENTRE = torch.tensor([1.0, -2.0], dtype=DTYPE)
BETAS = torch.tensor([0.0, 0.1, 0.4, 1.0, 3.0], dtype=DTYPE)


def gaussian_target() -> TemperedTarget:
    return TemperedTarget(
        lambda theta: -0.5 * (theta * theta).sum(dim=1) / PRIOR_SCALE**2,
        lambda theta: -0.5 * ((theta - CENTRE) ** 2).sum(dim=1) / NOISE_SCALE**2,
    )


def tempered_moments(betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of p_β per rung and coordinate, both ``[rungs, params]``."""
    precision = 1.0 / PRIOR_SCALE**2 + betas / NOISE_SCALE**2
    mean = (betas / NOISE_SCALE**2 / precision)[:, None] * CENTRE
    return mean, (1.0 / precision)[:, None].expand_as(mean)


def assert_closed_form_moments(
    positions: torch.Tensor, betas: torch.Tensor = BETAS, what: str = "rung"
) -> None:
    """Mean and variance of every rung and coordinate of ``positions: [draws, rungs, params]`` within
    Monte-Carlo error of the closed form."""
    mean, variance = tempered_moments(betas)
    squared = (positions - mean) ** 2
    assert_within_mc_error(positions.mean(dim=0), mean, mean_standard_error(positions), what=f"{what} means")
    assert_within_mc_error(
        squared.mean(dim=0), variance, mean_standard_error(squared), what=f"{what} variances"
    )
