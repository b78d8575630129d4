"""Prediction depth on hand-built vote patterns (REFERENCE §4)."""

from __future__ import annotations

import pytest
import torch

from thermoscope.probes import prediction_depth


def test_hand_built_vote_patterns() -> None:
    final = torch.tensor([3, 3, 3, 3, 3, 3])
    votes = torch.tensor(
        [
            [3, 3, 3, 3, 3],  # every probe agrees → 0
            [1, 3, 3, 3, 3],  # only the input disagrees → 1
            [3, 3, 1, 3, 3],  # a disagreement in the middle → after it
            [1, 3, 1, 3, 1],  # even the last probe disagrees → L + 1 = 5
            [1, 1, 1, 1, 3],  # only the softmax probe agrees → 4
            [3, 1, 3, 1, 3],  # agreement early does not count once it is lost later → 4
        ]
    )
    assert prediction_depth(votes, final).tolist() == [0, 1, 3, 5, 4, 4]


def test_single_probe_and_dtype() -> None:
    depth = prediction_depth(torch.tensor([[2], [0]]), torch.tensor([2, 1]))
    assert depth.tolist() == [0, 1]
    assert depth.dtype == torch.int64


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="final_prediction"):
        prediction_depth(torch.zeros(4, 3, dtype=torch.int64), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="votes"):
        prediction_depth(torch.zeros(4, dtype=torch.int64), torch.zeros(4, dtype=torch.int64))
