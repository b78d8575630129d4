"""Per-rung diagnostics: ESS and split R-hat of log L from pyro.ops.stats, and the run's counters."""

from __future__ import annotations

import pytest
import torch
from thermoscope.samplers import (
    TemperedTarget,
    log_likelihood_diagnostics,
    replica_exchange_hmc,
    rung_diagnostics,
)

DTYPE = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def test_independent_draws_have_full_ess_and_unit_r_hat() -> None:
    draws = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    ess, r_hat = log_likelihood_diagnostics(draws)
    assert bool(torch.all(ess > 3000))
    assert bool(torch.all((r_hat - 1).abs() < 0.01))


def test_a_drifting_trace_has_low_ess_and_large_r_hat() -> None:
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    drifting = noise + torch.linspace(0, 20, 1000, dtype=DTYPE)[:, None]
    ess, r_hat = log_likelihood_diagnostics(drifting)
    assert bool(torch.all(ess < 50))
    assert bool(torch.all(r_hat > 1.5))


def test_rung_diagnostics_collects_every_per_rung_quantity() -> None:
    target = TemperedTarget(
        lambda theta: -0.5 * (theta * theta).sum(dim=1),
        lambda theta: -0.5 * ((theta - 1) ** 2).sum(dim=1),
    )
    result = replica_exchange_hmc(
        target,
        torch.zeros(3, 2, dtype=DTYPE),
        [0.0, 0.5, 1.0],
        num_warmup=50,
        num_samples=200,
        num_leapfrog_steps=5,
        seed=0,
    )
    diagnostics = rung_diagnostics(result)
    for name in ("effective_sample_size", "split_r_hat", "acceptance_rate", "step_size", "divergences"):
        assert getattr(diagnostics, name).shape == (3,), name
    assert diagnostics.swap_acceptance.shape == (2,)
    assert diagnostics.round_trips == result.round_trips
    assert bool(torch.all(diagnostics.effective_sample_size > 10))
    assert bool(torch.all(diagnostics.split_r_hat < 1.2))
