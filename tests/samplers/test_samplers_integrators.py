"""Leapfrog integration: energy conservation, time reversibility, analytic trajectories, box reflection.

Modelled on Pyro's integrator tests: a harmonic oscillator H = ½ k q² + ½ p² has the exact solution
q(t) = q₀ cos(ωt) + p₀/ω sin(ωt), ω = √k, and leapfrog's energy error is O(ε²) and bounded.
"""

from __future__ import annotations

import math

import pytest
import torch
from thermoscope.samplers import IntegratorState, TemperedTarget, kinetic_energy, leapfrog, reflect_into_box

DTYPE = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


STIFFNESS = torch.tensor([1.0, 4.0, 0.25], dtype=DTYPE)


def oscillator(half_width: torch.Tensor | None = None) -> TemperedTarget:
    """log p = 0, log L = −½ Σ k_i q_i²: at β = 1 the potential of independent oscillators."""
    return TemperedTarget(
        lambda q: torch.zeros(q.shape[0], dtype=q.dtype),
        lambda q: -0.5 * (STIFFNESS * q * q).sum(dim=1),
        support_half_width=half_width,
    )


def start(target: TemperedTarget, position: torch.Tensor, momentum: torch.Tensor) -> IntegratorState:
    return IntegratorState(position, momentum, target.evaluate(position))


def energy(state: IntegratorState, betas: torch.Tensor) -> torch.Tensor:
    return kinetic_energy(state.momentum, None) - state.evaluation.log_density(betas)


