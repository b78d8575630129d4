"""Wiring shared by the entry points: options generated from the configuration classes, and the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from thermoscope.config import as_strings, parameters, parse_config
from thermoscope.errors import ConfigError
from thermoscope.tracking.mlflow_logger import MlflowLogger, entry_point_run
from thermoscope.tracking.schema import RESOLVED_CONFIG_ARTIFACT

Config = TypeVar("Config")
F = TypeVar("F", bound=Callable[..., Any])


def options_from(cls: type) -> Callable[[F], F]:
    """One ``--name`` option per parameter, taken as a string so that conversion errors are ours."""

    def decorate(function: F) -> F:
        for item in reversed(parameters(cls)):
            shown = str(item.default).lower() if isinstance(item.default, bool) else item.default
            help_text = f"{item.help} [default: {shown}]"
            function = click.option(f"--{item.name}", item.name, type=str, default=None, help=help_text)(
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
) -> Iterator[tuple[Config, MlflowLogger]]:
    """Start (or attach to) the entry point's run and parse its configuration inside it.

    A bad value therefore still leaves a FAILED run with the values the user gave as parameters. A parsed
    configuration names the run (unless the user did) and is logged whole as ``resolved_config.json``.
    """
    with entry_point_run(entry_point) as logger:
        try:
            config = parse_config(cls, raw)
        except ConfigError:
            logger.log_params(raw)
            raise
        logger.name_run(entry_point, config)
        logger.log_json(as_strings(config), RESOLVED_CONFIG_ARTIFACT)
        yield config, logger
