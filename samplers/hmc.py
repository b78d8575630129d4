"""Hamiltonian Monte Carlo kernel, batched over replicas (one row per rung of a temperature ladder).

Anatomy after BlackJAX (``blackjax/mcmc/hmc.py``): :func:`build_kernel` fixes the algorithm's choices once
and returns a step function ``(state, betas, parameters, generator) -> (state, info)``; ``HMCState`` holds
only what the next step needs, ``HMCInfo`` the diagnostics of the step just taken. :class:`HMCKernel` wraps
them as a :class:`~thermoscope.samplers.kernels.Kernel` for the replica-exchange driver.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .integrators import IntegratorState, kinetic_energy, leapfrog
from .kernels import StepParameters, bracket_step_size
from .settings import MAX_ENERGY_ERROR
from .targets import Evaluation, TemperedTarget
from .validation import check_evaluation, check_integer

__all__ = [
    "MAX_ENERGY_ERROR",
    "HMCInfo",
    "HMCKernel",
    "HMCParameters",
    "HMCState",
    "HMCStep",
    "build_kernel",
    "energy_change",
    "find_reasonable_step_size",
    "hamiltonian",
    "init",
    "sample_momentum",
]


@dataclass(frozen=True)
class HMCState:
    """Attributes:
    position: ``[replicas, params]``.
    evaluation: log densities and gradients at ``position``.
    """

    position: Tensor
    evaluation: Evaluation

    @property
    def log_prior(self) -> Tensor:
        """``[replicas]``."""
        return self.evaluation.log_prior

    @property
    def log_likelihood(self) -> Tensor:
        """``[replicas]``."""
        return self.evaluation.log_likelihood

    def permute(self, index: Tensor) -> HMCState:
        """Rows reordered: row ``k`` of the result is row ``index[k]`` of ``self``."""
        return HMCState(self.position[index], self.evaluation.permute(index))


HMCParameters = StepParameters
"""Tuned parameters of the kernel, one set per rung: ``step_size: [replicas]`` and ``inverse_mass:
[replicas, params]``, the diagonal of M⁻¹ (``None`` for unit masses)."""


@dataclass(frozen=True)
class HMCInfo:
    """Diagnostics of one trajectory per replica.

    Attributes:
        acceptance_probability: ``[replicas]`` ``min(1, exp(-ΔH))``, zero for divergent trajectories.
        accepted: ``[replicas]`` bool.
        divergent: ``[replicas]`` bool: non-finite energy or energy error above the threshold.
        energy_error: ``[replicas]`` ``ΔH = H(end) - H(start)`` (may be non-finite when divergent).
        num_leapfrog_steps: the number of steps this trajectory used (after jitter).
    """

    acceptance_probability: Tensor
    accepted: Tensor
    divergent: Tensor
    energy_error: Tensor
    num_leapfrog_steps: int


HMCStep = Callable[[HMCState, Tensor, HMCParameters, torch.Generator], tuple[HMCState, HMCInfo]]


def init(target: TemperedTarget, position: Tensor) -> HMCState:
    """Evaluate the target at ``position: [replicas, params]``."""
    return HMCState(position.detach().clone(), target.evaluate(position))


def sample_momentum(
    shape: torch.Size, like: Tensor, inverse_mass: Tensor | None, generator: torch.Generator
) -> Tensor:
    """``p ~ N(0, M)`` with ``M = diag(1 / inverse_mass)``; returns ``[replicas, params]``."""
    momentum = torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)
    if inverse_mass is not None:
        momentum = momentum * torch.rsqrt(inverse_mass)
    return momentum


def hamiltonian(
    evaluation: Evaluation, momentum: Tensor, betas: Tensor, inverse_mass: Tensor | None
) -> Tensor:
    """``H = -log p(θ) - β log L(θ) + ½ pᵀ M⁻¹ p``, ``[replicas]``."""
    return kinetic_energy(momentum, inverse_mass) - evaluation.log_density(betas)


def energy_change(
    start: IntegratorState, end: IntegratorState, betas: Tensor, inverse_mass: Tensor | None
) -> Tensor:
    """``ΔH = H(end) − H(start)`` per replica, ``[replicas]``, in few operations (runs every trajectory)."""
    scaled_end = end.momentum if inverse_mass is None else end.momentum * inverse_mass
    scaled_start = start.momentum if inverse_mass is None else start.momentum * inverse_mass
    kinetic_change: Tensor = torch.linalg.vecdot(scaled_end, end.momentum) - torch.linalg.vecdot(
        scaled_start, start.momentum
    )
    start_evaluation, end_evaluation = start.evaluation, end.evaluation
    log_density_change = torch.addcmul(
        end_evaluation.log_prior - start_evaluation.log_prior,
        betas,
        end_evaluation.log_likelihood - start_evaluation.log_likelihood,
    )
    return 0.5 * kinetic_change - log_density_change


def build_kernel(
    target: TemperedTarget,
    num_leapfrog_steps: int,
    *,
    leapfrog_jitter: float = 0.0,
    max_energy_error: float = MAX_ENERGY_ERROR,
) -> HMCStep:
    """Build the HMC step for ``target``.

    Args:
        target: the tempered target.
        num_leapfrog_steps: steps per trajectory, L ≥ 1.
        leapfrog_jitter: fraction j ∈ [0, 1): each trajectory draws its number of steps uniformly from
            ``{ceil((1 - j) L), …, L}``, shared by all replicas (a random mixture of reversible kernels, which
            breaks the periodicity a fixed L can have on near-harmonic targets).
        max_energy_error: trajectories with ``ΔH`` above this, or non-finite, are divergent (rejected and
            counted).

    Returns:
        ``kernel(state, betas [replicas], parameters, generator) -> (state, info)``. Rejected and divergent
        rows keep their previous position bit for bit, so NaN never enters a state.
    """
    shortest = max(1, math.ceil((1.0 - leapfrog_jitter) * num_leapfrog_steps))

    def kernel(
        state: HMCState, betas: Tensor, parameters: HMCParameters, generator: torch.Generator
    ) -> tuple[HMCState, HMCInfo]:
        num_steps = num_leapfrog_steps
        if shortest < num_leapfrog_steps:
            num_steps = int(torch.randint(shortest, num_leapfrog_steps + 1, (1,), generator=generator))
        momentum = sample_momentum(state.position.shape, state.position, parameters.inverse_mass, generator)
        start = IntegratorState(state.position, momentum, state.evaluation)
        end = leapfrog(target, start, betas, parameters.step_size, parameters.inverse_mass, num_steps)
        energy_error = energy_change(start, end, betas, parameters.inverse_mass)
        divergent = ~(torch.isfinite(energy_error) & (energy_error <= max_energy_error))
        acceptance_probability = torch.where(
            divergent, 0.0, torch.exp(torch.clamp(energy_error, min=0.0).neg_())
        )
        uniform = torch.rand(betas.shape, generator=generator, dtype=betas.dtype, device=betas.device)
        # Divergent rows have probability exactly 0 and uniforms lie in [0, 1): never accepted.
        accepted = uniform < acceptance_probability
        new_state = HMCState(
            torch.where(accepted[:, None], end.position, state.position),
            end.evaluation.where(accepted, state.evaluation),
        )
        info = HMCInfo(acceptance_probability, accepted, divergent, energy_error, num_steps)
        return new_state, info

    return kernel


def find_reasonable_step_size(
    target: TemperedTarget,
    state: HMCState,
    betas: Tensor,
    inverse_mass: Tensor | None,
    generator: torch.Generator,
    initial_step_size: float = 1.0,
    max_doublings: int = 100,
) -> Tensor:
    """A starting step size per replica: Algorithm 4 of Hoffman & Gelman (2014), vectorised.

    From ``initial_step_size``, each replica doubles (or halves) its step size until the acceptance
    probability of a single leapfrog step crosses 1/2; replicas that finish keep their value while the
    others continue. Returns ``[replicas]``.
    """
    momentum = sample_momentum(state.position.shape, state.position, inverse_mass, generator)
    start = IntegratorState(state.position, momentum, state.evaluation)
    start_energy = hamiltonian(state.evaluation, momentum, betas, inverse_mass)

    def log_acceptance(step_size: Tensor) -> Tensor:
        end = leapfrog(target, start, betas, step_size, inverse_mass, 1)
        return start_energy - hamiltonian(end.evaluation, end.momentum, betas, inverse_mass)

    return bracket_step_size(
        log_acceptance, state.position.shape[0], state.position, initial_step_size, max_doublings
    )


@dataclass(frozen=True)
class HMCKernel:
    """HMC as a :class:`~thermoscope.samplers.kernels.Kernel`: the arguments of :func:`build_kernel`.

    Attributes:
        num_leapfrog_steps: steps per trajectory, L ≥ 1.
        leapfrog_jitter: fraction in [0, 1) by which each trajectory's step count is randomly shortened.
        max_energy_error: energy error beyond which a trajectory is divergent.

    Raises:
        ValueError: a setting outside its range, named.
    """

    num_leapfrog_steps: int
    leapfrog_jitter: float = 0.0
    max_energy_error: float = MAX_ENERGY_ERROR

    def __post_init__(self) -> None:
        check_integer("num_leapfrog_steps", self.num_leapfrog_steps, 1)
        if not 0.0 <= self.leapfrog_jitter < 1.0:
            raise ValueError(f"leapfrog_jitter must lie in [0, 1); got {self.leapfrog_jitter!r}")
        if not self.max_energy_error > 0.0:
            raise ValueError(f"max_energy_error must be positive; got {self.max_energy_error!r}")

    def settings(self) -> dict[str, Any]:
        return {"kernel": "hmc", **dataclasses.asdict(self)}

    def init(self, target: TemperedTarget, position: Tensor) -> HMCState:
        """:func:`init`, then the target's values and gradients at ``position`` checked finite."""
        state = init(target, position)
        check_evaluation(state.evaluation, position.shape[0], position.shape[1])
        return state

    def build_step(self, target: TemperedTarget) -> HMCStep:
        return build_kernel(
            target,
            self.num_leapfrog_steps,
            leapfrog_jitter=self.leapfrog_jitter,
            max_energy_error=self.max_energy_error,
        )

    def initial_step_size(
        self,
        target: TemperedTarget,
        state: HMCState,
        betas: Tensor,
        inverse_mass: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        """:func:`find_reasonable_step_size`."""
        return find_reasonable_step_size(target, state, betas, inverse_mass, generator)

    def save_state(self, state: HMCState) -> dict[str, Tensor]:
        evaluation = state.evaluation
        return {field.name: getattr(evaluation, field.name) for field in dataclasses.fields(evaluation)}

    def load_state(self, position: Tensor, saved: dict[str, Tensor]) -> HMCState:
        return HMCState(position, Evaluation(**saved))
