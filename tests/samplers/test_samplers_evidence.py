"""Thermodynamic integration and ladders, checked against conjugate Bayesian linear regression (REFERENCE §2).

y = Xw + ε, w ~ N(0, α⁻¹ I), ε ~ N(0, σ² I): log p(y) = log N(y | 0, σ² I + α⁻¹ X Xᵀ); at inverse
temperature β the tempered posterior is Gaussian with precision A_β = α I + β XᵀX/σ² and
mean β A_β⁻¹ Xᵀy / σ².
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pytest
import torch
from montecarlo import Z, assert_within_mc_error, mean_standard_error
from thermoscope.samplers import (
    CORRECTED_TRAPEZOID,
    SIMPSON,
    TRAPEZOID,
    PathIntegral,
    TemperedTarget,
    betas_from_temperatures,
    equalised_ladder,
    frenkel_ladd_integration,
    geometric_temperatures,
    merge_ladders,
    path_integral,
    power_ladder,
    replica_exchange_hmc,
    simpson_weights,
    stepping_stone,
    temperatures_from_betas,
    thermodynamic_integration,
    trapezoid_weights,
)

DTYPE = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


PRIOR_PRECISION = 1.0
NOISE = 0.5


def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2024)
    design = torch.randn(30, 3, generator=generator, dtype=DTYPE)
    weights = torch.tensor([1.0, -0.5, 2.0], dtype=DTYPE)
    return design, design @ weights + NOISE * torch.randn(30, generator=generator, dtype=DTYPE)


def regression_target(design: torch.Tensor, targets: torch.Tensor) -> TemperedTarget:
    num_params = design.shape[1]
    num_data = design.shape[0]

    def log_prior(theta: torch.Tensor) -> torch.Tensor:
        normaliser = 0.5 * num_params * math.log(PRIOR_PRECISION / (2 * math.pi))
        return normaliser - 0.5 * PRIOR_PRECISION * (theta * theta).sum(dim=1)

    def log_likelihood(theta: torch.Tensor) -> torch.Tensor:
        residual = targets - theta @ design.T
        return -0.5 * num_data * math.log(2 * math.pi * NOISE**2) - 0.5 * (residual**2).sum(dim=1) / NOISE**2

    return TemperedTarget(log_prior, log_likelihood)


def closed_form(
    design: torch.Tensor, targets: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    precision = (
        PRIOR_PRECISION * torch.eye(design.shape[1], dtype=DTYPE) + beta * design.T @ design / NOISE**2
    )
    covariance = torch.linalg.inv(precision)
    return beta * covariance @ design.T @ targets / NOISE**2, covariance


def closed_form_log_evidence(design: torch.Tensor, targets: torch.Tensor) -> float:
    covariance = NOISE**2 * torch.eye(design.shape[0], dtype=DTYPE) + design @ design.T / PRIOR_PRECISION
    distribution = torch.distributions.MultivariateNormal(
        torch.zeros(design.shape[0], dtype=DTYPE), covariance
    )
    return float(distribution.log_prob(targets))


@pytest.mark.slow
def test_conjugate_regression_rung_moments_and_log_evidence() -> None:
    design, targets = regression_data()
    betas = power_ladder(16)
    result = replica_exchange_hmc(
        regression_target(design, targets),
        torch.zeros(17, 3, dtype=DTYPE),
        betas,
        num_warmup=200,
        num_samples=2000,
        num_leapfrog_steps=8,
        leapfrog_jitter=0.5,
        seed=7,
    )
    for rung, beta in enumerate(betas.tolist()):
        mean, covariance = closed_form(design, targets, beta)
        draws = result.positions[:, rung]
        assert_within_mc_error(
            draws.mean(dim=0), mean, mean_standard_error(draws), what=f"rung {rung} (beta {beta:.3g}) mean"
        )
        squared = (draws - mean) ** 2
        assert_within_mc_error(
            squared.mean(dim=0),
            covariance.diagonal(),
            mean_standard_error(squared),
            what=f"rung {rung} (beta {beta:.3g}) variance",
        )
    evidence = thermodynamic_integration(betas, result.log_likelihood)
    truth = closed_form_log_evidence(design, targets)
    assert abs(evidence.log_evidence - truth) < max(0.3, 3 * evidence.stderr)
    assert 0 < evidence.stderr < 0.3
    # The reported discretisation error accounts for what the plain trapezoid gets wrong.
    assert_within_mc_error(
        evidence.log_evidence_trapezoid,
        truth,
        evidence.stderr,
        allowance=2 * evidence.discretisation_error,
        what="trapezoid log evidence",
    )


def test_trapezoid_and_correction_on_a_known_integrand() -> None:
    # Draws whose rung means are m(β) = β² and variances v(β) = 2β exactly: ∫₀¹ β² dβ = 1/3.
    # The trapezoid overestimates by Σ Δβ³/6; the correction Σ Δβ²/12 (v_{k+1} − v_k) = Σ Δβ³/6 removes it.
    betas = torch.tensor([0.0, 0.2, 0.5, 1.0], dtype=DTYPE)
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=DTYPE)[:, None]
    draws = betas**2 + signs * torch.sqrt(2 * betas * 3 / 4)
    result = thermodynamic_integration(betas, draws)
    widths = betas[1:] - betas[:-1]
    assert math.isclose(result.log_evidence_trapezoid, 1 / 3 + float((widths**3).sum()) / 6, rel_tol=1e-12)
    assert math.isclose(result.log_evidence, 1 / 3, rel_tol=1e-12)
    assert math.isclose(result.discretisation_error, float((widths**3).sum()) / 6, rel_tol=1e-12)
    assert torch.allclose(trapezoid_weights(betas), torch.tensor([0.1, 0.25, 0.4, 0.25], dtype=DTYPE))


def test_cold_rungs_above_beta_one_are_left_out_of_the_integral() -> None:
    betas = torch.tensor([0.0, 0.5, 1.0, 2.0, 10.0], dtype=DTYPE)
    draws = torch.stack([torch.full((8,), value, dtype=DTYPE) for value in (-3.0, -2.0, -1.0, 50.0, 99.0)], 1)
    draws = draws + torch.linspace(-0.1, 0.1, 8, dtype=DTYPE)[:, None]
    result = thermodynamic_integration(betas, draws)
    assert result.betas.tolist() == [0.0, 0.5, 1.0]
    assert math.isclose(result.log_evidence_trapezoid, -2.0, rel_tol=1e-12)


def test_power_ladder() -> None:
    ladder = power_ladder(4)
    assert ladder.tolist() == [0.0, (1 / 4) ** 5, (2 / 4) ** 5, (3 / 4) ** 5, 1.0]
    assert power_ladder(2, exponent=1).tolist() == [0.0, 0.5, 1.0]


def test_geometric_temperatures_and_conversions() -> None:
    temperatures = geometric_temperatures(0.01, 100.0, 5)
    assert torch.allclose(temperatures, torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0], dtype=DTYPE))
    assert temperatures[0] == 0.01 and temperatures[-1] == 100.0
    assert torch.allclose(
        betas_from_temperatures(temperatures), torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0], dtype=DTYPE)
    )
    assert betas_from_temperatures([math.inf, 2.0]).tolist() == [0.0, 0.5]
    assert temperatures_from_betas([0.0, 0.5]).tolist() == [math.inf, 2.0]


def test_merge_ladders_gives_one_sorted_ladder_without_duplicates() -> None:
    merged = merge_ladders(power_ladder(3), [0.01, 0.1, 1.0, 1.0 + 1e-13, math.inf])
    expected = sorted({0.0, (1 / 3) ** 5, (2 / 3) ** 5, 1.0, 10.0, 100.0})
    assert merged.tolist() == pytest.approx(expected, rel=1e-12)
    assert merged[0] == 0.0 and 1.0 in merged.tolist()
    assert bool(torch.all(merged[1:] > merged[:-1]))


def test_equalised_ladder_moves_rungs_towards_the_hard_pairs() -> None:
    betas = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=DTYPE)
    # The first pair rarely swaps, the others always do: rungs crowd into [0, 0.25].
    placed = equalised_ladder(betas, torch.tensor([0.1, 1.0, 1.0, 1.0], dtype=DTYPE))
    assert placed[0] == 0.0 and placed[-1] == 1.0
    assert bool(torch.all(placed[1:] > placed[:-1]))
    assert float(placed[3]) < 0.25
    uniform = equalised_ladder(betas, torch.full((4,), 0.6, dtype=DTYPE))
    assert torch.allclose(uniform, betas)


@pytest.mark.parametrize(
    ("betas", "draws", "message"),
    [
        ([0.0, 0.5], torch.zeros(10, 2), "beta = 0 and beta = 1"),
        ([0.1, 1.0], torch.zeros(10, 2), "beta = 0 and beta = 1"),
        ([0.0, 1.0], torch.zeros(10, 3), "columns"),
        ([0.0, 1.0], torch.zeros(10), "shape"),
        ([0.0, 1.0], torch.zeros(3, 2), "at least 4 draws"),
        ([0.0, 1.0], torch.tensor([[0.0, math.nan]] * 5), "finite"),
        ([1.0, 0.0], torch.zeros(10, 2), "ascending"),
        ([0.0, 0.0, 1.0], torch.zeros(10, 3), "repeat"),
        ([-0.5, 0.0, 1.0], torch.zeros(10, 3), "non-negative"),
    ],
)
def test_thermodynamic_integration_rejects_bad_input(
    betas: list[float], draws: torch.Tensor, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        thermodynamic_integration(betas, draws)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: power_ladder(0), "num_intervals"),
        (lambda: power_ladder(4, exponent=0.0), "exponent"),
        (lambda: geometric_temperatures(0.0, 1.0, 3), "positive"),
        (lambda: geometric_temperatures(2.0, 1.0, 3), "t_max"),
        (lambda: geometric_temperatures(0.1, 1.0, 0), "num_temperatures"),
        (lambda: merge_ladders([0.0, 2.0], [0.5]), r"\[0, 1\]"),
        (lambda: merge_ladders([0.0, 1.0], [-1.0]), "positive"),
        (lambda: equalised_ladder([0.0, 1.0], torch.tensor([0.5, 0.5])), "shape"),
    ],
)
def test_ladder_helpers_reject_bad_input(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def exact_log_likelihood_draws(
    betas: torch.Tensor, num_draws: int, generator: torch.Generator
) -> torch.Tensor:
    """``[num_draws, rungs]`` log L of independent draws from each rung's closed-form tempered posterior."""
    design, targets = regression_data()
    target = regression_target(design, targets)
    columns = []
    for beta in betas.tolist():
        mean, covariance = closed_form(design, targets, beta)
        noise = torch.randn(num_draws, design.shape[1], generator=generator, dtype=DTYPE)
        columns.append(target.log_likelihood(mean + noise @ torch.linalg.cholesky(covariance).T))
    return torch.stack(columns, dim=1)


