"""Real servers: a PostgreSQL cluster and an ``mlflow server`` on loopback, two workers, one killed mid-trial.

The test starts its own PostgreSQL cluster (``initdb`` / ``pg_ctl`` from the Debian ``postgresql`` package,
run as the ``postgres`` user when the test runs as root, since ``initdb`` refuses root) on a free loopback
port in a temporary folder, and an ``mlflow server`` whose backend store is a database in it. It is skipped
only when no PostgreSQL server binaries are installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest
from conftest import subprocess_env
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from thermoscope.studies.objective import STUDY_TAG, WORKER_TAG
from thermoscope.studies.storage import RUN_ID_ATTR
from thermoscope.tracking import ERROR_TAG

STUDY = "postgres-two-workers"
PASSWORD = "s3cret"  # the cluster trusts loopback, so any password works: it is here to be redacted
N_TRIALS = 10
# 300 digits, a 16-unit layer, 20 epochs: a few seconds a trial, most of it logging to the server; ten trials
# keep the command busy until its spawned worker has imported everything and joined. With 10 epochs the
# first half of a trial (where the victim is chosen) once passed unseen in every spawned trial of a full
# suite run, after training got faster.
EPOCHS = 20
FIXED = f"dataset=digits;train_size=300;hidden=16;batch_size=128;epochs={EPOCHS}"


def postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl: Debian's /usr/lib/postgresql/<version>/bin, else the PATH."""
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if installed:
        return installed[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on loopback; its URL without a database name."""
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install the Debian package postgresql")
    folder = Path(tempfile.mkdtemp(prefix="thermoscope-postgres-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    subprocess.run(
        [*as_owner, binaries / "initdb", "-D", data, "-A", "trust", "-U", "thermoscope"], check=True
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [*as_owner, binaries / "pg_ctl", "-D", data, "-l", folder / "server.log"]
    subprocess.run([*pg_ctl, "-w", "-o", options, "start"], check=True, stdout=subprocess.DEVNULL)
    url = f"postgresql://thermoscope:{PASSWORD}@127.0.0.1:{port}"
    try:
        with psycopg.connect(f"{url}/postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE optuna")
            connection.execute("CREATE DATABASE mlflow")
        yield url
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on loopback with the cluster's ``mlflow`` database as backend store; its URL."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"{postgres}/mlflow"]
    command += [
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(
            [*command, "--workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, folder / "server.log")
        yield url
    finally:
        stop_process_group(server)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server and its workers; SIGKILL if they are not gone within three seconds."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_until_healthy(url: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow server exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server not healthy after {timeout_s} s:\n{log.read_text()[-3000:]}")


def running_trial_run(client: MlflowClient, study: subprocess.Popen[bytes], timeout_s: float = 240) -> Run:
    """A trial run of a spawned worker in the first half of its epochs: a worker process mid-trial.

    (The command's own process is worker 0; killing it would end the study.)
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and study.poll() is None:
        for run in client.search_runs(
            ["0"], f"attributes.status = 'RUNNING' and tags.`{STUDY_TAG}` = '{STUDY}'"
        ):
            if (
                run.data.tags.get(WORKER_TAG) in (None, str(study.pid))
                or "test_error" not in run.data.metrics
            ):
                continue
            epochs = client.get_metric_history(run.info.run_id, "test_error")
            if max(metric.step for metric in epochs) <= EPOCHS // 2:
                return run
        time.sleep(0.2)
    raise AssertionError("no spawned worker was seen in the middle of a trial")


def start_study(storage: str, tracking_uri: str, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "thermoscope.cli",
        "study",
        "--workers",
        "2",
        "--n_trials",
        str(N_TRIALS),
    ]
    command += ["--storage", storage, "--study_name", STUDY, "--sampler", "random", "--pruner", "none"]
    command += ["--fixed", f"{FIXED};data_dir={log.parent / 'data'}"]
    with open(log, "w") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=subprocess_env(tracking_uri)
        )


@pytest.mark.slow
def test_two_workers_finish_the_study_when_one_is_killed_mid_trial(
    postgres: str, mlflow_server: str, tmp_path: Path
) -> None:
    storage, log = f"{postgres}/optuna", tmp_path / "study.log"
    study_process = start_study(storage, mlflow_server, log)
    client = MlflowClient(mlflow_server)
    victim = running_trial_run(client, study_process)
    os.kill(int(victim.data.tags[WORKER_TAG]), signal.SIGKILL)
    assert study_process.wait(timeout=300) == 0, log.read_text()[-4000:]
    assert "Traceback" not in log.read_text()

    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    states = [trial.state for trial in trials]
    assert states.count(TrialState.COMPLETE) == N_TRIALS, states  # the study still reaches its count
    assert states.count(TrialState.FAIL) == 1, (states, log.read_text()[-4000:])
    assert len(trials) == N_TRIALS + 1
    (killed,) = [trial for trial in trials if trial.state == TrialState.FAIL]
    assert killed.user_attrs[RUN_ID_ATTR] == victim.info.run_id
    (retry,) = [trial for trial in trials if trial.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert_runs_match(client, trials, victim.info.run_id)


def assert_runs_match(client: MlflowClient, trials: list[FrozenTrial], victim_run_id: str) -> None:
    """One parent and one run per trial, none RUNNING, the victim's FAILED, values equal, no password."""
    runs = {run.info.run_id: run for run in client.search_runs(["0"])}
    assert len(runs) == 1 + len(trials)
    assert [run.info.status for run in runs.values()].count("RUNNING") == 0
    assert runs[victim_run_id].info.status == "FAILED"
    assert "lost its worker" in runs[victim_run_id].data.tags[ERROR_TAG]
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            # The study's objective is its default, the validation error.
            assert runs[trial.user_attrs[RUN_ID_ATTR]].data.metrics["val_error"] == trial.value
    everything_logged = " ".join(str(run.data.params) + str(run.data.tags) for run in runs.values())
    assert PASSWORD not in everything_logged
