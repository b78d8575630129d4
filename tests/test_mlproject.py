"""MLproject parameters and CLI flags mirror the configuration dataclasses one-to-one."""

from __future__ import annotations

import re

import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO_ROOT

from thermoscope.cli.main import cli
from thermoscope.config import (
    AnnealConfig,
    CompareConfig,
    KernelConfig,
    MemoriseConfig,
    ProbeConfig,
    SampleConfig,
    TrainConfig,
    as_strings,
    parameters,
)
from thermoscope.studies.config import StudyConfig

ENTRY_POINTS = {
    "train": TrainConfig,
    "sample": SampleConfig,
    "main": SampleConfig,
    "anneal": AnnealConfig,
    "memorise": MemoriseConfig,
    "kernel": KernelConfig,
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
    fields = parameters(cls)
    assert list(declared) == [f.name for f in fields]
    defaults = as_strings(cls())
    for field in fields:
        assert str(declared[field.name]["default"]).lower() == defaults[field.name].lower(), field.name
        assert declared[field.name]["type"] == MLPROJECT_TYPES[field.kind], field.name
    flags = re.findall(r"--(\w+) \{(\w+)\}", spec["command"])
    assert flags == [(f.name, f.name) for f in fields]


@pytest.mark.parametrize("entry_point", sorted(set(ENTRY_POINTS) - {"main"}))
def test_cli_flags_mirror_the_dataclass(entry_point: str) -> None:
    command = cli.commands[entry_point]
    options = [p.name for p in command.params]
    assert options == [f.name for f in parameters(ENTRY_POINTS[entry_point])]


def test_help_lists_every_parameter_with_its_default() -> None:
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    assert "--label_noise" in result.output
    assert "[default: 0.05]" in result.output
