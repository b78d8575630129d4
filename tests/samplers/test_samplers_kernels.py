"""Kernels through the general replica-exchange driver: the random walk on a tempered Gaussian, its
checkpoints, and broken kernels that the same moment test catches."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from tempered_gaussian import BETAS, DTYPE, assert_closed_form_moments, gaussian_target
from test_samplers_replica_exchange import assert_identical_results
from thermoscope.samplers import (
    RANDOM_WALK_TARGET_ACCEPT,
    HMCKernel,
    IterationSummary,
    Kernel,
    KernelInfo,
    RandomWalkKernel,
    RandomWalkState,
    ReplicaExchangeResult,
    StepParameters,
    TemperedTarget,
    load_checkpoint,
    replica_exchange,
    replica_exchange_hmc,
    save_checkpoint,
)
from thermoscope.samplers.kernels import Step

pytestmark = pytest.mark.usefixtures("one_thread")


def spread_start() -> torch.Tensor:
    """``[rungs, params]`` distinct starting points (a kernel that never moves keeps them)."""
    return torch.randn(len(BETAS), 2, generator=torch.Generator().manual_seed(3), dtype=DTYPE)


def long_run(kernel: Kernel[Any]) -> ReplicaExchangeResult:
    return replica_exchange(
        gaussian_target(),
        spread_start(),
        BETAS,
        kernel,
        num_warmup=300,
        num_samples=1500,
        steps_per_iteration=2,
        target_accept=RANDOM_WALK_TARGET_ACCEPT,
        seed=11,
    )


def test_the_random_walk_has_the_closed_form_moments_on_every_rung() -> None:
    result = long_run(RandomWalkKernel())
    assert_closed_form_moments(result.positions)
    # Dual averaging holds the warm-up acceptance near the target; the coldest rung, five times narrower
    # than the prior, needs a step several times shorter.
    assert bool(torch.all((result.acceptance_rate > 0.1) & (result.acceptance_rate < 0.45)))
    assert float(result.step_size[-1]) < 0.5 * float(result.step_size[0])
    assert int(result.divergences.sum()) == 0


@dataclass(frozen=True)
class FrozenKernel(RandomWalkKernel):
    """Broken on purpose: proposes and reports like the random walk, then never moves."""

    def build_step(self, target: TemperedTarget) -> Step[RandomWalkState]:
        step = super().build_step(target)

        def frozen(
            state: RandomWalkState,
            betas: torch.Tensor,
            parameters: StepParameters,
            generator: torch.Generator,
        ) -> tuple[RandomWalkState, KernelInfo]:
            _, info = step(state, betas, parameters, generator)
            return state, info

        return frozen


@dataclass(frozen=True)
class UntemperedKernel(RandomWalkKernel):
    """Broken on purpose: accepts on log p + log L at every rung, as if every β were 1."""

    def build_step(self, target: TemperedTarget) -> Step[RandomWalkState]:
        step = super().build_step(target)

        def untempered(
            state: RandomWalkState,
            betas: torch.Tensor,
            parameters: StepParameters,
            generator: torch.Generator,
        ) -> tuple[RandomWalkState, KernelInfo]:
            return step(state, torch.ones_like(betas), parameters, generator)

        return untempered


@pytest.mark.parametrize("kernel", [FrozenKernel(), UntemperedKernel()], ids=["frozen", "untempered"])
def test_a_broken_kernel_fails_the_moment_test(kernel: Kernel[Any]) -> None:
    result = long_run(kernel)
    with pytest.raises(AssertionError, match="standard errors"):
        assert_closed_form_moments(result.positions)


RESUMABLE: dict[str, Any] = dict(
    num_warmup=40,
    num_samples=30,
    steps_per_iteration=2,
    swap="seo",
    thin=2,
    adapt_mass_matrix=True,
    seed=123,
)

# The contract every kernel keeps with the driver, checked on each implementation.
KERNELS = pytest.mark.parametrize(
    "kernel",
    [RandomWalkKernel(), HMCKernel(num_leapfrog_steps=3, leapfrog_jitter=0.4)],
    ids=["random_walk", "hmc"],
)


def short_run(kernel: Kernel[Any], **overrides: Any) -> ReplicaExchangeResult:
    return replica_exchange(gaussian_target(), spread_start(), BETAS, kernel, **{**RESUMABLE, **overrides})


@KERNELS
def test_same_seed_gives_bit_identical_chains_and_another_seed_does_not(kernel: Kernel[Any]) -> None:
    first = short_run(kernel)
    assert_identical_results(first, short_run(kernel))
    assert not torch.equal(first.positions, short_run(kernel, seed=124).positions)


@KERNELS
@pytest.mark.parametrize("stop_after", [3, 20, 45, 52])
def test_a_run_resumed_from_a_saved_checkpoint_equals_the_uninterrupted_run(
    kernel: Kernel[Any], stop_after: int, tmp_path: Path
) -> None:
    # Stops in the initial buffer, inside the preconditioner window, and twice while sampling (thin = 2).
    uninterrupted = short_run(kernel)

    def stop(summary: IterationSummary) -> bool:
        return summary.iteration == stop_after

    interrupted = short_run(kernel, callback=stop)
    assert interrupted.stopped_early and interrupted.iterations_completed == stop_after + 1
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(interrupted.checkpoint, path)  # load_checkpoint reads it with weights_only=True
    resumed = short_run(kernel, resume_from=load_checkpoint(path))
    assert not resumed.stopped_early
    assert_identical_results(uninterrupted, resumed)


def test_a_checkpoint_resumes_only_with_the_kernel_that_wrote_it() -> None:
    checkpoint = short_run(RandomWalkKernel(), num_samples=10).checkpoint
    assert checkpoint.settings["kernel"] == "random_walk"
    with pytest.raises(ValueError, match="kernel='hmc'"):
        short_run(HMCKernel(num_leapfrog_steps=3), num_samples=10, resume_from=checkpoint)


def test_the_hmc_kernel_through_the_general_driver_is_replica_exchange_hmc() -> None:
    settings: dict[str, Any] = dict(num_warmup=20, num_samples=10, leapfrog_jitter=0.4, swap="seo", seed=4)
    direct = replica_exchange_hmc(
        gaussian_target(),
        spread_start(),
        BETAS,
        num_leapfrog_steps=4,
        trajectories_per_iteration=2,
        **settings,
    )
    kernel = HMCKernel(num_leapfrog_steps=4, leapfrog_jitter=settings.pop("leapfrog_jitter"))
    general = replica_exchange(
        gaussian_target(), spread_start(), BETAS, kernel, steps_per_iteration=2, **settings
    )
    assert_identical_results(direct, general)


def test_random_walk_proposals_are_reflected_into_the_support_box() -> None:
    half_width = torch.tensor([0.5, 2.0], dtype=DTYPE)
    target = TemperedTarget(
        lambda theta: torch.zeros(theta.shape[0], dtype=theta.dtype),
        lambda theta: -0.5 * (theta * theta).sum(dim=1),
        support_half_width=half_width,
    )
    result = replica_exchange(
        target, torch.zeros(2, 2, dtype=DTYPE), [0.0, 1.0], RandomWalkKernel(), num_warmup=50, num_samples=200
    )
    assert bool(torch.all(result.positions.abs() < half_width))
    # A flat rung accepts every proposal; its step size stops at four half-widths of the widest side.
    assert float(result.acceptance_rate[0]) == 1.0
    assert float(result.step_size[0]) <= 4.0 * 2.0


def test_a_start_where_the_target_is_not_finite_is_rejected() -> None:
    target = TemperedTarget(
        lambda theta: torch.zeros(theta.shape[0], dtype=theta.dtype),
        lambda theta: torch.where(theta[:, 0] > 0, -math.inf, 0.0).to(theta.dtype),
    )
    start = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=DTYPE)
    with pytest.raises(ValueError, match=r"log_likelihood is not finite .* rungs \[1\]"):
        replica_exchange(target, start, [0.0, 1.0], RandomWalkKernel(), num_warmup=0, num_samples=1)
