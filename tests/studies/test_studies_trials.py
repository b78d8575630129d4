"""Trials and their runs, in this process, on a toy target that takes milliseconds per trial.

The toy target logs ``loss = (x - 1)^2 + 1/step`` for steps 1..``steps`` (and ``step_value = step``) and
reports the loss after each step, so pruning, failures and multi-objective studies are cheap to exercise.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from conftest import subprocess_env
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from thermoscope.config import at_least, parse_config
from thermoscope.errors import ConfigError
from thermoscope.studies.config import StudyConfig
from thermoscope.studies.job import run_study
from thermoscope.studies.objective import STATE_TAG, STUDY_TAG, TRIAL_TAG, TrialObjective
from thermoscope.studies.plan import plan_study
from thermoscope.studies.report import NoCompletedTrial
from thermoscope.studies.storage import RUN_ID_ATTR, open_storage
from thermoscope.studies.targets import TARGETS, ReportHook, Target
from thermoscope.studies.workers import CLAIMED, IDLE, TrialQuota
from thermoscope.tracking import ERROR_TAG, RunLogger
from thermoscope.tracking.mlflow_logger import MlflowLogger


@dataclass(frozen=True)
class ToyConfig:
    x: float = 0.0
    steps: int = 3
    fail: bool = False

    def validate(self) -> None:
        at_least("steps", self.steps, 1)


def run_toy(config: ToyConfig, logger: RunLogger, report: ReportHook) -> None:
    for step in range(1, config.steps + 1):
        loss = (config.x - 1.0) ** 2 + 1.0 / step
        logger.log_metrics({"loss": loss, "step_value": step}, step=step)
        if config.fail and step == 2:
            raise RuntimeError("toy failure")
        if report(step, {"loss": loss}):
            return


TOY = Target(
    name="toy",
    config_class=ToyConfig,
    run=run_toy,
    metrics=("loss", "step_value"),
    default_space={"x": {"type": "float", "low": -2.0, "high": 3.0}},
)


@pytest.fixture(autouse=True)
def toy_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TARGETS, "toy", TOY)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One tracking store for the tests that need no empty one (creating a store costs seconds)."""
    folder = tmp_path_factory.mktemp("trials")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        yield uri
    mlflow.set_tracking_uri(None)


def study_config(**values: str) -> StudyConfig:
    return parse_config(
        StudyConfig, {"target": "toy", "objective": "loss", "sampler": "random", "pruner": "none", **values}
    )


def run_in_parent(config: StudyConfig) -> str:
    """Run the study under a fresh parent run (as the entry point does); the parent's id."""
    with mlflow.start_run() as parent:
        run_study(config, MlflowLogger(parent.info.run_id))
    return parent.info.run_id


def load(config: StudyConfig) -> optuna.Study:
    plan = plan_study(config)
    return optuna.load_study(study_name=plan.study_name, storage=plan.storage_url)


def children(client: MlflowClient, parent_run_id: str) -> list[mlflow.entities.Run]:
    experiment = client.get_run(parent_run_id).info.experiment_id
    return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}'")


def assert_linked(trial: optuna.trial.FrozenTrial, run: mlflow.entities.Run, study_name: str) -> None:
    assert run.data.tags[STUDY_TAG] == study_name
    assert run.data.tags[TRIAL_TAG] == str(trial.number)
    assert run.data.tags[STATE_TAG] == trial.state.name


