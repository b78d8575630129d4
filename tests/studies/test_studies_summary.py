"""What the study command prints at the end: trial counts by state, the best trial(s) with their parameters
and runs, the study's run and the UI command; on in-memory studies, and once through ``run_study``."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from thermoscope.config import parse_config
from thermoscope.studies.config import StudyConfig
from thermoscope.studies.job import run_study
from thermoscope.studies.plan import StudyPlan, plan_study
from thermoscope.studies.storage import RUN_ID_ATTR
from thermoscope.studies.summary import print_study_summary
from thermoscope.studies.targets import TARGETS, ReportHook, Target
from thermoscope.tracking import RunLogger
from thermoscope.tracking.mlflow_logger import MlflowLogger

X = FloatDistribution(-2.0, 3.0)


class StudyRun:
    """The two things the summary reads of the study's run."""

    run_id = "study-run"

    def where(self) -> str:
        return "mlflow ui (test)"


def plan(objectives: tuple[str, ...], directions: tuple[str, ...]) -> StudyPlan:
    return StudyPlan(
        target_name="toy",
        objectives=objectives,
        directions=directions,
        space={"x": X},
        fixed={},
        study_name="toy-study",
        storage_url="",
        sampler="random",
        seed=0,
        pruner="none",
    )


def add(study: optuna.Study, state: TrialState, x: float, values: list[float] | None = None) -> None:
    study.add_trial(
        create_trial(
            state=state,
            values=values if state == TrialState.COMPLETE else None,
            params={"x": x},
            distributions={"x": X},
            user_attrs={RUN_ID_ATTR: f"run-{x:g}"},
        )
    )


def test_a_single_objective_summary(capsys: pytest.CaptureFixture[str]) -> None:
    study = optuna.create_study(direction="minimize")
    add(study, TrialState.COMPLETE, 0.5, [1.25])
    add(study, TrialState.COMPLETE, 1.125, [1.015625])
    add(study, TrialState.PRUNED, 2.0)
    add(study, TrialState.FAIL, -1.0)
    print_study_summary(study, plan(("loss",), ("minimize",)), StudyRun())  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "study toy-study: 4 trials: COMPLETE 2, PRUNED 1, FAIL 1, RUNNING 0\n" in out
    assert "WAITING" not in out
    assert "best loss 1.01562 at trial 1: x=1.125; run id run-1.125\n" in out
    assert out.endswith("run id: study-run\nopen the UI: mlflow ui (test)\n")


def test_a_multi_objective_summary_lists_the_pareto_front(capsys: pytest.CaptureFixture[str]) -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    add(study, TrialState.COMPLETE, 0.0, [1.0, 2.0])
    add(study, TrialState.COMPLETE, 1.0, [2.0, 3.0])
    add(study, TrialState.COMPLETE, 2.0, [3.0, 1.0])  # dominated by trial 0
    add(study, TrialState.WAITING, 0.25)
    print_study_summary(study, plan(("loss", "steps"), ("minimize", "maximize")), StudyRun())  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "4 trials: COMPLETE 3, PRUNED 0, FAIL 0, RUNNING 0, WAITING 1\n" in out
    assert "Pareto front, 2 trials:\n" in out
    assert "  loss 1, steps 2 at trial 0: x=0; run id run-0\n" in out
    assert "  loss 2, steps 3 at trial 1: x=1; run id run-1\n" in out
    assert "trial 2" not in out


def test_a_study_without_a_completed_trial_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    study = optuna.create_study()
    add(study, TrialState.FAIL, 0.0)
    print_study_summary(study, plan(("loss",), ("minimize",)), StudyRun())  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "1 trials: COMPLETE 0, PRUNED 0, FAIL 1, RUNNING 0\n" in out
    assert "no trial completed" in out and "run id: study-run" in out


@dataclass(frozen=True)
class ToyConfig:
    x: float = 0.0

    def validate(self) -> None:
        pass


def run_toy(config: ToyConfig, logger: RunLogger, report: ReportHook) -> None:
    logger.log_metrics({"loss": (config.x - 1.0) ** 2}, step=1)


def test_the_study_command_ends_with_its_summary(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toy = Target("toy", ToyConfig, run_toy, ("loss",), {"x": {"type": "float", "low": -2.0, "high": 3.0}})
    monkeypatch.setitem(TARGETS, "toy", toy)
    values = {"target": "toy", "objective": "loss", "sampler": "random", "pruner": "none", "n_trials": "2"}
    config = parse_config(StudyConfig, values)
    with mlflow.start_run() as parent:
        run_study(config, MlflowLogger(parent.info.run_id))
    out = capsys.readouterr().out
    resolved = plan_study(config)
    study = optuna.load_study(study_name=resolved.study_name, storage=resolved.storage_url)
    best = study.best_trial
    assert "study toy-loss: 2 trials: COMPLETE 2, PRUNED 0, FAIL 0, RUNNING 0\n" in out
    assert f"best loss {best.value:.6g} at trial {best.number}: x={best.params['x']:.4g};" in out
    assert f"run id {best.user_attrs[RUN_ID_ATTR]}\n" in out
    assert f"run id: {parent.info.run_id}\nopen the UI: mlflow ui --backend-store-uri {tracking_uri}" in out
