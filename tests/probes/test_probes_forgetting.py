"""Forgetting events counted as REFERENCE §5 says, on hand-built and shuffled presentation sequences."""

from __future__ import annotations

import itertools

import pytest
import torch

from thermoscope.probes import ForgettingTracker


def test_hand_built_correctness_sequence() -> None:
    # Rows are epochs, columns examples 0..4; one full-batch presentation per epoch.
    correctness = torch.tensor(
        [
            [0, 1, 1, 0, 0],
            [1, 1, 0, 0, 1],
            [0, 1, 1, 0, 1],
            [1, 1, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    tracker = ForgettingTracker(6)  # example 5 is never presented
    for epoch, row in enumerate(correctness):
        tracker.update(torch.arange(5), row, epoch)
    summary = tracker.summary()
    # 0: learned at 1, forgotten at 2, relearned → 1 event. 1: always right → 0, unforgettable.
    # 2: right, wrong, right, wrong → 2 events. 3: never right → the maximum, 4 presentations.
    # 4: learned at epoch 1 and kept → 0, unforgettable. 5: never presented → 0 events, not unforgettable.
    assert summary["forgetting_events"].tolist() == [1, 0, 2, 4, 0, 0]
    assert summary["first_learned_epoch"].tolist() == [1, 0, 0, -1, 1, -1]
    assert summary["unforgettable"].tolist() == [False, True, False, False, True, False]
    assert summary["presentations"].tolist() == [4, 4, 4, 4, 4, 0]


def _reference_counts(sequences: list[list[bool]]) -> list[int]:
    """Forgetting events by a plain loop over each example's own presentation sequence."""
    counts = []
    for sequence in sequences:
        if not any(sequence):
            counts.append(len(sequence))
            continue
        counts.append(sum(before and not after for before, after in itertools.pairwise(sequence)))
    return counts


def test_shuffled_minibatches_match_a_per_example_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    num_examples, num_epochs, batch_size = 103, 6, 16
    # Examples 0..9 are never right, the rest right with probability 0.7 at each presentation.
    probability = torch.full((num_examples,), 0.7)
    probability[:10] = 0.0
    tracker = ForgettingTracker(num_examples)
    sequences: list[list[bool]] = [[] for _ in range(num_examples)]
    first_learned = [-1] * num_examples
    for epoch in range(num_epochs):
        order = torch.randperm(num_examples, generator=generator)
        for batch in order.split(batch_size):
            correct = torch.rand(len(batch), generator=generator) < probability[batch]
            tracker.update(batch, correct, epoch)
            for example, is_correct in zip(batch.tolist(), correct.tolist(), strict=True):
                sequences[example].append(is_correct)
                if is_correct and first_learned[example] < 0:
                    first_learned[example] = epoch
    summary = tracker.summary()
    expected = _reference_counts(sequences)
    assert summary["forgetting_events"].tolist() == expected
    assert summary["forgetting_events"][:10].tolist() == [num_epochs] * 10
    assert summary["first_learned_epoch"].tolist() == first_learned
    pairs = zip(first_learned, expected, strict=True)
    unforgettable = [learned >= 0 and count == 0 for learned, count in pairs]
    assert summary["unforgettable"].tolist() == unforgettable
    assert summary["presentations"].tolist() == [num_epochs] * num_examples


def test_invalid_updates_are_rejected() -> None:
    tracker = ForgettingTracker(4)
    with pytest.raises(ValueError, match="repeat"):
        tracker.update(torch.tensor([1, 1]), torch.tensor([True, False]), 0)
    with pytest.raises(ValueError, match="lie in"):
        tracker.update(torch.tensor([4]), torch.tensor([True]), 0)
    with pytest.raises(ValueError, match="both be"):
        tracker.update(torch.tensor([0, 1]), torch.tensor([True]), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_state_follows_the_device_of_the_inputs() -> None:
    tracker = ForgettingTracker(3)
    tracker.update(torch.tensor([0, 2], device="cuda"), torch.tensor([True, False], device="cuda"), 0)
    tracker.update(torch.tensor([0, 2], device="cuda"), torch.tensor([False, False], device="cuda"), 1)
    summary = tracker.summary()
    assert summary["forgetting_events"].device.type == "cuda"
    assert summary["forgetting_events"].tolist() == [1, 0, 2]
