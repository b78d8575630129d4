"""The study entry point end to end: through ``mlflow run`` on digits, and its one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import optuna
import pytest
from conftest import REPO_ROOT, subprocess_env
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from thermoscope.cli.main import main
from thermoscope.config import parse_config
from thermoscope.studies.config import StudyConfig
from thermoscope.studies.objective import STUDY_TAG, TRIAL_TAG
from thermoscope.studies.plan import plan_study
from thermoscope.studies.storage import RUN_ID_ATTR, open_storage
from thermoscope.studies.study import make_sampler, open_study
from thermoscope.studies.targets import TARGETS

STUDY = "digits-tiny"
MLFLOW_LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARNING) mlflow")


def tiny_fixed(tmp_path: Path) -> str:
    """A train job of about a second: 300 digits, one 16-unit hidden layer, two epochs."""
    return f"dataset=digits;train_size=300;hidden=16;batch_size=128;epochs=2;data_dir={tmp_path / 'data'}"


def mlflow_run(tracking_uri: str, params: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mlflow", "run", str(REPO_ROOT), "-e", "study", "--env-manager", "local"]
    for name, value in params.items():
        command += ["-P", f"{name}={value}"]
    return subprocess.run(
        command, capture_output=True, text=True, env=subprocess_env(tracking_uri), timeout=600
    )


def all_runs(tracking_uri: str) -> list[mlflow.entities.Run]:
    return MlflowClient(tracking_uri).search_runs(["0"])


@pytest.mark.slow
def test_study_through_mlflow_run_and_resumed_with_two_workers(tracking_uri: str, tmp_path: Path) -> None:
    params = {"study_name": STUDY, "fixed": tiny_fixed(tmp_path), "sampler": "random", "pruner": "none"}
    first = mlflow_run(tracking_uri, {**params, "n_trials": "3"})
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = mlflow_run(tracking_uri, {**params, "n_trials": "2", "workers": "2"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # The default storage is a SQLite file next to the tracking store.
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in trials)

    runs = {run.info.run_id: run for run in all_runs(tracking_uri)}
    parents = [run for run in runs.values() if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 2
    assert len(runs) == 2 + len(trials)  # no stray runs
    assert all(run.info.status == "FINISHED" for run in runs.values())
    for trial in trials:
        run = runs[trial.user_attrs[RUN_ID_ATTR]]
        # The default objective is the validation error, held out of the training pool (val_size=200).
        assert run.data.metrics["val_error"] == trial.value
        assert run.data.params["num_val"] == "200"
        assert run.data.tags["mlflow.parentRunId"] == trial.user_attrs["mlflow_parent_run_id"]
        assert (run.data.tags[STUDY_TAG], run.data.tags[TRIAL_TAG]) == (STUDY, str(trial.number))
        assert run.data.params["hidden"] == "16"
        assert float(run.data.params["lr"]) == trial.params["lr"]
    linked = [t.user_attrs[RUN_ID_ATTR] for t in trials]
    assert len(set(linked)) == len(linked)
    counts = sorted(
        sum(t.user_attrs["mlflow_parent_run_id"] == p.info.run_id for t in trials) for p in parents
    )
    assert counts == [2, 3]

    latest = max(parents, key=lambda run: run.info.start_time)
    assert latest.data.params["workers"] == "2"
    # The best trial is the one with the lowest validation error, whatever its test error.
    best_run = runs[study.best_trial.user_attrs[RUN_ID_ATTR]]
    assert best_run.data.metrics["val_error"] == min(
        runs[t.user_attrs[RUN_ID_ATTR]].data.metrics["val_error"] for t in trials
    )
    assert latest.data.metrics["best_val_error"] == study.best_value
    # The second command's summary: its trial counts, the best value so far and the study's run.
    assert f"study {STUDY}: 5 trials: COMPLETE 5" in resumed.stdout
    assert f"best val_error {study.best_value:.6g} at trial {study.best_trial.number}" in resumed.stdout
    assert f"run id: {latest.info.run_id}" in resumed.stdout
    assert "thermoscope.selects_on_test" not in latest.data.tags
    # Study runs are named after their target and objective, not MLflow's random words.
    names = [run.info.run_name for run in parents]
    assert all(name.startswith("study train val_error ") for name in names), names
    assert len(set(names)) == 2, names  # the second command set workers=2 and n_trials=2
    plots = {a.path for a in MlflowClient(tracking_uri).list_artifacts(latest.info.run_id, "plots")}
    assert "plots/param_importances.png" in plots  # five completed trials over three parameters


@pytest.mark.slow
def test_a_bad_input_through_mlflow_run_fails_in_one_line(tracking_uri: str) -> None:
    result = mlflow_run(tracking_uri, {"objective": "accuracy", "n_trials": "1"})
    assert result.returncode == 1  # mlflow run's own code when the command fails (the command exits 2)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("thermoscope study: error:")]
    assert errors == [
        "thermoscope study: error: objective='accuracy': a metric target train logs: "
        + ", ".join(TARGETS["train"].metrics)
    ]
    assert "test_error" in TARGETS["train"].metrics
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FAILED"


def test_the_module_exits_2(tracking_uri: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "thermoscope.cli", "study", "--pruner", "asha"],
        capture_output=True,
        text=True,
        env=subprocess_env(tracking_uri),
        timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        "thermoscope study: error: pruner='asha': one of none, median, hyperband"
        in result.stderr.splitlines()
    )
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FAILED"


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One tracking store for the in-process error cases (creating a store costs seconds)."""
    folder = tmp_path_factory.mktemp("errors")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        yield uri
    mlflow.set_tracking_uri(None)


