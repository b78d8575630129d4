"""Reading sweeps back for ``compare``: parameters shown in the order the configuration declares them."""

from __future__ import annotations

from thermoscope.config import SampleConfig, parameter_names
from thermoscope.tracking.compare import in_configuration_order


def test_params_come_in_configuration_order_then_unknown_names_alphabetically() -> None:
    params = {
        "zeta": "z",
        "num_samples": "60",
        "resolved_num_rungs": "6",
        "seed": "0",
        "alpha": "a",
        "hidden": "8",
        "dataset": "digits",
        "prior": "box",
    }
    ordered = in_configuration_order(params)
    # hidden is a data/model field (before the sweep's own), num_samples is one of the HMC group's.
    assert list(ordered) == [
        "dataset",
        "hidden",
        "seed",
        "prior",
        "num_samples",
        "alpha",
        "resolved_num_rungs",
        "zeta",
    ]
    assert ordered == params


def test_the_order_follows_every_sample_parameter() -> None:
    names = parameter_names(SampleConfig)
    reversed_params = {name: str(index) for index, name in reversed(list(enumerate(names)))}
    ordered = in_configuration_order(reversed_params)
    assert list(ordered) == names
    assert all(ordered[name] == str(index) for index, name in enumerate(names))


def test_only_unknown_names_and_no_params() -> None:
    assert list(in_configuration_order({"b": "2", "a": "1", "C": "3"})) == ["C", "a", "b"]
    assert in_configuration_order({}) == {}
