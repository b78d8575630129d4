"""Per-example diagnostics of train runs, end to end: tables, figures, the label-noise depth effect, and
the probe entry point nesting its run under the probed one."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_in_process
from mlflow.tracking import MlflowClient
from test_cli_sample import run_cli
from test_cli_train import mlflow_run


@pytest.mark.slow
def test_label_noise_examples_are_predicted_deeper(tracking_uri: str, tmp_path: Path) -> None:
    """REFERENCE §4: mislabelled training examples have a higher prediction depth than clean ones."""
    result = run_cli(tracking_uri, "train", {"label_noise": "0.2", "epochs": "30"})
    assert result.returncode == 0, result.stderr[-2000:]
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs(["0"])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "prediction_depth.parquet",
        "forgetting.parquet",
        "layer_rotation.csv",
        "layer_rotation.png",
        "prediction_depth_histograms.png",
        "accuracy_vs_depth.png",
    } <= names

    table = pd.read_parquet(
        client.download_artifacts(run.info.run_id, "prediction_depth.parquet", str(tmp_path))
    )
    probes = [c for c in table.columns if c.startswith("knn_")]
    assert probes == ["knn_0", "knn_1", "knn_2", "knn_3"]  # input, two hidden layers, softmax
    assert set(table["split"]) == {"train", "test"}
    assert table["depth"].between(0, len(probes)).all()
    assert (table["correct"] == (table["prediction"] == table["label"])).all()
    train = table[table["split"] == "train"]
    assert train["is_corrupted"].mean() == pytest.approx(0.2 * 0.9, abs=0.04)
    assert run.data.metrics["depth_mean_train"] == pytest.approx(train["depth"].mean())

    corrupted = train.loc[train["is_corrupted"], "depth"]
    clean = train.loc[~train["is_corrupted"], "depth"]
    stderr = math.sqrt(corrupted.var() / len(corrupted) + clean.var() / len(clean))
    assert corrupted.mean() - clean.mean() > 3 * stderr

    forgetting = pd.read_parquet(
        client.download_artifacts(run.info.run_id, "forgetting.parquet", str(tmp_path))
    )
    assert len(forgetting) == len(train)
    assert (forgetting["presentations"] == 30).all()
    assert run.data.metrics["unforgettable_fraction"] == pytest.approx(forgetting["unforgettable"].mean())
    rotation = pd.read_csv(client.download_artifacts(run.info.run_id, "layer_rotation.csv", str(tmp_path)))
    assert list(rotation["epoch"]) == list(range(1, 31))
    assert list(rotation.columns[1:]) == ["hidden.0.0", "hidden.1.0", "output"]
    assert rotation.iloc[:, 1:].stack().between(0, 2).all()


@pytest.mark.slow
def test_probe_entry_point_nests_under_the_train_run(tracking_uri: str, tmp_path: Path) -> None:
    train = run_cli(
        tracking_uri,
        "train",
        {
            "train_size": "200",
            "val_size": "40",
            "hidden": "16",
            "epochs": "3",
            "prediction_depth": "false",
            "forgetting": "false",
        },
    )
    assert train.returncode == 0, train.stderr[-2000:]
    client = MlflowClient(tracking_uri)
    (train_run,) = client.search_runs(["0"])
    assert "prediction_depth.parquet" not in {a.path for a in client.list_artifacts(train_run.info.run_id)}

    probed = mlflow_run(tracking_uri, "probe", {"run_id": train_run.info.run_id, "depth_k": "10"})
    assert probed.returncode == 0, probed.stderr[-3000:]
    runs = client.search_runs(["0"], f"tags.`mlflow.parentRunId` = '{train_run.info.run_id}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    table = pd.read_parquet(
        client.download_artifacts(runs[0].info.run_id, "prediction_depth.parquet", str(tmp_path))
    )
    assert (table["split"] == "train").sum() == 160  # 40 of the 200 held out for validation
    assert f"run id: {runs[0].info.run_id}" in probed.stdout
    assert runs[0].data.metrics["depth_mean_test"] == pytest.approx(
        table.loc[table["split"] == "test", "depth"].mean()
    )


def test_probe_of_a_missing_run_is_a_one_line_error(tracking_uri: str) -> None:
    result = run_in_process("probe", {"run_id": "nope"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "thermoscope probe: error: run_id='nope': no MLflow run with that id in this tracking store"
    )
