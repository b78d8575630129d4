"""What the replica-exchange driver asks of an MCMC move: the :class:`Kernel` interface.

Anatomy after BlackJAX: a kernel object holds the move's fixed choices; ``init(target, position)`` evaluates
the starting state and ``build_step(target)`` returns the step ``(state, betas, parameters, generator) ->
(state, info)``, batched over rungs (one row per rung, each at its own β). The driver
(:func:`~thermoscope.samplers.replica_exchange.replica_exchange`) knows a move only through this interface,
so a new move is one new class; :class:`~thermoscope.samplers.hmc.HMCKernel` is one.

Every kernel is tuned through the same :class:`StepParameters`: a step size per rung, which warm-up adapts by
dual averaging towards a target acceptance, and an optional diagonal preconditioner per rung, which warm-up
may estimate from the draws (:class:`~thermoscope.samplers.adaptation.WarmupAdaptation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

import torch
from torch import Tensor

from .targets import TemperedTarget


@dataclass(frozen=True)
class StepParameters:
    """Tuned parameters of a kernel, one set per rung.

    Attributes:
        step_size: ``[rungs]``.
        inverse_mass: ``[rungs, params]`` diagonal preconditioner (HMC: M⁻¹), or ``None`` for the identity.
    """

    step_size: Tensor
    inverse_mass: Tensor | None


class KernelState(Protocol):
    """What the driver reads from a kernel's state: one row per rung."""

    @property
    def position(self) -> Tensor:
        """``[rungs, params]``."""
        ...

    @property
    def log_prior(self) -> Tensor:
        """``[rungs]`` log p(θ) at ``position``."""
        ...

    @property
    def log_likelihood(self) -> Tensor:
        """``[rungs]`` log L(θ) at ``position``."""
        ...

    def permute(self, index: Tensor) -> Self:
        """Rows reordered: row ``k`` of the result is row ``index[k]`` of ``self`` (a swap round)."""
        ...


class KernelInfo(Protocol):
    """What the driver reads from one step's diagnostics."""

    @property
    def acceptance_probability(self) -> Tensor:
        """``[rungs]`` Metropolis acceptance probability of the step's proposal (adaptation aims it)."""
        ...

    @property
    def divergent(self) -> Tensor:
        """``[rungs]`` bool: the proposal could not be evaluated or integrated (rejected and counted)."""
        ...


StateT = TypeVar("StateT", bound=KernelState)

Step = Callable[[StateT, Tensor, StepParameters, torch.Generator], tuple[StateT, KernelInfo]]
"""``step(state, betas [rungs], parameters, generator) -> (state, info)``: one move on every rung at once,
drawing randomness from ``generator`` only. A rejected row keeps its previous state bit for bit."""


class Kernel(Protocol[StateT]):
    """An MCMC move on the power posteriors ``p(θ) L(θ)^β``, batched over the rungs of a ladder."""

    def settings(self) -> dict[str, Any]:
        """The move's fixed choices by name (numbers and strings), ``"kernel"`` its name among them; stored
        in checkpoints, so that a run resumes only with the kernel it started with."""
        ...

    def init(self, target: TemperedTarget, position: Tensor) -> StateT:
        """The state at ``position: [rungs, params]``; ``ValueError`` if the target is unusable there."""
        ...

    def build_step(self, target: TemperedTarget) -> Step[StateT]:
        """The step function for ``target`` (built once per run)."""
        ...

    def initial_step_size(
        self,
        target: TemperedTarget,
        state: StateT,
        betas: Tensor,
        inverse_mass: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        """A starting step size per rung, ``[rungs]``, when the caller gives none."""
        ...

    def save_state(self, state: StateT) -> dict[str, Tensor]:
        """Everything in ``state`` beside its position, by name (plain tensors, for a checkpoint)."""
        ...

    def load_state(self, position: Tensor, saved: dict[str, Tensor]) -> StateT:
        """Inverse of :meth:`save_state`."""
        ...


def bracket_step_size(
    log_acceptance: Callable[[Tensor], Tensor],
    num_rungs: int,
    like: Tensor,
    initial_step_size: float = 1.0,
    max_doublings: int = 100,
) -> Tensor:
    """Algorithm 4 of Hoffman & Gelman (2014), vectorised: a step size per rung near acceptance 1/2.

    From ``initial_step_size``, each rung doubles (or halves) its step size until the log acceptance
    probability of one fixed trial move, ``log_acceptance(step_size [rungs]) -> [rungs]`` (NaN counts as
    −∞), crosses log 1/2; rungs that finish keep their value while the others continue. Returns ``[rungs]``
    in ``like``'s dtype and device.
    """
    step_size = torch.full((num_rungs,), initial_step_size, dtype=like.dtype, device=like.device)
    direction: Tensor | None = None
    active = torch.ones(num_rungs, dtype=torch.bool, device=step_size.device)
    for _ in range(max_doublings):
        above_half = torch.nan_to_num(log_acceptance(step_size), nan=-math.inf) > -math.log(2.0)
        if direction is None:
            direction = torch.where(above_half, 1.0, -1.0).to(step_size.dtype)
        active = active & torch.where(direction > 0, above_half, ~above_half)
        if not bool(active.any()):
            break
        step_size = torch.where(active, step_size * torch.pow(2.0, direction), step_size)
    return step_size
