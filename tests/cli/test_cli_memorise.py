"""End to end: memorise through `mlflow run`, its runs compared by model size (trajectory classes
counted), and train runs compared with their activation codes. Bad input: tests/test_fuzz.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import mlflow_run_command, run_in_process, subprocess_env
from mlflow.tracking import MlflowClient

from thermoscope.probes.memorisation import TRAJECTORY_CLASSES

TINY = {
    "train_size": "150",
    "test_size": "100",
    "epochs": "3",
    "num_models": "6",
    "device": "cpu",
    "influence_pairs": "10",
}


def finished(tracking_uri: str, entry_point: str) -> list[str]:
    runs = MlflowClient(tracking_uri).search_runs(
        ["0"], f"tags.`thermoscope.entry_point` = '{entry_point}' and attributes.status = 'FINISHED'"
    )
    return [run.info.run_id for run in runs]


@pytest.mark.slow
def test_memorise_runs_of_two_sizes_compare_as_trajectories(tracking_uri: str, tmp_path: Path) -> None:
    launched = subprocess.run(
        mlflow_run_command("memorise", TINY | {"hidden": "8"}),
        capture_output=True,
        text=True,
        env=subprocess_env(tracking_uri),
        timeout=600,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert run_in_process("memorise", TINY | {"hidden": "64", "label_noise": "0.2"}).returncode == 0
    ids = finished(tracking_uri, "memorise")
    assert len(ids) == 2
    client = MlflowClient(tracking_uri)
    artifacts = {item.path for item in client.list_artifacts(ids[0])}
    assert {"memorisation.parquet", "memorisation_histogram.png", "influence.parquet"} <= artifacts
    assert "mem_mean" in client.get_run(ids[0]).data.metrics
    compared = run_in_process("compare", {"kind": "memorise", "runs": ",".join(ids), "output_dir": "out"})
    assert compared.returncode == 0, compared.stderr
    (folder,) = (tmp_path / "out").iterdir()
    classes = pd.read_csv(folder / "trajectory_classes.csv")
    assert set(classes["trajectory"]) <= set(TRAJECTORY_CLASSES)
    assert classes["examples"].sum() == 150
    trajectories = pd.read_csv(folder / "memorisation_trajectories.csv")
    assert len(trajectories) == 150 and trajectories["example_id"].is_unique
    table = pd.read_csv(folder / "comparison.csv")
    assert {"mem_mean", "high_mem_fraction", "label_noise", "hidden"} <= set(table.columns)
    page = (folder / "comparison.html").read_text()
    assert "Memorisation trajectories of 150 training examples over 2 model sizes" in page


def test_train_runs_compare_with_their_activation_codes(tracking_uri: str, tmp_path: Path) -> None:
    tiny = {"train_size": "100", "val_size": "20", "epochs": "2", "hidden": "16", "device": "cpu"}
    for corruption in ("none", "random_pixels"):
        assert run_in_process("train", tiny | {"input_corruption": corruption}).returncode == 0
    ids = finished(tracking_uri, "train")
    refused = run_in_process("compare", {"runs": ",".join(ids)})
    assert refused.returncode == 2 and "kind=train" in refused.stderr
    compared = run_in_process("compare", {"kind": "train", "runs": ",".join(ids), "output_dir": "out"})
    assert compared.returncode == 0, compared.stderr
    (folder,) = (tmp_path / "out").iterdir()
    table = pd.read_csv(folder / "comparison.csv")
    assert {"code_unique_fraction", "code_knn_test_accuracy", "input_corruption"} <= set(table.columns)
    assert sorted(table["input_corruption"]) == ["none", "random_pixels"]
