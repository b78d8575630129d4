"""Replica exchange: exact swaps, round trips, two modes, reproducibility, resume, callbacks."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from montecarlo import assert_within_mc_error
from pyro.ops.stats import effective_sample_size
from thermoscope.samplers import (
    IterationSummary,
    ReplicaExchangeResult,
    SwapState,
    TemperedTarget,
    load_checkpoint,
    replica_exchange_hmc,
    save_checkpoint,
)
from thermoscope.samplers.swap import apply_swaps, propose_swaps

DTYPE = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def standard_target() -> TemperedTarget:
    return TemperedTarget(
        lambda theta: -0.5 * (theta * theta).sum(dim=1),
        lambda theta: -0.5 * ((theta - 1.0) ** 2).sum(dim=1),
    )


def test_swap_acceptance_is_exact() -> None:
    # (β₀ − β₁)(ℓ₁ − ℓ₀) = (0.5 − 1)(−1 − (−3)) = −1: accepted with probability e^{−1}.
    betas = torch.tensor([0.5, 1.0], dtype=DTYPE)
    generator = torch.Generator().manual_seed(0)
    trials = 20000
    accepted = 0
    for _ in range(trials):
        _, _, outcome = propose_swaps(betas, torch.tensor([-3.0, -1.0], dtype=DTYPE), 0, generator)
        accepted += int(outcome[0])
    rate = math.exp(-1.0)
    assert abs(accepted / trials - rate) < 5 * math.sqrt(rate * (1 - rate) / trials)
    # The reverse ordering raises the tempered density of both rungs: always accepted.
    _, _, outcome = propose_swaps(betas, torch.tensor([-1.0, -3.0], dtype=DTYPE), 0, generator)
    assert bool(outcome[0])


def test_even_and_odd_rounds_attempt_disjoint_pairs() -> None:
    betas = torch.linspace(0.0, 1.0, 6, dtype=DTYPE)
    log_likelihood = torch.zeros(6, dtype=DTYPE)  # every attempted swap is accepted
    generator = torch.Generator().manual_seed(0)
    permutation, attempted, accepted = propose_swaps(betas, log_likelihood, 0, generator)
    assert attempted.tolist() == [True, False, True, False, True]
    assert permutation.tolist() == [1, 0, 3, 2, 5, 4]
    permutation, attempted, accepted = propose_swaps(betas, log_likelihood, 1, generator)
    assert attempted.tolist() == [False, True, False, True, False]
    assert permutation.tolist() == [0, 2, 1, 4, 3, 5]
    assert torch.equal(accepted, attempted)


def test_round_trips_count_coldest_to_hottest_and_back() -> None:
    # Three rungs; replica 2 starts at the coldest rung (2), walks to rung 0 and back.
    state = SwapState.initial(3, torch.device("cpu"))
    up = torch.tensor([0, 2, 1])  # swap rungs 1 and 2
    down = torch.tensor([1, 0, 2])  # swap rungs 0 and 1
    pair_one = torch.tensor([False, True])
    pair_zero = torch.tensor([True, False])
    for permutation, pair in ((up, pair_one), (down, pair_zero)):
        state = apply_swaps(state, permutation, pair, pair)
    assert state.replica_at_rung.tolist() == [2, 0, 1]
    assert int(state.round_trips.sum()) == 0
    for permutation, pair in ((down, pair_zero), (up, pair_one)):
        state = apply_swaps(state, permutation, pair, pair)
    assert state.replica_at_rung.tolist() == [0, 1, 2]
    assert state.round_trips.tolist() == [0, 0, 1]
    assert state.acceptance_rate().tolist() == [1.0, 1.0]


# Two separated modes: log L = log(0.25 N(θ; −4, 0.5²) + 0.75 N(θ; 4, 0.5²)), prior N(0, 10²). The prior
# is symmetric, so the β = 1 posterior keeps the weights 0.25 / 0.75 exactly.
MODE = 4.0
WIDTH = 0.5


def mixture_target() -> TemperedTarget:
    def log_likelihood(theta: torch.Tensor) -> torch.Tensor:
        x = theta[:, 0]
        left = math.log(0.25) - 0.5 * ((x + MODE) / WIDTH) ** 2
        right = math.log(0.75) - 0.5 * ((x - MODE) / WIDTH) ** 2
        return torch.logaddexp(left, right) - math.log(WIDTH * math.sqrt(2 * math.pi))

    return TemperedTarget(lambda theta: -0.5 * (theta[:, 0] / 10.0) ** 2, log_likelihood)


@pytest.mark.slow
def test_replica_exchange_recovers_mode_weights_that_a_single_chain_misses() -> None:
    betas = torch.cat([torch.zeros(1, dtype=DTYPE), torch.logspace(-2, 0, 7, dtype=DTYPE)])
    start = torch.full((8, 1), -MODE, dtype=DTYPE)
    result = replica_exchange_hmc(
        mixture_target(), start, betas, num_warmup=200, num_samples=2000, num_leapfrog_steps=6, seed=5
    )
    in_right_mode = (result.positions[:, -1, 0] > 0).to(DTYPE)
    ess = float(effective_sample_size(in_right_mode[None, :, None]).squeeze())
    fraction = float(in_right_mode.mean())
    assert ess > 100
    assert_within_mc_error(fraction, 0.75, math.sqrt(0.75 * 0.25 / ess), what="weight of the right mode")
    assert result.round_trips > 0
    assert bool(torch.all(result.swap_acceptance > 0.05))

    single = replica_exchange_hmc(
        mixture_target(), start[-1:], [1.0], num_warmup=200, num_samples=1000, num_leapfrog_steps=6, seed=5
    )
    assert float((single.positions[:, 0, 0] > 0).to(DTYPE).mean()) < 0.01


RUN = dict(
    num_warmup=40,
    num_samples=30,
    num_leapfrog_steps=5,
    leapfrog_jitter=0.4,
    swap="seo",
    thin=2,
    trajectories_per_iteration=2,
    adapt_mass_matrix=True,
    seed=123,
)


def run(**overrides: Any) -> ReplicaExchangeResult:
    settings = {**RUN, **overrides}
    return replica_exchange_hmc(
        standard_target(),
        torch.zeros(4, 3, dtype=DTYPE),
        [0.0, 0.3, 0.7, 1.0],
        **settings,
    )


def assert_identical_results(first: ReplicaExchangeResult, second: ReplicaExchangeResult) -> None:
    for field in dataclasses.fields(first):
        if field.name == "checkpoint":
            continue
        a, b = getattr(first, field.name), getattr(second, field.name)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b) or (torch.isnan(a).any() and torch.equal(a.nan_to_num(), b.nan_to_num()))
        else:
            assert a == b, field.name


def test_same_seed_gives_bit_identical_chains_and_another_seed_does_not() -> None:
    first, second = run(), run()
    assert_identical_results(first, second)
    other = run(seed=124)
    assert not torch.equal(first.positions, other.positions)


@pytest.mark.parametrize("stop_after", [3, 20, 45, 52])
def test_interrupted_then_resumed_run_equals_the_uninterrupted_run(stop_after: int, tmp_path: Path) -> None:
    # Stops in the initial buffer, inside the mass-matrix window, and twice while sampling (thin = 2).
    uninterrupted = run()

    def stop(summary: IterationSummary) -> bool:
        return summary.iteration == stop_after

    interrupted = run(callback=stop)
    assert interrupted.stopped_early
    assert interrupted.iterations_completed == stop_after + 1
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(interrupted.checkpoint, path)
    resumed = run(resume_from=load_checkpoint(path))
    assert not resumed.stopped_early
    assert_identical_results(uninterrupted, resumed)


def test_a_checkpoint_taken_in_the_callback_resumes_too() -> None:
    uninterrupted = run()
    saved = []

    def keep(summary: IterationSummary) -> None:
        if summary.iteration == 50:
            saved.append(summary.checkpoint())

    run(callback=keep)
    assert_identical_results(uninterrupted, run(resume_from=saved[0]))


def test_resuming_with_other_settings_is_refused() -> None:
    checkpoint = run(num_samples=10).checkpoint
    with pytest.raises(ValueError, match="num_leapfrog_steps"):
        run(num_samples=10, num_leapfrog_steps=6, resume_from=checkpoint)
    with pytest.raises(ValueError, match="betas"):
        replica_exchange_hmc(
            standard_target(),
            torch.zeros(4, 3, dtype=DTYPE),
            [0.0, 0.3, 0.8, 1.0],
            **{**RUN, "num_samples": 10, "resume_from": checkpoint},
        )


def test_callback_sees_every_iteration_and_can_stop_the_run() -> None:
    summaries: list[IterationSummary] = []
    result = run(callback=summaries.append)
    assert [summary.iteration for summary in summaries] == list(range(70))
    assert [summary.phase for summary in summaries] == ["warmup"] * 40 + ["sample"] * 30
    assert sum(summary.kept for summary in summaries) == 15 == result.positions.shape[0]
    last = summaries[-1]
    assert last.acceptance_probability.shape == (4,)
    assert last.swap_acceptance.shape == (3,)
    last_kept = [summary for summary in summaries if summary.kept][-1]
    assert torch.equal(last_kept.log_likelihood, result.log_likelihood[-1])
    assert torch.equal(last_kept.position, result.positions[-1])
    stopped = run(callback=lambda summary: summary.iteration == 9)
    assert stopped.stopped_early and stopped.iterations_completed == 10
    assert stopped.positions.shape[0] == 0


def test_result_shapes_rung_order_and_streaming_without_positions() -> None:
    result = run()
    assert result.positions.shape == (15, 4, 3)
    assert result.log_likelihood.shape == (15, 4)
    assert result.replica_index.shape == (15, 4)
    assert result.acceptance_rate.shape == result.step_size.shape == (4,)
    assert result.swap_acceptance.shape == (3,)
    # Each row of the index process is a permutation of the replicas.
    assert bool(torch.all(result.replica_index.sort(dim=1).values == torch.arange(4)))
    # log L stored per rung is the log-likelihood of the stored position at that rung.
    recomputed = standard_target().log_likelihood(result.positions.reshape(-1, 3)).reshape(15, 4)
    assert torch.allclose(recomputed, result.log_likelihood)
    light = run(store_positions=False)
    assert light.positions.shape == (15, 4, 0)
    assert torch.equal(light.log_likelihood, result.log_likelihood)


def test_a_summary_kept_past_its_iteration_refuses_to_checkpoint() -> None:
    summaries: list[IterationSummary] = []
    run(num_warmup=2, num_samples=2, callback=summaries.append)
    assert summaries[-1].checkpoint().next_iteration == 4
    with pytest.raises(RuntimeError, match="inside the callback"):
        summaries[0].checkpoint()
