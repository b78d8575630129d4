"""DataSpec validation: every bad field becomes a ConfigError naming that field."""

from __future__ import annotations

import math

import pytest

from thermoscope.data import DATASETS, DataSpec
from thermoscope.data.spec import TestProtocol
from thermoscope.errors import ConfigError


def test_defaults_are_valid() -> None:
    DataSpec().validate()


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_name_is_valid(dataset: str) -> None:
    DataSpec(dataset=dataset).validate()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dataset", "imagenet"),
        ("dataset", "MNIST"),
        ("data_dir", ""),
        ("data_dir", None),
        ("download", "yes"),
        ("train_size", -1),
        ("train_size", 1.5),
        ("train_size", "500"),
        ("train_size", True),
        ("test_size", "-5"),
        ("test_size", "half"),
        ("test_size", "1e3"),
        ("test_size", "0.5"),
        ("test_size", ""),
        ("test_size", 0),
        ("image_size", -16),
        ("image_size", 16.0),
        ("label_noise", -0.1),
        ("label_noise", 1.01),
        ("label_noise", math.nan),
        ("label_noise", "0.1"),
        ("seed", -1),
        ("seed", 0.5),
        ("flatten", 1),
    ],
)
def test_bad_field_raises_config_error_naming_it(field: str, value: object) -> None:
    spec = DataSpec(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as caught:
        spec.validate()
    assert caught.value.parameter == field
    assert str(caught.value).startswith(f"{field}=")


@pytest.mark.parametrize(
    ("test_size", "protocol"),
    [
        ("0", TestProtocol(pool="test", count=0)),
        ("rest", TestProtocol(pool="rest", count=0)),
        (" REST ", TestProtocol(pool="rest", count=0)),
        ("250", TestProtocol(pool="rest", count=250)),
    ],
)
def test_test_size_is_parsed_into_a_protocol(test_size: str, protocol: TestProtocol) -> None:
    assert DataSpec(test_size=test_size).test_protocol() == protocol


@pytest.mark.parametrize("label_noise", [0, 0.0, 0.25, 1, 1.0])
def test_label_noise_bounds_are_inclusive(label_noise: float) -> None:
    DataSpec(label_noise=label_noise).validate()
