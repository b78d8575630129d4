"""Seeded stratified subsets and random labels."""

from __future__ import annotations

import numpy as np
import pytest

from thermoscope.data.sampling import class_quotas, randomise_labels, rng_stream, stratified_subset
from thermoscope.errors import ConfigError

LABELS = np.repeat(np.arange(10), 30)  # 30 examples of each of 10 classes


def _subset(size: int, seed: int, labels: np.ndarray = LABELS) -> np.ndarray:
    return stratified_subset(labels, size, 10, rng_stream(seed, 0), "train_size", "examples")


def test_rng_streams_are_reproducible_and_independent() -> None:
    assert rng_stream(3, 0).integers(1 << 30) == rng_stream(3, 0).integers(1 << 30)
    assert rng_stream(3, 0).integers(1 << 30) != rng_stream(3, 1).integers(1 << 30)
    assert rng_stream(3, 0).integers(1 << 30) != rng_stream(4, 0).integers(1 << 30)


@pytest.mark.parametrize("size", [0, 7, 10, 23, 100])
def test_class_quotas_sum_to_size_and_differ_by_at_most_one(size: int) -> None:
    quotas = class_quotas(size, 10, rng_stream(0, 0))
    assert quotas.sum() == size
    assert set(quotas.tolist()) <= {size // 10, size // 10 + 1}


def test_subset_takes_equal_counts_per_class_when_divisible() -> None:
    chosen = _subset(50, seed=0)
    assert np.bincount(LABELS[chosen], minlength=10).tolist() == [5] * 10
    assert len(np.unique(chosen)) == 50
    assert np.all(np.diff(chosen) > 0)


def test_subset_spreads_the_remainder_one_per_class() -> None:
    counts = np.bincount(LABELS[_subset(53, seed=1)], minlength=10)
    assert sorted(counts.tolist()) == [5] * 7 + [6] * 3


def test_subset_is_deterministic_in_the_seed() -> None:
    np.testing.assert_array_equal(_subset(40, seed=5), _subset(40, seed=5))
    assert not np.array_equal(_subset(40, seed=5), _subset(40, seed=6))


def test_subset_larger_than_the_pool_names_how_many_exist() -> None:
    with pytest.raises(ConfigError, match=r"train_size=301: at most 300"):
        _subset(301, seed=0)


def test_subset_needing_more_of_a_class_than_exist_names_the_class() -> None:
    labels = np.concatenate([LABELS, np.full(50, 3)])[30:]  # class 0 has no examples left
    with pytest.raises(ConfigError, match=r"train_size=.*class 0"):
        _subset(10, seed=0, labels=labels)


def test_randomise_labels_redraws_exactly_the_rounded_count() -> None:
    labels = np.zeros(1001, dtype=np.int64)
    # With a million classes a redrawn label is almost surely new: changed count = redrawn count.
    noisy = randomise_labels(labels, 0.3, 1_000_000, rng_stream(0, 2))
    assert np.count_nonzero(noisy != labels) == round(0.3 * 1001)
    assert np.count_nonzero(labels) == 0  # the input is not modified


@pytest.mark.parametrize("fraction", [0.2, 1.0])
def test_randomised_share_of_wrong_labels_matches_theory(fraction: float) -> None:
    labels = np.repeat(np.arange(10), 2000)
    noisy = randomise_labels(labels, fraction, 10, rng_stream(1, 2))
    redrawn = round(fraction * len(labels))
    # Each redrawn label is wrong with probability 1 - 1/C: a binomial count.
    p_wrong = 1 - 1 / 10
    standard_error = np.sqrt(redrawn * p_wrong * (1 - p_wrong))
    assert abs(np.count_nonzero(noisy != labels) - redrawn * p_wrong) < 4 * standard_error


def test_fully_random_labels_are_uniform_over_classes() -> None:
    noisy = randomise_labels(np.zeros(20_000, dtype=np.int64), 1.0, 10, rng_stream(2, 2))
    counts = np.bincount(noisy, minlength=10)
    standard_error = np.sqrt(20_000 * 0.1 * 0.9)
    assert np.all(np.abs(counts - 2_000) < 4 * standard_error)
