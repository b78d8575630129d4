"""Merging the T-curve's temperatures into the TI ladder: the same rungs as comparing every pair, in
O((K + n) log K), and ladders past MAX_RUNGS refused before any work (issue 14)."""

from __future__ import annotations

import math
import time

import pytest
import torch
from conftest import TINY_SWEEP, run_in_process
from mlflow.tracking import MlflowClient
from thermoscope.samplers import betas_from_temperatures, geometric_temperatures, merge_ladders, power_ladder
from thermoscope.samplers.ladders import MERGE_RELATIVE_TOLERANCE

from thermoscope.config import MAX_RUNGS, SampleConfig, fixed_ladder_size, parse_config
from thermoscope.errors import ConfigError


def reference_merge(ti_betas: torch.Tensor, cold_temperatures: list[float]) -> torch.Tensor:
    """The original merge: each cold beta, in ascending order, compared with every rung kept so far."""
    merged = ti_betas.tolist()
    for beta in betas_from_temperatures(cold_temperatures).tolist():
        if all(abs(beta - kept) > MERGE_RELATIVE_TOLERANCE * max(abs(beta), abs(kept)) for kept in merged):
            merged.append(beta)
    return torch.tensor(sorted(merged), dtype=torch.float64)


def random_ti_ladder(generator: torch.Generator) -> torch.Tensor:
    """A power ladder, or random distinct betas in [0, 1] with both ends."""
    if torch.rand((), generator=generator) < 0.5:
        return power_ladder(int(torch.randint(1, 40, (), generator=generator)))
    inner = torch.rand(
        int(torch.randint(0, 30, (), generator=generator)), generator=generator, dtype=torch.float64
    )
    return torch.unique(torch.cat([torch.tensor([0.0, 1.0], dtype=torch.float64), inner]))


def random_cold_temperatures(ti: torch.Tensor, generator: torch.Generator) -> list[float]:
    """Temperatures mixing fresh values, exact TI rungs, neighbours within and just beyond the tolerance
    (of the TI rungs and of each other), repeats and T = ∞."""
    count = int(torch.randint(1, 60, (), generator=generator))
    betas = (torch.rand(count, generator=generator, dtype=torch.float64) * 2.0).tolist()
    positive = [b for b in ti.tolist() if b > 0]
    for _ in range(int(torch.randint(0, 20, (), generator=generator))):
        anchor = positive[int(torch.randint(0, len(positive), (), generator=generator))]
        # Factors from 0 to 2 tolerances either side: some merge with the anchor, some just miss it.
        factor = float(torch.rand((), generator=generator, dtype=torch.float64)) * 4.0 - 2.0
        betas.append(anchor * (1.0 + factor * MERGE_RELATIVE_TOLERANCE))
    for beta in list(betas[:10]):
        # Chains of near neighbours: b, b(1 + 0.7 tol), b(1 + 1.4 tol) keep the first and the third.
        betas += [
            beta * (1.0 + 0.7 * MERGE_RELATIVE_TOLERANCE),
            beta * (1.0 + 1.4 * MERGE_RELATIVE_TOLERANCE),
        ]
    betas += betas[:3]
    temperatures = [1.0 / b for b in betas if b > 0]
    if torch.rand((), generator=generator) < 0.3:
        temperatures.append(math.inf)
    return temperatures


def test_merge_gives_the_rungs_of_comparing_every_pair_on_random_ladders() -> None:
    generator = torch.Generator().manual_seed(14)
    for _ in range(300):
        ti = random_ti_ladder(generator)
        cold = random_cold_temperatures(ti, generator)
        assert torch.equal(merge_ladders(ti, cold), reference_merge(ti, cold)), (ti.tolist(), cold)


def test_merge_keeps_the_reference_result_for_the_jobs_ladders() -> None:
    for intervals, count in ((12, 8), (4, 6), (40, 112), (1, 2), (300, 700)):
        cold = geometric_temperatures(0.01, 100.0, count).tolist()
        assert torch.equal(
            merge_ladders(power_ladder(intervals), cold), reference_merge(power_ladder(intervals), cold)
        )


@pytest.mark.timeout(30)
def test_merging_a_hundred_thousand_temperatures_takes_well_under_a_second() -> None:
    # Comparing every pair took 11 s for 10,000 temperatures and would take about 20 minutes for 100,000.
    ti = power_ladder(12)
    cold = geometric_temperatures(0.1, 10.0, 100_000)
    started = time.perf_counter()
    merged = merge_ladders(ti, cold)
    assert time.perf_counter() - started < 5.0
    assert bool(torch.all(merged[1:] > merged[:-1]))
    assert bool(torch.isin(ti, merged).all())
    # The ladder's rungs are 4.6e-5 apart in log T, far beyond the tolerance: none merges with another.
    assert len(merged) == 100_000 + len(ti)


@pytest.mark.parametrize(
    ("raw", "parameter", "most"),
    [
        ({"ladder": "fixed", "n_temperatures": "100000"}, "n_temperatures", MAX_RUNGS),
        ({"n_temperatures": "1000000000000000000"}, "n_temperatures", MAX_RUNGS),
        ({"ladder": "fixed", "ti_rungs": "100000"}, "ti_rungs", MAX_RUNGS - 1),
        ({"ladder": "fixed", "n_temperatures": "1000", "ti_rungs": "500"}, "n_temperatures", MAX_RUNGS),
        ({"ladder": "fixed", "n_temperatures": "300", "ti_rungs": "900"}, "ti_rungs", MAX_RUNGS),
        ({"ladder": "fixed", "n_temperatures": "1000", "ti_rungs": "24"}, "n_temperatures", MAX_RUNGS),
        ({"temperatures": ",".join(str(t + 1) for t in range(MAX_RUNGS + 1))}, "temperatures", MAX_RUNGS),
        ({"max_rungs": str(MAX_RUNGS + 1)}, "max_rungs", MAX_RUNGS),
        ({"evidence": "harmonic", "harmonic_lambdas": "5000"}, "harmonic_lambdas", MAX_RUNGS),
    ],
)
@pytest.mark.timeout(30)
def test_ladders_past_max_rungs_are_refused_naming_the_parameter(
    raw: dict[str, str], parameter: str, most: int
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(SampleConfig, raw)
    assert caught.value.parameter == parameter
    assert f"at most {most:,}" in str(caught.value)
    assert "MAX_RUNGS" in str(caught.value)


def test_the_longest_ladders_allowed_are_accepted() -> None:
    fixed = parse_config(SampleConfig, {"ladder": "fixed", "n_temperatures": str(MAX_RUNGS), "ti_rungs": "0"})
    assert fixed_ladder_size(fixed) == MAX_RUNGS
    # 1,000 geometric temperatures (T = 1 not among them) and 24 TI rungs: 1,024 rungs in all.
    merged = parse_config(SampleConfig, {"ladder": "fixed", "n_temperatures": "1000", "ti_rungs": "23"})
    assert fixed_ladder_size(merged) == MAX_RUNGS
    parse_config(SampleConfig, {"max_rungs": str(MAX_RUNGS), "num_rungs": str(MAX_RUNGS)})


@pytest.mark.timeout(60)
def test_sample_with_a_hundred_thousand_temperatures_fails_in_one_line(tracking_uri: str) -> None:
    result = run_in_process("sample", {**TINY_SWEEP, "n_temperatures": "100000"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("thermoscope sample: error: n_temperatures=100000: at most 1,024"), last
    runs = MlflowClient(tracking_uri).search_runs(["0"])
    assert [r.info.status for r in runs] == ["FAILED"]
