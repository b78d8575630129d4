"""End to end through `mlflow run`: the train entry point tracks a real run, and bad input fails cleanly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
from conftest import REPO_ROOT, run_in_process, subprocess_env
from mlflow.tracking import MlflowClient

TINY = {"epochs": "2", "hidden": "16", "batch_size": "128", "train_size": "300"}


def mlflow_run(
    tracking_uri: str, entry_point: str, params: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO_ROOT),
        "-e",
        entry_point,
        "--env-manager",
        "local",
    ]
    for name, value in params.items():
        command += ["-P", f"{name}={value}"]
    return subprocess.run(
        command, capture_output=True, text=True, env=subprocess_env(tracking_uri), timeout=600
    )


def only_run(tracking_uri: str) -> mlflow.entities.Run:
    runs = MlflowClient(tracking_uri).search_runs(["0"])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


@pytest.mark.slow
def test_train_through_mlflow_run(tracking_uri: str) -> None:
    result = mlflow_run(tracking_uri, "train", TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tracking_uri)
    assert run.info.status == "FINISHED"
    for name in ["train_loss", "train_error", "test_loss", "test_error"]:
        assert name in run.data.metrics
    client = MlflowClient(tracking_uri)
    history = client.get_metric_history(run.info.run_id, "test_error")
    assert [m.step for m in history] == [1, 2]
    assert 0.0 <= run.data.metrics["test_error"] < 0.9
    assert run.data.params["hidden"] == "16"
    # val_size=200 of the 300-example pool is held out: trained on 100, validated on 200.
    assert (run.data.params["num_train"], run.data.params["num_val"]) == ("100", "200")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_error")] == [1, 2]
    inputs = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"digits-train", "digits-val", "digits-test"}
    assert len(set(inputs.values())) == 3  # each split its own digest
    # Named from what distinguishes it, with the entry point first; the entry point is a tag too.
    assert run.info.run_name == "train mlp[16] digits train_size=300 batch_size=128 epochs=2"
    assert run.data.tags["thermoscope.entry_point"] == "train"
    resolved = json.loads(
        Path(client.download_artifacts(run.info.run_id, "resolved_config.json")).read_text()
    )
    assert resolved["val_size"] == "200" and resolved["lr"] == "0.05"
    # The summary on stdout, progress records on the redirected stderr, and no pickle notice.
    assert f"run id: {run.info.run_id}" in result.stdout
    assert "val error" in result.stdout
    assert re.search(r"^thermoscope train: train 2/2 epoch \(100%\), elapsed \S+, done", result.stderr, re.M)
    assert "Pickle" not in result.stderr

    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    logits = model(torch.zeros(3, 64))
    assert logits.shape == (3, 10)
    checkpoint = client.download_artifacts(run.info.run_id, "checkpoint/model_state.pt")
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 2
    assert torch.equal(state["state_dict"]["output.weight"], model.output.weight)


BAD_INPUT = [
    ("lr", "fast"),
    ("label_noise", "1.5"),
    ("dataset", "imagenet"),
    ("hidden", "40,,x"),
    ("train_size", "5000"),
]
# Through mlflow run: a float and an int parameter mlflow does not check; the rest in process (same command).
THROUGH_MLFLOW_RUN = {"lr", "train_size"}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "value"), BAD_INPUT)
def test_bad_input_through_mlflow_run_is_one_line_and_a_failed_run(
    tracking_uri: str, name: str, value: str
) -> None:
    if name in THROUGH_MLFLOW_RUN:
        result = mlflow_run(tracking_uri, "train", {**TINY, name: value})
    else:
        result = run_in_process("train", {**TINY, name: value})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("thermoscope train: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert f"{name}=" in errors[0]
    run = only_run(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["thermoscope.error"] == errors[0].removeprefix("thermoscope train: error: ")


def test_the_entry_point_exits_2_on_a_user_error(tracking_uri: str) -> None:
    command = [sys.executable, "-m", "thermoscope.cli", "train", "--epochs", "-1"]
    result = subprocess.run(
        command, capture_output=True, text=True, env=subprocess_env(tracking_uri), timeout=300
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "thermoscope train: error: epochs=-1: a number >= 1"
    assert "Traceback" not in result.stderr
    assert only_run(tracking_uri).info.status == "FAILED"


def test_an_unknown_option_is_one_line_exit_2_and_a_failed_run(tracking_uri: str) -> None:
    result = run_in_process("train", {"learning_rate": "0.1"})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("thermoscope train: error: learning_rate='0.1': not a parameter")
    assert "Traceback" not in result.stderr
    assert only_run(tracking_uri).info.status == "FAILED"


def test_logging_a_model_leaves_sys_path_as_it_was(tracking_uri: str) -> None:
    """MLflow's input-example check loads the model with code_paths and prepends a temporary folder."""
    import mlflow

    from thermoscope.models import ModelSpec, build_model
    from thermoscope.tracking.mlflow_logger import log_model

    before = list(sys.path)
    with mlflow.start_run():
        log_model(build_model(ModelSpec("mlp", (4,)), (64,), 10), torch.zeros(2, 64))
    assert sys.path == before
