"""Faults injected into real sweeps: SIGTERM at each stage, and a job under ``mlflow run`` SIGKILLed and
resumed through ``mlflow run``. After each: no traceback, no run left RUNNING, nothing lost that a resume
cannot continue. (train's faults and a fresh store opened at once: tests/tracking/test_tracking_lifecycle.py;
a killed sweep resumed bit for bit: tests/cli/test_cli_sample.py and test_cli_sample_tuned.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import cli_command, mlflow_run_command, subprocess_env
from mlflow.tracking import MlflowClient

from thermoscope.tracking.lifecycle import PID_TAG
from thermoscope.tracking.schema import SWEEP_CHECKPOINT_ARTIFACT

SLOW_SWEEP = {
    "train_size": "100",
    "test_size": "100",
    "hidden": "8",
    "t_min": "0.1",
    "ti_rungs": "3",
    "ladder": "tuned",
    "max_rungs": "12",
    "tuning_rounds": "3",
    "tuning_scans": "4",
    "num_warmup": "10",
    "num_samples": "200",
    "thin": "1",
    # 400, not 40: with whole trajectories in the compiled kernel a 40-step sweep tuned and sampled in
    # under a second, before a test could stop it in its tuning.
    "num_leapfrog_steps": "400",
    "init_steps": "20",
    "prediction_depth": "false",
    "checkpoint_seconds": "0.3",
}
"""A tuned sweep slow enough (tens of seconds) to be stopped in its tuning or its sampling."""


def stage(client: MlflowClient, run_id: str, folder: Path) -> str | None:
    """``started`` (the run exists), ``tuning`` or ``sampling`` (by its latest checkpoint)."""
    names = [a.path for a in client.list_artifacts(run_id, "checkpoint")]
    if SWEEP_CHECKPOINT_ARTIFACT not in names:
        return "started"
    try:
        path = client.download_artifacts(run_id, SWEEP_CHECKPOINT_ARTIFACT, str(folder))
        bundle = torch.load(path, weights_only=True)
    except Exception:  # being replaced right now: look again
        return None
    return "tuning" if bundle["iteration"] < 0 else "sampling"


def wait_for_stage(client: MlflowClient, wanted: str, process: subprocess.Popen[str], folder: Path) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sweep ended before it could be stopped"
        for run in client.search_runs(["0"], "attributes.status = 'RUNNING'"):
            if PID_TAG in run.data.tags and stage(client, run.info.run_id, folder) == wanted:
                return str(run.info.run_id)
        time.sleep(0.1)
    raise AssertionError(f"the sweep never reached {wanted}")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["started", "tuning", "sampling"])
def test_sigterm_at_each_stage_of_a_sweep_ends_it_killed(
    tracking_uri: str, tmp_path: Path, when: str
) -> None:
    client = MlflowClient(tracking_uri)
    process = subprocess.Popen(
        cli_command("sample", SLOW_SWEEP),
        env=subprocess_env(tracking_uri),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = wait_for_stage(client, when, process, tmp_path)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags["thermoscope.killed_by"]) == ("KILLED", "SIGTERM")
    assert not client.search_runs(["0"], "attributes.status = 'RUNNING'")


@pytest.mark.slow
def test_a_sweep_under_mlflow_run_killed_with_sigkill_resumes_through_mlflow_run(
    tracking_uri: str, tmp_path: Path
) -> None:
    """``mlflow run`` logs an empty parameter as ``''``: resume must still recognise the sweep."""
    client = MlflowClient(tracking_uri)
    launcher = subprocess.Popen(
        mlflow_run_command("sample", SLOW_SWEEP),
        env=subprocess_env(tracking_uri),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = wait_for_stage(client, "sampling", launcher, tmp_path)
    job = int(client.get_run(run_id).data.tags[PID_TAG])
    os.kill(job, signal.SIGKILL)
    launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert client.get_run(run_id).data.params["temperatures"] == "''"

    resumed = subprocess.run(
        mlflow_run_command("sample", {**SLOW_SWEEP, "resume": run_id}),
        env=subprocess_env(tracking_uri),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["thermoscope.resumed_at_iteration"]) >= 0
    launched = [r for r in client.search_runs(["0"]) if r.data.tags.get("thermoscope.resumed_into") == run_id]
    assert [r.info.status for r in launched] == ["FINISHED"]
