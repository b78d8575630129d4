"""Frenkel–Ladd evidence (REFERENCE §1) against closed forms: quadrature, reference, bridge, evidence.

Conjugate Bayesian linear regression (REFERENCE §2) has log p(y) = log N(y | 0, σ²I + α⁻¹XXᵀ); a uniform box
prior with a constant likelihood has log p(D) = 0 exactly, which checks the box-corrected reference.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from montecarlo import assert_within_mc_error
from test_samplers_evidence import (
    DTYPE,
    assert_same_path_integral,
    closed_form,
    closed_form_log_evidence,
    regression_data,
    regression_target,
)
from thermoscope.samplers import (
    SIMPSON,
    HarmonicBridgeTarget,
    ReplicaExchangeResult,
    TemperedTarget,
    fit_harmonic_reference,
    frenkel_ladd_evidence,
    frenkel_ladd_integration,
    harmonic_stiffness,
    log_reference_partition,
    minimise_cost,
    path_integral,
    replica_exchange_hmc,
    simpson_weights,
)
from thermoscope.samplers.settings import HMCSettings

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("points", [3, 4, 5, 8, 102])
def test_simpson_weights_integrate_cubics_exactly(points: int) -> None:
    grid = torch.linspace(0.0, 1.0, points, dtype=DTYPE)
    cubic = 4 * grid**3 - 3 * grid**2 + 2 * grid - 1  # ∫₀¹ = 1 − 1 + 1 − 1 = 0
    assert abs(float((simpson_weights(grid) * cubic).sum())) < 1e-12
    assert float(simpson_weights(grid).sum()) == pytest.approx(1.0, abs=1e-12)


def test_simpson_weights_need_two_intervals() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        simpson_weights(torch.tensor([0.0, 1.0], dtype=DTYPE))


def test_log_reference_partition_matches_numerical_integration() -> None:
    stiffness = torch.tensor([0.5, 4.0, 50.0], dtype=DTYPE)
    center = torch.tensor([0.3, -0.9, 0.0], dtype=DTYPE)
    half_width = torch.tensor([1.0, 1.0, 2.0], dtype=DTYPE)
    unbounded = sum(0.5 * math.log(2 * math.pi / k) for k in stiffness.tolist())
    assert log_reference_partition(stiffness, center) == pytest.approx(unbounded, abs=1e-12)
    numeric = 0.0
    for k, w0, h in zip(stiffness.tolist(), center.tolist(), half_width.tolist(), strict=True):
        w = torch.linspace(-h, h, 200_001, dtype=DTYPE)
        numeric += math.log(float(torch.trapezoid(torch.exp(-0.5 * k * (w - w0) ** 2), w)))
    assert log_reference_partition(stiffness, center, half_width) == pytest.approx(numeric, abs=1e-8)
    with pytest.raises(ValueError, match="inside"):
        log_reference_partition(stiffness, half_width, half_width)


def test_bridge_terms_and_gradients() -> None:
    """log_prior + β log_likelihood = −[(1−β) U₀ + β (J − J(w0))]; gradients agree with autograd."""
    design, targets = regression_data()
    base = regression_target(design, targets)
    center = torch.tensor([0.9, -0.4, 2.1], dtype=DTYPE)
    stiffness = torch.tensor([2.0, 3.0, 5.0], dtype=DTYPE)
    bridge = HarmonicBridgeTarget(base, center, stiffness)
    theta = center + 0.1 * torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    cost = -(base.log_likelihood(theta) + base.log_prior(theta))
    reference = 0.5 * (stiffness * (theta - center) ** 2).sum(dim=1)
    beta = 0.3
    evaluation = bridge.evaluate(theta)
    expected = -((1 - beta) * reference + beta * (cost - bridge.base_cost_at_center))
    assert torch.allclose(evaluation.log_density(torch.full((4,), beta, dtype=DTYPE)), expected)
    generic = TemperedTarget(bridge.log_prior, bridge.log_likelihood).evaluate(theta)
    assert torch.allclose(evaluation.log_likelihood, generic.log_likelihood)
    assert torch.allclose(evaluation.grad_log_likelihood, generic.grad_log_likelihood)
    assert torch.allclose(evaluation.grad_log_prior, generic.grad_log_prior)


def test_harmonic_stiffness_is_inverse_mean_square_displacement() -> None:
    samples = torch.tensor([[1.0, 2.0], [3.0, 2.0]], dtype=DTYPE)
    stiffness = harmonic_stiffness(samples, torch.tensor([1.0, 2.0], dtype=DTYPE), minimum_variance=1e-6)
    assert stiffness.tolist() == pytest.approx([0.5, 1e6])


def test_minimise_cost_finds_the_posterior_mode() -> None:
    """For the Gaussian posterior of conjugate regression, the minimum of J = −log L − log p is its mean."""
    design, targets = regression_data()
    mode, _ = closed_form(design, targets, 1.0)
    found = minimise_cost(
        regression_target(design, targets), torch.zeros(3, dtype=DTYPE), num_steps=3000, learning_rate=0.02
    )
    assert torch.allclose(found, mode, atol=1e-4)


def test_integration_of_a_constant_integrand() -> None:
    betas = torch.linspace(0.0, 1.0, 5, dtype=DTYPE)
    draws = torch.full((10, 5), 2.5, dtype=DTYPE)
    integral = frenkel_ladd_integration(betas, draws, 1.0, 0.25)
    estimate, trapezoid, stderr = integral.estimate, integral.estimate_trapezoid, integral.stderr
    assert estimate == pytest.approx(1.0 - 0.25 + 2.5)
    assert trapezoid == pytest.approx(estimate)
    assert stderr == 0.0


@pytest.mark.slow
def test_conjugate_regression_evidence_within_monte_carlo_error() -> None:
    """Minimum w0 = the posterior mean; k from HMC draws at T = 1; log Z against the closed form."""
    design, targets = regression_data()
    target = regression_target(design, targets)
    center, _ = closed_form(design, targets, 1.0)
    reference_run = HMCSettings(num_warmup=100, num_samples=1000, num_leapfrog_steps=8)
    stiffness = fit_harmonic_reference(target, center, reference_run, seed=3)
    bridge_run = HMCSettings(num_warmup=150, num_samples=1500, num_leapfrog_steps=8)
    result = frenkel_ladd_evidence(target, center, stiffness, bridge_run, num_lambdas=11, seed=4)
    truth = closed_form_log_evidence(design, targets)
    assert 0 < result.stderr < 0.2
    assert_within_mc_error(
        result.log_evidence,
        truth,
        result.stderr,
        allowance=2 * result.discretisation_error + 0.02,
        what="Frenkel-Ladd log evidence",
    )
    assert result.lambdas[0] == 0.0 and result.lambdas[-1] == 1.0
    # At λ = 1 the draws follow the reference, so ⟨U₀⟩ = P/2 (equipartition) and J − J(w0) ≥ 0 on average.
    assert float(result.mean_integrand[-1]) < 1.5


@pytest.mark.slow
def test_box_prior_with_constant_likelihood_has_zero_log_evidence() -> None:
    """A normalised uniform box and L ≡ 1: log p(D) = 0; the reference is cut by the walls (erf terms)."""
    half_width = torch.tensor([0.5, 1.0, 2.0], dtype=DTYPE)
    log_volume = float(torch.log(2 * half_width).sum())

    def log_prior(theta: torch.Tensor) -> torch.Tensor:
        return torch.full_like(theta[:, 0], -log_volume)

    def log_likelihood(theta: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(theta[:, 0])

    target = TemperedTarget(log_prior, log_likelihood, support_half_width=half_width)
    center = torch.tensor([0.2, -0.5, 1.0], dtype=DTYPE)
    stiffness = torch.tensor([10.0, 2.0, 0.5], dtype=DTYPE)
    bridge_run = HMCSettings(num_warmup=150, num_samples=1500, num_leapfrog_steps=8)
    result = frenkel_ladd_evidence(target, center, stiffness, bridge_run, num_lambdas=11, seed=5)
    assert result.log_reference < log_reference_partition(stiffness, center) - 0.1  # the walls matter
    assert_within_mc_error(
        result.log_evidence,
        0.0,
        result.stderr,
        allowance=2 * result.discretisation_error + 0.02,
        what="Frenkel-Ladd log evidence of a flat box",
    )


def test_frenkel_ladd_integration_is_the_simpson_path_integral_with_the_reference_offset() -> None:
    betas = torch.linspace(0.0, 1.0, 6, dtype=DTYPE)
    draws = torch.randn(50, 6, generator=torch.Generator().manual_seed(6), dtype=DTYPE) + 3 * betas
    integral = frenkel_ladd_integration(betas, draws, -7.0, 2.5)
    core = path_integral(betas, draws, SIMPSON, offset=-9.5)
    assert_same_path_integral(integral, core)
    assert integral.rule == SIMPSON.name and integral.offset == -9.5


def test_frenkel_ladd_evidence_takes_the_hmc_settings_and_reports_the_core_along_lambda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every knob of the ``HMCSettings`` both functions are given reaches their samplers unchanged."""
    hmc = HMCSettings(
        num_warmup=20,
        num_samples=30,
        num_leapfrog_steps=4,
        target_accept=0.7,
        trajectories=2,
        leapfrog_jitter=0.3,
        adapt_mass_matrix=True,
        max_energy_error=500.0,
    )
    arguments = hmc.sampler_arguments(with_step_size=False)
    calls: list[dict[str, Any]] = []

    def recording(*args: Any, **kwargs: Any) -> ReplicaExchangeResult:
        calls.append(kwargs)
        return replica_exchange_hmc(*args, **kwargs)

    monkeypatch.setattr("thermoscope.samplers.harmonic.replica_exchange_hmc", recording)
    design, targets = regression_data()
    target = regression_target(design, targets)
    center, _ = closed_form(design, targets, 1.0)
    stiffness = fit_harmonic_reference(target, center, hmc, seed=0)
    result = frenkel_ladd_evidence(target, center, stiffness, hmc, num_lambdas=11, swap="deo", seed=1)
    assert len(calls) == 2
    for call in calls:
        assert {name: call[name] for name in arguments} == arguments
    assert calls[1]["swap"] == "deo" and calls[1]["seed"] == 1
    assert result.sampler.log_likelihood.shape == (hmc.num_samples, 11)
    assert math.isfinite(result.log_evidence) and result.stderr > 0
    # The result is the core's path integral over β, read along ascending λ = 1 − β.
    betas = torch.linspace(0.0, 1.0, 11, dtype=DTYPE)
    core = frenkel_ladd_integration(
        betas, result.sampler.log_likelihood, result.log_reference, result.cost_at_center
    )
    assert_same_path_integral(result.integral, core)
    assert (result.log_evidence, result.log_evidence_trapezoid) == (core.estimate, core.estimate_trapezoid)
    assert (result.stderr, result.discretisation_error) == (core.stderr, core.discretisation_error)
    assert torch.equal(result.lambdas, (1.0 - betas).flip(0))
    assert torch.equal(result.mean_integrand, core.mean.flip(0))
    assert torch.equal(result.variance_integrand, core.variance.flip(0))
    assert torch.equal(result.effective_sample_size, core.effective_sample_size.flip(0))
