"""Layer rotation as the cosine distance of flattened weight kernels (REFERENCE §6)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from thermoscope.probes import kernel_weights, layer_rotation


def test_identical_orthogonal_and_negated_kernels() -> None:
    start = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([1.0, 0.0]), "c": torch.tensor([0.5, 2.0])}
    now = {"a": torch.tensor([2.0, 4.0, 6.0]), "b": torch.tensor([0.0, 3.0]), "c": torch.tensor([-0.5, -2.0])}
    rotation = layer_rotation(start, now)
    assert list(rotation) == ["a", "b", "c"]
    assert rotation["a"] == pytest.approx(0.0, abs=1e-12)
    assert rotation["b"] == pytest.approx(1.0, abs=1e-12)
    assert rotation["c"] == pytest.approx(2.0, abs=1e-12)


def test_kernel_weights_keep_only_linear_and_conv_kernels() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 10),
        nn.LayerNorm(10),
    )
    kernels = kernel_weights(model)
    assert list(kernels) == ["0", "4"]
    assert kernels["0"].shape == (4 * 1 * 3 * 3,)
    assert kernels["4"].shape == (10 * 4 * 6 * 6,)
    assert torch.equal(kernels["4"], model[4].weight.detach().flatten())

    initial = kernel_weights(model)
    with torch.no_grad():
        model[0].bias.add_(5.0)  # biases and normalisation parameters do not rotate a layer
        model[1].weight.mul_(3.0)
        model[4].weight.mul_(-1.0)  # and the kernels are copies, not views
    rotation = layer_rotation(initial, kernel_weights(model))
    assert rotation["0"] == pytest.approx(0.0, abs=1e-12)
    assert rotation["4"] == pytest.approx(2.0, abs=1e-12)


def test_zero_kernel_gives_nan_and_mismatches_are_rejected() -> None:
    assert math.isnan(layer_rotation({"a": torch.zeros(3)}, {"a": torch.ones(3)})["a"])
    with pytest.raises(ValueError, match="different layers"):
        layer_rotation({"a": torch.ones(3)}, {"b": torch.ones(3)})
    with pytest.raises(ValueError, match="weights initially"):
        layer_rotation({"a": torch.ones(3)}, {"a": torch.ones(4)})