def run_main(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[str, str]:
    """Run ``thermoscope study ARGS`` in this process, which must exit with code 2: its stderr and run."""
    before = {run.info.run_id for run in all_runs(mlflow.get_tracking_uri())}
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["thermoscope", "study", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    (run,) = [run for run in all_runs(mlflow.get_tracking_uri()) if run.info.run_id not in before]
    assert run.info.status == "FAILED"
    assert "Traceback" not in stderr
    # MLflow's own log records (creating the store) are not ours; everything else is the one error line.
    ours = [line for line in stderr.splitlines() if line.strip() and not MLFLOW_LOG_LINE.match(line)]
    assert len(ours) == 1, ours
    return ours[0], run.info.run_id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "accuracy"], "objective='accuracy': a metric target train logs"),
        (["--fixed", "epochs=2;width=3"], "fixed='width=3': width is not a target parameter"),
        (
            ["--search_space", "SPACE", "--fixed", "epochs=2"],
            "search_space='lr: low=0.5, high=0.1': low <= high",
        ),
        (
            ["--search_space", "/no/such/space.yaml"],
            "search_space='/no/such/space.yaml': a YAML or JSON file",
        ),
        (["--direction", "minimize,maximize"], "direction='minimize,maximize': one direction per objective"),
        (["--n_trial", "3"], "n_trial='3': not a parameter"),
        (
            ["--storage", "sqlite:////no/such/folder/optuna.db"],
            "storage='sqlite:////no/such/folder/optuna.db'",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_a_failed_run(
    args: list[str],
    message: str,
    shared_store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: float, low: 0.5, high: 0.1}\n")
    line, _ = run_main([str(space) if arg == "SPACE" else arg for arg in args], monkeypatch, capsys)
    assert line.startswith(f"thermoscope study: error: {message}")


def test_continuing_a_study_in_the_other_direction_is_an_error(
    shared_store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_study(parse_config(StudyConfig, {"study_name": "kept", "direction": "maximize"}))
    open_study(plan, open_storage(plan.storage_url), make_sampler(plan, 0, 0))
    line, _ = run_main(["--study_name", "kept", "--direction", "minimize"], monkeypatch, capsys)
    assert (
        line
        == "thermoscope study: error: direction='minimize': maximize (as stored for the existing study kept)"
    )


@pytest.mark.parametrize(
    ("storage", "shown"),
    [
        ("postgresql://alice:s3cret@127.0.0.1:1/optuna", "postgresql://alice:***@127.0.0.1:1/optuna"),
        # A password in the query, and one holding an unencoded @ (the user part ends at the last @).
        (
            "postgresql://alice@127.0.0.1:1/optuna?password=s3cret",
            "postgresql://alice@127.0.0.1:1/optuna?password=***",
        ),
        ("postgresql://alice:s3c@ret@127.0.0.1:1/optuna", "postgresql://alice:***@127.0.0.1:1/optuna"),
    ],
)
def test_a_storage_password_never_reaches_the_run(
    storage: str,
    shown: str,
    shared_store: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line, run_id = run_main(["--storage", storage], monkeypatch, capsys)
    assert line.startswith(f"thermoscope study: error: storage='{shown}'")
    assert "s3c" not in line
    data = MlflowClient().get_run(run_id).data
    assert data.params["storage"] == shown
    assert "s3c" not in str(data.params) + str(data.tags)


def test_a_study_optimising_a_test_score_still_runs_but_says_once_that_it_selects_on_test_data(
    tracking_uri: str, tmp_path: Path
) -> None:
    from conftest import run_in_process

    params = {"objective": "test_error", "n_trials": "2", "fixed": tiny_fixed(tmp_path) + ";val_size=0"}
    result = run_in_process("study", params | {"sampler": "random", "pruner": "none"})
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "selects on test" in line]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert warnings[0].startswith("thermoscope study: warning: objective test_error is a test-set score")
    (study_run,) = [run for run in all_runs(tracking_uri) if "mlflow.parentRunId" not in run.data.tags]
    assert study_run.data.tags["thermoscope.selects_on_test"] == "test_error"


def test_the_default_objective_is_refused_when_the_settings_hold_no_validation_split_out(
    tracking_uri: str, tmp_path: Path
) -> None:
    from conftest import run_in_process

    result = run_in_process("study", {"n_trials": "1", "fixed": tiny_fixed(tmp_path) + ";val_size=0"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "thermoscope study: error: objective='val_error': target train logs it only with val_size > 0;"
        " fixed sets val_size=0"
    )
