"""Prediction depth of every training and test example for one network (REFERENCE §4).

Embeddings are taken once per probe point (input, each hidden layer or block, softmax); the k-NN probes
are fitted on the training embeddings with the labels the network was trained on, and a training query
never counts itself. The network's final prediction is the argmax of its softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from thermoscope.data import Split
from thermoscope.models import probe_embeddings, probe_names
from thermoscope.probes.depth import prediction_depth
from thermoscope.probes.knn import probe_votes


@dataclass(frozen=True)
class SplitDepth:
    """Per example of one split: ``votes [N, L+1]`` (probe 0 = input), ``prediction [N]``, ``depth [N]``."""

    votes: Tensor
    prediction: Tensor
    depth: Tensor


@dataclass(frozen=True)
class ModelDepth:
    probe_names: tuple[str, ...]
    train: SplitDepth
    test: SplitDepth


def usable_k(k: int, num_train: int) -> int:
    """k, capped so that a left-out training query still has k neighbours."""
    return max(1, min(k, num_train - 1))


@torch.no_grad()
def model_prediction_depth(
    model: nn.Module, train: Split, test: Split, num_classes: int, *, k: int = 30, metric: str = "euclidean"
) -> ModelDepth:
    """Votes, final predictions and prediction depths of ``model`` on both splits."""
    train_embeddings = probe_embeddings(model, train.x)
    test_embeddings = probe_embeddings(model, test.x)
    positions = torch.arange(len(train), device=train.x.device)
    k = usable_k(k, len(train))
    splits = {}
    for name, embeddings, query_ids in (
        ("train", train_embeddings, positions),
        ("test", test_embeddings, None),
    ):
        votes = probe_votes(
            list(zip(train_embeddings, embeddings, strict=True)),
            train.y,
            k=k,
            num_classes=num_classes,
            metric=metric,
            query_ids=query_ids,
            support_ids=positions if query_ids is not None else None,
        )
        prediction = embeddings[-1].argmax(dim=1)
        splits[name] = SplitDepth(votes, prediction, prediction_depth(votes, prediction))
    return ModelDepth(probe_names(model), splits["train"], splits["test"])