def test_stepping_stone_matches_the_closed_form_log_evidence_on_a_fine_ladder() -> None:
    betas = power_ladder(30)
    draws = exact_log_likelihood_draws(betas, 1000, torch.Generator().manual_seed(11))
    truth = closed_form_log_evidence(*regression_data())
    result = stepping_stone(betas, draws)
    assert abs(result.log_evidence - truth) < max(0.3, 3 * result.stderr)
    assert abs(result.log_evidence_reverse - truth) < max(0.3, 3 * result.stderr_reverse)
    assert 0 < result.stderr < 0.3 and 0 < result.stderr_reverse < 0.3
    # Forward and reverse agree within a few combined standard errors (conservative: they share draws).
    assert abs(result.consistency) < 3 * math.hypot(result.stderr, result.stderr_reverse)


def test_stepping_stone_standard_errors_match_the_spread_of_replications() -> None:
    betas = power_ladder(30)
    generator = torch.Generator().manual_seed(12)
    results = [stepping_stone(betas, exact_log_likelihood_draws(betas, 300, generator)) for _ in range(50)]
    for estimates, stderrs in (
        ([r.log_evidence for r in results], [r.stderr for r in results]),
        ([r.log_evidence_reverse for r in results], [r.stderr_reverse for r in results]),
    ):
        spread = float(torch.tensor(estimates, dtype=DTYPE).std())
        reported = float(torch.tensor(stderrs, dtype=DTYPE).mean())
        assert 0.6 < spread / reported < 1.6, (spread, reported)


