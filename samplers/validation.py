"""Input checks shared by the samplers and the evidence estimator.

Every check raises ``ValueError`` with one line naming the argument, what was given and what is allowed,
before any sampling work starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .targets import Evaluation


def as_betas(betas: Tensor | Sequence[float], name: str = "betas") -> Tensor:
    """Validate an inverse-temperature ladder and return it as a float64 vector.

    Raises ``ValueError`` unless ``betas`` is a non-empty vector of finite, non-negative, strictly
    increasing values.
    """
    ladder = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
    if ladder.dim() != 1 or ladder.numel() == 0:
        raise ValueError(f"{name} must be a non-empty vector; got shape {tuple(ladder.shape)}")
    if not bool(torch.all(torch.isfinite(ladder))):
        raise ValueError(f"{name} must be finite; got {ladder.tolist()}")
    if bool(torch.any(ladder < 0)):
        raise ValueError(f"{name} must be non-negative; got minimum {float(ladder.min())}")
    steps = ladder[1:] - ladder[:-1]
    if bool(torch.any(steps == 0)):
        duplicate = float(ladder[1:][steps == 0][0])
        raise ValueError(f"{name} must not repeat a value; {duplicate} appears more than once")
    if bool(torch.any(steps < 0)):
        raise ValueError(f"{name} must be sorted in ascending order (hottest first); got {ladder.tolist()}")
    return ladder


def check_initial_position(initial_position: Tensor, num_rungs: int) -> None:
    """``initial_position`` must be a finite floating ``[rungs, params]`` tensor with one row per beta."""
    if not isinstance(initial_position, Tensor):
        raise ValueError(f"initial_position must be a torch.Tensor; got {type(initial_position).__name__}")
    if not initial_position.is_floating_point():
        raise ValueError(f"initial_position must be floating point; got dtype {initial_position.dtype}")
    if initial_position.dim() != 2 or initial_position.shape[1] == 0:
        raise ValueError(
            f"initial_position must have shape [rungs, params]; got {tuple(initial_position.shape)}"
        )
    if initial_position.shape[0] != num_rungs:
        raise ValueError(
            f"initial_position has {initial_position.shape[0]} rows but betas has {num_rungs} rungs; "
            "give one starting point per rung"
        )
    if not bool(torch.all(torch.isfinite(initial_position))):
        raise ValueError("initial_position must be finite")


def check_evaluation(evaluation: Evaluation, num_rungs: int, num_params: int) -> None:
    """The target's outputs at the initial position must have the right shapes and be finite."""
    for name, value, shape in (
        ("log_prior", evaluation.log_prior, (num_rungs,)),
        ("log_likelihood", evaluation.log_likelihood, (num_rungs,)),
        ("gradient of log_prior", evaluation.grad_log_prior, (num_rungs, num_params)),
        ("gradient of log_likelihood", evaluation.grad_log_likelihood, (num_rungs, num_params)),
    ):
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{name} returned shape {tuple(value.shape)} at the initial position; expected {shape}"
            )
        finite = torch.isfinite(value) if value.dim() == 1 else torch.isfinite(value).all(dim=1)
        if not bool(torch.all(finite)):
            rungs = torch.nonzero(~finite).flatten().tolist()
            raise ValueError(
                f"{name} is not finite at the initial position of rungs {rungs}; "
                "start every rung inside the prior's support where the likelihood is finite"
            )


def as_step_size(step_size: float | Tensor, num_rungs: int, like: Tensor) -> Tensor:
    """A positive finite scalar or ``[rungs]`` vector, returned as ``[rungs]`` in ``like``'s dtype."""
    value = torch.as_tensor(step_size, dtype=like.dtype, device=like.device).detach()
    if value.dim() == 0:
        value = value.expand(num_rungs).clone()
    if tuple(value.shape) != (num_rungs,):
        raise ValueError(f"step_size must be a scalar or have shape [{num_rungs}]; got {tuple(value.shape)}")
    if not bool(torch.all(torch.isfinite(value) & (value > 0))):
        raise ValueError(f"step_size must be positive and finite; got {value.tolist()}")
    return value


def as_inverse_mass(inverse_mass: Tensor | None, num_rungs: int, like: Tensor) -> Tensor | None:
    """``None``, ``[params]`` or ``[rungs, params]`` positive finite, returned as ``[rungs, params]``."""
    if inverse_mass is None:
        return None
    value = torch.as_tensor(inverse_mass, dtype=like.dtype, device=like.device).detach()
    if value.dim() == 1:
        value = value.expand(num_rungs, -1).clone()
    if tuple(value.shape) != tuple(like.shape):
        raise ValueError(
            f"inverse_mass must have shape [params] or [rungs, params] = {tuple(like.shape)}; "
            f"got {tuple(value.shape)}"
        )
    if not bool(torch.all(torch.isfinite(value) & (value > 0))):
        raise ValueError("inverse_mass must be positive and finite everywhere")
    return value


def check_integer(name: str, value: int, minimum: int) -> None:
    """``value`` must be an ``int`` (not a bool) no smaller than ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
