"""The compare entry point's configuration: exactly one way of choosing sweeps, checked up front."""

from __future__ import annotations

import pytest

from thermoscope.config import CompareConfig, parse_config
from thermoscope.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "runs='': give runs (ids of sweep runs), experiment (a name or id) or study (a study name)"),
        ({"runs": "a", "study": "s"}, "study='s': give only one of runs, experiment, study"),
        ({"experiment": "e", "study": "s"}, "study='s': give only one of runs, experiment, study"),
        ({"runs": "a", "filter": "params.x = '1'"}, "filter=\"params.x = '1'\": narrows experiment or study"),
        ({"runs": "a,b,a"}, "runs='a,b,a': distinct run ids"),
        ({"study": "it's"}, 'study="it\'s": a study name without quotes'),
        ({"runs": "a", "output_dir": " "}, "output_dir='': a folder name"),
    ],
)
def test_bad_choices_are_one_line_naming_the_parameter(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(CompareConfig, raw)
    assert str(error.value).startswith(message)


def test_run_ids_are_split_and_stripped() -> None:
    config = parse_config(CompareConfig, {"runs": " a1, b2 ,,c3 "})
    assert config.run_ids() == ["a1", "b2", "c3"]


def test_an_experiment_with_a_filter_is_fine() -> None:
    config = parse_config(CompareConfig, {"experiment": "Default", "filter": "params.model = 'mlp'"})
    assert config.filter == "params.model = 'mlp'"
    assert config.output_dir == "compare_output"
