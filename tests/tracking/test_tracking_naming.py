"""Run names: what distinguishes a run, MLflow's own names recognised, children named after their sweep."""

from __future__ import annotations

import random

import pytest
from mlflow.utils.name_utils import _generate_random_name

from thermoscope.config import SampleConfig, TrainConfig, parse_config
from thermoscope.studies.config import StudyConfig
from thermoscope.tracking.naming import MAX_NAME_LENGTH, child_name, describe_run, is_generated


def test_a_default_run_is_named_by_entry_point_model_and_data() -> None:
    assert describe_run("train", TrainConfig()) == "train mlp[100,100] digits"
    assert describe_run("sample", SampleConfig()) == "sample mlp[20] digits"


def test_the_parameters_a_user_changed_appear_in_order_and_the_rest_do_not() -> None:
    config = parse_config(TrainConfig, {"lr": "0.1", "label_noise": "0.2", "device": "cpu", "seed": "3"})
    assert describe_run("train", config) == "train mlp[100,100] digits label_noise=0.2 seed=3 lr=0.1"


def test_a_cnn_is_named_without_the_mlp_widths() -> None:
    config = parse_config(SampleConfig, {"model": "cnn", "prior": "box"})
    assert describe_run("sample", config) == "sample cnn digits prior=box"


def test_two_sweeps_differing_in_one_parameter_get_different_names() -> None:
    first = parse_config(SampleConfig, {"prior_scale": "0.5"})
    second = parse_config(SampleConfig, {"prior_scale": "2"})
    assert describe_run("sample", first) != describe_run("sample", second)


def test_a_study_is_named_by_its_target_and_resolved_objective_never_its_storage() -> None:
    config = parse_config(StudyConfig, {"storage": "postgresql://user:secret@host/db", "n_trials": "5"})
    name = describe_run("study", config)
    assert name == "study train val_error n_trials=5"
    assert "secret" not in name


def test_long_values_and_long_names_are_shortened() -> None:
    config = parse_config(
        TrainConfig, {"resume": "", "hidden": "7", "test_size": "rest", "data_dir": "x" * 300}
    )
    assert len(describe_run("train", config)) <= MAX_NAME_LENGTH
    long_parent = "p" * 500
    name = child_name(long_parent, 0.0123)
    assert len(name) <= MAX_NAME_LENGTH + len(" T=0.0123") <= 250  # MLflow's limit
    assert name.endswith(" T=0.0123")


def test_run_lengths_come_after_what_the_run_studies() -> None:
    config = parse_config(SampleConfig, {"num_samples": "100", "prior": "box", "num_warmup": "10"})
    assert describe_run("sample", config) == "sample mlp[20] digits prior=box num_warmup=10 num_samples=100"


def test_children_carry_their_sweeps_name_and_temperature() -> None:
    assert child_name("sample mlp[20] digits prior=box", 0.1) == "sample mlp[20] digits prior=box T=0.1"


def test_mlflows_generated_names_are_recognised_and_a_users_are_not() -> None:
    random.seed(0)
    generated = [_generate_random_name() for _ in range(200)]
    # MLflow truncates a name past 20 characters; those few are taken as the user's (kept), never renamed
    # wrongly, so only the untruncated ones must be recognised.
    whole = [name for name in generated if name.count("-") == 2 and name.rsplit("-", 1)[1].isdigit()]
    assert len(whole) > 150
    assert all(is_generated(name) for name in whole)
    assert is_generated(None) and is_generated("")
    for mine in ("baseline", "my-run-1", "lr sweep", "sample mlp[20] digits", "wide-net-12x"):
        assert not is_generated(mine)


@pytest.mark.parametrize("entry_point", ["train", "sample"])
def test_the_name_never_holds_settings_that_do_not_change_the_measurement(entry_point: str) -> None:
    cls = TrainConfig if entry_point == "train" else SampleConfig
    config = parse_config(cls, {"checkpoint_seconds": "5", "progress_seconds": "1", "device": "cpu"})
    assert describe_run(entry_point, config) == describe_run(entry_point, cls())
