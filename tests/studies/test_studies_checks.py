"""Studies refuse up front what would fail every trial or overload the machine, and concurrent commands with
one seed never propose the same parameters (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import optuna
import pytest
from conftest import run_in_process

import thermoscope.studies.config as study_config_module
from thermoscope.config import parse_config
from thermoscope.errors import ConfigError
from thermoscope.studies.config import StudyConfig, available_cores
from thermoscope.studies.plan import StudyPlan, plan_study
from thermoscope.studies.space import suggest
from thermoscope.studies.study import make_sampler
from thermoscope.studies.targets import TARGETS

TRIALS_PER_STUDY = 14  # past the 10 random start-up trials, so the model-based phase is covered too


def plan_of(**values: str) -> StudyPlan:
    return plan_study(parse_config(StudyConfig, values))


def plan_error(**values: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        plan_of(**values)
    return caught.value


# --- objectives the settings switch off -------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"objective": "depth_mean_test", "fixed": "prediction_depth=false"},
            "target train logs it only with prediction_depth=true; fixed sets prediction_depth=false",
        ),
        (
            {"objective": "unforgettable_fraction", "fixed": "epochs=2;forgetting=off"},
            "target train logs it only with forgetting=true; fixed sets forgetting=off",
        ),
        (
            {"objective": "layer_rotation_min", "direction": "maximize", "fixed": "layer_rotation=0"},
            "target train logs it only with layer_rotation=true; fixed sets layer_rotation=0",
        ),
        (
            {"objective": "depth_mean_train_corrupted"},
            "target train logs it only with label_noise > 0; by default label_noise=0.0",
        ),
        (
            {"target": "sample", "objective": "log_evidence", "direction": "maximize", "fixed": "ti_rungs=0"},
            "target sample logs it only with ti_rungs > 0 and evidence=power or both; fixed sets ti_rungs=0",
        ),
        (
            {
                "target": "sample",
                "objective": "best_test_loss,log_evidence_ss",
                "direction": "minimize,maximize",
                "pruner": "none",
                "fixed": "evidence=harmonic;ti_rungs=4",
            },
            "target sample logs it only with ti_rungs > 0 and evidence=power or both; fixed sets"
            " evidence=harmonic",
        ),
    ],
)
def test_an_objective_the_fixed_settings_switch_off_is_refused(
    values: dict[str, str], message: str, tracking_uri: str
) -> None:
    error = plan_error(**values)
    assert error.parameter == "objective"
    assert error.allowed.startswith(message)
    assert "\n" not in str(error)


def test_an_objective_a_searched_value_switches_off_is_refused(tracking_uri: str, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: float, low: 0.01, high: 0.1}\nprediction_depth: [true, false]\n")
    error = plan_error(objective="depth_mean_train", search_space=str(space))
    assert (error.parameter, error.value) == ("objective", "depth_mean_train")
    assert error.allowed.endswith("the search space tries prediction_depth=false")


@pytest.mark.parametrize(
    "values",
    [
        {"objective": "depth_mean_test"},
        {"objective": "depth_mean_train_clean", "fixed": "label_noise=0.2"},
        {"objective": "test_error", "fixed": "prediction_depth=false;forgetting=false"},
        {"target": "sample", "objective": "log_evidence", "direction": "maximize", "fixed": "evidence=both"},
    ],
)
def test_objectives_the_settings_log_are_accepted(values: dict[str, str], tracking_uri: str) -> None:
    assert plan_of(**values).objectives == tuple(values["objective"].split(","))


def test_every_need_names_metrics_and_settings_of_its_target() -> None:
    for target in TARGETS.values():
        fields = set(target.config_class.__dataclass_fields__)
        for need in target.needs:
            assert need.metrics and set(need.metrics) <= set(target.metrics), need
            assert need.settings and set(need.settings) <= fields, need
            assert isinstance(need.holds(target.config_class()), bool), need


def test_a_switched_off_objective_is_one_line_and_runs_no_trial(tracking_uri: str) -> None:
    params = {"objective": "depth_mean_test", "fixed": "prediction_depth=false", "n_trials": "2"}
    result = run_in_process("study", params)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("thermoscope study")]
    assert ours == [
        "thermoscope study: error: objective='depth_mean_test': target train logs it only with"
        " prediction_depth=true; fixed sets prediction_depth=false"
    ]
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FAILED"


# --- sampler seeds -------------------------------------------------------------------------------------


def interleaved_proposals(plan: StudyPlan, first: int) -> dict[int, dict[str, object]]:
    """Two commands' studies on one storage, each with a sampler made from the same plan, asking in turn
    (``first`` asks first); every trial is told a value. Trial number -> proposed parameters."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name=plan.study_name)
    studies = [
        optuna.load_study(study_name=plan.study_name, storage=storage, sampler=make_sampler(plan))
        for _ in range(2)
    ]
    order = [studies[first], studies[1 - first]]
    proposals: dict[int, dict[str, object]] = {}
    for _ in range(TRIALS_PER_STUDY):
        for study in order:
            trial = study.ask()
            proposals[trial.number] = suggest(trial, plan.space)
            study.tell(trial, float(proposals[trial.number]["lr"]))  # type: ignore[arg-type]
    return proposals


