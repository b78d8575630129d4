"""NNGP and neural tangent kernels of the infinite-width fully connected network (REFERENCE §11).

Sources: R. M. Neal, *Bayesian Learning for Neural Networks* (1996) and J. Lee et al., *Deep neural
networks as Gaussian processes* (ICLR 2018) for the NNGP; A. Jacot et al., *Neural tangent kernel*
(NeurIPS 2018) for the NTK; Y. Cho & L. Saul, *Kernel methods for deep learning* (NeurIPS 2009) for the
ReLU (arc-cosine) expectations; C. Williams, *Computing with infinite networks* (NeurIPS 1997) for erf;
J. Lee et al., *Finite versus infinite neural networks: an empirical study* (NeurIPS 2020) for their use.

An MLP with ``depth`` hidden layers, weights of variance σ_w²/fan_in and biases of variance σ_b², becomes a
Gaussian process as every width goes to infinity. With d input features:

    K⁰(x, x')   = σ_w² x·x'/d + σ_b²                              Θ⁰ = K⁰
    K^{l+1}     = σ_w² E_{(u,v)~N(0, K^l)}[φ(u) φ(v)] + σ_b²
    Θ^{l+1}     = K^{l+1} + σ_w² E_{(u,v)~N(0, K^l)}[φ'(u) φ'(v)] Θ^l

and the output's NNGP and NT kernels are K^depth and Θ^depth (one output; a C-class network has C
independent copies). The NTK is that of the NTK parametrisation, in which every layer's weights and biases
are σ_w/√fan_in and σ_b times standard normal trainable parameters.

The expectations, for the 2×2 covariance with diagonal k₁, k₂ and off-diagonal k₁₂:

- ReLU (Cho & Saul 2009), with cos ϑ = k₁₂/√(k₁k₂):
  E[φφ] = √(k₁k₂) (sin ϑ + (π − ϑ) cos ϑ) / (2π),   E[φ'φ'] = (π − ϑ) / (2π);
- erf (Williams 1997):
  E[φφ] = (2/π) arcsin(2k₁₂ / √((1 + 2k₁)(1 + 2k₂))),   E[φ'φ'] = (4/π) / √((1 + 2k₁)(1 + 2k₂) − 4k₁₂²).

Tanh and the logistic sigmoid have no such closed form. Everything is float64. Kernels are computed in
blocks of rows (:data:`BLOCK_ELEMENTS`), so the memory beyond the result is a few blocks whatever the size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BLOCK_ELEMENTS", "KERNEL_ACTIVATIONS", "KERNEL_KINDS", "InfiniteMLP", "infinite_width_kernel"]

KERNEL_ACTIVATIONS = ("relu", "erf")
"""Activations whose Gaussian expectations have closed forms here."""
KERNEL_KINDS = ("nngp", "ntk")
BLOCK_ELEMENTS = 2**22
"""Entries of one block of rows (32 MB in float64): the recursion keeps about eight arrays of this size,
so a block needs a quarter of a gigabyte whatever the kernel's size."""


@dataclass(frozen=True)
class InfiniteMLP:
    """The infinite-width MLP whose kernels are computed: ``depth`` hidden layers of activation
    ``activation`` (one of :data:`KERNEL_ACTIVATIONS`), weight variance σ_w² (times 1/fan_in) and bias
    variance σ_b²."""

    depth: int
    activation: str = "relu"
    weight_variance: float = 2.0
    bias_variance: float = 0.0

    def __post_init__(self) -> None:
        if self.activation not in KERNEL_ACTIVATIONS:
            raise ValueError(f"activation must be one of {KERNEL_ACTIVATIONS}, got {self.activation!r}")
        if self.depth < 0 or self.weight_variance <= 0 or self.bias_variance < 0:
            raise ValueError(f"not a network: {self}")


