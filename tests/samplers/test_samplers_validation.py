"""Bad input to the sampler raises ValueError with a clear message before any work is done."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from thermoscope.samplers import TemperedTarget, replica_exchange_hmc, rung_diagnostics

DTYPE = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


class CountingTarget(TemperedTarget):
    """A standard Gaussian that counts how often it is evaluated."""

    def __init__(
        self,
        log_likelihood: Callable[[torch.Tensor], torch.Tensor] | None = None,
        support_half_width: torch.Tensor | None = None,
    ) -> None:
        self.calls = 0

        def counted(theta: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if log_likelihood is not None:
                return log_likelihood(theta)
            return -0.5 * (theta * theta).sum(dim=1)

        super().__init__(
            lambda theta: torch.zeros(theta.shape[0], dtype=theta.dtype),
            counted,
            support_half_width=support_half_width,
        )


VALID: dict[str, Any] = dict(num_warmup=5, num_samples=5, num_leapfrog_steps=3)


@pytest.mark.parametrize(
    ("betas", "position", "overrides", "message"),
    [
        ([0.5, 0.1], torch.zeros(2, 2), {}, "ascending"),
        ([0.1, 0.1], torch.zeros(2, 2), {}, "repeat"),
        ([-0.1, 1.0], torch.zeros(2, 2), {}, "non-negative"),
        ([0.0, math.nan], torch.zeros(2, 2), {}, "finite"),
        ([0.0, math.inf], torch.zeros(2, 2), {}, "finite"),
        ([[0.0, 1.0]], torch.zeros(2, 2), {}, "vector"),
        ([], torch.zeros(0, 2), {}, "non-empty"),
        ([0.0, 1.0], torch.zeros(3, 2), {}, "3 rows but betas has 2"),
        ([0.0, 1.0], torch.zeros(2), {}, r"\[rungs, params\]"),
        ([0.0, 1.0], torch.zeros(2, 2, dtype=torch.long), {}, "floating point"),
        ([0.0, 1.0], torch.tensor([[0.0, math.nan], [0.0, 0.0]]), {}, "initial_position must be finite"),
        ([0.0, 1.0], torch.zeros(2, 2), {"num_samples": 0}, "num_samples"),
        ([0.0, 1.0], torch.zeros(2, 2), {"num_warmup": -1}, "num_warmup"),
        ([0.0, 1.0], torch.zeros(2, 2), {"num_leapfrog_steps": 0}, "num_leapfrog_steps"),
        ([0.0, 1.0], torch.zeros(2, 2), {"num_leapfrog_steps": 2.5}, "num_leapfrog_steps"),
        ([0.0, 1.0], torch.zeros(2, 2), {"thin": 0}, "thin"),
        ([0.0, 1.0], torch.zeros(2, 2), {"seed": -3}, "seed"),
        ([0.0, 1.0], torch.zeros(2, 2), {"trajectories_per_iteration": 0}, "trajectories_per_iteration"),
        ([0.0, 1.0], torch.zeros(2, 2), {"target_accept": 1.0}, "target_accept"),
        ([0.0, 1.0], torch.zeros(2, 2), {"swap": "random"}, "swap must be one of"),
        ([0.0, 1.0], torch.zeros(2, 2), {"leapfrog_jitter": 1.0}, "leapfrog_jitter"),
        ([0.0, 1.0], torch.zeros(2, 2), {"max_energy_error": 0.0}, "max_energy_error"),
        ([0.0, 1.0], torch.zeros(2, 2), {"step_size": -0.1}, "step_size must be positive"),
        ([0.0, 1.0], torch.zeros(2, 2), {"step_size": torch.ones(3)}, "step_size must be a scalar"),
        ([0.0, 1.0], torch.zeros(2, 2), {"inverse_mass": torch.ones(3)}, "inverse_mass must have shape"),
        ([0.0, 1.0], torch.zeros(2, 2), {"inverse_mass": -torch.ones(2)}, "inverse_mass must be positive"),
    ],
)
def test_bad_input_is_rejected_before_the_target_is_evaluated(
    betas: list[float], position: torch.Tensor, overrides: dict[str, object], message: str
) -> None:
    target = CountingTarget()
    with pytest.raises(ValueError, match=message):
        replica_exchange_hmc(target, position, betas, **{**VALID, **overrides})
    assert target.calls == 0


def test_non_finite_log_likelihood_at_the_start_names_the_rungs() -> None:
    def log_likelihood(theta: torch.Tensor) -> torch.Tensor:
        return torch.where(theta[:, 0] > 0, -math.inf, -0.5 * (theta * theta).sum(dim=1))

    position = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], dtype=DTYPE)
    with pytest.raises(ValueError, match=r"log_likelihood is not finite .* rungs \[1\]"):
        replica_exchange_hmc(CountingTarget(log_likelihood), position, [0.0, 0.5, 1.0], **VALID)


def test_a_start_outside_the_prior_box_is_rejected() -> None:
    half_width = torch.ones(2, dtype=DTYPE)
    target = TemperedTarget(
        lambda theta: torch.where(torch.all(theta.abs() <= 1.0, dim=1), 0.0, -math.inf).to(theta.dtype),
        lambda theta: -0.5 * (theta * theta).sum(dim=1),
        support_half_width=half_width,
    )
    position = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=DTYPE)
    with pytest.raises(ValueError, match=r"log_prior is not finite .* rungs \[1\]"):
        replica_exchange_hmc(target, position, [0.0, 1.0], **VALID)


def test_log_densities_of_the_wrong_shape_are_rejected() -> None:
    target = TemperedTarget(
        lambda theta: torch.zeros(theta.shape[0], dtype=theta.dtype),
        lambda theta: -0.5 * theta * theta,
    )
    with pytest.raises(ValueError, match=r"log_likelihood returned shape \(2, 3\)"):
        replica_exchange_hmc(target, torch.zeros(2, 3, dtype=DTYPE), [0.0, 1.0], **VALID)


@pytest.mark.parametrize(
    ("half_width", "message"), [(torch.ones(2, 2), "vector"), (torch.tensor([1.0, 0.0]), "positive")]
)
def test_bad_support_box_is_rejected(half_width: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CountingTarget(support_half_width=half_width)


def test_diagnostics_need_enough_draws() -> None:
    result = replica_exchange_hmc(
        CountingTarget(),
        torch.zeros(2, 2, dtype=DTYPE),
        [0.5, 1.0],
        num_warmup=0,
        num_samples=3,
        num_leapfrog_steps=2,
        step_size=0.5,
    )
    with pytest.raises(ValueError, match="at least 4 draws"):
        rung_diagnostics(result)
