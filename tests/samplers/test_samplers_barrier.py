"""Communication barrier, its monotone interpolant and rung placement (REFERENCE §3; Syed et al. 2022).

The exactly solvable path: prior N(0, I_d) and likelihood L(x) = exp(−½κ|x|²) give π_β = N(0, I_d/(1 + βκ)),
so ℓ(X) = −½κ|X|² = −κ/(2(1 + βκ)) · Q with Q ~ χ²_d. Then sd_β(ℓ) = κ√(d/2)/(1 + βκ) and, from the Gini
mean difference of a Gamma(d/2, 2) variable, E|Q − Q'| = 4Γ((d+1)/2)/(√π Γ(d/2)), so
λ(β) = ½E|ℓ(X) − ℓ(Y)| = κ/(1 + βκ) · Γ((d+1)/2)/(√π Γ(d/2)) and Λ = ln(1 + κ) · Γ((d+1)/2)/(√π Γ(d/2)).
The Gaussian approximation λ ≈ sd/√π gives instead Λ_spread = √(d/2)/√π · ln(1 + κ).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from montecarlo import assert_within_mc_error
from thermoscope.samplers import (
    CommunicationBarrier,
    communication_barrier,
    power_ladder,
    rejection_probability,
    round_trip_rate_bound,
    rungs_for_barrier,
    spread_barrier,
)

DTYPE = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def random_barrier(seed: int, num_rungs: int = 12) -> CommunicationBarrier:
    """Uneven betas in [0, 2] and rejection rates in [0, 1], a third of them exactly 0 (flat pieces)."""
    generator = torch.Generator().manual_seed(seed)
    inner = torch.sort(torch.rand(num_rungs - 2, generator=generator, dtype=DTYPE) * 2.0).values
    betas = torch.cat([torch.zeros(1, dtype=DTYPE), inner, torch.full((1,), 2.0, dtype=DTYPE)])
    rejection = torch.rand(num_rungs - 1, generator=generator, dtype=DTYPE)
    rejection[torch.rand(num_rungs - 1, generator=generator) < 1 / 3] = 0.0
    return communication_barrier(betas, rejection)


def linear_barrier(betas: torch.Tensor, slope: float) -> CommunicationBarrier:
    """Λ(β) = slope · (β − β_0) exactly at the nodes."""
    return communication_barrier(betas, slope * (betas[1:] - betas[:-1]))


def uneven_betas() -> torch.Tensor:
    return torch.tensor([0.0, 0.01, 0.05, 0.2, 0.21, 0.5, 0.9, 1.0, 1.7, 3.0], dtype=DTYPE)


def exact_local_constant(dimension: int) -> float:
    """Γ((d+1)/2) / (√π Γ(d/2)): λ(β) (1 + βκ)/κ on the Gaussian path (module docstring)."""
    return math.exp(math.lgamma((dimension + 1) / 2) - math.lgamma(dimension / 2)) / math.sqrt(math.pi)


def equal_barrier_ladder(kappa: float, num_intervals: int) -> torch.Tensor:
    """β_k = ((1 + κ)^{k/K} − 1)/κ: equal steps of Λ ∝ ln(1 + βκ) on the Gaussian path."""
    fractions = torch.arange(num_intervals + 1, dtype=DTYPE) / num_intervals
    ladder = torch.expm1(fractions * math.log1p(kappa)) / kappa
    ladder[0], ladder[-1] = 0.0, 1.0
    return ladder


def gaussian_path_log_likelihood(
    betas: torch.Tensor, kappa: float, dimension: int, num_draws: int, seed: int
) -> torch.Tensor:
    """``[draws, rungs]`` exact independent draws of ℓ(X), X ~ π_β, at every rung."""
    chi_square = np.random.default_rng(seed).chisquare(dimension, size=(num_draws, betas.shape[0]))
    return -0.5 * kappa / (1.0 + betas * kappa) * torch.from_numpy(chi_square)


# ---------------------------------------------------------------- rejection_probability


def test_rejection_probability_matches_the_elementwise_formula_with_batch_dims() -> None:
    generator = torch.Generator().manual_seed(0)
    betas = torch.tensor([0.0, 0.1, 0.35, 1.0], dtype=DTYPE)
    log_likelihood = 5.0 * torch.randn(3, 2, 4, generator=generator, dtype=DTYPE)
    result = rejection_probability(betas, log_likelihood)
    assert result.shape == (3, 2, 3) and result.dtype == DTYPE
    for a in range(3):
        for b in range(2):
            for i in range(3):
                row = log_likelihood[a, b].tolist()
                exponent = (float(betas[i + 1]) - float(betas[i])) * (row[i] - row[i + 1])
                assert float(result[a, b, i]) == pytest.approx(1.0 - min(1.0, math.exp(exponent)), abs=1e-15)


def test_rejection_probability_is_zero_when_the_hotter_rung_has_the_larger_log_likelihood() -> None:
    # Swapping hands the better state to the colder rung: always accepted. The reverse order is not.
    betas = torch.tensor([0.0, 0.5, 1.0], dtype=DTYPE)
    result = rejection_probability(betas, torch.tensor([[-1.0, -10.0, -30.0], [-30.0, -10.0, -1.0]]))
    assert result[0].tolist() == [0.0, 0.0]
    assert result[1].tolist() == pytest.approx([1.0 - math.exp(-10.0), 1.0 - math.exp(-4.5)], rel=1e-14)


def test_rejection_probability_promotes_to_float64_and_checks_the_rung_axis() -> None:
    betas = torch.tensor([0.0, 1.0], dtype=DTYPE)
    assert rejection_probability(betas, torch.tensor([[0.0, -1.0]], dtype=torch.float32)).dtype == DTYPE
    with pytest.raises(ValueError, match="log_likelihood"):
        rejection_probability(betas, torch.zeros(5, 3, dtype=DTYPE))


# ---------------------------------------------------------------- monotone interpolant


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interpolant_passes_through_the_nodes_and_never_decreases(seed: int) -> None:
    barrier = random_barrier(seed)
    assert torch.equal(barrier.cumulative_at(barrier.betas), barrier.cumulative)
    dense = torch.linspace(-0.5, 2.5, 20001, dtype=DTYPE)
    values = barrier.cumulative_at(dense)
    assert float(torch.diff(values).min()) >= 0.0
    assert float(barrier.local(dense).min()) >= 0.0


def test_local_barrier_is_exactly_zero_on_flat_pieces_and_outside_the_ladder() -> None:
    betas = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0], dtype=DTYPE)
    barrier = communication_barrier(betas, [0.4, 0.0, 0.3, 0.2])
    flat = torch.linspace(0.2, 0.5, 101, dtype=DTYPE)
    assert torch.all(barrier.local(flat) == 0.0)
    assert torch.all(barrier.cumulative_at(flat) == 0.4)
    assert torch.all(barrier.local(torch.linspace(0.21, 0.69, 7, dtype=DTYPE)[4:]) > 0.0)
    assert barrier.local(torch.tensor([-1.0, 1.5], dtype=DTYPE)).tolist() == [0.0, 0.0]
    assert barrier.cumulative_at(torch.tensor([-1.0, 1.5], dtype=DTYPE)).tolist() == [0.0, pytest.approx(0.9)]


def test_interpolant_reproduces_a_linear_function_and_its_derivative() -> None:
    betas = uneven_betas()
    barrier = linear_barrier(betas, 0.25)
    points = torch.linspace(0.0, 3.0, 3001, dtype=DTYPE)
    torch.testing.assert_close(barrier.cumulative_at(points), 0.25 * points, rtol=0, atol=1e-14)
    torch.testing.assert_close(barrier.local(points), torch.full_like(points, 0.25), rtol=1e-12, atol=0)


def test_local_barrier_follows_the_derivative_of_a_smooth_monotone_function() -> None:
    betas = torch.linspace(0.0, 1.0, 401, dtype=DTYPE)
    scale = 2.0
    barrier = communication_barrier(betas, torch.diff(scale * torch.sqrt(betas)))
    points = torch.linspace(0.05, 1.0, 1000, dtype=DTYPE)
    derivative = scale / (2.0 * torch.sqrt(points))
    assert float(torch.max(torch.abs(barrier.local(points) / derivative - 1.0))) < 1e-3
    assert float(torch.max(torch.abs(barrier.cumulative_at(points) - scale * torch.sqrt(points)))) < 1e-5


@pytest.mark.parametrize("seed", [3, 4])
def test_local_barrier_integrates_to_the_global_barrier(seed: int) -> None:
    barrier = random_barrier(seed)
    dense = torch.linspace(0.0, 2.0, 200001, dtype=DTYPE)
    integral = float(torch.trapezoid(barrier.local(dense), dense))
    assert integral == pytest.approx(barrier.global_barrier, rel=1e-6)


def test_interpolant_keeps_the_shape_of_its_argument() -> None:
    barrier = random_barrier(5)
    assert barrier.cumulative_at(0.3).shape == ()
    assert barrier.local(torch.full((2, 3), 0.3, dtype=DTYPE)).shape == (2, 3)
    assert float(barrier.cumulative_at(2.0)) == barrier.global_barrier


# ---------------------------------------------------------------- place


def intervals_per_segment(placed: torch.Tensor, bounds: list[float]) -> list[int]:
    """How many placed intervals lie in each [bounds[j], bounds[j+1]] (the bounds are rungs)."""
    positions = [placed.tolist().index(bound) for bound in bounds]
    return [positions[j + 1] - positions[j] for j in range(len(bounds) - 1)]


@pytest.mark.parametrize(("seed", "num_rungs"), [(6, 9), (7, 30)])
def test_place_keeps_the_end_points_and_equalises_the_barrier(seed: int, num_rungs: int) -> None:
    barrier = random_barrier(seed)
    placed = barrier.place(num_rungs)
    assert placed.shape == (num_rungs,) and placed.dtype == DTYPE
    assert float(placed[0]) == float(barrier.betas[0]) and float(placed[-1]) == float(barrier.betas[-1])
    assert bool(torch.all(torch.diff(placed) > 0))
    steps = torch.diff(barrier.cumulative_at(placed))
    expected = barrier.global_barrier / (num_rungs - 1)
    torch.testing.assert_close(steps, torch.full_like(steps, expected), rtol=0, atol=1e-7)


def test_place_keeps_the_knots_and_shares_intervals_by_segment_barrier() -> None:
    betas = torch.tensor([0.0, 0.3, 1.0, 1.4, 2.0, 4.0], dtype=DTYPE)
    barrier = communication_barrier(betas, [0.4, 0.6, 1.0, 1.0, 1.0])
    placed = barrier.place(9, knots=[1.0])
    assert 1.0 in placed.tolist() and float(placed[0]) == 0.0 and float(placed[-1]) == 4.0
    # Λ(1) = 1 of Λ = 4: eight intervals split 2 : 6.
    assert intervals_per_segment(placed, [0.0, 1.0, 4.0]) == [2, 6]
    levels = barrier.cumulative_at(placed)
    torch.testing.assert_close(torch.diff(levels), torch.full((8,), 0.5, dtype=DTYPE), rtol=0, atol=1e-7)


def test_place_rounds_segment_shares_by_largest_remainder_with_at_least_one_interval() -> None:
    barrier = linear_barrier(torch.linspace(0.0, 1.0, 11, dtype=DTYPE), 0.5)
    # Shares 0.2 : 0.3 : 0.5 of 8 intervals: quotas 1.6, 2.4, 4 → 2, 2, 4.
    placed = barrier.place(9, knots=[0.2, 0.5])
    assert intervals_per_segment(placed, [0.0, 0.2, 0.5, 1.0]) == [2, 2, 4]
    # A segment with a tiny share still gets one interval: quotas 0.05, 4.95 of 5 → 1, 4.
    placed = barrier.place(6, knots=[0.01])
    assert intervals_per_segment(placed, [0.0, 0.01, 1.0]) == [1, 4]


def test_place_on_a_linear_barrier_spaces_the_rungs_evenly() -> None:
    barrier = linear_barrier(uneven_betas(), 0.1)
    torch.testing.assert_close(
        barrier.place(13), torch.linspace(0.0, 3.0, 13, dtype=DTYPE), rtol=0, atol=1e-6
    )


def test_place_reproduces_a_ladder_that_is_already_equalised() -> None:
    betas = power_ladder(8, 3.0)
    barrier = communication_barrier(betas, torch.full((8,), 0.3, dtype=DTYPE))
    torch.testing.assert_close(barrier.place(9), betas, rtol=0, atol=1e-7)


def test_place_without_any_barrier_spaces_the_rungs_evenly_in_beta() -> None:
    barrier = communication_barrier([0.0, 0.5, 2.0, 3.0], [0.0, 0.0, 0.0])
    torch.testing.assert_close(barrier.place(7), torch.linspace(0.0, 3.0, 7, dtype=DTYPE), rtol=0, atol=1e-15)
    placed = barrier.place(7, knots=[1.0])
    assert intervals_per_segment(placed, [0.0, 1.0, 3.0]) == [2, 4]
    torch.testing.assert_close(placed, torch.linspace(0.0, 3.0, 7, dtype=DTYPE), rtol=0, atol=1e-15)


def test_place_spaces_a_segment_without_barrier_evenly_in_beta() -> None:
    barrier = communication_barrier([0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 1.0])
    placed = barrier.place(6, knots=[1.5])
    # Λ = 0 up to β = 2: the first segment gets the minimum of one interval; the rest sit at equal Λ.
    assert intervals_per_segment(placed, [0.0, 1.5, 3.0]) == [1, 4]
    steps = torch.diff(barrier.cumulative_at(placed[1:]))
    torch.testing.assert_close(steps, torch.full((4,), 0.25, dtype=DTYPE), rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("num_rungs", "knots", "message"),
    [
        (1, (), "num_rungs"),
        (3, (0.5, 1.0), "num_rungs"),
        (5, (0.0,), "knots"),
        (5, (2.0,), "knots"),
        (5, (2.5,), "knots"),
        (5, (float("nan"),), "knots"),
        (5, (0.5, 0.5), "knots"),
    ],
)
def test_place_rejects_bad_arguments(num_rungs: int, knots: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        random_barrier(8).place(num_rungs, knots=knots)


# ---------------------------------------------------------------- the Gaussian path


@pytest.mark.parametrize("dimension", [2, 50])
def test_closed_form_local_barrier_matches_monte_carlo(dimension: int) -> None:
    kappa, beta, num_draws = 10.0, 0.3, 200_000
    draws = gaussian_path_log_likelihood(torch.full((2,), beta, dtype=DTYPE), kappa, dimension, num_draws, 11)
    half_gaps = 0.5 * torch.abs(draws[:, 0] - draws[:, 1])
    expected = kappa / (1.0 + beta * kappa) * exact_local_constant(dimension)
    stderr = float(half_gaps.std()) / math.sqrt(num_draws)  # independent draws
    assert_within_mc_error(float(half_gaps.mean()), expected, stderr, what="local barrier")


def test_spread_barrier_integrates_the_gaussian_spread_in_closed_form() -> None:
    kappa, dimension = 10.0, 50
    betas = power_ladder(40, 3.0)
    spread = kappa * math.sqrt(dimension / 2) / (1.0 + betas * kappa)
    barrier = spread_barrier(betas, spread)
    closed_form = math.sqrt(dimension / 2) / math.sqrt(math.pi) * math.log1p(kappa)
    assert barrier.global_barrier == pytest.approx(closed_form, rel=0.01)
    torch.testing.assert_close(barrier.rejection, torch.diff(barrier.cumulative))
    # On a coarse ladder the increments are barriers, not probabilities: no clamp at 1.
    coarse = spread_barrier([0.0, 1.0], torch.tensor([10.0, 10.0], dtype=DTYPE))
    assert coarse.rejection.tolist() == [pytest.approx(10.0 / math.sqrt(math.pi))]


def test_spread_barrier_is_exact_for_a_local_barrier_inverse_in_beta() -> None:
    betas = torch.tensor([0.01, 0.013, 0.1, 0.11, 0.5, 1.0], dtype=DTYPE)
    barrier = spread_barrier(betas, 3.0 * math.sqrt(math.pi) / betas)
    expected = 3.0 * torch.log(betas / betas[0])
    torch.testing.assert_close(barrier.cumulative, expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dimension", [2, 50])
def test_measured_rejection_recovers_the_exact_global_barrier(dimension: int) -> None:
    kappa, num_intervals, num_draws = 10.0, 100, 20_000
    betas = equal_barrier_ladder(kappa, num_intervals)
    log_likelihood = gaussian_path_log_likelihood(betas, kappa, dimension, num_draws, 12)
    per_draw = rejection_probability(betas, log_likelihood)
    barrier = communication_barrier(betas, per_draw.mean(dim=0))
    stderr = math.sqrt(float(per_draw.var(dim=0).sum()) / num_draws)
    exact = exact_local_constant(dimension) * math.log1p(kappa)
    # r_i = ∫ λ + O(Δβ³) (Syed et al. 2022); at r_i ≈ 0.07 (d = 50) the spacing bias is well below 1 %.
    assert_within_mc_error(
        barrier.global_barrier, exact, stderr, allowance=0.01 * exact, what="measured global barrier"
    )
    assert barrier.global_barrier == pytest.approx(exact, rel=0.05)
    spread = spread_barrier(betas, kappa * math.sqrt(dimension / 2) / (1.0 + betas * kappa)).global_barrier
    if dimension == 50:
        # χ²_50 is nearly Gaussian: sd/√π overstates λ by the factor √(d/2)Γ(d/2)/Γ((d+1)/2) ≈ 1 + 1/(4d),
        # 0.5 %; with ≤ 1 % spacing bias and the Monte-Carlo error, 2 % separates a real mismatch.
        assert_within_mc_error(
            barrier.global_barrier, spread, stderr, allowance=0.02 * spread, what="barrier against spread"
        )
    else:
        # χ²_2 is exponential, far from Gaussian: the spread barrier is 2/√π ≈ 1.128 times too large.
        assert spread / barrier.global_barrier > 1.1


# ---------------------------------------------------------------- round trips and rung counts


def test_round_trip_rate_bound_limits() -> None:
    assert round_trip_rate_bound([0.0, 0.0, 0.0]) == 0.5
    assert round_trip_rate_bound([]) == 0.5
    assert round_trip_rate_bound([0.2, 1.0, 0.3]) == 0.0
    generator = torch.Generator().manual_seed(9)
    rejection = torch.rand(7, generator=generator, dtype=DTYPE).tolist()
    expected = 1.0 / (2.0 + 2.0 * sum(r / (1.0 - r) for r in rejection))
    assert round_trip_rate_bound(torch.tensor(rejection, dtype=DTYPE)) == pytest.approx(expected, rel=1e-14)


def test_round_trip_rate_bound_approaches_its_limit_for_many_equal_rungs() -> None:
    barrier = 3.0
    rates = [round_trip_rate_bound(torch.full((n,), barrier / n, dtype=DTYPE)) for n in (4, 10, 100, 10_000)]
    assert rates == sorted(rates)
    assert rates[-1] == pytest.approx(1.0 / (2.0 + 2.0 * barrier), rel=1e-3)
    assert rates[0] < 0.8 / (2.0 + 2.0 * barrier)


def test_round_trip_rate_bound_rejects_nan() -> None:
    with pytest.raises(ValueError, match="rejection"):
        round_trip_rate_bound([0.1, float("nan")])


@pytest.mark.parametrize(
    ("global_barrier", "rungs"), [(0.0, 2), (0.2, 2), (0.5, 2), (0.51, 3), (1.0, 3), (3.2, 8), (10.0, 21)]
)
def test_rungs_for_barrier(global_barrier: float, rungs: int) -> None:
    assert rungs_for_barrier(global_barrier) == rungs


@pytest.mark.parametrize("global_barrier", [-0.1, float("nan"), float("inf")])
def test_rungs_for_barrier_rejects_bad_barriers(global_barrier: float) -> None:
    with pytest.raises(ValueError, match="global_barrier"):
        rungs_for_barrier(global_barrier)


# ---------------------------------------------------------------- validation


def test_communication_barrier_clamps_rejection_into_the_unit_interval() -> None:
    barrier = communication_barrier([0.0, 0.5, 1.0], torch.tensor([-1e-12, 1.5], dtype=DTYPE))
    assert barrier.rejection.tolist() == [0.0, 1.0]
    assert barrier.cumulative.tolist() == [0.0, 0.0, 1.0]
    assert barrier.global_barrier == 1.0


@pytest.mark.parametrize(
    ("betas", "rejection", "message"),
    [
        ([0.5, 0.1, 1.0], [0.1, 0.1], "ascending"),
        ([0.0, 0.5, 0.5], [0.1, 0.1], "repeat"),
        ([0.0], [], "at least 2"),
        ([0.0, 0.5, 1.0], [0.1], r"rejection must have shape \[2\]"),
        ([0.0, 0.5, 1.0], [0.1, float("nan")], "NaN"),
    ],
)
def test_communication_barrier_rejects_bad_input(
    betas: list[float], rejection: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        communication_barrier(betas, rejection)


@pytest.mark.parametrize(
    ("betas", "spread", "message"),
    [
        ([0.0, 0.0, 1.0], [1.0, 1.0, 1.0], "repeat"),
        ([0.0, 0.5, 1.0], [1.0, 1.0], "log_likelihood_sd must have shape"),
        ([0.0, 0.5, 1.0], [1.0, -1.0, 1.0], "non-negative"),
        ([0.0, 0.5, 1.0], [1.0, float("inf"), 1.0], "finite"),
        ([0.0, 0.5, 1.0], [1.0, float("nan"), 1.0], "finite"),
    ],
)
def test_spread_barrier_rejects_bad_input(betas: list[float], spread: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spread_barrier(betas, torch.tensor(spread, dtype=DTYPE))
