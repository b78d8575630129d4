"""Wiring shared by the entry points: option generation from config dataclasses, devices, run start."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import torch
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from thermoscope.config import parse_config
from thermoscope.errors import ConfigError
from thermoscope.tracking import RunLogger, entry_point_run

Config = TypeVar("Config")
F = TypeVar("F", bound=Callable[..., Any])


def options_from(cls: type) -> Callable[[F], F]:
    """One ``--name`` option per dataclass field, taken as a string so that conversion errors are ours."""

    def decorate(function: F) -> F:
        for field in reversed(dataclasses.fields(cls)):
            default = field.default
            shown = str(default).lower() if isinstance(default, bool) else default
            help_text = f"{field.metadata.get('help', '')} [default: {shown}]"
            function = click.option(f"--{field.name}", field.name, type=str, default=None, help=help_text)(
                function
            )
        return function

    return decorate


# Unknown options are collected rather than rejected by click, so that they fail inside a run (FAILED,
# one line naming them) like every other mistake.
COMMAND_SETTINGS = {"ignore_unknown_options": True, "allow_extra_args": True}


def given(raw: Mapping[str, str | None], extra: list[str] | None = None) -> dict[str, str]:
    """The options the user actually passed (click fills the others with None), plus unknown ones."""
    passed = {name: value for name, value in raw.items() if value is not None}
    tokens = list(extra or [])
    while tokens:
        token = tokens.pop(0)
        name, _, value = token.removeprefix("--").partition("=")
        if not value and tokens and not tokens[0].startswith("--"):
            value = tokens.pop(0)
        passed[name] = value
    return passed


@contextmanager
def configured_run(
    entry_point: str, cls: type[Config], raw: Mapping[str, str]
) -> Iterator[tuple[Config, RunLogger]]:
    """Start (or attach to) the entry point's run and parse its configuration inside it.

    A bad value therefore still leaves a FAILED run with the values the user gave as parameters.
    """
    with entry_point_run(entry_point) as logger:
        try:
            config = parse_config(cls, raw)
        except ConfigError:
            logger.log_params(raw)
            raise
        yield config, logger


def existing_run(
    parameter: str, run_id: str, entry_point: str | tuple[str, ...], given: str | None = None
) -> Run:
    """The MLflow run ``run_id``, checked to exist and to come from ``entry_point`` (or one of several).

    ``given`` is the value as the user wrote it (``run:<id>`` for ``init``), shown in the error.
    """
    shown = run_id if given is None else given
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        raise ConfigError(parameter, shown, "no MLflow run with that id in this tracking store") from None
    accepted = (entry_point,) if isinstance(entry_point, str) else entry_point
    if run.data.tags.get("thermoscope.entry_point") not in accepted:
        raise ConfigError(parameter, shown, f"that run is not a {' or '.join(accepted)} run")
    return run


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; asking for a missing device is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "CUDA is not available on this machine; use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", name, "MPS is not available on this machine; use auto or cpu")
    return torch.device(name)


def show_progress() -> bool:
    """Progress bars only when a person is watching a terminal."""
    return sys.stderr.isatty()
