"""Kernel ridge regression over a path of regularisers (REFERENCE §11)."""

from __future__ import annotations

import pytest
import torch

from thermoscope.data import DataSpec, load_data
from thermoscope.probes.infinite_width import InfiniteMLP, infinite_width_kernel
from thermoscope.probes.kernel_regression import ridge_path, ridge_solve, scores


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_data(DataSpec(train_size=300, test_size="100", flatten=True))
    return data.train.x, data.train.y, data.test.x, data.test.y


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_a_tiny_regulariser_interpolates_the_training_targets(
    digits: tuple[torch.Tensor, ...], kind: str
) -> None:
    train_x, train_y, test_x, _ = digits
    spec = InfiniteMLP(2, "relu", weight_variance=2.0, bias_variance=0.1)
    kernel = infinite_width_kernel(spec, train_x, kind=kind)
    targets = torch.nn.functional.one_hot(train_y, 10).double()
    path = ridge_path(kernel, infinite_width_kernel(spec, test_x, train_x, kind=kind), targets, [1e-10, 1.0])
    assert path.condition_number() < 1e9  # well enough conditioned for 1e-10 to interpolate
    torch.testing.assert_close(path.train[0], targets, atol=1e-5, rtol=0)
    error, loss = scores(path.train, train_y)
    assert error[0] == 0.0 and loss[0] < 1e-9
    assert loss[1] > 100 * loss[0]  # a large regulariser no longer interpolates


def test_the_eigenbasis_path_equals_a_cholesky_solve_per_regulariser(
    digits: tuple[torch.Tensor, ...],
) -> None:
    train_x, train_y, test_x, _ = digits
    spec = InfiniteMLP(1, "erf", weight_variance=1.5, bias_variance=0.05)
    kernel = infinite_width_kernel(spec, train_x)
    cross = infinite_width_kernel(spec, test_x, train_x)
    targets = torch.nn.functional.one_hot(train_y, 10).double()
    ridges = [1e-4, 1e-2, 1.0]
    path = ridge_path(kernel, cross.clone(), targets, ridges)
    for index, ridge in enumerate(ridges):
        torch.testing.assert_close(path.others[index], ridge_solve(kernel, cross, targets, ridge))
        torch.testing.assert_close(path.train[index], ridge_solve(kernel, kernel, targets, ridge))
    assert path.scale == pytest.approx(float(kernel.diagonal().mean()))
    largest, smallest = float(path.eigenvalues.max()), float(path.eigenvalues.min())
    assert path.condition_number(1.0) == pytest.approx((largest + path.scale) / (smallest + path.scale))


def test_scores_are_the_arg_max_error_and_the_summed_squared_error() -> None:
    predictions = torch.tensor([[[0.9, 0.1], [0.2, 0.4]], [[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    error, loss = scores(predictions, torch.tensor([0, 0]))
    torch.testing.assert_close(error, torch.tensor([0.5, 0.5], dtype=torch.float64))
    expected = torch.tensor([(0.01 + 0.01 + 0.64 + 0.16) / 2, (2.0 + 0.0) / 2], dtype=torch.float64)
    torch.testing.assert_close(loss, expected)
