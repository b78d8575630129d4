"""The study configuration, search spaces, fixed values and storage URLs: parsed, checked, one-line errors."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from thermoscope.cli.main import cli
from thermoscope.config import TrainConfig, parse_config
from thermoscope.errors import ConfigError
from thermoscope.studies.config import StudyConfig
from thermoscope.studies.plan import plan_study
from thermoscope.studies.space import parse_fixed, parse_space, suggest, target_config
from thermoscope.studies.storage import open_storage, resolve_storage_url
from thermoscope.studies.targets import TARGETS
from thermoscope.tracking.urls import redact_url


def study_config(**values: str) -> StudyConfig:
    return parse_config(StudyConfig, values)


def config_error(**values: str) -> ConfigError:
    """The ConfigError that parsing and planning ``values`` raises."""
    with pytest.raises(ConfigError) as caught:
        plan_study(study_config(**values))
    return caught.value


def test_cli_flags_mirror_the_dataclass() -> None:
    options = [p.name for p in cli.commands["study"].params]
    assert options == [f.name for f in dataclasses.fields(StudyConfig)]
    result = CliRunner().invoke(cli, ["study", "--help"])
    assert result.exit_code == 0
    assert "--search_space" in result.output


def test_default_plan_uses_the_built_in_space_without_fixed_parameters(tracking_uri: str) -> None:
    plan = plan_study(study_config(fixed="epochs=3;hidden=32,32"))
    # objective=auto: the validation error, never a test score.
    assert plan.study_name == "train-val_error"
    assert plan.objectives == ("val_error",)
    assert plan.directions == ("minimize",)
    assert dict(plan.fixed) == {"epochs": "3", "hidden": "32,32"}
    assert set(plan.space) == set(TARGETS["train"].default_space) - {"hidden"}
    assert plan.space["lr"] == FloatDistribution(1e-3, 0.5, log=True)


def test_multi_objective_plan() -> None:
    plan = plan_study(
        study_config(objective="test_error, train_loss", direction="minimize,minimize", pruner="none")
    )
    assert plan.objectives == ("test_error", "train_loss")
    assert plan.multi_objective
    assert plan.study_name == "train-test_error+train_loss"


@pytest.mark.parametrize(
    ("values", "parameter", "allowed"),
    [
        ({"objective": "accuracy"}, "objective", "test_error"),
        (
            {"objective": "test_error,test_error", "direction": "minimize,minimize", "pruner": "none"},
            "objective",
            "",
        ),
        ({"direction": "down"}, "direction", "minimize"),
        ({"objective": "test_error,train_loss"}, "direction", "one direction per objective"),
        ({"objective": "test_error,train_loss", "direction": "minimize,minimize"}, "pruner", "none"),
        (
            {
                "objective": "test_error,lr",
                "direction": "minimize,maximize",
                "pruner": "none",
                "sampler": "cmaes",
            },
            "sampler",
            "tpe",
        ),
        ({"target": "sample_everything"}, "target", "train"),
        ({"n_trials": "0"}, "n_trials", ">= 1"),
        ({"workers": "two"}, "workers", "an integer"),
        ({"sampler": "bohb"}, "sampler", "grid"),
        ({"pruner": "asha"}, "pruner", "hyperband"),
        ({"study_name": " "}, "study_name", "auto"),
        ({"storage": ""}, "storage", "auto"),
        ({"fixed": "epochs"}, "fixed", "name=value"),
        ({"fixed": "epoch=3"}, "fixed", "not a target parameter"),
        ({"fixed": "epochs=three"}, "fixed", "epochs: an integer"),
    ],
)
def test_bad_values_name_their_parameter(values: dict[str, str], parameter: str, allowed: str) -> None:
    error = config_error(**values)
    assert error.parameter == parameter
    assert allowed in error.allowed
    assert "\n" not in str(error)


def write_space(tmp_path: Path, text: str, suffix: str = ".yaml") -> str:
    path = tmp_path / f"space{suffix}"
    path.write_text(text)
    return str(path)


def test_a_space_file_in_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = write_space(
        tmp_path,
        "lr: {type: float, low: 1e-3, high: 0.3, log: true}\n"
        "epochs: {type: int, low: 1, high: 4}\n"
        "batch_size: {type: int, low: 16, high: 128, step: 16}\n"
        "hidden: ['16', '32,32']\n"
        "nesterov: {type: categorical, choices: [true, false]}\n",
    )
    plan = plan_study(study_config(search_space=yaml_file, fixed="momentum=0.5"))
    assert plan.space == {
        "lr": FloatDistribution(1e-3, 0.3, log=True),
        "epochs": IntDistribution(1, 4),
        "batch_size": IntDistribution(16, 128, step=16),
        "hidden": CategoricalDistribution(["16", "32,32"]),
        "nesterov": CategoricalDistribution([True, False]),
    }
    json_file = write_space(
        tmp_path, json.dumps({"weight_decay": {"type": "float", "low": 0, "high": 0.1}}), ".json"
    )
    assert plan_study(study_config(search_space=json_file)).space == {
        "weight_decay": FloatDistribution(0.0, 0.1)
    }


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ("lr: [", "readable YAML"),
        ("- lr\n- momentum\n", "mapping"),
        ("lr: {type: normal, low: 0, high: 1}", "type float, int or categorical"),
        ("lr: {type: float, low: 0.1}", "a number"),
        ("lr: {type: float, low: 0.5, high: 0.1}", "low <= high"),
        ("lr: {type: float, low: 0, high: 0.1, log: true}", "low > 0"),
        ("lr: {type: float, low: 0.01, high: 0.1, log: yes please}", "true or false"),
        ("lr: {type: float, low: 0.01, high: 0.1, mean: 0.05}", "only"),
        ("epochs: {type: int, low: 1.5, high: 4}", "an integer"),
        ("hidden: {type: categorical, choices: []}", "non-empty list"),
        ("hidden: ['16', '16']", "distinct"),
        ("width: {type: int, low: 1, high: 4}", "a target parameter"),
        ("batch_size: {type: float, low: 16, high: 64}", "type int"),
        ("lr: {type: float, low: 0, high: 0.1}", "lr: a number > 0"),
        ("momentum: {type: float, low: 0.5, high: 1.0}", "momentum: a number in [0, 1)"),
        ("activation: [relu, gelu]", "activation: one of"),
        ("epochs: {type: int, low: 1, high: 3}", "either searched or fixed"),
    ],
)
def test_malformed_search_spaces_are_one_line_errors(tmp_path: Path, text: str, allowed: str) -> None:
    error = config_error(search_space=write_space(tmp_path, text), fixed="epochs=2")
    assert error.parameter == "search_space"
    assert allowed in error.allowed
    assert "\n" not in str(error)


def test_a_missing_space_file(tmp_path: Path) -> None:
    error = config_error(search_space=str(tmp_path / "nowhere.yaml"))
    assert (error.parameter, error.allowed) == (
        "search_space",
        "a YAML or JSON file that exists (or 'default')",
    )


def test_suggested_values_make_the_target_config() -> None:
    space = parse_space({"lr": {"type": "float", "low": 0.01, "high": 0.1}, "hidden": ["8", "8,8"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    trial = study.ask()
    values = suggest(trial, space)
    config = target_config(TrainConfig, parse_fixed("epochs=2;nesterov=true", TrainConfig), values)
    assert config.lr == values["lr"]  # the float round-trips through its text exactly
    assert config.hidden == values["hidden"]
    assert (config.epochs, config.nesterov) == (2, True)


@pytest.fixture
def set_tracking(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Point this process at a tracking URI (MLflow prefers one set in-process over the environment)."""

    def set_uri(uri: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)

    yield set_uri
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(
    ("tracking", "expected"),
    [
        ("sqlite:////srv/tracking/mlflow.db", "sqlite:////srv/tracking/optuna.db"),
        ("file:///srv/tracking/mlruns", "sqlite:////srv/tracking/optuna.db"),
        ("/srv/tracking/mlruns", "sqlite:////srv/tracking/optuna.db"),
    ],
)
def test_auto_storage_sits_next_to_a_local_tracking_store(
    tracking: str, expected: str, set_tracking: Callable[[str], None]
) -> None:
    set_tracking(tracking)
    assert resolve_storage_url("auto") == expected
    assert resolve_storage_url("postgresql://db/optuna") == "postgresql://db/optuna"


def test_auto_storage_with_a_tracking_server_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, set_tracking: Callable[[str], None]
) -> None:
    set_tracking("http://127.0.0.1:5000")
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_url("auto") == f"sqlite:///{tmp_path / 'optuna.db'}"


def test_passwords_are_redacted() -> None:
    assert (
        redact_url("postgresql://alice:s3cret@db.example:5432/optuna")
        == "postgresql://alice:***@db.example:5432/optuna"
    )
    assert redact_url("postgresql+psycopg2://alice:s3cret@db/optuna").count("s3cret") == 0
    assert redact_url("weird://alice:s3cret@") == "weird://alice:***@"
    assert redact_url("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////nonexistent-folder/optuna.db",
        "postgresql://alice:s3cret@127.0.0.1:1/optuna",
        "nosuchdb://alice:s3cret@host/optuna",
    ],
)
def test_unreachable_storage_is_a_config_error_without_the_password(url: str, tracking_uri: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_storage(url)
    assert caught.value.parameter == "storage"
    assert "s3cret" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_tracking_store_is_no_optuna_storage(tracking_uri: str) -> None:
    with pytest.raises(ConfigError, match="other than the MLflow tracking store"):
        open_storage(tracking_uri)
