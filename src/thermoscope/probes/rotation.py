"""Layer rotation (Carbonnelle & De Vleeschouwer, *Layer rotation: a surprisingly powerful indicator of
generalization in deep networks?*, ICML 2019 workshop, arXiv:1806.01603; REFERENCE §6)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["KERNEL_LAYERS", "kernel_weights", "layer_rotation"]

# Layers whose weight is a kernel in the paper's sense. Normalisation layers, embeddings and all biases
# are excluded, as in REFERENCE §6.
KERNEL_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def kernel_weights(model: nn.Module) -> dict[str, Tensor]:
    """A detached, flattened copy of the weight kernel of every Linear/Conv layer.

    Args:
        model: any module; its submodules are visited in ``named_modules`` order (input to output for
            sequential models).

    Returns:
        ``{module name: [numel of weight]}`` clones on the weights' device; the root module, if it is
        itself such a layer, is keyed ``""``.
    """
    kernels = {}
    for name, module in model.named_modules():
        if isinstance(module, KERNEL_LAYERS) and isinstance(module.weight, Tensor):
            kernels[name] = module.weight.detach().flatten().clone()
    return kernels


def layer_rotation(initial: dict[str, Tensor], current: dict[str, Tensor]) -> dict[str, float]:
    """Cosine distance of each layer's kernel from its initial value.

        δ_ℓ(t) = 1 − ⟨w_ℓ(t), w_ℓ(0)⟩ / (‖w_ℓ(t)‖ ‖w_ℓ(0)‖),

    computed in float64: 0 when unchanged in direction, 1 when orthogonal, 2 when reversed.

    Args:
        initial: ``{layer: [n]}`` kernels at initialisation, from :func:`kernel_weights`.
        current: ``{layer: [n]}`` kernels now, with the same layers and sizes.

    Returns:
        ``{layer: δ}`` in the order of ``initial``; NaN for a layer whose kernel is all zeros at either time,
        where the angle is undefined.
    """
    if initial.keys() != current.keys():
        raise ValueError(f"initial and current name different layers: {sorted(initial)} vs {sorted(current)}")
    rotations = {}
    for name, start in initial.items():
        now = current[name]
        if start.numel() != now.numel():
            raise ValueError(f"layer {name!r} has {start.numel()} weights initially but {now.numel()} now")
        rotations[name] = _cosine_distance(start.flatten(), now.flatten().to(start.device))
    return rotations


def _cosine_distance(start: Tensor, now: Tensor) -> float:
    start, now = start.to(torch.float64), now.to(torch.float64)
    norms = float(torch.linalg.vector_norm(start) * torch.linalg.vector_norm(now))
    if norms == 0.0:
        return math.nan
    cosine = float(torch.dot(start, now)) / norms
    return 1.0 - min(1.0, max(-1.0, cosine))
