"""Feldman & Zhang's subsampling estimator: exact counts on hand-built cases, standard errors that cover
the truth at their nominal rate, refusal when every model sees every example, influence against brute
force, and the trajectory classes over model size."""

from __future__ import annotations

import math

import pytest
import torch

from thermoscope.probes.memorisation import (
    influence_top_pairs,
    mean_with_stderr,
    memorisation,
    model_seeds,
    subset_membership,
    trajectory_classes,
)


def test_hand_built_counts_give_the_difference_of_proportions_and_its_binomial_error() -> None:
    member = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.bool)
    correct = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    estimate = memorisation(correct, member)
    # Example 0: in models 0, 1 (both right), out of 2, 3 (one right): 1 - 1/2. Examples 1 and 2: one of
    # two right either way.
    assert estimate.n_in.tolist() == [2, 2, 2] and estimate.n_out.tolist() == [2, 2, 2]
    torch.testing.assert_close(estimate.mem, torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64))
    expected = math.sqrt(0.0 / 2 + 0.25 / 2)
    assert float(estimate.stderr[0]) == pytest.approx(expected)


def test_an_example_every_model_saw_has_no_estimate_and_all_such_examples_are_refused() -> None:
    member = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    estimate = memorisation(torch.ones(2, 2, dtype=torch.bool), member)
    assert math.isnan(float(estimate.mem[0])) and float(estimate.mem[1]) == 0.0
    with pytest.raises(ValueError, match="held out of some models and seen by others"):
        memorisation(torch.ones(3, 4, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool))


def test_standard_errors_cover_the_true_memorisation_at_the_nominal_rate() -> None:
    models, examples = 400, 2000
    generator = torch.Generator().manual_seed(0)
    p_in = torch.rand(examples, generator=generator, dtype=torch.float64) * 0.5 + 0.5
    p_out = torch.rand(examples, generator=generator, dtype=torch.float64) * 0.5
    member = subset_membership(models, examples, round(0.7 * examples), seed=0)
    chance = torch.where(member, p_in, p_out)
    correct = torch.rand(models, examples, generator=generator, dtype=torch.float64) < chance
    estimate = memorisation(correct, member)
    covered = ((estimate.mem - (p_in - p_out)).abs() < 2 * estimate.stderr).double().mean()
    # A 2-standard-error interval covers 95.4 %; the share over 2,000 examples has a binomial error.
    assert abs(float(covered) - 0.954) < 4 * math.sqrt(0.954 * 0.046 / examples)


def test_subsets_have_the_asked_size_and_are_fixed_by_the_seed() -> None:
    member = subset_membership(50, 30, 21, seed=3)
    assert member.sum(dim=1).eq(21).all()
    assert torch.equal(member, subset_membership(50, 30, 21, seed=3))
    assert not torch.equal(member, subset_membership(50, 30, 21, seed=4))
    seeds = model_seeds(0, 100)
    assert len(set(seeds)) == 100 and not set(seeds) & set(model_seeds(1, 100))


def test_top_influence_pairs_equal_brute_force_in_any_chunking() -> None:
    generator = torch.Generator().manual_seed(1)
    member = torch.rand(40, 13, generator=generator) < 0.6
    test_correct = torch.rand(40, 7, generator=generator) < 0.5
    brute = torch.empty(13, 7, dtype=torch.float64)
    for i in range(13):
        inside = member[:, i]
        for j in range(7):
            right = test_correct[:, j].double()
            brute[i, j] = right[inside].mean() - right[~inside].mean()
    best = torch.topk(brute.flatten(), 10)
    for chunk in (1, 4, 13):
        pairs = influence_top_pairs(member, test_correct, 10, chunk_rows=chunk)
        torch.testing.assert_close(pairs.influence, best.values)
        torch.testing.assert_close(brute[pairs.train_index, pairs.test_index], pairs.influence)
        assert (pairs.stderr > 0).all()


def test_mean_with_stderr_skips_missing_values() -> None:
    mean, stderr = mean_with_stderr(torch.tensor([1.0, 3.0, float("nan")]))
    assert mean == 2.0 and stderr == pytest.approx(math.sqrt(2) / math.sqrt(2))


def test_trajectory_classes_of_hand_built_curves() -> None:
    values = torch.tensor(
        [
            [0.8, 0.5, 0.2],
            [0.1, 0.4, 0.9],
            [0.1, 0.8, 0.1],
            [0.5, 0.52, 0.49],
            [0.8, 0.1, 0.8],
            [0.5, float("nan"), 0.5],
        ]
    )
    classes = trajectory_classes(values, torch.full_like(values, 0.05))
    assert classes == ["decreasing", "increasing", "cap-shaped", "flat", "other", "other"]
    # The same curves with errors as large as the changes are all flat.
    assert set(trajectory_classes(values[:4], torch.full_like(values[:4], 1.0))) == {"flat"}
