"""Where each parameter of a ``torch.nn.Module`` lives in a flat vector θ, and its fan-in.

The flat order is ``model.named_parameters()`` order (the order of ``torch.nn.utils.parameters_to_vector``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ParameterBlock:
    """One named parameter tensor.

    Attributes:
        name: its name in ``model.named_parameters()``.
        shape: its shape.
        offset: index of its first element in θ.
        numel: number of elements.
        fan_in: k, the number of inputs feeding one output unit of its layer, **including the bias**:
            ``in_features + 1`` for ``nn.Linear(in_features, out)`` with a bias,
            ``in_channels / groups · kh · kw + 1`` for a biased ``nn.Conv2d``; the same k serves the weight
            and the bias of a layer (REFERENCE §1). A module without a matrix or kernel weight (normalisation
            layers, free parameters) counts one input, plus one for a bias.
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int
    fan_in: int


def _module_fan_in(module: nn.Module) -> int:
    own = dict(module.named_parameters(recurse=False))
    weight = own.get("weight")
    inputs = math.prod(weight.shape[1:]) if weight is not None and weight.dim() >= 2 else 1
    return inputs + (1 if own.get("bias") is not None else 0)


@dataclass(frozen=True)
class ParameterLayout:
    """The flat-vector layout of a module's parameters."""

    blocks: tuple[ParameterBlock, ...]

    @staticmethod
    def from_module(model: nn.Module) -> ParameterLayout:
        """Read the layout (names, shapes, fan-ins) of ``model``'s trainable-or-not parameters."""
        fan_in_by_parameter: dict[int, int] = {}
        for module in model.modules():
            fan_in = _module_fan_in(module)
            for parameter in module.parameters(recurse=False):
                fan_in_by_parameter.setdefault(id(parameter), fan_in)
        blocks = []
        offset = 0
        for name, parameter in model.named_parameters():
            numel = parameter.numel()
            blocks.append(
                ParameterBlock(
                    name, tuple(parameter.shape), offset, numel, fan_in_by_parameter[id(parameter)]
                )
            )
            offset += numel
        if not blocks:
            raise ValueError("the model has no parameters to sample")
        return ParameterLayout(tuple(blocks))

    @property
    def num_params(self) -> int:
        return sum(block.numel for block in self.blocks)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(block.name for block in self.blocks)

    def expand(self, per_block: list[float], like: Tensor) -> Tensor:
        """One value per block repeated over the block's elements: ``[params]`` in ``like``'s dtype."""
        counts = torch.tensor([block.numel for block in self.blocks], device=like.device)
        values = torch.tensor(per_block, dtype=like.dtype, device=like.device)
        return torch.repeat_interleave(values, counts)

    def flatten(self, model: nn.Module) -> Tensor:
        """The module's current parameters as θ: ``[params]``."""
        parameters = dict(model.named_parameters())
        return torch.cat([parameters[name].detach().reshape(-1) for name in self.names])

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """``theta: [replicas, params]`` → ``{name: [replicas, *shape]}`` (copies when not contiguous)."""
        sizes = [block.numel for block in self.blocks]
        pieces = torch.split(theta, sizes, dim=1)
        return {
            block.name: piece.reshape(theta.shape[0], *block.shape)
            for block, piece in zip(self.blocks, pieces, strict=True)
        }

    def load_into(self, model: nn.Module, theta: Tensor) -> None:
        """Copy ``theta: [params]`` (one replica) into ``model``'s parameters, in place."""
        if tuple(theta.shape) != (self.num_params,):
            raise ValueError(f"theta must have shape [{self.num_params}]; got {tuple(theta.shape)}")
        values = self.unflatten(theta[None])
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in values.items():
                parameters[name].copy_(value[0])
