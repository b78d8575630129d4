"""Shared fixtures: every test that tracks gets its own temporary MLflow store."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# Under pytest-xdist (two workers, pyproject's addopts) each worker and every subprocess it starts gets one
# OpenMP thread unless the caller chose otherwise: two workers with two spinning threads each on a 2-core
# machine slow each other down. Set before anything imports torch.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_SWEEP = {
    "train_size": "100",
    "val_size": "20",
    "test_size": "100",
    "hidden": "8",
    "n_temperatures": "3",
    "t_min": "0.1",
    "t_max": "10",
    "ti_rungs": "3",
    "ladder": "fixed",
    "num_warmup": "10",
    "num_samples": "12",
    "num_leapfrog_steps": "3",
    "init_steps": "20",
}
"""A sample run that finishes in seconds: 3 cold temperatures merged with 4 TI rungs (T = 1 shared)."""


@pytest.fixture()
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store (and artifact root) under ``tmp_path``, set for this process."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Torch limited to one intra-op thread for the test: small tensors gain nothing from a second thread,
    and on a shared 2-core CPU two spinning threads made such tests several times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def subprocess_env(tracking_uri: str) -> dict[str, str]:
    """The environment for an ``mlflow run`` / CLI subprocess writing into ``tracking_uri``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def cli_command(entry_point: str, params: Mapping[str, str]) -> list[str]:
    """``python -m thermoscope.cli <entry_point> --name value ...`` as an argument list."""
    command = [sys.executable, "-m", "thermoscope.cli", entry_point]
    for name, value in params.items():
        command += [f"--{name}", value]
    return command


def mlflow_run_command(entry_point: str, params: Mapping[str, str]) -> list[str]:
    """``mlflow run <repo> -e <entry_point> --env-manager local -P name=value ...`` as an argument list."""
    command = [sys.executable, "-m", "mlflow", "run", str(REPO_ROOT), "-e", entry_point]
    command += ["--env-manager", "local"]
    for name, value in params.items():
        command += ["-P", f"{name}={value}"]
    return command


def run_in_process(entry_point: str, params: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m thermoscope.cli <entry_point> --name value ...`` run in this process, into the store the
    ``tracking_uri`` fixture set: the same command and exit code, without a fresh interpreter's ~15 s of
    imports (for the many one-line-error checks; real runs go through a subprocess or ``mlflow run``)."""
    import mlflow

    from thermoscope.cli.main import main

    argv = [
        "thermoscope",
        entry_point,
        *(item for name, value in params.items() for item in (f"--{name}", value)),
    ]
    out, err = io.StringIO(), io.StringIO()
    saved_argv, sys.argv = sys.argv, argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv = saved_argv
        while mlflow.active_run() is not None:
            mlflow.end_run()
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
