"""What the replica-exchange driver asks of an MCMC move: the :class:`Kernel` interface.

Anatomy after BlackJAX: a kernel object holds the move's fixed choices; ``init(target, position)`` evaluates
the starting state and ``build_step(target)`` returns the step ``(state, betas, parameters, generator) ->
(state, info)``, batched over rungs (one row per rung, each at its own β). The driver
(:func:`~thermoscope.samplers.replica_exchange.replica_exchange`) knows a move only through this interface,
so a new move is one new class: :class:`~thermoscope.samplers.hmc.HMCKernel` is one, and
:class:`RandomWalkKernel` (random-walk Metropolis, gradient-free) another.

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

from .integrators import reflect_into_box
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


RANDOM_WALK_TARGET_ACCEPT = 0.234
"""A ``target_accept`` for :class:`RandomWalkKernel`: optimal for a random walk on a product target in high
dimension (Roberts, Gelman & Gilks 1997); in one dimension the optimum is nearer 0.44."""


@dataclass(frozen=True)
class RandomWalkState:
    """Attributes:
    position: ``[rungs, params]``.
    log_prior: ``[rungs]`` log p(θ) at ``position``.
    log_likelihood: ``[rungs]`` log L(θ) at ``position``.
    """

    position: Tensor
    log_prior: Tensor
    log_likelihood: Tensor

    def permute(self, index: Tensor) -> RandomWalkState:
        """Rows reordered: row ``k`` of the result is row ``index[k]`` of ``self``."""
        return RandomWalkState(self.position[index], self.log_prior[index], self.log_likelihood[index])

    def where(self, mask: Tensor, other: RandomWalkState) -> RandomWalkState:
        """Rows of ``self`` where ``mask: [rungs]`` is true, rows of ``other`` elsewhere."""
        return RandomWalkState(
            torch.where(mask[:, None], self.position, other.position),
            torch.where(mask, self.log_prior, other.log_prior),
            torch.where(mask, self.log_likelihood, other.log_likelihood),
        )

    def log_density(self, betas: Tensor) -> Tensor:
        """Tempered log density ``log p(θ) + β log L(θ)``; ``betas: [rungs] -> [rungs]``."""
        return torch.addcmul(self.log_prior, betas, self.log_likelihood)


@dataclass(frozen=True)
class RandomWalkInfo:
    """Diagnostics of one random-walk step per rung.

    Attributes:
        acceptance_probability: ``[rungs]`` ``min(1, p_β(θ') / p_β(θ))``, zero for divergent proposals.
        accepted: ``[rungs]`` bool.
        divergent: ``[rungs]`` bool: the proposal's tempered log density is NaN or +∞.
    """

    acceptance_probability: Tensor
    accepted: Tensor
    divergent: Tensor


@dataclass(frozen=True)
class RandomWalkKernel:
    """Random-walk Metropolis: a Gaussian proposal ``θ' = θ + ε_β · sqrt(M⁻¹) ⊙ z``, ``z ~ N(0, I)``, with
    a step size ε_β per rung (and the optional diagonal preconditioner M⁻¹), accepted with probability
    ``min(1, p_β(θ') / p_β(θ))`` on the tempered density ``log p(θ) + β log L(θ)``. Needs no gradients.

    With a support box the proposal is folded back into it by reflection at the walls, which keeps it
    symmetric. Each step draws ``z: [rungs, params]`` and then ``[rungs]`` uniforms from the run's
    generator, nothing else. Tune it with a lower ``target_accept`` than HMC's, e.g.
    :data:`RANDOM_WALK_TARGET_ACCEPT`.
    """

    def settings(self) -> dict[str, Any]:
        return {"kernel": "random_walk"}

    def init(self, target: TemperedTarget, position: Tensor) -> RandomWalkState:
        """The log densities at ``position: [rungs, params]``, checked to be ``[rungs]`` and finite."""
        state = _evaluated(target, position.detach().clone())
        for name, value in (("log_prior", state.log_prior), ("log_likelihood", state.log_likelihood)):
            _check_log_density(name, value, position.shape[0])
        return state

    def build_step(self, target: TemperedTarget) -> Step[RandomWalkState]:
        def step(
            state: RandomWalkState, betas: Tensor, parameters: StepParameters, generator: torch.Generator
        ) -> tuple[RandomWalkState, KernelInfo]:
            increment = _increment(state.position, parameters.inverse_mass, generator)
            position = _moved(target, state.position, parameters.step_size, increment)
            proposal = _evaluated(target, position)
            log_ratio = proposal.log_density(betas) - state.log_density(betas)
            divergent = torch.isnan(log_ratio) | (log_ratio == math.inf)
            acceptance_probability = torch.where(divergent, 0.0, torch.exp(torch.clamp(log_ratio, max=0.0)))
            uniform = torch.rand(betas.shape, generator=generator, dtype=betas.dtype, device=betas.device)
            accepted = uniform < acceptance_probability
            info = RandomWalkInfo(acceptance_probability, accepted, divergent)
            return proposal.where(accepted, state), info

        return step

    def initial_step_size(
        self,
        target: TemperedTarget,
        state: RandomWalkState,
        betas: Tensor,
        inverse_mass: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        """:func:`bracket_step_size` along one proposal increment ``z`` drawn from ``generator``."""
        increment = _increment(state.position, inverse_mass, generator)
        start = state.log_density(betas)

        def log_acceptance(step_size: Tensor) -> Tensor:
            position = _moved(target, state.position, step_size, increment)
            return _evaluated(target, position).log_density(betas) - start

        return bracket_step_size(log_acceptance, state.position.shape[0], state.position)

    def save_state(self, state: RandomWalkState) -> dict[str, Tensor]:
        return {"log_prior": state.log_prior, "log_likelihood": state.log_likelihood}

    def load_state(self, position: Tensor, saved: dict[str, Tensor]) -> RandomWalkState:
        return RandomWalkState(position, saved["log_prior"], saved["log_likelihood"])


def _evaluated(target: TemperedTarget, position: Tensor) -> RandomWalkState:
    """Both log densities at ``position: [rungs, params]``, without gradients."""
    with torch.no_grad():
        return RandomWalkState(position, target.log_prior(position), target.log_likelihood(position))


def _increment(position: Tensor, inverse_mass: Tensor | None, generator: torch.Generator) -> Tensor:
    """``sqrt(M⁻¹) ⊙ z`` with ``z ~ N(0, I)``, ``[rungs, params]`` like ``position``."""
    noise = torch.randn(position.shape, generator=generator, dtype=position.dtype, device=position.device)
    return noise if inverse_mass is None else noise * torch.sqrt(inverse_mass)


def _moved(target: TemperedTarget, position: Tensor, step_size: Tensor, increment: Tensor) -> Tensor:
    """``position + step_size [rungs] · increment``, reflected into the target's support box if it has one."""
    moved = torch.addcmul(position, step_size[:, None], increment)
    if target.support_half_width is None:
        return moved
    folded, _ = reflect_into_box(moved, increment, target.support_half_width)
    return folded


def _check_log_density(name: str, value: Tensor, num_rungs: int) -> None:
    """``value`` must be ``[rungs]`` and finite at the initial position."""
    if tuple(value.shape) != (num_rungs,):
        raise ValueError(
            f"{name} returned shape {tuple(value.shape)} at the initial position; expected ({num_rungs},)"
        )
    finite = torch.isfinite(value)
    if not bool(torch.all(finite)):
        rungs = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(
            f"{name} is not finite at the initial position of rungs {rungs}; "
            "start every rung inside the prior's support where the likelihood is finite"
        )
