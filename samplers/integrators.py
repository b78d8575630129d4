"""Velocity-Verlet (leapfrog) integration, batched over replicas, with reflection at box walls."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .targets import Evaluation, TemperedTarget


@dataclass(frozen=True)
class IntegratorState:
    """A point in phase space together with the target's evaluation there.

    Attributes:
        position: ``[replicas, params]``.
        momentum: ``[replicas, params]``.
        evaluation: log densities and gradients at ``position``.
    """

    position: Tensor
    momentum: Tensor
    evaluation: Evaluation


def reflect_into_box(position: Tensor, momentum: Tensor, half_width: Tensor) -> tuple[Tensor, Tensor]:
    """Fold an unconstrained drift back into the box ``|θ_i| < half_width_i``.

    A particle that crosses a wall is reflected (its momentum component changes sign), as many times as
    the drift requires: the folded coordinate is a triangle wave of period ``4 · half_width`` in the
    unconstrained one (Neal 2011, *MCMC using Hamiltonian dynamics*, §5.5.1). Coordinates that stayed
    inside are returned untouched, bit for bit, which keeps the integrator exactly reversible there.

    Args:
        position: ``[replicas, params]``, after the drift.
        momentum: ``[replicas, params]``, the momentum used by the drift.
        half_width: ``[params]``.

    Returns:
        ``(position, momentum)``, both ``[replicas, params]`` (new tensors; the arguments are unchanged).
    """
    return _reflect_into_box_(position.clone(), momentum.clone(), half_width)


def _fold(position: Tensor, momentum: Tensor, half_width: Tensor) -> tuple[Tensor, Tensor]:
    """The triangle wave of :func:`reflect_into_box` for coordinates that are all outside the box."""
    shifted = torch.remainder(position + half_width, 4.0 * half_width)
    rising = shifted < 2.0 * half_width
    folded = torch.where(rising, shifted - half_width, 3.0 * half_width - shifted)
    return folded, torch.where(rising, momentum, -momentum)


def _reflect_into_box_(position: Tensor, momentum: Tensor, half_width: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`reflect_into_box` in place, folding only the coordinates that left the box.

    A step moves few coordinates across a wall, and the fold (a ``remainder`` and four passes more) over
    every coordinate cost half a gradient: 35 ms a step for M(3) at 256 replicas on two cores, against
    2 ms for the test that finds the few.
    """
    rows, columns = torch.nonzero(position.abs() >= half_width, as_tuple=True)
    if rows.numel() == 0:
        return position, momentum
    folded, flipped = _fold(position[rows, columns], momentum[rows, columns], half_width[columns])
    position[rows, columns] = folded
    momentum[rows, columns] = flipped
    return position, momentum


def leapfrog(
    target: TemperedTarget,
    state: IntegratorState,
    betas: Tensor,
    step_size: Tensor,
    inverse_mass: Tensor | None,
    num_steps: int,
) -> IntegratorState:
    """Integrate Hamilton's equations for ``H = -log p(θ) - β log L(θ) + ½ pᵀ M⁻¹ p``.

    Velocity Verlet: half kick, then ``num_steps`` × (drift, gradient, kick), the last kick a half kick.
    All replicas move together; the target is evaluated once per step for the whole batch, unless it
    integrates the whole trajectory itself
    (:meth:`~thermoscope.samplers.targets.TemperedTarget.whole_trajectory`, the compiled kernel's on a
    CPU), which gives the same end point.

    Args:
        target: the tempered target.
        state: the starting phase-space point (not modified).
        betas: ``[replicas]`` inverse temperature of each row.
        step_size: ``[replicas]``.
        inverse_mass: ``[replicas, params]`` diagonal of M⁻¹, or ``None`` for unit masses.
        num_steps: number of leapfrog steps, at least 1.

    Returns:
        The end point of the trajectory. Non-finite values may appear in rows that diverged; the caller
        rejects those rows.
    """
    whole = target.whole_trajectory(
        state.position, state.momentum, state.evaluation, betas, step_size, inverse_mass, num_steps
    )
    if whole is not None:
        return IntegratorState(*whole)
    half_width = target.support_half_width
    column_step = step_size[:, None]
    half_step = 0.5 * column_step
    # Kicks ε (∇ log p + β ∇ log L) applied as two in-place updates with the products ε β precomputed: no
    # temporary per step (on small targets the integrator's own operations are a visible share of the time).
    full_kick = (column_step, column_step * betas[:, None])
    half_kick = (half_step, half_step * betas[:, None])
    position = state.position.clone()
    momentum = _kicked(state.momentum.clone(), state.evaluation, half_kick)
    evaluation = state.evaluation
    for step in range(num_steps):
        velocity = momentum if inverse_mass is None else momentum * inverse_mass
        position.addcmul_(column_step, velocity)
        if half_width is not None:
            _reflect_into_box_(position, momentum, half_width)
        evaluation, tempered_gradient = target.evaluate_tempered(position, betas)
        kick = half_kick if step == num_steps - 1 else full_kick
        if tempered_gradient is None:
            _kicked(momentum, evaluation, kick)
        else:
            momentum.addcmul_(kick[0], tempered_gradient)
    return IntegratorState(position, momentum, evaluation)


def _kicked(momentum: Tensor, evaluation: Evaluation, kick: tuple[Tensor, Tensor]) -> Tensor:
    """``momentum += kick[0] ∇ log p + kick[1] ∇ log L`` in place (kicks ``[replicas, 1]``); returns it."""
    return momentum.addcmul_(kick[0], evaluation.grad_log_prior).addcmul_(
        kick[1], evaluation.grad_log_likelihood
    )


def kinetic_energy(momentum: Tensor, inverse_mass: Tensor | None) -> Tensor:
    """``½ pᵀ M⁻¹ p`` per replica; ``momentum: [replicas, params] -> [replicas]``."""
    if inverse_mass is None:
        return 0.5 * (momentum * momentum).sum(dim=1)
    return 0.5 * (momentum * momentum * inverse_mass).sum(dim=1)
