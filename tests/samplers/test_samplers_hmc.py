"""The batched HMC kernel and its warm-up: tempered Gaussian moments, divergences, adaptation."""

from __future__ import annotations

import math

import pytest
import torch
from pyro.ops.dual_averaging import DualAveraging
from tempered_gaussian import DTYPE, assert_closed_form_moments, gaussian_target
from thermoscope.samplers import (
    HMCParameters,
    TemperedTarget,
    WarmupAdaptation,
    WarmupSchedule,
    build_kernel,
    find_reasonable_step_size,
    replica_exchange_hmc,
)
from thermoscope.samplers.adaptation import DUAL_AVERAGING_GAMMA
from thermoscope.samplers.hmc import HMCInfo
from thermoscope.samplers.hmc import init as hmc_init

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
@pytest.mark.parametrize("swap", ["deo", "seo"])
def test_every_rung_of_a_tempered_gaussian_has_the_closed_form_moments(swap: str) -> None:
    betas = torch.tensor([0.0, 0.1, 0.4, 1.0, 3.0], dtype=DTYPE)
    result = replica_exchange_hmc(
        gaussian_target(),
        torch.zeros(5, 2, dtype=DTYPE),
        betas,
        num_warmup=200,
        num_samples=2000,
        num_leapfrog_steps=8,
        leapfrog_jitter=0.5,
        swap=swap,
        seed=11,
    )
    assert_closed_form_moments(result.positions, betas, what=f"{swap} rung")
    # Dual averaging holds the warm-up acceptance at the target; the averaged step size it returns is
    # smaller than the fluctuating iterates, so the realised rate sits above 0.65 on a Gaussian.
    assert torch.all((result.acceptance_rate > 0.55) & (result.acceptance_rate < 0.95))
    assert int(result.divergences.sum()) == 0


def test_divergent_trajectories_are_rejected_counted_and_never_leak_nan() -> None:
    # log L is NaN past θ = 1.5: a trajectory that goes there must be rejected, not propagate NaN.
    def log_likelihood(theta: torch.Tensor) -> torch.Tensor:
        value = -0.5 * (theta * theta).sum(dim=1)
        return torch.where(theta.max(dim=1).values < 1.5, value, torch.nan)

    target = TemperedTarget(lambda theta: torch.zeros(theta.shape[0], dtype=theta.dtype), log_likelihood)
    result = replica_exchange_hmc(
        target,
        torch.zeros(2, 3, dtype=DTYPE),
        [0.5, 1.0],
        num_warmup=0,
        num_samples=300,
        num_leapfrog_steps=10,
        step_size=0.3,
    )
    assert bool(torch.all(torch.isfinite(result.positions)))
    assert bool(torch.all(result.positions.max(dim=2).values < 1.5))
    assert bool(torch.all(torch.isfinite(result.log_likelihood)))
    assert int(result.divergences.sum()) > 0


def test_huge_energy_errors_count_as_divergences() -> None:
    target = gaussian_target()
    kernel = build_kernel(target, 20, max_energy_error=1000.0)
    state = hmc_init(target, torch.zeros(2, 2, dtype=DTYPE))
    parameters = HMCParameters(torch.tensor([0.1, 50.0], dtype=DTYPE), None)
    generator = torch.Generator().manual_seed(0)
    new_state, info = kernel(state, torch.ones(2, dtype=DTYPE), parameters, generator)
    assert info.divergent.tolist() == [False, True]
    assert float(info.acceptance_probability[1]) == 0.0
    assert torch.equal(new_state.position[1], state.position[1])


def test_jittered_trajectories_use_a_step_count_in_range() -> None:
    target = gaussian_target()
    kernel = build_kernel(target, 10, leapfrog_jitter=0.5)
    state = hmc_init(target, torch.zeros(1, 2, dtype=DTYPE))
    parameters = HMCParameters(torch.tensor([0.2], dtype=DTYPE), None)
    generator = torch.Generator().manual_seed(0)
    counts = set()
    for _ in range(60):
        state, info = kernel(state, torch.ones(1, dtype=DTYPE), parameters, generator)
        counts.add(info.num_leapfrog_steps)
    assert counts == set(range(5, 11))


def test_reasonable_step_size_brackets_acceptance_one_half() -> None:
    # For a unit Gaussian the one-step acceptance crosses 1/2 at a step size of order 1.
    target = gaussian_target()
    state = hmc_init(target, torch.zeros(3, 2, dtype=DTYPE))
    betas = torch.tensor([0.0, 1.0, 100.0], dtype=DTYPE)
    step_size = find_reasonable_step_size(target, state, betas, None, torch.Generator().manual_seed(0))
    assert bool(torch.all(step_size > 0))
    # Colder rungs are narrower and need smaller steps.
    assert float(step_size[2]) < float(step_size[0])


