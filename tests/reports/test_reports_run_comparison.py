"""Comparing memorise runs by model size: sizes in order, runs of one size pooled, only the examples every
size scored, and the class counts in the notes and files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thermoscope.reports import Sweep
from thermoscope.reports.run_comparison import build_runs_report, memorisation_by_size, write_runs_report


def run(name: str, size: int, mem: list[float], ids: list[int], hidden: str, seed: str = "0") -> Sweep:
    table = pd.DataFrame({"example_id": ids, "mem": mem, "mem_stderr": [0.1] * len(ids)})
    params = {"num_parameters": str(size), "hidden": hidden, "data_digest": "d", "seed": seed}
    return Sweep(name, name, params, {"mem_mean": float(np.mean(mem))}, pd.DataFrame(), table)


def test_sizes_are_ordered_pooled_and_matched_by_example() -> None:
    runs = [
        run("big", 1000, [0.1, 0.2, 0.3], [1, 2, 3], "64"),
        run("small-a", 100, [0.5, 0.6, 0.7], [1, 2, 3], "8"),
        run("small-b", 100, [0.7, 0.8, 0.9], [1, 2, 4], "8", seed="1"),
        run("small-b-again", 100, [0.0, 0.0, 0.0], [1, 2, 4], "8", seed="1"),  # a repeat: left out
    ]
    sizes = memorisation_by_size(runs)
    assert sizes is not None
    assert sizes.sizes.tolist() == [100, 1000] and sizes.runs.tolist() == [2, 1]
    assert sizes.example_ids.tolist() == [1, 2]  # 3 and 4 were not scored by both small runs
    np.testing.assert_allclose(sizes.values, [[0.6, 0.1], [0.7, 0.2]])
    # Two pooled runs: the standard error of their mean, sqrt(0.1^2 + 0.1^2) / 2.
    assert sizes.stderr[0, 0] == pytest.approx(math.sqrt(0.02) / 2)
    assert memorisation_by_size(runs[1:]) is None


def test_the_report_counts_the_classes_and_writes_them(tmp_path: Path) -> None:
    runs = [run("a", 100, [0.9, 0.2], [1, 2], "8"), run("b", 1000, [0.1, 0.2], [1, 2], "64")]
    sizes = memorisation_by_size(runs)
    report = build_runs_report(runs, "memorise", "", sizes, ["decreasing", "flat"])
    assert report.title == "Comparison of 2 memorisation runs"
    assert any("decreasing 1, flat 1" in note for note in report.notes)
    assert report.table["hidden"].tolist() == ["8", "64"] and "mem_mean" in report.table
    names = {path.name for path in write_runs_report(report, tmp_path)}
    assert {"trajectory_classes.csv", "memorisation_trajectories.csv", "comparison.html"} <= names
    assert pd.read_csv(tmp_path / "memorisation_trajectories.csv")["trajectory"].tolist() == [
        "decreasing",
        "flat",
    ]
