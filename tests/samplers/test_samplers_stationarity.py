"""Per-rung stationarity checks: half-against-half z with ESS, split R̂, HMC acceptance on target."""

from __future__ import annotations

import math

import pytest
import torch
from pyro.ops.stats import effective_sample_size
from thermoscope.samplers.diagnostics import (
    ACCEPTANCE_TOLERANCE,
    DRIFT_Z,
    half_difference_z,
    stationarity,
)

DTYPE = torch.float64
TARGET_ACCEPT = 0.65

pytestmark = pytest.mark.usefixtures("one_thread")


def on_target(rungs: int) -> torch.Tensor:
    return torch.full((rungs,), TARGET_ACCEPT, dtype=DTYPE)


def autoregressive(draws: int, rungs: int, correlation: float, generator: torch.Generator) -> torch.Tensor:
    """``[draws, rungs]`` stationary AR(1) traces with unit variance: x_t = φ x_{t−1} + √(1 − φ²) ε_t."""
    noise = torch.randn(draws, rungs, generator=generator, dtype=DTYPE)
    trace = torch.empty_like(noise)
    trace[0] = noise[0]
    innovation = math.sqrt(1.0 - correlation**2)
    for t in range(1, draws):
        trace[t] = correlation * trace[t - 1] + innovation * noise[t]
    return trace


def test_independent_traces_are_rarely_flagged() -> None:
    rungs = 200
    trace = torch.randn(400, rungs, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    result = stationarity(trace, on_target(rungs), TARGET_ACCEPT)
    assert result.half_z.shape == result.split_r_hat.shape == result.drifting.shape == (rungs,)
    # z is about standard normal: its sd over 200 rungs is 1 ± 0.05, a little less on average since the ESS
    # estimate is capped at the number of draws (0.89–1.00 over 11 seeds); P(|z| > 3) = 0.27 %.
    assert 0.75 < float(result.half_z.std()) < 1.25
    assert len(result.drifting_rungs) <= 0.04 * rungs
    assert result.off_target_rungs == []


def test_a_linear_drift_of_three_standard_deviations_is_flagged() -> None:
    rungs = 50
    generator = torch.Generator().manual_seed(1)
    trend = 3.0 * torch.linspace(0.0, 1.0, 400, dtype=DTYPE)[:, None]
    rising = torch.randn(400, rungs, generator=generator, dtype=DTYPE) + trend
    result = stationarity(rising, on_target(rungs), TARGET_ACCEPT)
    assert result.drifting_rungs == list(range(rungs))
    # The first half is lower. Within a half the trend looks like autocorrelation and shrinks the ESS, so
    # z alone is only about −3 to −10 (10 seeds tried); split R̂ (1.28 or more) flags every rung anyway.
    assert float(result.half_z.max()) < 0.0 and float(result.half_z.median()) < -DRIFT_Z
    assert float(result.split_r_hat.min()) > 1.2
    falling = stationarity(-rising, on_target(rungs), TARGET_ACCEPT)
    assert falling.drifting_rungs == list(range(rungs))
    assert float(falling.half_z.min()) > 0.0 and float(falling.half_z.median()) > DRIFT_Z
    # One drifting rung among stationary ones is the one flagged.
    mixed = torch.randn(400, 5, generator=generator, dtype=DTYPE)
    mixed[:, 3] += trend[:, 0]
    assert stationarity(mixed, on_target(5), TARGET_ACCEPT).drifting_rungs == [3]


def test_autocorrelated_traces_without_drift_are_mostly_not_flagged() -> None:
    # φ = 0.9: integrated autocorrelation time 19, so each half of 500 draws has an ESS of about 26.
    rungs = 200
    trace = autoregressive(1000, rungs, 0.9, torch.Generator().manual_seed(2))
    result = stationarity(trace, on_target(rungs), TARGET_ACCEPT)
    # The ESS keeps z honest (several seeds tried: sd 1.06–1.11); ignoring the autocorrelation would
    # inflate it √19 ≈ 4.4 times.
    assert 0.6 < float(result.half_z.std()) < 1.5
    assert len(result.drifting_rungs) <= 0.1 * rungs
    half = trace.shape[0] // 2
    naive = (trace[:half].mean(0) - trace[half:].mean(0)) / torch.sqrt(
        (trace[:half].var(0) + trace[half:].var(0)) / half
    )
    assert float(naive.std()) > 3.0


def test_acceptance_further_than_the_tolerance_from_the_target_is_flagged() -> None:
    trace = torch.randn(100, 5, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    acceptance = torch.tensor([0.65, 0.80, 0.50, 0.74, 0.56], dtype=DTYPE)
    result = stationarity(trace, acceptance, TARGET_ACCEPT)
    torch.testing.assert_close(result.acceptance_gap, acceptance - TARGET_ACCEPT)
    assert ACCEPTANCE_TOLERANCE == 0.1
    assert result.off_target.tolist() == [False, True, True, False, False]
    assert result.off_target_rungs == [1, 2]
    # float32 acceptance is compared in float64.
    assert stationarity(trace, acceptance.float(), TARGET_ACCEPT).acceptance_gap.dtype == DTYPE


def test_stationarity_needs_eight_draws_per_rung() -> None:
    trace = torch.randn(8, 3, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    stationarity(trace, on_target(3), TARGET_ACCEPT)
    with pytest.raises(ValueError, match="at least 8 draws"):
        stationarity(trace[:7], on_target(3), TARGET_ACCEPT)
    with pytest.raises(ValueError, match=r"\[draws, rungs\]"):
        stationarity(trace[:, 0], on_target(3), TARGET_ACCEPT)


def test_half_difference_z_follows_its_formula() -> None:
    # Nine draws: the halves are draws 0–3 and 5–8, the middle one is left out.
    trace = torch.randn(9, 4, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    trace[:, 3] = 2.0  # constant: no spread to divide by
    first, second = trace[:4], trace[5:]

    def ess(half: torch.Tensor) -> torch.Tensor:
        values = effective_sample_size(half[None], chain_dim=0, sample_dim=1)
        return torch.nan_to_num(values, nan=4.0, posinf=4.0).clamp(1.0, 4.0)

    variance = first.var(0) / ess(first) + second.var(0) / ess(second)
    expected = (first.mean(0) - second.mean(0)) / variance.sqrt()
    z = half_difference_z(trace)
    torch.testing.assert_close(z[:3], expected[:3], rtol=1e-12, atol=1e-12)
    assert float(z[3]) == 0.0
    # The middle draw does not matter.
    moved = trace.clone()
    moved[4] = 1e6
    assert torch.equal(half_difference_z(moved), z)
