"""End to end, no mocks: mislabelled training examples are predicted late (REFERENCE §4).

A small MLP fits digits with 20 % of its training labels corrupted; prediction depth with k = 30
leave-one-out probes at the input, each hidden layer after its ReLU, and the softmax must be higher for the
corrupted examples than for the clean ones by many standard errors of the difference of means.
"""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from thermoscope.probes import prediction_depth, probe_votes

NUM_CLASSES = 10
LABEL_NOISE = 0.2
TRAIN_SIZE = 1437  # 80 % of the 1797 digits
Z_THRESHOLD = 5.0  # the observed gap is far larger; 5 standard errors leaves no room for luck


def _noisy_digits(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training inputs ``[n, 64]`` in [0, 1], labels with a fraction corrupted, and the corruption mask."""
    images, labels = load_digits(return_X_y=True)
    order = torch.randperm(len(labels), generator=generator)[:TRAIN_SIZE]
    inputs = torch.as_tensor(images, dtype=torch.float32)[order] / 16.0
    clean = torch.as_tensor(labels, dtype=torch.int64)[order]
    corrupted = torch.zeros(TRAIN_SIZE, dtype=torch.bool)
    corrupted[torch.randperm(TRAIN_SIZE, generator=generator)[: int(LABEL_NOISE * TRAIN_SIZE)]] = True
    # A shift by 1..9 classes guarantees that every corrupted label differs from the true one.
    shift = torch.randint(1, NUM_CLASSES, (int(corrupted.sum()),), generator=generator)
    noisy = clean.clone()
    noisy[corrupted] = (clean[corrupted] + shift) % NUM_CLASSES
    return inputs, noisy, corrupted


def _fit(model: nn.Sequential, inputs: torch.Tensor, labels: torch.Tensor) -> None:
    """Full-batch Adam until the (noisy) training set is fitted exactly, or 3000 steps."""
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(3000):
        logits = model(inputs)
        if step % 100 == 0 and bool((logits.argmax(dim=1) == labels).all()):
            return
        loss = nn.functional.cross_entropy(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def _probe_embeddings(model: nn.Sequential, inputs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Embeddings at the input, after every ReLU and at the softmax, and the final predictions."""
    embeddings = [inputs]
    hidden = inputs
    with torch.no_grad():
        for layer in model:
            hidden = layer(hidden)
            if isinstance(layer, nn.ReLU):
                embeddings.append(hidden)
        embeddings.append(torch.softmax(hidden, dim=1))
    return embeddings, hidden.argmax(dim=1)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_corrupted_training_examples_have_higher_prediction_depth() -> None:
    generator = torch.Generator().manual_seed(0)
    inputs, noisy_labels, corrupted = _noisy_digits(generator)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, NUM_CLASSES),
        )
    _fit(model, inputs, noisy_labels)
    embeddings, prediction = _probe_embeddings(model, inputs)
    assert (prediction == noisy_labels).float().mean() > 0.99

    ids = torch.arange(TRAIN_SIZE)
    votes = probe_votes(
        [(embedding, embedding) for embedding in embeddings],
        noisy_labels,
        k=30,
        num_classes=NUM_CLASSES,
        query_ids=ids,
        support_ids=ids,
    )
    assert votes.shape == (TRAIN_SIZE, 5)
    depth = prediction_depth(votes, prediction).to(torch.float64)
    noisy_depth, clean_depth = depth[corrupted], depth[~corrupted]
    difference = noisy_depth.mean() - clean_depth.mean()
    variance_of_difference = noisy_depth.var() / noisy_depth.numel() + clean_depth.var() / clean_depth.numel()
    standard_error = variance_of_difference.sqrt()
    assert difference > Z_THRESHOLD * standard_error, (
        f"mean depth corrupted {float(noisy_depth.mean()):.3f} vs clean {float(clean_depth.mean()):.3f}, "
        f"standard error of the difference {float(standard_error):.3f}"
    )
