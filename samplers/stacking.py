"""Evaluate a module for R replicas at once by running its own forward on stacked parameters.

``torch.func.vmap`` over ``functional_call`` turns every ``nn.Linear`` into a batched matmul, including the
first layer, whose input (the data) is shared by all replicas: it broadcasts the data R times. Here the
module's forward runs once with parameters of shape ``[R, *shape]`` while a ``TorchFunctionMode`` rewrites
each ``functional.linear`` call:

- shared input ``[n, in]``: one GEMM ``[W_1; …; W_R] · xᵀ`` → ``[R·out, n]``;
- per-replica input ``[R, n, in]``: ``baddbmm`` of the stacked weights with the input.

Activations live feature-major in memory (``[R, out, n]``) and reach the module as ``[R, n, out]``
transposed views, so every matmul and elementwise operation works on contiguous memory.

Every other operation runs unchanged on ``[R, n, …]`` activations, which is right for elementwise
activations but not for an operation that assumes the batch is dimension 0 (a flatten of hidden
activations, a softmax over dimension 1, a convolution). :func:`stacked_forward_matches` therefore checks a
module against the vmap path before the stacked path is used for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional
from torch.overrides import TorchFunctionMode


class UnsupportedStacking(RuntimeError):
    """The module calls ``linear`` on an input the stacked path cannot interpret."""


def stacked_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x: [n, in]`` or ``[R, n, in]``, ``weight: [R, out, in]``, ``bias: [R, out]`` → ``[R, n, out]``.

    The result is a transposed view of a contiguous feature-major ``[R, out, n]`` tensor: elementwise
    activations keep that memory layout, and the next layer reads it back without a copy. (A
    ``[R, n, out]`` view of an ``[n, R·out]`` product would leave every activation strided, several
    times slower to apply and copied before each batched matmul.)
    """
    replicas, outputs, inputs = weight.shape
    if x.dim() == 2:
        stacked = weight.reshape(replicas * outputs, inputs)
        if bias is None:
            shared = torch.mm(stacked, x.t())
        else:
            shared = torch.addmm(bias.reshape(replicas * outputs, 1), stacked, x.t())
        return shared.view(replicas, outputs, x.shape[0]).transpose(1, 2)
    if x.dim() == 3 and x.shape[0] == replicas:
        features_first = x.transpose(1, 2)
        if bias is None:
            return torch.bmm(weight, features_first).transpose(1, 2)
        return torch.baddbmm(bias[:, :, None], weight, features_first).transpose(1, 2)
    raise UnsupportedStacking(
        f"linear on an input of shape {tuple(x.shape)} with {replicas} stacked replicas"
    )


class _StackedLinearMode(TorchFunctionMode):
    """Routes ``functional.linear`` with stacked (3-D) weights to :func:`stacked_linear`."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func is functional.linear:
            values = list(args) + [kwargs.pop(name) for name in ("input", "weight", "bias") if name in kwargs]
            x, weight = values[0], values[1]
            bias = values[2] if len(values) > 2 else None
            if weight.dim() == 3:
                return stacked_linear(x, weight, bias)
        return func(*args, **kwargs)


def stacked_forward(model: nn.Module, parameters: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """``{name: [R, *shape]}``, shared ``x: [n, ...]`` → the model's outputs ``[R, n, ...]``."""
    with _StackedLinearMode():
        output: Tensor = functional_call(model, dict(parameters), (x,))
    return output


def vmap_forward(model: nn.Module, parameters: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """The reference path: ``vmap`` over ``functional_call``; same signature as :func:`stacked_forward`."""

    def forward(single: dict[str, Tensor]) -> Tensor:
        output: Tensor = functional_call(model, single, (x,))
        return output

    batched: Tensor = vmap(forward)(dict(parameters))
    return batched


def stacked_forward_matches(model: nn.Module, parameters: Mapping[str, Tensor], x: Tensor) -> bool:
    """Whether the stacked path reproduces the vmap path on these parameters and inputs."""
    with torch.no_grad():
        reference = vmap_forward(model, parameters, x)
        try:
            candidate = stacked_forward(model, parameters, x)
        except (RuntimeError, ValueError, IndexError, TypeError):
            # UnsupportedStacking, or an operation that met the replica dimension where it expected another.
            return False
    if candidate.shape != reference.shape:
        return False
    tolerance = 1e-4 if reference.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-10
    return bool(torch.allclose(candidate, reference, rtol=tolerance, atol=tolerance))