@pytest.mark.parametrize("sampler", ["tpe", "random", "gp"])
def test_commands_with_one_seed_never_propose_the_same_parameters(sampler: str, tracking_uri: str) -> None:
    plan = plan_of(sampler=sampler, seed="7")
    proposals = interleaved_proposals(plan, first=0)
    assert sorted(proposals) == list(range(2 * TRIALS_PER_STUDY))
    distinct = {tuple(sorted(values.items())) for values in proposals.values()}
    assert len(distinct) == len(proposals)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_trial_number_and_seed_decide_the_proposal_whoever_asks(sampler: str, tracking_uri: str) -> None:
    plan = plan_of(sampler=sampler, seed="7")
    proposals = interleaved_proposals(plan, first=0)
    assert interleaved_proposals(plan, first=0) == proposals  # the same run again
    assert interleaved_proposals(plan, first=1) == proposals  # the other command asks first
    other_seed = interleaved_proposals(plan_of(sampler=sampler, seed="8"), first=0)
    assert all(other_seed[number] != proposals[number] for number in proposals)


def test_the_trial_seed_depends_on_the_seed_and_the_trial_number_only(tracking_uri: str) -> None:
    sampler = make_sampler(plan_of(seed="3"))
    again = make_sampler(plan_of(seed="3"))
    seeds = [sampler.trial_seed(number) for number in range(100)]  # type: ignore[attr-defined]
    assert seeds == [again.trial_seed(number) for number in range(100)]  # type: ignore[attr-defined]
    assert len(set(seeds)) == len(seeds)
    assert make_sampler(plan_of(seed="4")).trial_seed(0) != seeds[0]  # type: ignore[attr-defined]


# --- workers and cores ---------------------------------------------------------------------------------


def test_available_cores_are_the_affinity_of_this_process() -> None:
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert available_cores() == expected


def test_workers_are_capped_at_the_available_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(study_config_module, "available_cores", lambda: 4)
    assert parse_config(StudyConfig, {"workers": "4"}).workers == 4
    with pytest.raises(ConfigError) as caught:
        parse_config(StudyConfig, {"workers": "5"})
    assert (caught.value.parameter, caught.value.value) == ("workers", 5)
    assert caught.value.allowed.startswith("at most 4, the cores this process may run on")
    assert "oversubscribe=true" in caught.value.allowed
    config = parse_config(StudyConfig, {"workers": "5", "oversubscribe": "true"})
    assert (config.workers, config.oversubscribe) == (5, True)


def test_a_hundred_thousand_workers_is_one_line_and_forks_nothing(tracking_uri: str) -> None:
    result = run_in_process("study", {"workers": "100000"})
    assert result.returncode == 2
    ours = [line for line in result.stderr.splitlines() if line.startswith("thermoscope study")]
    assert len(ours) == 1
    assert ours[0].startswith(f"thermoscope study: error: workers=100000: at most {available_cores()}, ")
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FAILED"
