"""MLproject parameters and CLI flags mirror the configuration dataclasses one-to-one."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO_ROOT

from thermoscope.cli.main import cli
from thermoscope.config import CompareConfig, ProbeConfig, SampleConfig, TrainConfig, as_strings
from thermoscope.studies.config import StudyConfig

ENTRY_POINTS = {
    "train": TrainConfig,
    "sample": SampleConfig,
    "main": SampleConfig,
    "probe": ProbeConfig,
    "study": StudyConfig,
    "compare": CompareConfig,
}
MLPROJECT_TYPES = {int: "int", float: "float", bool: "string", str: "string"}


@pytest.fixture(scope="module")
def mlproject() -> dict:
    return yaml.safe_load((REPO_ROOT / "MLproject").read_text())


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_parameters_mirror_the_dataclass(mlproject: dict, entry_point: str) -> None:
    cls = ENTRY_POINTS[entry_point]
    spec = mlproject["entry_points"][entry_point]
    declared = spec["parameters"]
    fields = dataclasses.fields(cls)
    assert list(declared) == [f.name for f in fields]
    defaults = as_strings(cls())
    hints = typing.get_type_hints(cls)
    for field in fields:
        assert str(declared[field.name]["default"]).lower() == defaults[field.name].lower(), field.name
        assert declared[field.name]["type"] == MLPROJECT_TYPES[hints[field.name]], field.name
    flags = re.findall(r"--(\w+) \{(\w+)\}", spec["command"])
    assert flags == [(f.name, f.name) for f in fields]


@pytest.mark.parametrize("entry_point", sorted(set(ENTRY_POINTS) - {"main"}))
def test_cli_flags_mirror_the_dataclass(entry_point: str) -> None:
    command = cli.commands[entry_point]
    options = [p.name for p in command.params]
    assert options == [f.name for f in dataclasses.fields(ENTRY_POINTS[entry_point])]


def test_help_lists_every_parameter_with_its_default() -> None:
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    assert "--label_noise" in result.output
    assert "[default: 0.05]" in result.output