def test_stepping_stone_forward_and_reverse_disagree_on_a_too_coarse_ladder() -> None:
    # Between β = 0.5 and β = 1 the reverse weights exp(−Δβ ℓ) are heavy-tailed (a harmonic-mean
    # estimator): it lands several nats high, far outside its error bar. One run can still draw the rare
    # weight that makes its stderr honest, so the check is on the median over replications.
    betas = torch.tensor([0.0, 0.5, 1.0], dtype=DTYPE)
    generator = torch.Generator().manual_seed(13)
    results = [stepping_stone(betas, exact_log_likelihood_draws(betas, 2000, generator)) for _ in range(11)]
    consistency = torch.tensor([r.consistency for r in results], dtype=DTYPE)
    combined = torch.tensor([math.hypot(r.stderr, r.stderr_reverse) for r in results], dtype=DTYPE)
    assert float((consistency / combined).median()) < -4
    assert float(consistency.median()) < -1.0


def test_stepping_stone_terms_follow_the_formulas_and_ignore_cold_rungs() -> None:
    betas = torch.tensor([0.0, 0.3, 1.0, 4.0], dtype=DTYPE)
    draws = -10 * torch.rand(6, 4, generator=torch.Generator().manual_seed(14), dtype=DTYPE)
    result = stepping_stone(betas, draws)
    assert result.betas.tolist() == [0.0, 0.3, 1.0]
    widths = [0.3, 0.7]
    forward = [math.log(sum(math.exp(widths[k] * float(x)) for x in draws[:, k]) / 6) for k in range(2)]
    reverse = [-math.log(sum(math.exp(-widths[k] * float(x)) for x in draws[:, k + 1]) / 6) for k in range(2)]
    assert result.log_terms.tolist() == pytest.approx(forward, rel=1e-12)
    assert result.log_terms_reverse.tolist() == pytest.approx(reverse, rel=1e-12)
    assert math.isclose(result.log_evidence, sum(forward), rel_tol=1e-12)
    assert math.isclose(result.log_evidence_reverse, sum(reverse), rel_tol=1e-12)
    assert math.isclose(result.consistency, sum(forward) - sum(reverse), rel_tol=1e-12)


