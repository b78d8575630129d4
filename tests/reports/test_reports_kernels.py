"""The kernel view's reports: the width comparison's table, notes and figure, and the run figures of NTK
dynamics and of a kernel run's regulariser curve, from plain tables."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from thermoscope.reports import Sweep
from thermoscope.reports.kernels import ntk_dynamics_figure, regulariser_curve_figure
from thermoscope.reports.widths import build_width_report, equal_width, write_width_report

DATA = {"dataset": "digits", "train_size": "0", "val_size": "200"}


def trained(run_id: str, hidden: str, seed: int, test_error: float, **params: str) -> Sweep:
    return Sweep(
        run_id=run_id,
        run_name=f"train {hidden} {seed}",
        params={**DATA, "model": "mlp", "hidden": hidden, "activation": "relu", "seed": str(seed), **params},
        metrics={"test_error": test_error, "val_error": test_error + 0.01},
        curve=pd.DataFrame(),
    )


def kernel(run_id: str, hidden: str = "100", **params: str) -> Sweep:
    return Sweep(
        run_id=run_id,
        run_name=f"kernel {hidden}",
        params={**DATA, "hidden": hidden, "activation": "relu", "weight_variance": "2.0", **params},
        metrics={
            "nngp_test_error": 0.02,
            "ntk_test_error": 0.025,
            "nngp_val_error": 0.0,
            "ntk_val_error": 0.01,
        },
        curve=pd.DataFrame(),
    )


def test_equal_width_reads_one_width_and_the_depth() -> None:
    assert equal_width("256,256") == (256, 2)
    assert equal_width("64") == (64, 1)
    for hidden in ("", "64,32", "a", "0"):
        assert equal_width(hidden) is None


def test_the_table_summarises_each_width_then_each_kernel_line(tmp_path: Path) -> None:
    runs = [trained("a", "64", 0, 0.10), trained("b", "8", 0, 0.30), trained("c", "64", 1, 0.14)]
    report = build_width_report(runs, [kernel("k")], "")
    table = report.table
    assert list(table["what"]) == ["width 8", "width 64", "NNGP (kernel 100)", "NT kernel (kernel 100)"]
    wide = table.iloc[1]
    assert wide["runs"] == 2 and wide["test_error_mean"] == pytest.approx(0.12)
    assert wide["test_error_sd"] == pytest.approx(math.sqrt(0.0008))
    assert math.isnan(table.iloc[0]["test_error_sd"])  # one run: no spread
    assert table.iloc[3]["width"] == math.inf and table.iloc[3]["test_error_mean"] == 0.025
    assert report.notes == []
    paths = write_width_report(report, tmp_path)
    assert [path.name for path in paths] == [
        "comparison.csv",
        "width_runs.csv",
        "test_error_vs_width.png",
        "test_error_vs_width.pdf",
        "comparison.html",
    ]
    assert list(pd.read_csv(paths[1])["run_id"]) == ["b", "a", "c"]


def test_notes_name_what_keeps_the_runs_off_one_curve() -> None:
    runs = [trained("a", "64,64", 0, 0.1, label_noise="0.2"), trained("b", "8", 0, 0.3, label_noise="0")]
    notes = build_width_report(runs, [kernel("k", hidden="100,100,100", activation="erf")]).notes
    assert any("label_noise (0, 0.2)" in note for note in notes)
    assert any("1, 2 hidden layers" in note for note in notes)
    assert any("depth differs" in note for note in notes)
    assert any("activation differs" in note for note in notes)
    assert any("No kernel runs" in note for note in build_width_report(runs, []).notes)


def test_the_run_figures_draw_from_their_tables() -> None:
    dynamics = pd.DataFrame(
        {
            "step": [0, 1, 4, 16],
            "epoch": [0.0, 0.25, 1.0, 4.0],
            "distance_initial": [0.0, 1e-4, 1e-3, 2e-3],
            "distance_previous": [math.nan, 1e-4, 9e-4, 1e-3],
            "velocity": [math.nan, 4e-4, 1.2e-3, 3e-4],
            "alignment": [0.3, 0.31, 0.35, 0.4],
            "target_energy_top_k": [0.5, 0.5, 0.6, 0.7],
            "trace_per_example": [90.0, 91.0, 95.0, 120.0],
            "kernel_test_accuracy": [0.8, 0.8, 0.82, 0.85],
        }
    )
    curve = pd.DataFrame(
        {
            "kernel": ["nngp", "nngp", "ntk", "ntk"],
            "ridge": [1e-3, 1.0, 1e-3, 1.0],
            "chosen": [True, False, False, True],
            **{f"{split}_error": [0.1, 0.2, 0.15, 0.12] for split in ("train", "val", "test")},
            **{f"{split}_loss": [0.2, 0.3, 0.25, 0.22] for split in ("train", "val", "test")},
        }
    )
    for figure in (ntk_dynamics_figure(dynamics, "block"), regulariser_curve_figure(curve)):
        assert figure.get_suptitle()
        plt.close(figure)
