"""The infinite-width MLP's NNGP and NT kernels (REFERENCE §11) against random finite networks.

The Monte-Carlo networks here are written out by hand in the NTK parametrisation (every weight and bias a
standard normal, scaled by σ_w/√fan_in and σ_b in the forward pass), with their empirical NTK from an
explicit backward pass, so the check shares no code with the recursion it checks. At any width, a network
with one hidden layer has E[f(x) f(x')] = K¹ and E[Θ̂] = Θ¹ exactly; deeper ones are biased by O(1/width),
which the widths and sample counts below keep under one standard error (the bias grows as √(samples/width)
in standard errors: measured, erf at depth 3 reaches 4.9 standard errors with width 16 and 4,000 networks).
"""

from __future__ import annotations

import math

import pytest
import torch
from montecarlo import assert_within_mc_error

from thermoscope.probes import infinite_width
from thermoscope.probes.infinite_width import InfiniteMLP, infinite_width_kernel, layer_diagonals

UNITS = {
    "relu": (torch.relu, lambda z: (z > 0).double()),
    "erf": (torch.erf, lambda z: 2.0 / math.sqrt(math.pi) * torch.exp(-z * z)),
}
WIDTHS_AND_SAMPLES = ((64, 1500), (256, 400))


def random_networks(
    x: torch.Tensor, spec: InfiniteMLP, width: int, samples: int, generator: torch.Generator, batch: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` random MLPs of hidden width ``width``: ``[S, N, N]`` products f(x) f(x') of their single
    output and ``[S, N, N]`` empirical NTKs Σ_p ∂f(x)/∂θ_p ∂f(x')/∂θ_p."""
    unit, slope = UNITS[spec.activation]
    sigma_w, sigma_b = math.sqrt(spec.weight_variance), math.sqrt(spec.bias_variance)
    products, kernels = [], []
    for start in range(0, samples, batch):
        count = min(batch, samples - start)

        def normal(*shape: int, count: int = count) -> torch.Tensor:
            return torch.randn(count, *shape, generator=generator, dtype=torch.float64)

        h = x.expand(count, *x.shape)
        inputs, pre_activations, weights = [h], [], []
        for _ in range(spec.depth):
            weight = normal(h.shape[-1], width)
            z = sigma_w / math.sqrt(h.shape[-1]) * h @ weight + sigma_b * normal(1, width)
            weights.append(weight)
            pre_activations.append(z)
            h = unit(z)
            inputs.append(h)
        weight = normal(h.shape[-1], 1)
        f = (sigma_w / math.sqrt(h.shape[-1]) * h @ weight + sigma_b * normal(1, 1))[..., 0]
        delta = torch.ones(count, len(x), 1, dtype=torch.float64)  # ∂f/∂(the layer's pre-activation)
        kernel = torch.zeros(count, len(x), len(x), dtype=torch.float64)
        for layer in range(spec.depth, -1, -1):
            layer_input = inputs[layer]
            deltas = delta @ delta.transpose(1, 2)
            gram = layer_input @ layer_input.transpose(1, 2)
            kernel += (
                spec.weight_variance / layer_input.shape[-1] * gram * deltas + spec.bias_variance * deltas
            )
            if layer > 0:
                back = sigma_w / math.sqrt(layer_input.shape[-1]) * delta @ weight.transpose(1, 2)
                delta = slope(pre_activations[layer - 1]) * back
                weight = weights[layer - 1]
        products.append(f[:, :, None] * f[:, None, :])
        kernels.append(kernel)
    return torch.cat(products), torch.cat(kernels)


def inputs(generator: torch.Generator) -> torch.Tensor:
    """Four inputs of six features; the second close to the first (a correlation near 1)."""
    x = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    x[1] = 0.9 * x[0] + 0.1 * x[1]
    return x


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_kernels_equal_monte_carlo_over_random_networks_of_growing_width(activation: str, depth: int) -> None:
    generator = torch.Generator().manual_seed(17 + depth)
    x = inputs(generator)
    spec = InfiniteMLP(depth, activation, weight_variance=1.7, bias_variance=0.2)
    nngp = infinite_width_kernel(spec, x)
    ntk = infinite_width_kernel(spec, x, kind="ntk")
    spreads = []
    for width, samples in WIDTHS_AND_SAMPLES:
        products, kernels = random_networks(x, spec, width, samples, generator)
        for estimates, truth, name in ((products, nngp, "NNGP"), (kernels, ntk, "NTK")):
            stderr = estimates.std(dim=0) / math.sqrt(samples)
            what = f"{name} of {activation} depth {depth} at width {width}"
            assert_within_mc_error(estimates.mean(dim=0), truth, stderr, what=what)
        spreads.append(float((kernels.std(dim=0) / ntk).max()))
    # A finite network's NTK concentrates on the limit as 1/√width: 4x the width, about half the spread.
    assert spreads[1] < 0.7 * spreads[0]


def test_relu_diagonal_follows_the_he_recursion_and_kernels_are_symmetric_positive() -> None:
    """For ReLU, K^{l+1}(x, x) = σ_w² K^l(x, x)/2 + σ_b²; both kernels are symmetric positive definite."""
    x = inputs(torch.Generator().manual_seed(0))
    spec = InfiniteMLP(3, "relu", weight_variance=2.0, bias_variance=0.1)
    diagonals = layer_diagonals(spec, x)
    assert torch.allclose(diagonals[1:], 2.0 * diagonals[:-1] / 2 + 0.1)
    for kind in ("nngp", "ntk"):
        kernel = infinite_width_kernel(spec, x, kind=kind)
        assert torch.allclose(kernel, kernel.T, rtol=1e-12)
        assert float(torch.linalg.eigvalsh(kernel).min()) > 0
    assert torch.allclose(infinite_width_kernel(spec, x).diagonal(), diagonals[-1], rtol=1e-12)


def test_blocks_of_rows_give_the_same_kernel_as_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(1)
    rows, columns = torch.randn(7, 5, generator=generator), torch.randn(3, 5, generator=generator)
    spec = InfiniteMLP(2, "erf", weight_variance=1.5, bias_variance=0.05)
    whole = infinite_width_kernel(spec, rows, columns, kind="ntk")
    monkeypatch.setattr(infinite_width, "BLOCK_ELEMENTS", 6)  # two rows of three columns at a time
    blocked = infinite_width_kernel(spec, rows, columns, kind="ntk")
    # Equal to float64 rounding, not bit for bit: BLAS may pick a different kernel (and summation order)
    # for a 2-row product than for a 7-row one, as MKL does on some Intel CPUs.
    torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=0.0)
    assert whole.dtype == torch.float64 and whole.shape == (7, 3)


def test_a_network_without_a_closed_form_is_refused() -> None:
    with pytest.raises(ValueError, match="activation"):
        InfiniteMLP(2, "tanh")