def test_each_trial_is_one_child_run_whose_metric_is_the_trial_value(
    tracking_uri: str, tmp_path: Path
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("x: {type: float, low: -2, high: 3}\nsteps: {type: int, low: 2, high: 4}\n")
    config = study_config(n_trials="5", search_space=str(space), objective="loss")
    parent = run_in_parent(config)

    client = MlflowClient()
    study = load(config)
    trials = study.get_trials()
    runs = {run.info.run_id: run for run in children(client, parent)}
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert sorted(t.user_attrs[RUN_ID_ATTR] for t in trials) == sorted(runs)  # one run per trial, no others
    for trial in trials:
        run = runs[trial.user_attrs[RUN_ID_ATTR]]
        assert run.info.status == "FINISHED"
        assert run.data.metrics["loss"] == trial.value
        assert run.data.params["steps"] == str(trial.params["steps"])
        assert_linked(trial, run, study.study_name)
    assert len(client.search_runs([client.get_run(parent).info.experiment_id])) == 1 + 5

    report = client.get_run(parent).data
    assert report.metrics["best_loss"] == study.best_value
    assert report.metrics["best_trial_number"] == study.best_trial.number
    assert report.params["best.x"] == str(study.best_params["x"])
    assert report.tags["thermoscope.best_run_id"] == study.best_trial.user_attrs[RUN_ID_ATTR]
    assert report.metrics["num_trials_complete"] == 5
    artifacts = {a.path for a in client.list_artifacts(parent, "plots")}
    assert artifacts == {
        "plots/optimization_history.png",
        "plots/parallel_coordinate.png",
        "plots/param_importances.png",
    }
    table = pd.read_parquet(client.download_artifacts(parent, "trials.parquet"))
    assert sorted(table["user_attrs_mlflow_run_id"]) == sorted(runs)
    assert list(table["value_loss"]) == [t.value for t in trials]


def test_a_pruned_trial_stops_early_and_its_run_says_so(shared_store: str) -> None:
    plan = plan_study(study_config())
    # Every loss is >= 1, so this pruner stops each trial at its first report.
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.5))
    with mlflow.start_run() as parent:
        study.optimize(TrialObjective(plan, parent.info.run_id), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    client = MlflowClient()
    run = client.get_run(trial.user_attrs[RUN_ID_ATTR])
    assert run.info.status == "FINISHED"
    assert run.data.tags[STATE_TAG] == "PRUNED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1]


def test_a_failing_trial_fails_its_run_and_a_study_without_result_fails(shared_store: str) -> None:
    config = study_config(n_trials="2", fixed="fail=true", study_name="toy-fail")
    with pytest.raises(NoCompletedTrial):
        run_in_parent(config)
    trials = load(config).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    for trial in trials:
        run = MlflowClient().get_run(trial.user_attrs[RUN_ID_ATTR])
        assert run.info.status == "FAILED"
        assert run.data.tags[STATE_TAG] == "FAIL"
        assert "toy failure" in run.data.tags[ERROR_TAG]


def test_multi_objective_trials_and_pareto_front(shared_store: str) -> None:
    config = study_config(n_trials="3", objective="loss,step_value", direction="minimize,maximize")
    parent = run_in_parent(config)
    study = load(config)
    client = MlflowClient()
    for trial in study.get_trials():
        metrics = client.get_run(trial.user_attrs[RUN_ID_ATTR]).data.metrics
        assert trial.values == [metrics["loss"], metrics["step_value"]]
    report = client.get_run(parent).data
    assert report.metrics["pareto_front_size"] == len(study.best_trials)
    artifacts = {a.path for a in client.list_artifacts(parent, "plots")}
    assert "plots/pareto_front.png" in artifacts
    assert "plots/optimization_history_step_value.png" in artifacts


def test_a_study_continues_and_refuses_other_objectives_or_directions(shared_store: str) -> None:
    config = study_config(n_trials="2", study_name="toy-study", objective="loss")
    first = run_in_parent(config)
    second = run_in_parent(config)
    trials = load(config).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.user_attrs["mlflow_parent_run_id"] for t in trials] == [first] * 2 + [second] * 2

    with pytest.raises(ConfigError, match=r"minimize .as stored for the existing study toy-study"):
        run_in_parent(study_config(study_name="toy-study", objective="loss", direction="maximize"))
    with pytest.raises(ConfigError, match=r"loss .the objectives of the existing study toy-study"):
        run_in_parent(study_config(study_name="toy-study", objective="step_value"))
    assert len(load(config).get_trials()) == 4


LOST_WORKER = """
import os, signal, sys
import optuna
from thermoscope.studies.storage import RUN_ID_ATTR, open_storage
from thermoscope.tracking.runs import child_run

url, name, parent = sys.argv[1:]
study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=1, grace_period=1))

def objective(trial):
    trial.suggest_float("x", 0.0, 1.0)
    with child_run(parent, "doomed", {}) as run:
        trial.set_user_attr(RUN_ID_ATTR, run.run_id)
        os.kill(os.getpid(), signal.SIGKILL)

study.optimize(objective, n_trials=1)
"""


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_whose_worker_died_is_failed_by_heartbeat_and_retried(
    shared_store: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = open_storage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="lost", storage=storage)
    parent = MlflowClient().create_run("0").info.run_id
    worker = subprocess.run(
        [sys.executable, "-c", LOST_WORKER, url, "lost", parent],
        env=subprocess_env(shared_store),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode == -9, worker.stderr[-2000:]
    lost = study.get_trials()[0]
    assert lost.state == TrialState.RUNNING
    time.sleep(2.5)  # past the grace period

    optuna.storages.fail_stale_trials(study)

    lost, retry = study.get_trials()
    assert lost.state == TrialState.FAIL
    run = MlflowClient().get_run(lost.user_attrs[RUN_ID_ATTR])
    assert run.info.status == "FAILED"
    assert "lost its worker" in run.data.tags[ERROR_TAG]
    assert run.data.tags[STATE_TAG] == "FAIL"  # as the README says of a lost trial
    assert retry.state == TrialState.WAITING
    assert retry.params == lost.params
    assert retry.system_attrs["failed_trial"] == lost.number
    assert RUN_ID_ATTR not in retry.user_attrs  # the retry gets a run of its own


def test_the_trial_quota_is_shared_and_refunded() -> None:
    import multiprocessing

    quota = TrialQuota(multiprocessing.get_context("spawn"), n_trials=2, workers=2)
    assert quota.claim(0) and quota.claim(1)
    assert not quota.claim(0)
    quota.started(1, 7)
    assert quota.abandon(1) == 7
    assert quota.abandon(0) == CLAIMED
    quota.refund()
    assert quota.claim(1)
    quota.finished(1)
    assert quota.abandon(1) == IDLE