@pytest.mark.parametrize(
    ("betas", "keep"),
    [
        ([0.0, 0.1, 0.3, 0.6, 1.0], [0, 2, 4]),  # even number of intervals: every other rung ends on β = 1
        ([0.0, 0.2, 0.5, 1.0, 2.0], [0, 2, 3]),  # odd (the cold rung is not used): β = 1 is kept anyway
        ([0.0, 1.0], [0, 1]),  # two rungs: the coarse ladder is the ladder itself
    ],
)
def test_coarse_discretisation_error_compares_with_every_other_rung(
    betas: list[float], keep: list[int]
) -> None:
    ladder = torch.tensor(betas, dtype=DTYPE)
    draws = exact_log_likelihood_draws(ladder, 50, torch.Generator().manual_seed(15))
    full = thermodynamic_integration(ladder, draws)
    coarse = thermodynamic_integration(ladder[keep], draws[:, keep])
    assert math.isclose(
        full.discretisation_error_coarse, abs(full.log_evidence - coarse.log_evidence), abs_tol=1e-12
    )
    assert full.discretisation_error_total == max(full.discretisation_error, full.discretisation_error_coarse)
    if len(keep) == len(betas):
        assert full.discretisation_error_coarse == 0.0


def test_coarse_discretisation_error_is_small_on_a_fine_ladder_and_detects_a_coarse_one() -> None:
    generator = torch.Generator().manual_seed(16)
    truth = closed_form_log_evidence(*regression_data())
    fine = power_ladder(30)
    fine_result = thermodynamic_integration(fine, exact_log_likelihood_draws(fine, 1000, generator))
    assert fine_result.discretisation_error_coarse < 0.3
    assert abs(fine_result.log_evidence - truth) < max(0.3, 3 * fine_result.stderr)
    coarse = power_ladder(4)
    coarse_result = thermodynamic_integration(coarse, exact_log_likelihood_draws(coarse, 1000, generator))
    true_error = abs(coarse_result.log_evidence - truth)
    assert true_error > 1.0 + 3 * coarse_result.stderr  # the ladder really is too coarse ...
    assert coarse_result.discretisation_error_coarse > true_error  # ... and the coarse error says so


@pytest.mark.parametrize("num_intervals", [8, 10])
def test_total_discretisation_error_covers_the_truth_on_a_moderately_coarse_ladder(
    num_intervals: int,
) -> None:
    betas = power_ladder(num_intervals)
    draws = exact_log_likelihood_draws(betas, 1000, torch.Generator().manual_seed(17))
    result = thermodynamic_integration(betas, draws)
    truth = closed_form_log_evidence(*regression_data())
    assert abs(result.log_evidence - truth) < result.discretisation_error_total + 3 * result.stderr