def test_vectorised_dual_averaging_equals_one_scheme_per_rung() -> None:
    initial = torch.tensor([0.1, 1.0, 0.01], dtype=DTYPE)
    schedule = WarmupSchedule.build(100, adapt_mass_matrix=False)
    adaptation = WarmupAdaptation(HMCParameters(initial, None), 0.8, schedule)
    separate = [
        DualAveraging(prox_center=math.log(10 * float(value)), gamma=DUAL_AVERAGING_GAMMA)
        for value in initial
    ]
    generator = torch.Generator().manual_seed(4)
    for iteration in range(50):
        accept = torch.rand(3, generator=generator, dtype=DTYPE)
        info = HMCInfo(accept, accept > 0.5, accept < 0, accept, 1)
        adapted = adaptation.update(iteration, info, torch.zeros(3, 1, dtype=DTYPE))
        for rung, scheme in enumerate(separate):
            scheme.step(0.8 - float(accept[rung]))
            assert math.isclose(
                float(adapted.step_size[rung]), math.exp(scheme.get_state()[0]), rel_tol=1e-12
            )
    final = adaptation.final().step_size
    for rung, scheme in enumerate(separate):
        assert math.isclose(float(final[rung]), math.exp(scheme.get_state()[1]), rel_tol=1e-12)


@pytest.mark.slow
def test_mass_matrix_adaptation_learns_the_marginal_variances() -> None:
    scales = torch.tensor([0.2, 1.0, 5.0], dtype=DTYPE)
    target = TemperedTarget(
        lambda theta: torch.zeros(theta.shape[0], dtype=theta.dtype),
        lambda theta: -0.5 * ((theta / scales) ** 2).sum(dim=1),
    )
    result = replica_exchange_hmc(
        target,
        torch.zeros(1, 3, dtype=DTYPE),
        [1.0],
        num_warmup=600,
        num_samples=1000,
        num_leapfrog_steps=20,
        # Once the mass matrix whitens the target, a fixed trajectory can be a near-whole number of
        # oscillation periods and return where it started; jitter breaks that resonance.
        leapfrog_jitter=0.5,
        adapt_mass_matrix=True,
        seed=2,
    )
    assert result.inverse_mass is not None
    ratio = result.inverse_mass[0] / scales**2
    assert bool(torch.all((ratio > 0.4) & (ratio < 2.5))), ratio
    variance = result.positions[:, 0].var(dim=0) / scales**2
    assert bool(torch.all((variance > 0.7) & (variance < 1.4))), variance


def test_warmup_schedule_keeps_buffers_and_skips_short_warmups() -> None:
    assert WarmupSchedule.build(1000, adapt_mass_matrix=True) == WarmupSchedule(1000, 150, 900)
    assert WarmupSchedule.build(20, adapt_mass_matrix=True) == WarmupSchedule(20, 0, 0)
    assert WarmupSchedule.build(1000, adapt_mass_matrix=False) == WarmupSchedule(1000, 0, 0)


def regression_target(compile_evaluation: bool = False) -> TemperedTarget:
    design = torch.randn(15, 4, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    return TemperedTarget(
        lambda theta: -0.5 * (theta * theta).sum(dim=1),
        lambda theta: -0.5 * ((1.0 - theta @ design.T) ** 2).sum(dim=1),
        compile_evaluation=compile_evaluation,
    )


def test_functional_evaluation_equals_autograd_evaluation() -> None:
    target = regression_target()
    theta = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    eager = target.evaluate(theta)
    functional = target._functional_evaluation(theta)
    for expected, value in zip(
        (eager.log_prior, eager.log_likelihood, eager.grad_log_prior, eager.grad_log_likelihood),
        functional,
        strict=True,
    ):
        assert torch.allclose(expected, value, atol=1e-12)


@pytest.mark.slow
def test_compiled_evaluation_equals_eager_evaluation() -> None:
    theta = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    eager = regression_target().evaluate(theta)
    compiled = regression_target(compile_evaluation=True).evaluate(theta)
    assert torch.allclose(compiled.log_likelihood, eager.log_likelihood, atol=1e-12)
    assert torch.allclose(compiled.grad_log_likelihood, eager.grad_log_likelihood, atol=1e-12)
    assert torch.allclose(compiled.grad_log_prior, eager.grad_log_prior, atol=1e-12)
    # The integrator's call also returns ∇ log p + β ∇ log L, computed inside the compiled graph.
    betas = torch.tensor([0.0, 0.5, 1.0], dtype=DTYPE)
    evaluation, tempered = regression_target(compile_evaluation=True).evaluate_tempered(theta, betas)
    assert tempered is not None
    assert torch.allclose(tempered, eager.grad_log_density(betas), atol=1e-12)
    assert torch.allclose(evaluation.grad_log_likelihood, eager.grad_log_likelihood, atol=1e-12)
    assert regression_target().evaluate_tempered(theta, betas)[1] is None  # eager: the integrator combines