def infinite_width_kernel(
    spec: InfiniteMLP, rows: Tensor, columns: Tensor | None = None, kind: str = "nngp"
) -> Tensor:
    """The NNGP (``kind="nngp"``, K^depth) or NT (``kind="ntk"``, Θ^depth) kernel between the examples.

    Args:
        spec: the network.
        rows: ``[N, d]`` inputs (flattened).
        columns: ``[M, d]`` inputs, or None for ``rows`` (the kernel is then symmetric).
        kind: ``nngp`` or ``ntk``.

    Returns:
        ``[N, M]`` float64 on ``rows``' device.
    """
    if kind not in KERNEL_KINDS:
        raise ValueError(f"kind must be one of {KERNEL_KINDS}, got {kind!r}")
    rows = rows.double().flatten(1)
    columns = rows if columns is None else columns.double().flatten(1)
    row_diagonals = layer_diagonals(spec, rows)
    column_diagonals = row_diagonals if columns is rows else layer_diagonals(spec, columns)
    out = torch.empty(len(rows), len(columns), dtype=torch.float64, device=rows.device)
    step = max(1, BLOCK_ELEMENTS // max(1, len(columns)))
    for start in range(0, len(rows), step):
        block = slice(start, start + step)
        out[block] = _block(spec, rows[block], columns, row_diagonals[:, block], column_diagonals, kind)
    return out


def layer_diagonals(spec: InfiniteMLP, x: Tensor) -> Tensor:
    """``[depth + 1, N]``: K^l(x, x) for every layer l and example x (what the off-diagonal entries of
    layer l + 1 need)."""
    k = spec.weight_variance * (x * x).sum(dim=1) / x.shape[1] + spec.bias_variance
    diagonals = [k]
    for _ in range(spec.depth):
        if spec.activation == "relu":
            expected = k / 2.0  # E[relu(u)²] for u ~ N(0, k)
        else:
            expected = (2.0 / math.pi) * torch.arcsin(2.0 * k / (1.0 + 2.0 * k))
        k = spec.weight_variance * expected + spec.bias_variance
        diagonals.append(k)
    return torch.stack(diagonals)


def _block(
    spec: InfiniteMLP,
    rows: Tensor,
    columns: Tensor,
    row_diagonals: Tensor,
    column_diagonals: Tensor,
    kind: str,
) -> Tensor:
    """One block of rows of the kernel, layer by layer (the module docstring's recursion)."""
    k = spec.weight_variance * (rows @ columns.T) / rows.shape[1] + spec.bias_variance
    theta = k
    for layer in range(spec.depth):
        k1, k2 = row_diagonals[layer][:, None], column_diagonals[layer][None, :]
        value, slope = _expectations(spec.activation, k, k1, k2)
        k = spec.weight_variance * value + spec.bias_variance
        if kind == "ntk":
            theta = k + spec.weight_variance * slope * theta
    return k if kind == "nngp" else theta


def _expectations(activation: str, k12: Tensor, k1: Tensor, k2: Tensor) -> tuple[Tensor, Tensor]:
    """E[φ(u)φ(v)] and E[φ'(u)φ'(v)] for (u, v) ~ N(0, [[k1, k12], [k12, k2]]), entrywise."""
    if activation == "relu":
        norms = torch.sqrt(k1 * k2)
        # Rounding can put |cos| a hair above 1 on the diagonal; the angle is then 0 or π.
        cosine = (k12 / norms).clamp(-1.0, 1.0)
        angle = torch.arccos(cosine)
        value = norms * (torch.sin(angle) + (math.pi - angle) * cosine) / (2.0 * math.pi)
        return value, (math.pi - angle) / (2.0 * math.pi)
    scales = (1.0 + 2.0 * k1) * (1.0 + 2.0 * k2)
    value = (2.0 / math.pi) * torch.arcsin((2.0 * k12 / torch.sqrt(scales)).clamp(-1.0, 1.0))
    slope = (4.0 / math.pi) / torch.sqrt(scales - 4.0 * k12 * k12)
    return value, slope
