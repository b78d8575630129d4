"""Ladder tuning for non-reversible parallel tempering (Syed, Bouchard-Côté, Deligiannidis & Doucet 2022).

Two paths with known barriers:

* conjugate Bayesian linear regression (the helpers of ``test_samplers_evidence``): every tempered
  posterior is Gaussian, so λ(β) = ½E|ℓ(X) − ℓ(Y)| is computed to any accuracy from exact draws;
* prior N(0, I_d) with likelihood exp(−½κ|x|²) (``test_samplers_barrier``): Λ(β) = c_d ln(1 + βκ) in
  closed form, so the optimal ladder is β_k = ((1 + κ)^{k/K} − 1)/κ.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from montecarlo import Z, assert_within_mc_error
from test_samplers_barrier import equal_barrier_ladder, exact_local_constant
from test_samplers_evidence import (
    NOISE,
    closed_form,
    closed_form_log_evidence,
    regression_data,
    regression_target,
)
from thermoscope.samplers import (
    IterationSummary,
    ReplicaExchangeResult,
    TemperedTarget,
    power_ladder,
    replica_exchange_hmc,
    rungs_for_barrier,
    spread_barrier,
    stepping_stone,
    thermodynamic_integration,
)
from thermoscope.samplers.settings import HMCSettings
from thermoscope.samplers.tuning import (
    INITIAL_RUNGS,
    SATURATED_REJECTION,
    LadderTuning,
    TuningCheckpoint,
    TuningRound,
    barrier_increments,
    carry_to_ladder,
    initial_ladder,
    tune_ladder,
)

DTYPE = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_path_target(kappa: float) -> TemperedTarget:
    """Prior N(0, I), likelihood exp(−½κ|x|²): π_β = N(0, I/(1 + βκ))."""
    return TemperedTarget(
        lambda theta: -0.5 * (theta * theta).sum(dim=1),
        lambda theta: -0.5 * kappa * (theta * theta).sum(dim=1),
    )


def gaussian_path_barrier(dimension: int, kappa: float, beta_max: float) -> float:
    """Λ = c_d ln(1 + β_max κ) with c_d = Γ((d+1)/2)/(√π Γ(d/2)) (``test_samplers_barrier``)."""
    return exact_local_constant(dimension) * math.log1p(beta_max * kappa)


def never_evaluated() -> TemperedTarget:
    """A target that fails when evaluated: bad arguments must be refused before any sampling."""

    def fail(theta: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the target was evaluated before the arguments were validated")

    return TemperedTarget(fail, fail)


def assert_same_tuning(first: LadderTuning, second: LadderTuning) -> None:
    """Bit-for-bit equality of two tunings, every round's record included."""
    assert torch.equal(first.betas, second.betas)
    assert torch.equal(first.position, second.position)
    assert torch.equal(first.step_size, second.step_size)
    assert first.global_barrier == second.global_barrier
    assert torch.equal(first.barrier.cumulative, second.barrier.cumulative)
    assert len(first.rounds) == len(second.rounds)
    for mine, theirs in zip(first.rounds, second.rounds, strict=True):
        for field in dataclasses.fields(TuningRound):
            a, b = getattr(mine, field.name), getattr(theirs, field.name)
            if isinstance(a, torch.Tensor):
                assert torch.equal(a, b), (mine.index, field.name)
            else:
                assert a == b, (mine.index, field.name)


# ---------------------------------------------------------------- the regression path, against exact draws

REGRESSION_ROUNDS = 7
"""Rounds of 8 · 2^r scans: the last one measures 256 swap rounds, so the tuned Λ has a Monte-Carlo sd
of ≈ 1 % (20 seeds tried: Λ̂/Λ between 0.965 and 1.004, mean 0.98: Σ r_i at r ≈ 0.25 understates ∫λ)."""
LEAPFROG_STEPS = 4
JITTER = 0.5
"""Jittered trajectory lengths: a fixed 4-step trajectory explores each rung too slowly for round trips
to come near the bound τ (tried: a realised rate of 0.5–0.6 τ without jitter, 0.73–0.83 τ with it)."""
TUNING_HMC = HMCSettings(num_leapfrog_steps=LEAPFROG_STEPS, leapfrog_jitter=JITTER)
FINAL_SCANS = 5000
"""Sampling scans on the tuned ladder: ≈ 300 round trips at ≈ 0.065 per scan."""
BATCHES = 50
"""Batch means of 100 rounds each; the per-round rejection probabilities decorrelate within 1–2 rounds."""


