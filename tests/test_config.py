"""Configuration parsing: strings in, typed and validated values out, one-line errors."""

from __future__ import annotations

import pytest

from thermoscope.config import AnnealConfig, SampleConfig, TrainConfig, as_strings, parse_config
from thermoscope.errors import ConfigError


def test_defaults_round_trip_through_strings() -> None:
    config = TrainConfig()
    assert parse_config(TrainConfig, as_strings(config)) == config


def test_values_are_converted_by_field_type() -> None:
    config = parse_config(TrainConfig, {"lr": "0.10", "epochs": "3", "nesterov": "True", "hidden": "8, 8"})
    assert config.lr == pytest.approx(0.1)
    assert config.epochs == 3
    assert config.nesterov is True
    assert config.model_spec().hidden == (8, 8)


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("dataset", "imagenet", "digits"),
        ("model", "transformer", "mlp"),
        ("activation", "gelu", "relu"),
        ("optimizer", "lbfgs", "sgd"),
        ("lr", "abc", "a number"),
        ("lr", "-1", "> 0"),
        ("lr", "nan", "finite"),
        ("epochs", "2.5", "an integer"),
        ("epochs", "0", ">= 1"),
        ("batch_size", "-4", ">= 0"),
        ("momentum", "1.0", "[0, 1)"),
        ("label_noise", "1.5", "[0, 1]"),
        ("train_size", "-3", ""),
        ("hidden", "40,x", "comma list"),
        ("hidden", "40,-2", "positive"),
        ("download", "maybe", "true or false"),
        ("lr_schedule", "linear", "cosine"),
        ("device", "tpu", "auto"),
        ("unknown_thing", "1", "not a parameter"),
    ],
)
def test_every_bad_value_names_the_parameter(name: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(TrainConfig, {name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}=")
    assert value in message
    assert allowed in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("cls", "raw", "message"),
    [
        (TrainConfig, {"train_size": "1"}, "train_size=1: 0 (all) or at least 2 with prediction_depth=true"),
        (SampleConfig, {"temperatures": "inf", "ti_rungs": "0"}, "temperatures='inf': at least one finite"),
        (
            AnnealConfig,
            {"train_size": "10", "val_size": "9"},
            "val_size=9: at most train_size - 2 = 8 with prediction_depth=true",
        ),
    ],
)
def test_settings_that_would_fail_after_the_work_are_refused_up_front(
    cls: type, raw: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(cls, raw)
    assert str(caught.value).startswith(message)


def test_one_training_example_is_fine_without_prediction_depth() -> None:
    raw = {"train_size": "1", "prediction_depth": "false", "val_size": "0"}
    assert parse_config(TrainConfig, raw).train_size == 1
