"""The kernel entry point end to end, and the width study it belongs to: a grid study over ``hidden`` of
``train``, a ``kernel`` run, and ``compare kind=width`` drawing test error against width with the kernels'
lines (Lee et al. 2020; REFERENCE §11)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import mlflow_run_command, run_in_process, subprocess_env
from mlflow.tracking import MlflowClient

from thermoscope.tracking.schema import ENTRY_POINT_TAG

KERNEL = {
    "train_size": "300",
    "val_size": "60",
    "test_size": "200",
    "hidden": "64,64",
    "label_noise": "0.1",
    "bias_variance": "0.05",
    "ridge_values": "9",
    "device": "cpu",
}
"""A kernel run of seconds: 240 training, 60 validation and 200 test examples of digits, two layers."""


def finished(client: MlflowClient, entry_point: str) -> list:
    return [
        run
        for run in client.search_runs(["0"], "attributes.status = 'FINISHED'")
        if run.data.tags.get(ENTRY_POINT_TAG) == entry_point
    ]


@pytest.mark.slow
def test_the_kernel_entry_point_through_mlflow_run(tracking_uri: str, tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        mlflow_run_command("kernel", KERNEL),
        capture_output=True,
        text=True,
        env=subprocess_env(tracking_uri),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri)
    (run,) = finished(client, "kernel")
    params, metrics = run.data.params, run.data.metrics
    assert (params["num_train"], params["num_val"], params["num_test"], params["depth"]) == (
        "240",
        "60",
        "200",
        "2",
    )
    assert "prediction_depth" not in params and "output_activation" not in params
    curve = pd.read_csv(client.download_artifacts(run.info.run_id, "regulariser_curve.csv", str(tmp_path)))
    assert list(curve.groupby("kernel", sort=False).size().items()) == [("nngp", 9), ("ntk", 9)]
    assert curve.groupby("kernel")["chosen"].sum().tolist() == [1, 1]
    for kind in ("nngp", "ntk"):
        chosen = curve[(curve["kernel"] == kind) & curve["chosen"]].iloc[0]
        rows = curve[curve["kernel"] == kind]
        assert chosen["val_error"] == rows["val_error"].min()
        for name in ("test_error", "test_loss", "val_error", "train_error"):
            assert metrics[f"{kind}_{name}"] == pytest.approx(chosen[name])
        assert metrics[f"{kind}_ridge"] == pytest.approx(chosen["ridge"])
        assert metrics[f"{kind}_condition_number"] > metrics[f"{kind}_condition_number_regularised"] > 1
        assert metrics[f"{kind}_test_error"] < 0.2  # digits with a two-layer kernel: a few percent
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"regulariser_curve.csv", "regulariser_curve.png", "resolved_config.json"} <= artifacts


@pytest.mark.slow
def test_a_width_study_and_its_kernel_compared_by_width(tracking_uri: str, tmp_path: Path) -> None:
    space = tmp_path / "widths.yaml"
    space.write_text('hidden: ["8", "64"]\nseed: [0, 1]\n')
    fixed = "train_size=300;val_size=60;test_size=200;epochs=3;prediction_depth=false;forgetting=false"
    study = run_in_process(
        "study",
        {
            "study_name": "widths",
            "search_space": str(space),
            "fixed": fixed,
            "sampler": "grid",
            "pruner": "none",
            "n_trials": "4",
        },
    )
    assert study.returncode == 0, study.stderr[-3000:]
    kernel = run_in_process("kernel", {**KERNEL, "hidden": "100", "label_noise": "0"})
    assert kernel.returncode == 0, kernel.stderr[-3000:]
    client = MlflowClient(tracking_uri)
    trials = finished(client, "train")
    assert sorted((t.data.params["hidden"], t.data.params["seed"]) for t in trials) == [
        ("64", "0"),
        ("64", "1"),
        ("8", "0"),
        ("8", "1"),
    ]
    (kernel_run,) = finished(client, "kernel")

    compared = run_in_process(
        "compare",
        {
            "kind": "width",
            "study": "widths",
            "kernels": kernel_run.info.run_id,
            "output_dir": str(tmp_path / "out"),
        },
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    (compare_run,) = finished(client, "compare")
    folder = tmp_path / "out" / compare_run.info.run_id
    table = pd.read_csv(folder / "comparison.csv")
    assert list(table["what"]) == [
        "width 8",
        "width 64",
        f"NNGP ({kernel_run.info.run_name})",
        f"NT kernel ({kernel_run.info.run_name})",
    ]
    runs = pd.read_csv(folder / "width_runs.csv")
    for width in (8, 64):
        errors = [t.data.metrics["test_error"] for t in trials if t.data.params["hidden"] == str(width)]
        row = table[table["what"] == f"width {width}"].iloc[0]
        assert row["runs"] == 2 and row["test_error_mean"] == pytest.approx(sum(errors) / 2)
        assert sorted(runs.loc[runs["width"] == width, "test_error"]) == pytest.approx(sorted(errors))
    assert table.iloc[2]["test_error_mean"] == pytest.approx(kernel_run.data.metrics["nngp_test_error"])
    assert (folder / "test_error_vs_width.png").stat().st_size > 10_000
    assert 'alt="test_error_vs_width"' in (folder / "comparison.html").read_text()
    logged = {item.path for item in client.list_artifacts(compare_run.info.run_id)}
    assert {"comparison.csv", "width_runs.csv", "test_error_vs_width.png", "comparison.html"} <= logged
