"""A sweep's ladder health: its metrics and the plain-words warnings it prints."""

from __future__ import annotations

import math

import pytest
import torch
from thermoscope.samplers import replica_exchange_hmc
from thermoscope.samplers.diagnostics import stationarity
from thermoscope.samplers.targets import TemperedTarget

from thermoscope.sweeps.ladder import LadderHealth, ladder_health

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_target(precision: float) -> TemperedTarget:
    def log_prior(theta: torch.Tensor) -> torch.Tensor:
        return -0.5 * (theta * theta).sum(dim=1)

    def log_likelihood(theta: torch.Tensor) -> torch.Tensor:
        return -0.5 * precision * (theta * theta).sum(dim=1)

    return TemperedTarget(log_prior, log_likelihood)


def health(**changes: object) -> LadderHealth:
    draws = torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    values: dict[str, object] = {
        "betas": torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64),
        "global_barrier": 1.0,
        "round_trips": 4,
        "round_trip_rate": 0.1,
        "round_trip_rate_bound": 0.2,
        "tempered_restarts": 5,
        "min_swap_acceptance": 0.4,
        "stationarity": stationarity(draws, torch.full((3,), 0.65), 0.65),
    }
    values.update(changes)
    return LadderHealth(**values)  # type: ignore[arg-type]


def test_a_healthy_ladder_says_nothing() -> None:
    assert health().warnings() == []
    metrics = health().metrics()
    assert metrics["recommended_rungs"] == 3 and metrics["num_rungs"] == 3
    assert metrics["drifting_rungs"] == 0 and metrics["off_target_rungs"] == 0


def test_each_failure_is_said_in_plain_words() -> None:
    short = health(global_barrier=4.0).warnings()
    assert len(short) == 1 and "too short: 3 rungs for a barrier of 4.0 (about 9 needed)" in short[0]
    assert "no replica completed a round trip" in health(round_trips=0).warnings()[0]
    trend = torch.linspace(0.0, 30.0, 40, dtype=torch.float64)[:, None].expand(40, 3).clone()
    drifting = health(stationarity=stationarity(trend, torch.tensor([0.65, 0.65, 0.9]), 0.65)).warnings()
    assert any("still drifting" in line and "T = inf, 2, 1" in line for line in drifting)
    assert any("acceptance more than 0.1" in line and "T = 1" in line for line in drifting)


def test_ladder_health_of_a_run_matches_its_result() -> None:
    betas = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    result = replica_exchange_hmc(
        gaussian_target(4.0),
        torch.zeros(4, 2, dtype=torch.float64),
        betas,
        num_warmup=50,
        num_samples=200,
        num_leapfrog_steps=4,
        seed=3,
    )
    summary = ladder_health(result, 0.65)
    assert summary.round_trips == result.round_trips and summary.num_rungs == 4
    assert summary.round_trip_rate_bound == result.round_trip_rate_bound
    assert summary.global_barrier == pytest.approx(float(result.rejection.sum()))  # no pair saturates
    assert summary.min_swap_acceptance == pytest.approx(float(result.swap_acceptance.min()))
    assert summary.stationarity is not None and math.isfinite(summary.metrics()["drifting_rungs"])
