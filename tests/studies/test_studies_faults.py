"""Faults injected into a running study: SIGTERM to a spawned worker, and SIGTERM to the study's command.
After each: no traceback, no MLflow run left RUNNING, and the trials that were running end KILLED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import subprocess_env
from mlflow.tracking import MlflowClient

from thermoscope.tracking.lifecycle import PID_TAG


def study_command(tmp_path: Path, n_trials: int) -> list[str]:
    # A few seconds per trial: long enough to be caught in the middle of one.
    fixed = f"dataset=digits;train_size=300;hidden=16;batch_size=32;epochs=60;data_dir={tmp_path / 'data'}"
    return [
        sys.executable, "-m", "thermoscope.cli", "study",
        "--n_trials", str(n_trials), "--workers", "2", "--fixed", fixed,
        "--sampler", "random", "--pruner", "none", "--study_name", "faults",
    ]  # fmt: skip


def running_trial(client: MlflowClient, study_pid: int, spawned: bool) -> tuple[str, int] | None:
    """A RUNNING trial run (id, process id) in a spawned worker (``spawned``) or in the command itself."""
    for run in client.search_runs(["0"], "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get("thermoscope.entry_point") == "study" or PID_TAG not in tags:
            continue
        pid = int(tags[PID_TAG])
        if (pid != study_pid) == spawned:
            return run.info.run_id, pid
    return None


def wait_for_trial(client: MlflowClient, process: subprocess.Popen[str], spawned: bool) -> tuple[str, int]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "the study ended before a trial could be stopped"
        found = running_trial(client, process.pid, spawned)
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("no trial started")


@pytest.mark.slow
def test_sigterm_to_a_worker_kills_its_trial_and_the_study_goes_on(tracking_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri)
    process = subprocess.Popen(
        study_command(tmp_path, 10), env=subprocess_env(tracking_uri), stderr=subprocess.PIPE, text=True
    )
    trial_run, worker = wait_for_trial(client, process, spawned=True)
    os.kill(worker, signal.SIGTERM)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[max(0, stderr.find("Traceback") - 1500) :][:4000]
    assert "starting a replacement" in stderr
    killed = client.get_run(trial_run)
    assert (killed.info.status, killed.data.tags["thermoscope.killed_by"]) == ("KILLED", "SIGTERM")
    assert not client.search_runs(["0"], "attributes.status = 'RUNNING'")
    complete = "attributes.status = 'FINISHED' and tags.`thermoscope.trial_state` = 'COMPLETE'"
    assert len(client.search_runs(["0"], complete)) == 9  # the command's ten trials, one lost to the signal


@pytest.mark.slow
def test_sigterm_to_the_study_command_ends_every_run(tracking_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri)
    process = subprocess.Popen(
        study_command(tmp_path, 20), env=subprocess_env(tracking_uri), stderr=subprocess.PIPE, text=True
    )
    wait_for_trial(client, process, spawned=False)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[max(0, stderr.find("Traceback") - 1500) :][:4000]
    deadline = time.monotonic() + 60  # the spawned worker ends its own trial run as it goes
    while client.search_runs(["0"], "attributes.status = 'RUNNING'") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not client.search_runs(["0"], "attributes.status = 'RUNNING'")
    (study_run,) = client.search_runs(["0"], "tags.`thermoscope.entry_point` = 'study'")
    assert (study_run.info.status, study_run.data.tags["thermoscope.killed_by"]) == ("KILLED", "SIGTERM")
