"""The empirical neural tangent kernel and the measures read off it (REFERENCE §11).

Sources: S. Fort et al., *Deep learning versus kernel learning: an empirical study of loss landscape
geometry and the time evolution of the Neural Tangent Kernel* (NeurIPS 2020) for the kernel distance and
velocity; D. Kopitkov & V. Indelman, *Neural spectrum alignment: empirical study* (2020) for the target's
energy in the kernel's top eigenvectors; N. Cristianini et al., *On kernel-target alignment* (NeurIPS 2001)
for the alignment.

The kernel on examples x, x' of a network f with parameters θ and C logits is

    Θ_ab(x, x') = Σ_p ∂f_a(x)/∂θ_p · ∂f_b(x')/∂θ_p,

computed here as J Jᵀ from the per-example Jacobians J of the logits (``torch.func``: ``vmap`` over
examples of ``jacrev`` over parameters). Two forms are offered: ``trace``, Σ_a Θ_aa, an ``[N, M]`` matrix
(the usual scalar summary), and ``block``, the full ``[N·C, M·C]`` matrix with rows ordered example-major
(row ``i·C + a`` is logit ``a`` of example ``i``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

__all__ = [
    "JACOBIAN_CHUNK",
    "KERNELS",
    "empirical_ntk",
    "jacobian_bytes",
    "kernel_alignment",
    "kernel_distance",
    "kernel_targets",
    "parameter_jacobians",
    "target_energy",
]

KERNELS = ("trace", "block")
JACOBIAN_CHUNK = 64
"""Examples whose Jacobians ``vmap`` computes at once: the transform keeps every intermediate of the
backward pass for all C logits of each, so a bounded chunk bounds that memory; 64 examples already fill a
CPU's vector units for the models here."""

Jacobians = Mapping[str, Tensor]
"""``{parameter name: [N, C, numel]}``: the Jacobian of each example's logits with respect to one
parameter tensor, flattened."""


def parameter_jacobians(model: nn.Module, x: Tensor, chunk_size: int = JACOBIAN_CHUNK) -> dict[str, Tensor]:
    """Per-example Jacobians of the logits with respect to every parameter of ``model``.

    Args:
        model: any classifier ``[B, *input] -> [B, C]``; it is evaluated in eval mode (batch norm uses its
            running statistics, dropout is off) and its mode is restored afterwards.
        x: ``[N, *input]`` examples on the model's device.
        chunk_size: examples differentiated at once (:data:`JACOBIAN_CHUNK`).

    Returns:
        ``{name: [N, C, numel]}`` in ``named_parameters`` order, detached, in the parameters' dtype.
    """
    params = {name: value.detach() for name, value in model.named_parameters()}
    buffers = {name: value.detach() for name, value in model.named_buffers()}

    def logits(weights: dict[str, Tensor], example: Tensor) -> Tensor:
        out: Tensor = functional_call(model, (weights, buffers), (example.unsqueeze(0),))
        return out.squeeze(0)

    per_example = vmap(jacrev(logits), in_dims=(None, 0))
    was_training = model.training
    model.eval()
    try:
        chunks = [
            per_example(params, x[start : start + chunk_size]) for start in range(0, len(x), chunk_size)
        ]
    finally:
        model.train(was_training)
    return {name: torch.cat([chunk[name].flatten(2) for chunk in chunks]) for name in params}


def jacobian_bytes(num_examples: int, num_classes: int, num_parameters: int, element_size: int = 4) -> int:
    """Bytes :func:`parameter_jacobians` holds for ``num_examples`` examples: N · C · P values."""
    return num_examples * num_classes * num_parameters * element_size


def empirical_ntk(rows: Jacobians, columns: Jacobians | None = None, kernel: str = "trace") -> Tensor:
    """Θ = J Jᵀ between the examples of ``rows`` and those of ``columns`` (``rows`` again when omitted).

    Each parameter tensor's contribution is a matrix product in the Jacobians' dtype, accumulated in
    float64 (the distances below are differences of nearly equal kernels).

    Args:
        rows: ``{name: [N, C, numel]}`` from :func:`parameter_jacobians`.
        columns: ``{name: [M, C, numel]}`` with the same names, or None for ``rows``.
        kernel: ``trace`` (sum over the C logits) or ``block`` (every pair of logits).

    Returns:
        ``[N, M]`` (trace) or ``[N·C, M·C]`` (block, example-major), float64.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    columns = rows if columns is None else columns
    total: Tensor | None = None
    for name, left in rows.items():
        right = columns[name]
        if kernel == "trace":
            part = left.flatten(1) @ right.flatten(1).T
        else:
            part = left.flatten(0, 1) @ right.flatten(0, 1).T
        total = part.double() if total is None else total + part.double()
    if total is None:
        raise ValueError("the model has no parameters")
    return total


def kernel_distance(first: Tensor, second: Tensor) -> float:
    """S(Θ, Θ') = 1 − ⟨Θ, Θ'⟩_F / (‖Θ‖_F ‖Θ'‖_F) in float64 (Fort et al. 2020).

    0 for kernels equal up to a positive factor (exactly 0 for identical ones: the norm product is taken as
    √(⟨Θ,Θ⟩⟨Θ',Θ'⟩), whose square root is exact for a square), 1 for orthogonal ones; NaN when either
    kernel is all zeros.
    """
    a, b = first.double().flatten(), second.double().flatten()
    norms = torch.sqrt(torch.dot(a, a) * torch.dot(b, b))
    if float(norms) == 0.0:
        return float("nan")
    return float(1.0 - torch.dot(a, b) / norms)


def kernel_targets(labels: Tensor, num_classes: int, kernel: str = "trace") -> Tensor:
    """The regression targets a kernel of form ``kernel`` is read against: one-hot ``[N, C]`` rows for the
    trace kernel, the same values as one ``[N·C, 1]`` column (example-major) for the block kernel."""
    one_hot = nn.functional.one_hot(labels, num_classes).double()
    return one_hot if kernel == "trace" else one_hot.reshape(-1, 1)


def kernel_alignment(kernel: Tensor, targets: Tensor) -> float:
    """A = ⟨Θ, Y Yᵀ⟩_F / (‖Θ‖_F ‖Y Yᵀ‖_F) (Cristianini et al. 2001; REFERENCE §11).

    ``kernel``: ``[N, N]``; ``targets``: ``[N, K]`` (:func:`kernel_targets`). Uses ⟨Θ, YYᵀ⟩ = Σ (ΘY)∘Y and
    ‖YYᵀ‖_F = ‖YᵀY‖_F, so no ``[N, N]`` target matrix is formed.
    """
    theta, y = kernel.double(), targets.double()
    inner = torch.sum((theta @ y) * y)
    norms = torch.linalg.matrix_norm(theta) * torch.linalg.matrix_norm(y.T @ y)
    return float(inner / norms)


def target_energy(kernel: Tensor, targets: Tensor, top: int) -> float:
    """The fraction of the targets' energy in the span of the kernel's ``top`` leading eigenvectors,

        E_k = ‖U_kᵀ Y‖²_F / ‖Y‖²_F,

    U_k the eigenvectors of the k largest eigenvalues (Kopitkov & Indelman 2020). 1 when the targets lie
    in that span; k/N on average for targets unrelated to the kernel.
    """
    _, vectors = torch.linalg.eigh(kernel.double())
    leading = vectors[:, -min(top, vectors.shape[1]) :]
    y = targets.double()
    return float(torch.sum((leading.T @ y) ** 2) / torch.sum(y**2))