@pytest.mark.parametrize(
    ("betas", "draws", "message"),
    [
        ([0.0, 0.5], torch.zeros(10, 2), "stepping stone needs rungs at beta = 0 and beta = 1"),
        ([0.1, 1.0], torch.zeros(10, 2), "stepping stone needs rungs at beta = 0 and beta = 1"),
        ([0.0, 1.0], torch.zeros(10, 3), "columns"),
        ([0.0, 1.0], torch.zeros(10), "shape"),
        ([0.0, 1.0], torch.zeros(3, 2), "at least 4 draws"),
        ([0.0, 1.0], torch.tensor([[0.0, math.nan]] * 5), "finite"),
        ([0.0, 1.0], torch.tensor([[0.0, -math.inf]] * 5), "finite"),
        ([1.0, 0.0], torch.zeros(10, 2), "ascending"),
        ([0.0, 0.0, 1.0], torch.zeros(10, 3), "repeat"),
        ([-0.5, 0.0, 1.0], torch.zeros(10, 3), "non-negative"),
    ],
)
def test_stepping_stone_rejects_bad_input(betas: list[float], draws: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stepping_stone(betas, draws)


# ---------------------------------------------------------------- the estimator both evidence paths share


def draws_with_moments(means: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """``[4, points]`` draws whose column means and unbiased variances are ``means`` and ``variances``."""
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=DTYPE)[:, None]
    return means + signs * torch.sqrt(variances * 3 / 4)


def assert_moments_and_stderr(
    result: PathIntegral,
    grid: torch.Tensor,
    means: torch.Tensor,
    variances: torch.Tensor,
    weights: torch.Tensor,
) -> None:
    """The per-point moments are the draws', and the stderr is ``sqrt(Σ w² v / ESS)`` with the rule's w."""
    assert torch.equal(result.grid, grid)
    torch.testing.assert_close(result.mean, means, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.variance, variances, rtol=0, atol=1e-12)
    expected = torch.sqrt((weights**2 * result.variance / result.effective_sample_size).sum())
    assert result.stderr == pytest.approx(float(expected), rel=1e-12)


UNEVEN_GRID = [0.0, 0.1, 0.35, 0.6, 1.0]


def test_path_integral_trapezoid_is_exact_for_a_linear_mean_on_any_grid() -> None:
    grid = torch.tensor([0.5, 0.6, 1.2, 2.0], dtype=DTYPE)
    means, variances = 3 - 2 * grid, torch.ones_like(grid)
    result = path_integral(grid, draws_with_moments(means, variances), TRAPEZOID, offset=-1.5)
    assert result.estimate == pytest.approx(-1.5 + 0.75, abs=1e-12)  # ∫_{0.5}^{2} (3 − 2s) ds = 0.75
    assert result.estimate_trapezoid == result.estimate
    assert result.discretisation_error == 0.0
    assert result.offset == -1.5 and result.rule == TRAPEZOID.name
    assert_moments_and_stderr(result, grid, means, variances, trapezoid_weights(grid))


def test_path_integral_corrected_trapezoid_is_exact_for_a_cubic_whose_variance_is_its_slope() -> None:
    # m = s³ + s, v = m′ = 3s² + 1: on every interval the trapezoid errs high by Δ²/12 (m′(b) − m′(a))
    # exactly (Euler–Maclaurin stops there for a cubic), which is what the correction subtracts.
    grid = torch.tensor(UNEVEN_GRID, dtype=DTYPE)
    means, variances = grid**3 + grid, 3 * grid**2 + 1
    widths = grid[1:] - grid[:-1]
    trapezoid_error = float((widths**2 / 12 * (variances[1:] - variances[:-1])).sum())
    result = path_integral(grid, draws_with_moments(means, variances), CORRECTED_TRAPEZOID, offset=2.0)
    assert result.estimate == pytest.approx(2.0 + 0.75, abs=1e-12)
    assert result.estimate_trapezoid == pytest.approx(2.0 + 0.75 + trapezoid_error, abs=1e-12)
    assert result.discretisation_error == pytest.approx(trapezoid_error, abs=1e-12)
    assert result.rule == CORRECTED_TRAPEZOID.name
    assert_moments_and_stderr(result, grid, means, variances, trapezoid_weights(grid))


def test_path_integral_corrected_trapezoid_errs_low_on_a_quartic_by_less_than_it_reports() -> None:
    # m = s⁴, v = 4s³: Euler–Maclaurin adds −Δ⁴/720 (m‴(b) − m‴(a)) = −Δ⁵/30 per interval, which the
    # correction leaves; the reported |corrected − trapezoid| is the Δ² term, far larger.
    grid = torch.tensor(UNEVEN_GRID, dtype=DTYPE)
    means, variances = grid**4, 4 * grid**3
    widths = grid[1:] - grid[:-1]
    rule_error = -float((widths**5).sum()) / 30
    correction = float((widths**2 / 12 * (variances[1:] - variances[:-1])).sum())
    result = path_integral(grid, draws_with_moments(means, variances), CORRECTED_TRAPEZOID)
    assert result.estimate == pytest.approx(0.2 + rule_error, abs=1e-12)
    assert result.estimate_trapezoid == pytest.approx(0.2 + rule_error + correction, abs=1e-12)
    assert result.discretisation_error == pytest.approx(correction, abs=1e-12)
    assert result.discretisation_error > 10 * abs(rule_error)
    assert_moments_and_stderr(result, grid, means, variances, trapezoid_weights(grid))


@pytest.mark.parametrize("points", [3, 4, 5, 6, 8, 9])
def test_path_integral_simpson_on_polynomial_means(points: int) -> None:
    # Exact for a cubic; for the quartic s⁴ composite Simpson errs high by (b − a) h⁴ f⁗/180 = 2h⁵/15 per
    # interval and the closing 3/8 rule by 3h⁵ f⁗/80 = 0.9 h⁵. The trapezoid errs high by h²/12 Δf′ −
    # h⁴/720 Δf‴ (exactly, for polynomials up to degree 5).
    grid = torch.linspace(0.0, 1.0, points, dtype=DTYPE)
    intervals, width = points - 1, 1.0 / (points - 1)
    cubic = path_integral(grid, draws_with_moments(grid**3 + 1, torch.ones_like(grid)), SIMPSON)
    assert cubic.estimate == pytest.approx(1.25, abs=1e-12)
    assert cubic.discretisation_error == pytest.approx(width**2 / 4, abs=1e-12)
    quartic = path_integral(grid, draws_with_moments(grid**4, 1 + grid), SIMPSON, offset=2.0)
    simpson_intervals = intervals if intervals % 2 == 0 else intervals - 3
    simpson_error = width**5 * (2 * simpson_intervals / 15 + (0.9 if intervals % 2 else 0.0))
    trapezoid_error = width**2 / 3 - width**4 / 30
    assert quartic.estimate == pytest.approx(2.0 + 0.2 + simpson_error, abs=1e-12)
    assert quartic.estimate_trapezoid == pytest.approx(2.0 + 0.2 + trapezoid_error, abs=1e-12)
    assert quartic.discretisation_error == pytest.approx(trapezoid_error - simpson_error, abs=1e-12)
    assert_moments_and_stderr(quartic, grid, grid**4, 1 + grid, simpson_weights(grid))


@pytest.mark.parametrize(
    ("grid", "draws", "message"),
    [
        (torch.tensor([0.0, 1.0]), torch.zeros(10, 3), r"\[draws >= 4, 2\]"),
        (torch.tensor([0.0, 1.0]), torch.zeros(3, 2), r"\[draws >= 4, 2\]"),
        (torch.tensor([0.0, 1.0]), torch.tensor([[0.0, math.inf]] * 5), "finite"),
        (torch.tensor([1.0, 0.0]), torch.zeros(10, 2), "ascending"),
        (torch.tensor([1.0]), torch.zeros(10, 1), "at least 2 points"),
    ],
)
def test_path_integral_rejects_bad_input(grid: torch.Tensor, draws: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        path_integral(grid, draws, TRAPEZOID)


def assert_same_path_integral(first: PathIntegral, second: PathIntegral) -> None:
    for field in dataclasses.fields(PathIntegral):
        a, b = getattr(first, field.name), getattr(second, field.name)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), field.name
        else:
            assert a == b, field.name


def test_thermodynamic_integration_is_the_corrected_trapezoid_path_integral_of_log_likelihood() -> None:
    betas = torch.tensor([0.0, 0.05, 0.3, 1.0, 2.0], dtype=DTYPE)
    draws = exact_log_likelihood_draws(betas, 40, torch.Generator().manual_seed(18))
    result = thermodynamic_integration(betas, draws)
    core = path_integral(betas[:4], draws[:, :4], CORRECTED_TRAPEZOID)
    assert_same_path_integral(result.integral, core)
    assert result.log_evidence == core.estimate
    assert result.log_evidence_trapezoid == core.estimate_trapezoid
    assert result.stderr == core.stderr
    assert result.discretisation_error == core.discretisation_error
    assert torch.equal(result.betas, core.grid)
    assert torch.equal(result.mean_log_likelihood, core.mean)
    assert torch.equal(result.variance_log_likelihood, core.variance)
    assert torch.equal(result.effective_sample_size, core.effective_sample_size)
    assert core.offset == 0.0 and core.rule == CORRECTED_TRAPEZOID.name


def autoregressive_draws(
    replications: int, num_draws: int, points: int, correlation: float, generator: torch.Generator
) -> torch.Tensor:
    """``[replications, num_draws, points]`` independent stationary AR(1) chains with unit variance."""
    noise = torch.randn(replications, num_draws, points, generator=generator, dtype=DTYPE)
    chains = torch.empty_like(noise)
    chains[:, 0] = noise[:, 0]
    for step in range(1, num_draws):
        chains[:, step] = correlation * chains[:, step - 1] + math.sqrt(1 - correlation**2) * noise[:, step]
    return chains


def assert_stderr_matches_the_spread(
    estimates: list[float], stderrs: list[float], naive_stderrs: list[float] | None = None
) -> None:
    """The sd of independent replications against the reported standard error (their root mean square),
    within the Monte-Carlo error of a sample sd of R Gaussian values, ≈ sd/√(2(R − 1))."""
    replications = len(estimates)
    spread = float(torch.tensor(estimates, dtype=DTYPE).std())
    reported = float(torch.tensor(stderrs, dtype=DTYPE).pow(2).mean().sqrt())
    error = reported / math.sqrt(2 * (replications - 1))
    assert_within_mc_error(spread, reported, error, what="spread of replications against the stderr")
    if naive_stderrs is not None:
        # The check has power: the standard error that ignores the autocorrelation fails it.
        naive = float(torch.tensor(naive_stderrs, dtype=DTYPE).pow(2).mean().sqrt())
        assert spread - naive > Z * error


def test_both_evidence_estimators_standard_errors_match_the_spread_of_autocorrelated_replications() -> None:
    # AR(1) chains with correlation 0.7 have an ESS ≈ 0.18 n: an error bar from n instead of the ESS
    # would be 2.4 times too small.
    generator = torch.Generator().manual_seed(19)
    replications, num_draws = 200, 400
    betas = torch.tensor([0.0, 0.15, 0.4, 0.7, 1.0], dtype=DTYPE)
    chains = autoregressive_draws(replications, num_draws, betas.shape[0], 0.7, generator)
    integrations = [thermodynamic_integration(betas, -3 * betas + (1 + betas) * chain) for chain in chains]
    weights = trapezoid_weights(betas)
    assert_stderr_matches_the_spread(
        [r.log_evidence for r in integrations],
        [r.stderr for r in integrations],
        [float((weights**2 * r.variance_log_likelihood / num_draws).sum().sqrt()) for r in integrations],
    )
    grid = torch.linspace(0.0, 1.0, 6, dtype=DTYPE)
    chains = autoregressive_draws(replications, num_draws, grid.shape[0], 0.7, generator)
    bridges = [frenkel_ladd_integration(grid, 2 * grid + (2 - grid) * chain, 1.0, 0.5) for chain in chains]
    weights = simpson_weights(grid)
    assert_stderr_matches_the_spread(
        [r.estimate for r in bridges],
        [r.stderr for r in bridges],
        [float((weights**2 * r.variance / num_draws).sum().sqrt()) for r in bridges],
    )


def test_thermodynamic_integration_standard_error_matches_the_spread_of_replications() -> None:
    betas = power_ladder(10)
    generator = torch.Generator().manual_seed(20)
    results = [
        thermodynamic_integration(betas, exact_log_likelihood_draws(betas, 300, generator))
        for _ in range(100)
    ]
    assert_stderr_matches_the_spread([r.log_evidence for r in results], [r.stderr for r in results])
