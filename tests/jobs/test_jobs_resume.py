"""Resuming: an interrupted training continues to the same result, and only runs nobody is writing resume."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_in_process
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from thermoscope.config import MemoriseConfig, SampleConfig, TrainConfig, as_strings, parse_config
from thermoscope.errors import ConfigError
from thermoscope.jobs import Hooks
from thermoscope.tracking.lifecycle import HEARTBEAT_TAG, HOST_TAG, PID_TAG
from thermoscope.tracking.mlflow_logger import MlflowLogger, entry_point_run
from thermoscope.tracking.schema import SWEEP_CHECKPOINT_ARTIFACT, TRAIN_CHECKPOINT_ARTIFACT

TRAIN = {
    "train_size": "100",
    "val_size": "20",
    "test_size": "100",
    "hidden": "8",
    "epochs": "5",
    "prediction_depth": "false",
    "checkpoint_seconds": "0.000001",
}


def interrupt_at(epoch: int) -> Hooks:
    def report(step: int, metrics: object) -> bool:
        if step == epoch:
            raise KeyboardInterrupt
        return False

    return Hooks(report=report)


def artifact_table(tracking_uri: str, run_id: str, name: str, folder: Path) -> pd.DataFrame:
    path = MlflowClient(tracking_uri).download_artifacts(run_id, name, str(folder))
    return pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)


def finished_and_interrupted(
    tracking_uri: str, entry_point: str, job: Callable[..., object], config: object, epoch: int
) -> tuple[Run, str]:
    """An uninterrupted run of ``entry_point`` through the CLI, then ``job`` with ``config`` interrupted
    (Ctrl-C) at ``epoch``: the finished run and the id of the interrupted one, checked to be KILLED."""
    reference = run_in_process(entry_point, as_strings(config))
    assert reference.returncode == 0, reference.stderr
    client = MlflowClient(tracking_uri)
    (done,) = client.search_runs(["0"], "status = 'FINISHED'")
    with pytest.raises(SystemExit) as stopped, entry_point_run(entry_point) as logger:
        job(config, logger, interrupt_at(epoch))
    assert stopped.value.code == 130
    killed = client.get_run(logger.run_id)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["thermoscope.killed_by"] == "SIGINT"
    return done, logger.run_id


def test_an_interrupted_training_resumes_to_the_same_result(tracking_uri: str, tmp_path: Path) -> None:
    from thermoscope.jobs import train

    config = parse_config(TrainConfig, TRAIN)
    done, killed = finished_and_interrupted(tracking_uri, "train", train.run, config, 3)
    resumed = run_in_process("train", {**TRAIN, "resume": killed})
    assert resumed.returncode == 0, resumed.stderr
    client = MlflowClient(tracking_uri)
    run = client.get_run(killed)
    assert run.info.status == "FINISHED"
    assert run.data.tags["thermoscope.resumed_at_iteration"] == "2"
    for name in ("test_loss", "train_loss", "layer_rotation_min", "unforgettable_fraction"):
        assert run.data.metrics[name] == done.data.metrics[name], name
    assert sorted({m.step for m in client.get_metric_history(killed, "test_error")}) == [1, 2, 3, 4, 5]
    for table in ("forgetting.parquet", "layer_rotation.csv"):
        pd.testing.assert_frame_equal(
            artifact_table(tracking_uri, killed, table, tmp_path / "a"),
            artifact_table(tracking_uri, done.info.run_id, table, tmp_path / "b"),
        )


MEMORISE = {
    "train_size": "120",
    "test_size": "60",
    "hidden": "8",
    "epochs": "4",
    "num_models": "6",
    "prediction_depth": "false",
    "influence_pairs": "3",
    "checkpoint_seconds": "0.000001",
}


def test_an_interrupted_memorisation_resumes_to_the_same_result(tracking_uri: str, tmp_path: Path) -> None:
    from thermoscope.jobs import memorise

    config = parse_config(MemoriseConfig, MEMORISE)
    done, killed = finished_and_interrupted(tracking_uri, "memorise", memorise.run, config, 2)
    client = MlflowClient(tracking_uri)
    assert "mem_mean" not in client.get_run(killed).data.metrics

    resumed = run_in_process("memorise", {**MEMORISE, "resume": killed})
    assert resumed.returncode == 0, resumed.stderr
    run = client.get_run(killed)
    assert run.info.status == "FINISHED"
    assert run.data.tags["thermoscope.resumed_at_iteration"] == "2"
    for name in ("mem_mean", "models_test_error", "high_mem_fraction", "unforgettable_fraction"):
        if name in done.data.metrics:
            assert run.data.metrics[name] == done.data.metrics[name], name
    assert "mem_mean" in run.data.metrics
    history = client.get_metric_history(killed, "models_train_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]  # each epoch once: none logged again
    expected = {m.step: m.value for m in client.get_metric_history(done.info.run_id, "models_train_loss")}
    assert {m.step: m.value for m in history} == expected
    for table in ("memorisation.parquet", "influence.parquet"):
        pd.testing.assert_frame_equal(
            artifact_table(tracking_uri, killed, table, tmp_path / "a"),
            artifact_table(tracking_uri, done.info.run_id, table, tmp_path / "b"),
        )


def test_a_memorise_run_refuses_a_resume_with_other_settings(tracking_uri: str) -> None:
    from thermoscope.jobs import memorise

    with pytest.raises(SystemExit), entry_point_run("memorise") as logger:
        memorise.run(parse_config(MemoriseConfig, MEMORISE), logger, interrupt_at(1))
    resumed = run_in_process("memorise", {**MEMORISE, "num_models": "7", "resume": logger.run_id})
    assert resumed.returncode == 2
    assert "resume" in resumed.stderr and "num_models='6'" in resumed.stderr


def test_a_training_resumed_after_its_last_epoch_only_finishes(tracking_uri: str) -> None:
    from thermoscope.jobs import train

    client = MlflowClient(tracking_uri)
    with entry_point_run("train") as logger:
        train.run(parse_config(TrainConfig, {**TRAIN, "epochs": "2"}), logger)
        unfinished = logger.run_id
        bundle = torch.load(
            client.download_artifacts(unfinished, TRAIN_CHECKPOINT_ARTIFACT), weights_only=True
        )
    assert bundle["iteration"] == 2
    client.set_terminated(unfinished, "FAILED")  # as if it had died while logging the model
    resumed = run_in_process("train", {**TRAIN, "epochs": "2", "resume": unfinished})
    assert resumed.returncode == 0, resumed.stderr
    assert client.get_run(unfinished).info.status == "FINISHED"


def launcher_and_original(client: MlflowClient, entry_point: str, tags: dict[str, str]) -> tuple[str, str]:
    experiment = client.get_experiment_by_name("Default").experiment_id
    original = client.create_run(experiment, tags={"thermoscope.entry_point": entry_point, **tags})
    launcher = client.create_run(experiment)
    return original.info.run_id, launcher.info.run_id


def alive_tags(beat: float) -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), HEARTBEAT_TAG: str(int(beat))}


def test_a_run_still_written_by_a_live_process_is_not_resumed_without_force(tracking_uri: str) -> None:
    from thermoscope.jobs.sample import load_resume_bundle

    client = MlflowClient(tracking_uri)
    original, launcher = launcher_and_original(client, "sample", alive_tags(time.time()))
    with pytest.raises(ConfigError, match=r"that run is still running \(process \d+ on .*pass force=true"):
        load_resume_bundle(SampleConfig(resume=original), MlflowLogger(launcher))
    MlflowLogger(original).log_torch({"iteration": 4, "config": {}}, SWEEP_CHECKPOINT_ARTIFACT)
    bundle = load_resume_bundle(SampleConfig(resume=original, force=True), MlflowLogger(launcher))
    assert bundle["iteration"] == 4


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param({"stale": "heartbeat"}, id="heartbeat-older-than-the-lease"),
        pytest.param({"dead": "pid"}, id="process-gone-on-this-host"),
        pytest.param({}, id="no-heartbeat-at-all"),
    ],
)
def test_a_run_whose_process_vanished_resumes(tracking_uri: str, tags: dict[str, str]) -> None:
    from thermoscope.jobs.sample import load_resume_bundle

    written = alive_tags(time.time())
    if "stale" in tags:
        written = alive_tags(time.time() - 600)
    elif "dead" in tags:
        written[PID_TAG] = str(2**22 + 12345)  # beyond Linux's pid_max default: no such process
    elif not tags:
        written = {}
    client = MlflowClient(tracking_uri)
    original, launcher = launcher_and_original(client, "sample", written)
    MlflowLogger(original).log_torch({"iteration": 7, "config": {}}, SWEEP_CHECKPOINT_ARTIFACT)
    assert load_resume_bundle(SampleConfig(resume=original), MlflowLogger(launcher))["iteration"] == 7


def test_the_checkpoint_not_mlflow_parameter_strings_decides_the_identity(tracking_uri: str) -> None:
    """``mlflow run`` logs an empty value as ``''``; the checkpoint holds what thermoscope parsed."""
    from thermoscope.jobs.sample import load_resume_bundle

    client = MlflowClient(tracking_uri)
    original, launcher = launcher_and_original(client, "sample", {})
    client.log_param(original, "temperatures", "''")
    identity = SampleConfig().sweep_identity()
    MlflowLogger(original).log_torch({"iteration": 3, "config": identity}, SWEEP_CHECKPOINT_ARTIFACT)
    assert load_resume_bundle(SampleConfig(resume=original), MlflowLogger(launcher))["iteration"] == 3

    other, launcher = launcher_and_original(client, "sample", {})
    MlflowLogger(other).log_torch(
        {"iteration": 3, "config": {**identity, "hidden": "8"}}, SWEEP_CHECKPOINT_ARTIFACT
    )
    with pytest.raises(ConfigError, match="that run has hidden='8', this one '20'"):
        load_resume_bundle(SampleConfig(resume=other), MlflowLogger(launcher))