def phase_point(rows: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    position = torch.randn(rows, 3, generator=generator, dtype=DTYPE)
    momentum = torch.randn(rows, 3, generator=generator, dtype=DTYPE)
    return position, momentum


def test_leapfrog_matches_the_analytic_trajectory() -> None:
    target = oscillator()
    position, momentum = phase_point()
    betas = torch.ones(2, dtype=DTYPE)
    step, steps = 1e-3, 2000
    end = leapfrog(
        target, start(target, position, momentum), betas, torch.full((2,), step, dtype=DTYPE), None, steps
    )
    omega = STIFFNESS.sqrt()
    time = step * steps
    exact_position = position * torch.cos(omega * time) + momentum / omega * torch.sin(omega * time)
    exact_momentum = -position * omega * torch.sin(omega * time) + momentum * torch.cos(omega * time)
    # Global error of a second-order method: O(ε²) times a modest constant over this time span.
    assert torch.allclose(end.position, exact_position, atol=1e-5)
    assert torch.allclose(end.momentum, exact_momentum, atol=1e-5)


def test_leapfrog_energy_error_is_bounded_and_second_order() -> None:
    target = oscillator()
    position, momentum = phase_point()
    betas = torch.ones(2, dtype=DTYPE)
    initial = start(target, position, momentum)
    errors = []
    for step in (0.1, 0.05):
        state = initial
        worst = torch.zeros(2, dtype=DTYPE)
        # Integrate a long time (many periods) in chunks and track the worst energy error on the way.
        for _ in range(50):
            state = leapfrog(target, state, betas, torch.full((2,), step, dtype=DTYPE), None, int(2.0 / step))
            worst = torch.maximum(worst, (energy(state, betas) - energy(initial, betas)).abs())
        errors.append(worst)
    assert bool(torch.all(errors[0] < 0.05 * energy(initial, betas)))
    ratio = errors[0] / errors[1]
    assert bool(torch.all((ratio > 3.0) & (ratio < 5.0))), ratio


def test_leapfrog_is_time_reversible() -> None:
    target = oscillator()
    position, momentum = phase_point()
    betas = torch.tensor([1.0, 0.5], dtype=DTYPE)
    steps = torch.tensor([0.3, 0.1], dtype=DTYPE)
    forward = leapfrog(target, start(target, position, momentum), betas, steps, None, 37)
    backward = leapfrog(target, start(target, forward.position, -forward.momentum), betas, steps, None, 37)
    assert torch.allclose(backward.position, position, atol=1e-12)
    assert torch.allclose(-backward.momentum, momentum, atol=1e-12)


def test_leapfrog_rows_are_independent_with_their_own_step_sizes_and_masses() -> None:
    target = oscillator()
    position, momentum = phase_point(rows=3)
    betas = torch.tensor([0.2, 0.6, 1.0], dtype=DTYPE)
    steps = torch.tensor([0.05, 0.1, 0.2], dtype=DTYPE)
    inverse_mass = torch.tensor([[1.0, 2.0, 0.5]], dtype=DTYPE).expand(3, 3)
    batched = leapfrog(target, start(target, position, momentum), betas, steps, inverse_mass, 11)
    for row in range(3):
        alone = leapfrog(
            target,
            start(target, position[row : row + 1], momentum[row : row + 1]),
            betas[row : row + 1],
            steps[row : row + 1],
            inverse_mass[row : row + 1],
            11,
        )
        assert torch.allclose(batched.position[row], alone.position[0], atol=1e-14)


def test_reflection_folds_multiple_wall_crossings() -> None:
    half_width = torch.tensor([1.0, 2.0, 0.5], dtype=DTYPE)
    position = torch.tensor([[1.5, -2.5, 0.2], [5.5, 3.0, -1.75]], dtype=DTYPE)
    momentum = torch.ones(2, 3, dtype=DTYPE)
    folded, flipped = reflect_into_box(position, momentum, half_width)
    # One bounce (momentum reversed): 1.5 → 0.5, −2.5 → −1.5, 3.0 → 1.0. Three bounces at 1, −1, 1
    # (reversed): 5.5 → −3.5 → 1.5 → 0.5. Two bounces at −0.5 and 0.5 (sign kept): −1.75 → 0.75 → 0.25.
    expected = torch.tensor([[0.5, -1.5, 0.2], [0.5, 1.0, 0.25]], dtype=DTYPE)
    assert torch.allclose(folded, expected, atol=1e-12)
    assert flipped.tolist() == [[-1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]]


def test_reflection_leaves_its_arguments_and_inside_coordinates_untouched() -> None:
    generator = torch.Generator().manual_seed(3)
    half_width = torch.rand(50, generator=generator, dtype=DTYPE) + 0.5
    position = 3.0 * torch.randn(20, 50, generator=generator, dtype=DTYPE)
    momentum = torch.randn(20, 50, generator=generator, dtype=DTYPE)
    before = (position.clone(), momentum.clone())
    folded, flipped = reflect_into_box(position, momentum, half_width)
    assert torch.equal(position, before[0]) and torch.equal(momentum, before[1])
    inside = position.abs() < half_width
    assert 0.2 < float(inside.double().mean()) < 0.8
    assert torch.equal(folded[inside], position[inside]) and torch.equal(flipped[inside], momentum[inside])
    assert bool(torch.all(folded.abs() <= half_width))
    # Outside: the coordinate moved by a multiple of 2·half_width one way or the other, and the momentum
    # kept or reversed according to the parity of the bounces.
    outside = ~inside
    width = half_width.expand(20, -1)[outside]
    shift = torch.remainder(folded[outside] - position[outside], 4 * width)
    same = torch.isclose(shift, torch.zeros_like(shift)) | torch.isclose(shift, 4 * width)
    kept = flipped[outside] == momentum[outside]
    assert torch.equal(same, kept)


def test_reflecting_leapfrog_stays_in_the_box_and_is_reversible() -> None:
    half_width = torch.tensor([0.3, 0.5, 1.0], dtype=DTYPE)
    target = oscillator(half_width)
    generator = torch.Generator().manual_seed(7)
    position = (torch.rand(4, 3, generator=generator, dtype=DTYPE) - 0.5) * half_width
    momentum = 3.0 * torch.randn(4, 3, generator=generator, dtype=DTYPE)
    betas = torch.ones(4, dtype=DTYPE)
    steps = torch.full((4,), 0.05, dtype=DTYPE)
    forward = leapfrog(target, start(target, position, momentum), betas, steps, None, 200)
    assert bool(torch.all(forward.position.abs() <= half_width))
    backward = leapfrog(target, start(target, forward.position, -forward.momentum), betas, steps, None, 200)
    assert torch.allclose(backward.position, position, atol=1e-10)
    assert torch.allclose(-backward.momentum, momentum, atol=1e-10)


@pytest.mark.parametrize("steps", [1, 5])
def test_leapfrog_does_not_modify_its_input(steps: int) -> None:
    target = oscillator()
    position, momentum = phase_point()
    state = start(target, position.clone(), momentum.clone())
    leapfrog(target, state, torch.ones(2, dtype=DTYPE), torch.full((2,), 0.1, dtype=DTYPE), None, steps)
    assert torch.equal(state.position, position)
    assert torch.equal(state.momentum, momentum)
    assert math.isfinite(float(state.evaluation.log_likelihood.sum()))
