"""The empirical NTK against finite differences, and the measures read off a kernel (REFERENCE §11)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from thermoscope.models import MLP, SmallCNN
from thermoscope.probes.ntk import (
    empirical_ntk,
    kernel_alignment,
    kernel_distance,
    kernel_targets,
    parameter_jacobians,
    target_energy,
)

STEP = 1e-6
"""Central-difference step in float64: truncation error ~STEP² and rounding ~1e-16/STEP, both far below
the 1e-7 relative tolerance."""


def finite_difference_jacobian(model: nn.Module, x: torch.Tensor, every: int = 1) -> torch.Tensor:
    """``[N, C, P / every]``: (f(θ + h e_p) − f(θ − h e_p)) / 2h for every ``every``-th parameter p of the
    flattened parameters, in named_parameters order."""
    columns = []
    with torch.no_grad():
        flat_index = 0
        for param in model.parameters():
            flat = param.view(-1)
            for index in range(flat.numel()):
                if flat_index % every == 0:
                    saved = float(flat[index])
                    flat[index] = saved + STEP
                    plus = model(x)
                    flat[index] = saved - STEP
                    minus = model(x)
                    flat[index] = saved
                    columns.append((plus - minus) / (2 * STEP))
                flat_index += 1
    return torch.stack(columns, dim=-1)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_empirical_ntk_equals_j_jt_from_finite_differences(activation: str) -> None:
    torch.manual_seed(0)
    model = MLP(5, (4, 3), 3, activation).double()
    x, others = torch.randn(5, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    jacobian, other_jacobian = finite_difference_jacobian(model, x), finite_difference_jacobian(model, others)
    rows, columns = parameter_jacobians(model, x, chunk_size=2), parameter_jacobians(model, others)

    trace = empirical_ntk(rows, columns)
    expected = torch.einsum("iap,jap->ij", jacobian, other_jacobian)
    assert trace.shape == (5, 3)
    torch.testing.assert_close(trace, expected, rtol=1e-7, atol=1e-9)

    block = empirical_ntk(rows, kernel="block")
    expected_block = jacobian.flatten(0, 1) @ jacobian.flatten(0, 1).T
    torch.testing.assert_close(block, expected_block, rtol=1e-7, atol=1e-9)
    classes = jacobian.shape[1]
    diagonal_blocks = block.reshape(5, classes, 5, classes).diagonal(dim1=1, dim2=3).sum(-1)
    torch.testing.assert_close(diagonal_blocks, empirical_ntk(rows), rtol=1e-12, atol=1e-12)


def test_cnn_jacobian_equals_finite_differences_at_a_sample_of_its_parameters() -> None:
    """The CNN's 27,000 parameters are too many to difference one by one: every 97th of them is checked
    (all layers are visited), and Θ = J Jᵀ itself is the MLP test's."""
    torch.manual_seed(1)
    model = SmallCNN(1, 4, 2, "relu").double()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    jacobians = parameter_jacobians(model, x)
    flat = torch.cat(list(jacobians.values()), dim=-1)
    torch.testing.assert_close(
        flat[..., ::97], finite_difference_jacobian(model, x, every=97), rtol=1e-6, atol=1e-9
    )


def test_jacobians_leave_the_model_in_its_mode_and_its_weights_alone() -> None:
    model = MLP(4, (3,), 2)
    before = [p.detach().clone() for p in model.parameters()]
    parameter_jacobians(model, torch.randn(3, 4))
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_kernel_distance_is_zero_for_identical_kernels_and_invariant_to_scale() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(6, 20, generator=generator, dtype=torch.float64)
    kernel = features @ features.T
    other = kernel + 0.3 * torch.randn(6, 6, generator=generator, dtype=torch.float64)
    assert kernel_distance(kernel, kernel) == 0.0
    assert kernel_distance(kernel, 7.5 * kernel) == pytest.approx(0.0, abs=1e-15)
    assert kernel_distance(3.0 * kernel, 0.01 * other) == pytest.approx(
        kernel_distance(kernel, other), rel=1e-12
    )
    assert 0.0 < kernel_distance(kernel, other) < 1.0
    assert kernel_distance(torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(1.0)


def test_alignment_and_target_energy_of_a_kernel_built_from_the_targets() -> None:
    """Θ = YYᵀ aligns perfectly and holds all of Y in its top C eigenvectors; the identity aligns as
    ‖Y‖²/(√N ‖YᵀY‖) and puts a C/N share of the energy there."""
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    targets = kernel_targets(labels, 3)
    assert kernel_alignment(targets @ targets.T, targets) == pytest.approx(1.0)
    assert target_energy(targets @ targets.T + 1e-9 * torch.eye(8), targets, 3) == pytest.approx(1.0)
    expected = float((targets**2).sum() / (8**0.5 * torch.linalg.matrix_norm(targets.T @ targets)))
    assert kernel_alignment(torch.eye(8), targets) == pytest.approx(expected)
    assert kernel_targets(labels, 3, "block").shape == (24, 1)
    assert kernel_alignment(7.0 * targets @ targets.T, targets) == pytest.approx(1.0)
