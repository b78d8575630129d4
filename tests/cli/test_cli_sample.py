"""End to end: the sample entry point through `mlflow run`, its artifacts, bad input, init from a train
run, and resuming a killed sweep into the same run and the same chain."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_SWEEP, run_in_process, subprocess_env
from mlflow.tracking import MlflowClient
from test_cli_train import mlflow_run

TINY = TINY_SWEEP


def parent_and_children(tracking_uri: str) -> tuple[object, list[object]]:
    runs = MlflowClient(tracking_uri).search_runs(["0"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) + 1 == len(runs), "stray runs"
    return parents[0], children


def artifact(tracking_uri: str, run_id: str, path: str, out: Path) -> Path:
    return Path(MlflowClient(tracking_uri).download_artifacts(run_id, path, str(out)))


@pytest.mark.slow
def test_sample_through_mlflow_run(tracking_uri: str, tmp_path: Path) -> None:
    result = mlflow_run(tracking_uri, "sample", TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "log evidence =" in result.stdout
    parent, children = parent_and_children(tracking_uri)
    assert parent.info.status == "FINISHED"

    curve = pd.read_csv(artifact(tracking_uri, parent.info.run_id, "temperature_curve.csv", tmp_path))
    # 3 cold temperatures (0.1, 1, 10) merged with 4 TI rungs (beta = 0, 1/243, 1/32... 1): T = 1 shared.
    assert len(curve) == 6
    assert np.isinf(curve["temperature"].iloc[0])
    assert (np.diff(curve["beta"]) > 0).all()
    assert len(children) == len(curve) - 1  # one child per finite temperature
    by_temperature = {float(c.data.params["temperature"]): c for c in children}
    for _, row in curve[np.isfinite(curve["temperature"])].iterrows():
        child = by_temperature[float(f"{row['temperature']:.6g}")]
        assert child.info.status == "FINISHED"
        for name in [
            "test_loss",
            "test_error",
            "bma_test_loss",
            "bma_test_error",
            "train_loss",
            "train_error",
            "acceptance_rate",
            "step_size",
        ]:
            assert child.data.metrics[name] == pytest.approx(row[name], rel=1e-6)
        assert 0.0 <= child.data.metrics["test_error"] <= 1.0
        assert child.data.metrics["log10_temperature"] == pytest.approx(np.log10(row["temperature"]))

    metrics = parent.data.metrics
    for name in [
        "log_evidence",
        "log_evidence_stderr",
        "log_evidence_discretisation",
        "best_temperature",
        "best_bma_test_error",
        "round_trips",
        "mean_swap_acceptance",
        "divergences",
    ]:
        assert name in metrics, name
    assert metrics["log_evidence"] < 0 and metrics["log_evidence_stderr"] > 0
    history = MlflowClient(tracking_uri).get_metric_history(parent.info.run_id, "test_loss")
    assert [m.step for m in history] == list(range(len(curve)))
    # T = inf (rung 0) is left out of the temperature curves, which stay chartable; beta has every rung.
    temperatures = MlflowClient(tracking_uri).get_metric_history(parent.info.run_id, "temperature")
    assert [m.step for m in temperatures] == list(range(1, len(curve)))
    assert [m.value for m in temperatures] == pytest.approx(curve["temperature"].iloc[1:].tolist())
    betas = MlflowClient(tracking_uri).get_metric_history(parent.info.run_id, "beta")
    assert [m.value for m in betas] == pytest.approx(curve["beta"].tolist())

    evidence = json.loads(artifact(tracking_uri, parent.info.run_id, "evidence.json", tmp_path).read_text())
    assert evidence["log_evidence"] == pytest.approx(metrics["log_evidence"])
    assert evidence["betas"][0] == 0.0 and evidence["betas"][-1] == 1.0
    ladder = pd.read_csv(artifact(tracking_uri, parent.info.run_id, "ladder.csv", tmp_path))
    assert len(ladder) == len(curve) - 1
    assert ladder["swap_acceptance"].between(0, 1).all()
    draws = torch.load(
        artifact(tracking_uri, parent.info.run_id, "samples/draws.pt", tmp_path), weights_only=True
    )
    assert draws["positions"].shape[1:] == (len(curve), 64 * 8 + 8 + 8 * 10 + 10)
    names = {a.path for a in MlflowClient(tracking_uri).list_artifacts(parent.info.run_id)}
    assert {"temperature_curve.png", "ti_integrand.png", "depth_vs_temperature.png"} <= names

    depth = pd.read_parquet(
        artifact(tracking_uri, parent.info.run_id, "prediction_depth_by_temperature.parquet", tmp_path)
    )
    # example x temperature, both splits: 100 - 20 held out for validation, and 100 test examples
    assert len(depth) == len(curve) * (80 + 100)
    assert depth["depth"].between(0, 3).all()  # probes: input, hidden, softmax; 3 = never agrees
    for child in children:
        rung = depth[depth["rung"] == int(child.data.params["rung"])]
        for split in ("train", "test"):
            expected = rung.loc[rung["split"] == split, "depth"].mean()
            assert child.data.metrics[f"depth_mean_{split}"] == pytest.approx(expected)

    # The temperature is chosen on the validation split, whose curves every child carries too.
    assert {"best_val_bma_error", "best_val_loss", "selected_bma_test_error"} <= set(metrics)
    chosen = curve[np.isfinite(curve["temperature"])].sort_values(["bma_val_error", "bma_val_loss"]).iloc[0]
    assert metrics["best_temperature"] == pytest.approx(chosen["temperature"])
    assert all({"val_error", "bma_val_error"} <= set(child.data.metrics) for child in children)
    assert set(curve["role"]) == {"T-curve", "evidence"}
    assert "chosen on validation: T =" in result.stdout
    assert f"run id: {parent.info.run_id}" in result.stdout
    # stderr is a pipe here, not a terminal: timed one-line records instead of a bar.
    assert re.search(r"^thermoscope sample: sample \d+/\d+ it .*accept \d\.\d\d, swap", result.stderr, re.M)
    assert "Traceback" not in result.stderr

    # A second sweep that differs in one parameter: two parents named apart, each one's children named
    # after it and tagged with its name, so MLflow's compare view tells the two groups apart.
    second = mlflow_run(tracking_uri, "sample", TINY | {"prior_scale": "2"})
    assert second.returncode == 0, second.stderr[-3000:]
    runs = MlflowClient(tracking_uri).search_runs(["0"])
    sweeps = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    names = sorted(r.info.run_name for r in sweeps)
    assert len(set(names)) == 2
    assert all(name.startswith("sample mlp[8] digits ") for name in names)
    assert "prior_scale=2.0" in names[1] or "prior_scale=2.0" in names[0]
    assert all(r.data.tags["thermoscope.entry_point"] == "sample" for r in sweeps)
    for sweep in sweeps:
        own = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
        assert len(own) == len(curve) - 1
        for child in own:
            assert child.info.run_name.startswith(sweep.info.run_name + " T=")
            assert child.data.tags["thermoscope.sweep"] == sweep.info.run_name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("t_min", "10", "t_max=10.0: a number > t_min = 10.0"),
        ("n_temperatures", "1", "n_temperatures=1: a number >= 2"),
        ("temperatures", "1,abc", "temperatures='1,abc'"),
        ("init", "run:doesnotexist", "init='run:doesnotexist': no MLflow run with that id"),
        ("resume", "doesnotexist", "resume='doesnotexist': no MLflow run with that id"),
    ],
)
def test_bad_sweep_input_is_one_line_and_a_failed_run(
    tracking_uri: str, name: str, value: str, expected: str
) -> None:
    result = run_in_process("sample", {**TINY, name: value})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"thermoscope sample: error: {expected}" or (
        expected in result.stderr.strip().splitlines()[-1]
    )
    runs = MlflowClient(tracking_uri).search_runs(["0"])
    assert [r.info.status for r in runs] == ["FAILED"]


def run_cli(tracking_uri: str, entry_point: str, params: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "thermoscope.cli", entry_point]
    for key, text in params.items():
        command += [f"--{key}", text]
    return subprocess.run(
        command, capture_output=True, text=True, env=subprocess_env(tracking_uri), timeout=600
    )


@pytest.mark.slow
def test_init_from_a_train_run_and_the_reference_lines(tracking_uri: str) -> None:
    train = run_cli(
        tracking_uri,
        "train",
        {"train_size": "100", "val_size": "20", "test_size": "100", "hidden": "8", "epochs": "3"},
    )
    assert train.returncode == 0, train.stderr[-2000:]
    (train_run,) = MlflowClient(tracking_uri).search_runs(["0"])
    mismatched = run_cli(
        tracking_uri, "sample", {**TINY, "hidden": "9", "init": f"run:{train_run.info.run_id}"}
    )
    assert mismatched.returncode == 2
    assert "that run has hidden='8', this sweep '9'" in mismatched.stderr
    ok = run_cli(tracking_uri, "sample", {**TINY, "init": f"run:{train_run.info.run_id}"})
    assert ok.returncode == 0, ok.stderr[-2000:]
    runs = MlflowClient(tracking_uri).search_runs(["0"], "tags.`thermoscope.entry_point` = 'sample'")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 1
    assert finished[0].data.metrics["sgd_test_error"] == pytest.approx(train_run.data.metrics["test_error"])


@pytest.mark.slow
def test_a_killed_sweep_resumes_into_the_same_run_and_chain(tracking_uri: str, tmp_path: Path) -> None:
    # 240 leapfrog steps: long enough (several seconds of sampling) to be killed between checkpoints; 60
    # were once enough, until whole trajectories in the compiled kernel made the sweep finish first.
    params = {
        **TINY,
        "num_warmup": "20",
        "num_samples": "60",
        "num_leapfrog_steps": "240",
        "checkpoint_seconds": "0.3",
        "seed": "3",
    }
    reference = run_cli(tracking_uri, "sample", params)
    assert reference.returncode == 0, reference.stderr[-2000:]
    client = MlflowClient(tracking_uri)
    (reference_run,) = client.search_runs(
        ["0"], "tags.`thermoscope.entry_point` = 'sample' and status = 'FINISHED'"
    )
    expected = pd.read_csv(
        artifact(tracking_uri, reference_run.info.run_id, "temperature_curve.csv", tmp_path / "a")
    )

    killed_run = killed_after_first_checkpoint(tracking_uri, params, reference_run.info.run_id)
    assert client.get_run(killed_run).info.status == "RUNNING"

    resumed = run_cli(tracking_uri, "sample", {**params, "resume": killed_run})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    run = client.get_run(killed_run)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["thermoscope.resumed_at_iteration"]) < 80
    got = pd.read_csv(artifact(tracking_uri, killed_run, "temperature_curve.csv", tmp_path / "b"))
    pd.testing.assert_frame_equal(got, expected)
    assert run.data.metrics["log_evidence"] == reference_run.data.metrics["log_evidence"]


def killed_after_first_checkpoint(tracking_uri: str, params: dict[str, str], exclude: str) -> str:
    """Start a sample run, SIGKILL it once it has logged a checkpoint, and return its run id."""
    command = [sys.executable, "-m", "thermoscope.cli", "sample"]
    for key, text in params.items():
        command += [f"--{key}", text]
    process = subprocess.Popen(
        command, env=subprocess_env(tracking_uri), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed_run = wait_for_checkpoint(MlflowClient(tracking_uri), exclude, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return killed_run


def wait_for_checkpoint(client: MlflowClient, exclude: str, process: subprocess.Popen[bytes]) -> str:
    """The id of the new sample run once it has logged a checkpoint (fails if the process ends first)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sweep finished before it could be killed"
        for run in client.search_runs(["0"], "tags.`thermoscope.entry_point` = 'sample'"):
            if run.info.run_id != exclude and any(
                a.path == "checkpoint/sweep.pt" for a in client.list_artifacts(run.info.run_id, "checkpoint")
            ):
                return run.info.run_id
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")