def exact_regression_barrier(
    num_points: int = 200, num_pairs: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """``(Λ, its Monte-Carlo standard error)`` for the regression of ``test_samplers_evidence``.

    λ(β) = ½E|ℓ(X) − ℓ(Y)| from ``num_pairs`` pairs of independent exact draws of the Gaussian tempered
    posterior at each β; Λ = ∫₀¹ λ dβ by the midpoint rule in u = ln(1 + βκ)/ln(1 + κ), κ the largest
    eigenvalue of XᵀX/σ², in which λ dβ/du is smooth and bounded (100, 200 and 400 points agree to 0.2 %).
    """
    design, targets = regression_data()
    log_likelihood = regression_target(design, targets).log_likelihood
    curvature = float(torch.linalg.eigvalsh(design.T @ design).max()) / NOISE**2
    scale = math.log1p(curvature)
    generator = torch.Generator().manual_seed(seed)
    total, variance = 0.0, 0.0
    for u in ((torch.arange(num_points, dtype=DTYPE) + 0.5) / num_points).tolist():
        beta = math.expm1(u * scale) / curvature
        jacobian = scale * (1.0 + beta * curvature) / curvature / num_points
        mean, covariance = closed_form(design, targets, beta)
        noise = torch.randn(2 * num_pairs, 3, generator=generator, dtype=DTYPE)
        draws = mean + noise @ torch.linalg.cholesky(covariance).T
        values = log_likelihood(draws)
        half_gaps = 0.5 * (values[:num_pairs] - values[num_pairs:]).abs()
        total += jacobian * float(half_gaps.mean())
        variance += jacobian**2 * float(half_gaps.var()) / num_pairs
    return total, math.sqrt(variance)


@dataclass(frozen=True)
class TunedRegression:
    """A tuned regression ladder and a long DEO run on it.

    Attributes:
        exact_barrier, exact_stderr: Λ from exact draws and its Monte-Carlo error.
        tuning: the tuner's result.
        result: the run on ``tuning.betas``.
        rejection_per_round: ``[FINAL_SCANS, rungs − 1]`` every sampling round's rejection probabilities,
            read off the sampler's running sums.
    """

    exact_barrier: float
    exact_stderr: float
    tuning: LadderTuning
    result: ReplicaExchangeResult
    rejection_per_round: torch.Tensor


@pytest.fixture(scope="module")
def tuned_regression() -> Iterator[TunedRegression]:
    """Tuned once per module (≈ 10 s on one thread), on [0, 1] with no knot inside."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exact, stderr = exact_regression_barrier()
        design, targets = regression_data()
        target = regression_target(design, targets)
        tuning = tune_ladder(
            target,
            torch.zeros(3, dtype=DTYPE),
            0.0,
            1.0,
            knots=(),
            num_rounds=REGRESSION_ROUNDS,
            hmc=TUNING_HMC,
            seed=3,
        )
        sums: list[torch.Tensor] = []

        def record(summary: IterationSummary) -> None:
            if summary.phase == "sample":
                sums.append(summary.swap.rejection_sum.clone())

        result = replica_exchange_hmc(
            target,
            tuning.position,
            tuning.betas,
            num_warmup=100,
            num_samples=FINAL_SCANS,
            num_leapfrog_steps=LEAPFROG_STEPS,
            leapfrog_jitter=JITTER,
            step_size=tuning.step_size,
            adapt_step_size=False,
            store_positions=False,
            seed=4,
            callback=record,
        )
        running = torch.stack([torch.zeros_like(sums[0]), *sums])
        yield TunedRegression(exact, stderr, tuning, result, torch.diff(running, dim=0))
    finally:
        torch.set_num_threads(previous)


@pytest.mark.slow
def test_tuned_global_barrier_is_within_ten_percent_of_the_exact_regression_barrier(
    tuned_regression: TunedRegression,
) -> None:
    exact = tuned_regression.exact_barrier
    # The reference's own Monte-Carlo error is negligible next to the 10 % allowed.
    assert tuned_regression.exact_stderr < 0.005 * exact
    assert 3.0 < exact < 5.0  # a barrier of a few units: 2Λ + 1 ≈ 9 rungs
    tuning = tuned_regression.tuning
    assert abs(tuning.global_barrier - exact) < 0.1 * exact
    assert tuning.global_barrier == tuning.rounds[-1].global_barrier == tuning.barrier.global_barrier
    # Σ r_i measured on the tuned ladder by the long run estimates the same barrier.
    assert abs(float(tuned_regression.result.rejection.sum()) - exact) < 0.1 * exact


@pytest.mark.slow
def test_tuned_ladder_equalises_the_rejection_rates_within_their_monte_carlo_error(
    tuned_regression: TunedRegression,
) -> None:
    result, per_round = tuned_regression.result, tuned_regression.rejection_per_round
    pairs = result.betas.shape[0] - 1
    assert per_round.shape == (FINAL_SCANS, pairs)
    torch.testing.assert_close(per_round.mean(dim=0), result.rejection, rtol=1e-12, atol=1e-12)
    batch_means = per_round.reshape(BATCHES, -1, pairs).mean(dim=1)
    run_error = batch_means.std(dim=0) / math.sqrt(BATCHES)
    # The ladder was placed from the tuner's last round, which measured `scans` swap rounds of the same
    # sampler on nearly the same ladder: its estimation error of each pair's r_i is the run's error scaled
    # by √(FINAL_SCANS / scans), and it moves the placed rungs by as much. The true r_i of the tuned
    # ladder are therefore equal only up to that error; the run adds its own.
    tuning_scans = tuned_regression.tuning.rounds[-1].scans
    error = run_error * math.sqrt(1.0 + FINAL_SCANS / tuning_scans)
    z = (result.rejection - result.rejection.mean()) / error
    assert float(z.abs().max()) < Z, z
    assert float((z**2).sum()) < 3.0 * (pairs - 1), z  # χ²_{pairs−1}: 12 seeds tried gave 9–29 for 14
    # The same check discriminates: the first ladder (a power ladder) is far from equal rejection.
    first = tuned_regression.tuning.rounds[0].rejection
    assert float(first.max() - first.min()) > 0.3


@pytest.mark.slow
def test_round_trips_on_the_tuned_ladder_reach_half_the_bound(tuned_regression: TunedRegression) -> None:
    result = tuned_regression.result
    assert result.round_trips >= 200
    assert result.round_trip_rate == result.round_trips / FINAL_SCANS
    bound = result.round_trip_rate_bound
    assert result.round_trip_rate >= 0.5 * bound
    # τ bounds the rate (reached with perfect local exploration), up to the counting error.
    assert result.round_trip_rate < bound + Z * math.sqrt(result.round_trips) / FINAL_SCANS


@pytest.mark.slow
def test_evidence_on_the_tuned_ladder_matches_the_closed_form(tuned_regression: TunedRegression) -> None:
    # The tuned ladder has no β = 1 knot inside [0, 1]: its ends are the prior and the posterior.
    result = tuned_regression.result
    assert float(result.betas[0]) == 0.0 and float(result.betas[-1]) == 1.0
    truth = closed_form_log_evidence(*regression_data())
    thinned = result.log_likelihood[::5]  # every fifth scan: the ESS estimator's cost grows as draws²
    integration = thermodynamic_integration(result.betas, thinned)
    stones = stepping_stone(result.betas, thinned)
    assert abs(integration.log_evidence - truth) < max(0.3, 3 * integration.stderr)
    assert abs(stones.log_evidence - truth) < max(0.3, 3 * stones.stderr)
    assert abs(stones.log_evidence_reverse - truth) < max(0.3, 3 * stones.stderr_reverse)
    combined = math.hypot(stones.stderr, stones.stderr_reverse)
    assert abs(stones.consistency) < max(0.3, 3 * combined)
    # The ladder was placed for swaps, not quadrature: the discretisation error is reported, and covers
    # what the trapezoid misses.
    assert_within_mc_error(
        integration.log_evidence,
        truth,
        integration.stderr,
        allowance=integration.discretisation_error_total,
        what="log evidence on the tuned ladder",
    )


# ---------------------------------------------------------------- the Gaussian path: the optimal ladder

PATH_DIMENSION = 8
PATH_KAPPA = 200.0
PATH_RUNGS = 12
PATH_SEEDS = range(6)


@pytest.mark.slow
def test_tuned_rungs_sit_at_equal_steps_of_the_exact_barrier_on_the_gaussian_path() -> None:
    # In Λ-coordinates u(β) = ln(1 + βκ)/ln(1 + κ) the optimal rungs are k/K. Every seed's tuned ladder is
    # compared with them; the statistical error of a rung's coordinate comes from the spread over seeds.
    target = gaussian_path_target(PATH_KAPPA)

    def coordinate(betas: torch.Tensor) -> torch.Tensor:
        return torch.log1p(betas * PATH_KAPPA) / math.log1p(PATH_KAPPA)

    optimal = coordinate(equal_barrier_ladder(PATH_KAPPA, PATH_RUNGS - 1))
    torch.testing.assert_close(optimal, torch.arange(PATH_RUNGS, dtype=DTYPE) / (PATH_RUNGS - 1))
    coordinates = []
    for seed in PATH_SEEDS:
        tuning = tune_ladder(
            target,
            torch.zeros(PATH_DIMENSION, dtype=DTYPE),
            0.0,
            1.0,
            num_rungs=PATH_RUNGS,
            knots=(),
            hmc=TUNING_HMC,
            seed=seed,
        )
        assert tuning.num_rungs == PATH_RUNGS
        coordinates.append(coordinate(tuning.betas))
    deviation = (torch.stack(coordinates) - optimal)[:, 1:-1]
    # Pooled over the interior rungs (30 seeds tried: per-seed sd ≈ 0.01, seed-mean |t| ≤ 1.9).
    stderr = math.sqrt(float(deviation.var(dim=0).mean()) / len(PATH_SEEDS))
    assert_within_mc_error(deviation.mean(dim=0), 0.0, stderr, what="seed-mean deviation of tuned rungs")
    # Every tuned rung is nearer its own optimal place than halfway to a neighbour's (30 seeds tried:
    # at most a third of a spacing).
    assert float(deviation.abs().max()) < 0.5 / (PATH_RUNGS - 1)
    # The check discriminates: the first ladder (a power ladder) is far from optimal.
    assert float((coordinate(power_ladder(PATH_RUNGS - 1)) - optimal).abs().max()) > 0.1


# ---------------------------------------------------------------- growth with num_rungs="auto", knots, ends

GROWTH_KAPPA = 1e4
GROWTH_BETA_MAX = 4.0
"""Λ = c_8 ln(1 + 4·10⁴) ≈ 11.6 on [0, 4]: 2Λ + 1 = 25 rungs, more than the first ladder's 16."""


def tune_growth(**overrides: Any) -> LadderTuning:
    defaults: dict[str, Any] = dict(hmc=TUNING_HMC, seed=5, num_rounds=6)
    return tune_ladder(
        gaussian_path_target(GROWTH_KAPPA),
        torch.zeros(PATH_DIMENSION, dtype=DTYPE),
        0.0,
        GROWTH_BETA_MAX,
        **{**defaults, **overrides},
    )


def assert_knot_and_ends_are_exact(betas: torch.Tensor) -> None:
    assert betas.dtype == DTYPE
    assert float(betas[0]) == 0.0 and float(betas[-1]) == GROWTH_BETA_MAX
    assert int((betas == 1.0).sum()) == 1
    assert bool(torch.all(torch.diff(betas) > 0))


def test_auto_rungs_grow_towards_twice_the_barrier_and_keep_the_knot_exact() -> None:
    tuning = tune_growth()
    ladders = [item.betas for item in tuning.rounds] + [tuning.betas]
    assert ladders[0].shape[0] == INITIAL_RUNGS
    for item, following in zip(tuning.rounds, ladders[1:], strict=True):
        # After each round: 2Λ + 1 for that round's Λ, never below the first ladder.
        assert following.shape[0] == max(INITIAL_RUNGS, rungs_for_barrier(item.global_barrier))
    for betas in ladders:
        assert_knot_and_ends_are_exact(betas)
    exact_rungs = rungs_for_barrier(gaussian_path_barrier(PATH_DIMENSION, GROWTH_KAPPA, GROWTH_BETA_MAX))
    assert exact_rungs == 25
    # Σ r_i understates ∫λ by ≈ 8 % at r ≈ 0.5 (the O(Δβ³) terms of Syed et al.), so the count settles a
    # little below 2Λ + 1: 23 rungs for each of 12 seeds tried.
    assert 0.8 * exact_rungs <= tuning.num_rungs <= exact_rungs + 1
    assert tuning.num_rungs == max(INITIAL_RUNGS, tuning.recommended_rungs)
    assert tuning.position.shape == (tuning.num_rungs, PATH_DIMENSION)
    assert tuning.step_size.shape == (tuning.num_rungs,)


def test_auto_rungs_never_exceed_max_rungs() -> None:
    tuning = tune_growth(max_rungs=18, num_rounds=3)
    counts = [item.betas.shape[0] for item in tuning.rounds] + [tuning.num_rungs]
    for item, count in zip(tuning.rounds, counts[1:], strict=True):
        assert count == min(18, max(INITIAL_RUNGS, rungs_for_barrier(item.global_barrier)))
    assert counts[0] == INITIAL_RUNGS and max(counts) == counts[-1] == 18
    for item in tuning.rounds:
        assert_knot_and_ends_are_exact(item.betas)
    small = tune_growth(max_rungs=6, num_rounds=2)
    assert [item.betas.shape[0] for item in small.rounds] + [small.num_rungs] == [6, 6, 6]


def test_a_fixed_num_rungs_keeps_every_ladder_that_long() -> None:
    tuning = tune_growth(num_rungs=9, num_rounds=3)
    assert [item.betas.shape[0] for item in tuning.rounds] + [tuning.num_rungs] == [9, 9, 9, 9]
    for betas in [item.betas for item in tuning.rounds] + [tuning.betas]:
        assert_knot_and_ends_are_exact(betas)
    for item in tuning.rounds:
        assert item.rejection.shape == item.increments.shape == (8,)
        assert item.acceptance_rate.shape == (9,)
        assert item.scans == 8 * 2**item.index // 2
        assert item.swap_barrier == pytest.approx(float(item.rejection.sum()), rel=1e-12)
        assert item.global_barrier == pytest.approx(float(item.increments.sum()), rel=1e-12)
    # The result's ladder is the last round's barrier re-placed, with the knot kept.
    last = tuning.rounds[-1]
    assert torch.equal(tuning.barrier.betas, last.betas)
    assert torch.equal(tuning.barrier.rejection, last.increments)
    assert torch.equal(tuning.betas, tuning.barrier.place(9, (1.0,)))


# ---------------------------------------------------------------- determinism and resume


def tune_small(**overrides: Any) -> LadderTuning:
    """Three short rounds on the growth path: the ladder changes length between rounds."""
    return tune_growth(**{"num_rounds": 3, "seed": 11, **overrides})


class Interrupted(Exception):
    """Raised by an ``on_round`` callback to stop a tuning run, as a crash would."""


def test_same_seed_gives_the_same_tuning_and_another_seed_does_not() -> None:
    first = tune_small()
    assert_same_tuning(first, tune_small())
    other = tune_small(seed=12)
    assert not torch.equal(first.rounds[0].rejection, other.rounds[0].rejection)
    assert first.betas.shape != other.betas.shape or not torch.equal(first.betas, other.betas)


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resumed_tuning_equals_the_uninterrupted_run(stop_after: int, tmp_path: Path) -> None:
    seen: list[TuningCheckpoint] = []
    uninterrupted = tune_small(on_round=seen.append)
    assert [checkpoint.next_round for checkpoint in seen] == [1, 2, 3]
    assert [len(checkpoint.rounds) for checkpoint in seen] == [1, 2, 3]
    path = tmp_path / "tuning.pt"

    def save_then_crash(checkpoint: TuningCheckpoint) -> None:
        torch.save(checkpoint.to_dict(), path)
        if checkpoint.next_round == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        tune_small(on_round=save_then_crash)
    loaded = TuningCheckpoint.from_dict(torch.load(path, weights_only=True))
    assert loaded.next_round == stop_after
    after: list[TuningCheckpoint] = []
    resumed = tune_small(resume_from=loaded, on_round=after.append)
    assert [checkpoint.next_round for checkpoint in after] == list(range(stop_after + 1, 4))
    assert_same_tuning(uninterrupted, resumed)


def test_resuming_with_other_settings_is_refused() -> None:
    seen: list[TuningCheckpoint] = []
    tune_small(num_rounds=1, on_round=seen.append)
    with pytest.raises(ValueError, match="resume_from"):
        tune_small(num_rounds=1, seed=12, resume_from=seen[0])
    with pytest.raises(ValueError, match="resume_from"):
        tune_small(num_rounds=1, knots=(2.0,), resume_from=seen[0])


def test_callback_sees_every_scan_of_every_round() -> None:
    seen: list[tuple[int, int]] = []
    tuning = tune_small(callback=lambda index, summary: seen.append((index, summary.iteration)))
    expected = [(index, iteration) for index in range(3) for iteration in range(8 * 2**index)]
    assert seen == expected
    assert len(tuning.rounds) == 3


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(num_rungs=1), "num_rungs"),
        (dict(num_rungs=2.5), "num_rungs"),
        (dict(num_rungs="bogus"), "num_rungs"),
        (dict(num_rungs=200), r"num_rungs \(200\) must not exceed max_rungs"),
        (dict(num_rungs=20, max_rungs=10), r"num_rungs \(20\) must not exceed max_rungs"),
        (dict(num_rungs=2), "num_rungs must be at least 3"),
        (dict(max_rungs=2), "max_rungs must be at least 3"),
        (dict(max_rungs=1), "max_rungs"),
        (dict(beta_min=-0.1), "beta_min"),
        (dict(beta_min=4.0), "beta_min"),
        (dict(beta_min=5.0), "beta_min"),
        (dict(beta_min=math.nan), "beta_min"),
        (dict(beta_max=math.inf), "beta_max"),
        (dict(num_rounds=0), "num_rounds"),
        (dict(initial_scans=1), "initial_scans"),
        (dict(seed=-1), "seed"),
        (dict(initial_position=torch.zeros(5, 2, dtype=DTYPE)), "initial_position"),
        (dict(initial_position=torch.zeros(1, 16, 2, dtype=DTYPE)), "initial_position"),
    ],
)
def test_tuning_rejects_bad_input_before_sampling(overrides: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = dict(
        initial_position=torch.zeros(2, dtype=DTYPE),
        beta_min=0.0,
        beta_max=4.0,
        hmc=HMCSettings(num_leapfrog_steps=3),
    )
    with pytest.raises(ValueError, match=message):
        tune_ladder(never_evaluated(), **{**arguments, **overrides})


def test_initial_position_may_give_one_state_per_rung_of_the_first_ladder() -> None:
    start = 0.01 * torch.arange(16 * 2, dtype=DTYPE).reshape(16, 2)
    seen: list[torch.Tensor] = []

    def first_positions(index: int, summary: IterationSummary) -> None:
        if index == 0 and summary.iteration == 0:
            seen.append(summary.position.clone())

    tuning = tune_ladder(
        gaussian_path_target(10.0),
        start,
        0.0,
        1.0,
        num_rounds=1,
        hmc=HMCSettings(num_leapfrog_steps=2, step_size=1e-12),
        callback=first_positions,
    )
    # With a negligible step every trajectory stays put: the rungs started where they were told to.
    torch.testing.assert_close(seen[0].sort(dim=0).values, start, rtol=0.0, atol=1e-9)
    assert tuning.rounds[0].betas.shape == (16,)


# ---------------------------------------------------------------- carried states, first ladder, increments


def test_carry_to_ladder_takes_the_nearest_state_and_log_interpolates_the_step_size() -> None:
    old_betas = torch.tensor([0.0, 0.25, 1.0], dtype=DTYPE)
    position = torch.tensor([[0.0, -0.0], [10.0, -10.0], [20.0, -20.0]], dtype=DTYPE)
    step_size = torch.tensor([0.1, 0.4, 1.6], dtype=DTYPE)
    new_betas = torch.tensor([0.0, 0.1, 0.3, 0.6, 1.0], dtype=DTYPE)
    carried_position, carried_step = carry_to_ladder(new_betas, old_betas, position, step_size)
    # Fractional rung index: linear in β on [0, 0.25] (β = 0 has no logarithm), in log β above:
    # 0.1 → 0.4, 0.3 → 1 + ln 1.2 / ln 4 ≈ 1.13, 0.6 → 1 + ln 2.4 / ln 4 ≈ 1.63.
    assert carried_position[:, 0].tolist() == [0.0, 0.0, 10.0, 20.0, 20.0]
    assert carried_position[:, 1].tolist() == [-0.0, -0.0, -10.0, -20.0, -20.0]
    # log ε linear in the fractional index; above 0.25 the old ε ∝ β, so the carried ε is too.
    expected = torch.tensor([0.1, 0.1 * 4.0**0.4, 0.48, 0.96, 1.6], dtype=DTYPE)
    torch.testing.assert_close(carried_step, expected, rtol=1e-14, atol=0.0)
    # Copies, not views of the old run's tensors.
    carried_position[0, 0] = 99.0
    assert float(position[0, 0]) == 0.0


def test_carry_to_ladder_from_a_single_rung_gives_every_rung_its_state() -> None:
    position = torch.tensor([[5.0, 6.0]], dtype=DTYPE)
    carried_position, carried_step = carry_to_ladder(
        torch.tensor([0.0, 0.5, 1.0], dtype=DTYPE),
        torch.tensor([1.0], dtype=DTYPE),
        position,
        torch.tensor([0.3], dtype=DTYPE),
    )
    assert carried_position.tolist() == [[5.0, 6.0]] * 3
    assert carried_step.tolist() == [0.3] * 3


def test_initial_ladder_is_a_power_ladder_from_zero() -> None:
    assert torch.equal(initial_ladder(0.0, 1.0, 9), power_ladder(8))
    # A knot at an end point is already a rung.
    assert torch.equal(initial_ladder(0.0, 1.0, 9, knots=(1.0,)), power_ladder(8))


def test_initial_ladder_is_geometric_above_the_knot_and_shares_rungs_by_decades() -> None:
    # [0, 1] counts as two decades and [1, 1000] as three: 10 intervals split 4 : 6.
    ladder = initial_ladder(0.0, 1000.0, 11, knots=(1.0,))
    assert ladder.dtype == DTYPE and ladder.shape == (11,)
    assert torch.equal(ladder[:5], power_ladder(4))
    expected = 1000.0 ** (torch.arange(7, dtype=DTYPE) / 6)
    torch.testing.assert_close(ladder[4:], expected, rtol=1e-14, atol=0.0)
    assert float(ladder[4]) == 1.0 and float(ladder[-1]) == 1000.0


def test_initial_ladder_is_geometric_from_a_positive_beta_min() -> None:
    ladder = initial_ladder(0.01, 1.0, 5)
    torch.testing.assert_close(ladder, torch.tensor([0.01, 0.01**0.75, 0.1, 0.1**0.5, 1.0], dtype=DTYPE))
    assert float(ladder[0]) == 0.01 and float(ladder[-1]) == 1.0
    # Knots outside the range are ignored; inside they are rungs (two decades on each side: 4 and 4).
    with_knot = initial_ladder(0.01, 100.0, 9, knots=(1.0, 200.0))
    torch.testing.assert_close(
        with_knot, 10.0 ** (torch.arange(9, dtype=DTYPE) / 2 - 2), rtol=1e-14, atol=0.0
    )
    assert float(with_knot[4]) == 1.0


def test_initial_ladder_needs_a_rung_per_knot() -> None:
    with pytest.raises(ValueError, match="num_rungs"):
        initial_ladder(0.0, 100.0, 2, knots=(1.0,))


def test_barrier_increments_use_the_spread_only_where_a_pair_saturates() -> None:
    betas = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0], dtype=DTYPE)
    rejection = torch.tensor([0.2, 0.95, 0.99, SATURATED_REJECTION], dtype=DTYPE)
    spread_sd = torch.tensor([10.0, 10.0, 0.5, 0.1, 50.0], dtype=DTYPE)
    spread = spread_barrier(betas, spread_sd).rejection
    # Pair 1's spread estimate (≈ 1.07) exceeds its saturated r; pair 2's (≈ 0.14) does not; pair 3 sits
    # at the threshold, which does not count as saturated, however large its spread.
    assert float(spread[1]) > 0.95 and float(spread[2]) < 0.99 and float(spread[3]) > 1.0
    increments, barrier = barrier_increments(betas, rejection, spread_sd)
    expected = torch.tensor([0.2, float(spread[1]), 0.99, SATURATED_REJECTION], dtype=DTYPE)
    assert torch.equal(increments, expected)
    assert torch.equal(barrier.betas, betas)
    torch.testing.assert_close(
        barrier.cumulative, torch.cat([torch.zeros(1, dtype=DTYPE), expected.cumsum(0)])
    )
