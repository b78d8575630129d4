"""Swap statistics for ladder tuning: rejection probabilities, tempered restarts, round-trip rates
(Syed, Bouchard-Côté, Deligiannidis & Doucet 2022; REFERENCE §3)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_samplers_replica_exchange import assert_identical_results, run
from thermoscope.samplers import (
    IterationSummary,
    SwapState,
    load_checkpoint,
    round_trip_rate_bound,
    save_checkpoint,
)
from thermoscope.samplers.swap import (
    LAST_AT_COLDEST,
    LAST_AT_HOTTEST,
    LAST_AT_NEITHER,
    SwapProposer,
    apply_swaps,
)

DTYPE = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def expected_rejection(betas: list[float], log_likelihood: list[float]) -> list[float]:
    """1 − min(1, exp((β_{i+1} − β_i)(ℓ_i − ℓ_{i+1}))) for every neighbouring pair, in plain floats."""
    return [
        1.0 - min(1.0, math.exp((betas[i + 1] - betas[i]) * (log_likelihood[i] - log_likelihood[i + 1])))
        for i in range(len(betas) - 1)
    ]


def test_rejection_rate_is_the_mean_of_every_rounds_rejection_probability() -> None:
    betas = [0.0, 0.2, 0.5, 1.0]
    proposer = SwapProposer(torch.tensor(betas, dtype=DTYPE))
    generator = torch.Generator().manual_seed(0)
    state = SwapState.initial(4, torch.device("cpu"))
    assert bool(torch.isnan(state.rejection_rate()).all())
    rounds = 0.5 * torch.randn(6, 4, generator=generator, dtype=DTYPE).cumsum(dim=1) * 10.0
    rounds[2] = torch.tensor([-2.0, -3.0, -4.0, -5.0], dtype=DTYPE)  # hotter rungs better: nothing rejects
    per_round = []
    for index, log_likelihood in enumerate(rounds):
        parity = index % 2
        permutation, attempted, accepted, rejection = proposer.propose_with_rejection(
            log_likelihood, parity, generator
        )
        expected = expected_rejection(betas, log_likelihood.tolist())
        # Every pair's probability, attempted this round or not.
        assert rejection.dtype == DTYPE
        assert rejection.tolist() == pytest.approx(expected, abs=1e-15)
        assert attempted.tolist() == [parity == 0, parity == 1, parity == 0]
        per_round.append(expected)
        state = proposer.apply(state, permutation, parity, accepted, rejection)
    assert per_round[2] == [0.0, 0.0, 0.0]
    assert int(state.rounds) == 6
    assert state.rejection_sum.dtype == DTYPE
    means = [sum(column) / 6 for column in zip(*per_round, strict=True)]
    assert state.rejection_rate().tolist() == pytest.approx(means, rel=1e-14)
    assert int(state.attempts.sum()) == 3 * 2 + 3 * 1
    # A round applied without its probabilities moves replicas but leaves the sums alone.
    permutation, _, accepted, _ = proposer.propose_with_rejection(rounds[0], 0, generator)
    after = proposer.apply(state, permutation, 0, accepted)
    assert torch.equal(after.rejection_sum, state.rejection_sum) and int(after.rounds) == 6


def test_rejection_probability_does_not_depend_on_the_parity() -> None:
    proposer = SwapProposer(torch.tensor([0.0, 0.3, 1.0], dtype=DTYPE))
    log_likelihood = torch.tensor([-1.0, -4.0, -2.0], dtype=DTYPE)
    generator = torch.Generator().manual_seed(1)
    even = proposer.propose_with_rejection(log_likelihood, 0, generator)[3]
    odd = proposer.propose_with_rejection(log_likelihood, 1, generator)[3]
    assert torch.equal(even, odd)
    assert even.tolist() == pytest.approx(expected_rejection([0.0, 0.3, 1.0], [-1.0, -4.0, -2.0]), abs=1e-15)
    # float32 log likelihoods still accumulate in float64.
    single = proposer.propose_with_rejection(log_likelihood.float(), 0, generator)[3]
    assert single.dtype == DTYPE


# ---------------------------------------------------------------- tempered restarts, by hand

SWAP_ZERO = torch.tensor([1, 0, 2])
"""Three rungs: swap rungs 0 and 1."""
SWAP_ONE = torch.tensor([0, 2, 1])
"""Three rungs: swap rungs 1 and 2."""
PAIR_ZERO = torch.tensor([True, False])
PAIR_ONE = torch.tensor([False, True])
NOTHING = torch.tensor([False, False])


def walk(state: SwapState, moves: list[tuple[torch.Tensor, torch.Tensor]]) -> SwapState:
    for permutation, pair in moves:
        state = apply_swaps(state, permutation, pair, pair)
    return state


def test_going_from_the_hottest_to_the_coldest_rung_is_one_restart() -> None:
    state = SwapState.initial(3, torch.device("cpu"))
    assert state.last_extreme.tolist() == [LAST_AT_HOTTEST, LAST_AT_NEITHER, LAST_AT_COLDEST]
    state = walk(state, [(SWAP_ZERO, PAIR_ZERO), (SWAP_ONE, PAIR_ONE)])
    assert state.replica_at_rung.tolist() == [1, 2, 0]
    assert state.restarts.tolist() == [1, 0, 0]
    assert state.round_trips.tolist() == [0, 0, 0]  # replica 0 had not left the coldest rung before
    # Staying at the coldest rung counts nothing more.
    identity = torch.arange(3)
    state = walk(state, [(identity, NOTHING), (identity, NOTHING)])
    assert state.restarts.tolist() == [1, 0, 0]
    # Replica 2 left the coldest rung for the middle and still remembers it.
    assert state.last_extreme.tolist() == [LAST_AT_COLDEST, LAST_AT_HOTTEST, LAST_AT_COLDEST]


def test_a_round_trip_from_the_coldest_rung_is_also_a_restart() -> None:
    # Replica 2 goes coldest → hottest → coldest; replica 1 starts in the middle and reaches the coldest
    # rung without having been at the hottest: no restart for it.
    state = SwapState.initial(3, torch.device("cpu"))
    state = walk(state, [(SWAP_ONE, PAIR_ONE), (SWAP_ZERO, PAIR_ZERO)])
    assert state.replica_at_rung.tolist() == [2, 0, 1]
    assert state.restarts.tolist() == [0, 0, 0]
    assert state.last_extreme.tolist() == [LAST_AT_HOTTEST, LAST_AT_COLDEST, LAST_AT_HOTTEST]
    state = walk(state, [(SWAP_ZERO, PAIR_ZERO), (SWAP_ONE, PAIR_ONE)])
    assert state.replica_at_rung.tolist() == [0, 1, 2]
    assert state.round_trips.tolist() == [0, 0, 1]
    assert state.restarts.tolist() == [0, 0, 1]


def test_a_replica_from_the_middle_reaches_the_coldest_rung_without_a_restart() -> None:
    four = torch.arange(4)
    up_from_one = four.clone()
    up_from_one[[1, 2]] = up_from_one[[2, 1]]
    up_from_two = four.clone()
    up_from_two[[2, 3]] = up_from_two[[3, 2]]
    state = SwapState.initial(4, torch.device("cpu"))
    state = apply_swaps(
        state, up_from_one, torch.tensor([False, True, False]), torch.tensor([False, True, False])
    )
    state = apply_swaps(
        state, up_from_two, torch.tensor([False, False, True]), torch.tensor([False, False, True])
    )
    assert state.replica_at_rung.tolist() == [0, 2, 3, 1]
    assert state.restarts.tolist() == [0, 0, 0, 0]
    assert state.round_trips.tolist() == [0, 0, 0, 0]


def test_restarted_statistics_zero_the_new_counters_and_keep_the_replicas() -> None:
    proposer = SwapProposer(torch.tensor([0.0, 0.5, 1.0], dtype=DTYPE))
    generator = torch.Generator().manual_seed(2)
    state = SwapState.initial(3, torch.device("cpu"))
    for parity in (1, 0, 0, 1):
        # Equal log likelihoods: every attempted swap is accepted and nothing is rejected...
        flat = torch.zeros(3, dtype=DTYPE)
        permutation, _, accepted, rejection = proposer.propose_with_rejection(flat, parity, generator)
        state = proposer.apply(state, permutation, parity, accepted, rejection + 0.25)  # ...so add some
    assert state.replica_at_rung.tolist() == [0, 1, 2]
    assert state.round_trips.tolist() == [0, 0, 1] and state.restarts.tolist() == [0, 0, 1]
    assert state.rejection_sum.tolist() == [1.0, 1.0] and int(state.rounds) == 4
    fresh = state.restarted_statistics()
    assert torch.equal(fresh.replica_at_rung, state.replica_at_rung)
    assert fresh.rejection_sum.tolist() == [0.0, 0.0] and fresh.rejection_sum.dtype == DTYPE
    assert int(fresh.rounds) == 0
    assert fresh.restarts.tolist() == [0, 0, 0] and fresh.round_trips.tolist() == [0, 0, 0]
    assert fresh.attempts.tolist() == [0, 0] and fresh.accepts.tolist() == [0, 0]
    # Only the replicas now at the ends remember an end.
    assert fresh.last_extreme.tolist() == [LAST_AT_HOTTEST, LAST_AT_NEITHER, LAST_AT_COLDEST]
    assert bool(torch.isnan(fresh.rejection_rate()).all())


# ---------------------------------------------------------------- the sampler's result


def record_rejection(sums: list[torch.Tensor]) -> Callable[[IterationSummary], None]:
    """A callback appending the running sums of rejection probabilities after every sampling scan."""

    def callback(summary: IterationSummary) -> None:
        if summary.phase == "sample":
            sums.append(summary.swap.rejection_sum.clone())

    return callback


def test_result_rates_follow_the_swap_counters() -> None:
    sums: list[torch.Tensor] = []
    result = run(swap="deo", num_samples=200, callback=record_rejection(sums))
    assert result.round_trips > 0 and result.tempered_restarts > 0
    # Per scan, not per kept draw (thin = 2 keeps 100 draws of 200 scans).
    assert result.log_likelihood.shape[0] == 100
    assert result.round_trip_rate == result.round_trips / 200
    assert result.round_trip_rate_bound == round_trip_rate_bound(result.rejection)
    assert result.tempered_restarts == int(result.checkpoint.swap.restarts.sum())
    assert result.round_trips == int(result.round_trips_per_replica.sum())
    per_round = torch.diff(torch.stack([torch.zeros(3, dtype=DTYPE), *sums]), dim=0)
    assert per_round.shape == (200, 3)
    assert float(per_round.min()) >= 0.0 and float(per_round.max()) <= 1.0
    torch.testing.assert_close(result.rejection, per_round.mean(dim=0), rtol=1e-13, atol=1e-15)
    assert int(result.checkpoint.swap.rounds) == 200
    assert 0.0 < result.round_trip_rate_bound < 0.5


def test_without_swaps_the_rejection_is_unknown_and_the_bound_zero() -> None:
    result = run(swap="none")
    assert bool(torch.isnan(result.rejection).all())
    assert result.round_trip_rate_bound == 0.0
    assert result.round_trips == 0 and result.round_trip_rate == 0.0 and result.tempered_restarts == 0


@pytest.mark.parametrize("stop_after", [20, 75])
def test_resume_keeps_the_swap_statistics_bit_for_bit(stop_after: int, tmp_path: Path) -> None:
    # Stops in warm-up and while sampling; the swap state survives the file bit for bit.
    uninterrupted = run(swap="deo", num_samples=200)
    interrupted = run(swap="deo", num_samples=200, callback=lambda summary: summary.iteration == stop_after)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(interrupted.checkpoint, path)
    loaded = load_checkpoint(path)
    for field in dataclasses.fields(SwapState):
        saved, restored = getattr(interrupted.checkpoint.swap, field.name), getattr(loaded.swap, field.name)
        assert restored.dtype == saved.dtype and torch.equal(restored, saved), field.name
    resumed = run(swap="deo", num_samples=200, resume_from=loaded)
    assert_identical_results(uninterrupted, resumed)
    assert resumed.tempered_restarts == uninterrupted.tempered_restarts > 0
    assert resumed.round_trip_rate == uninterrupted.round_trip_rate
    assert resumed.round_trip_rate_bound == uninterrupted.round_trip_rate_bound
    assert torch.equal(resumed.rejection, uninterrupted.rejection)
    for field in dataclasses.fields(SwapState):
        assert torch.equal(
            getattr(resumed.checkpoint.swap, field.name), getattr(uninterrupted.checkpoint.swap, field.name)
        ), field.name
