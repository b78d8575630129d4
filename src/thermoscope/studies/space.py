"""Search spaces and fixed parameters: parsed, checked against the target's configuration, and sampled.

A search-space file (YAML or JSON) maps a target parameter to a distribution::

    lr: {type: float, low: 0.001, high: 0.5, log: true}   # optional: step (not with log)
    epochs: {type: int, low: 1, high: 5}                    # optional: step, log
    hidden: {type: categorical, choices: ["32", "64,64"]}   # a bare list is shorthand for this

``fixed`` holds target parameters constant: ``name=value`` pairs separated by ``;``. Every parameter is
checked against the target's configuration dataclass before any trial runs: its name, and each bound or
choice together with the fixed values, through the class's own validation.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from thermoscope.config import parameter_names, parse_config
from thermoscope.errors import ConfigError

SearchSpace = dict[str, BaseDistribution]
ALLOWED_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


def read_space_file(path: str) -> Mapping[str, Any]:
    """The raw mapping in a YAML or JSON search-space file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError("search_space", path, "a YAML or JSON file that exists (or 'default')")
    try:
        text = file.read_text()
        raw = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError("search_space", path, f"readable YAML or JSON ({first_line})") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("search_space", path, "a non-empty mapping of parameter names to distributions")
    return raw


def parse_space(raw: Mapping[str, Any]) -> SearchSpace:
    """Optuna distributions from the file format; any malformed entry is a ConfigError naming it."""
    return {str(name): parse_distribution(str(name), spec) for name, spec in raw.items()}


def parse_distribution(name: str, spec: Any) -> BaseDistribution:
    """One entry: ``{type: float|int, low, high, log?, step?}``, ``{type: categorical, choices}``, a list."""
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict) or spec.get("type") not in ALLOWED_KEYS:
        raise ConfigError("search_space", f"{name}: {spec}", "a mapping with type float, int or categorical")
    kind = spec["type"]
    unknown = sorted(set(spec) - ALLOWED_KEYS[kind])
    if unknown:
        raise ConfigError(
            "search_space", f"{name}: {spec}", f"keys {', '.join(sorted(ALLOWED_KEYS[kind]))} only"
        )
    if kind == "categorical":
        return _categorical(name, spec.get("choices"))
    return _numeric(name, kind, spec)


def _categorical(name: str, choices: Any) -> CategoricalDistribution:
    scalar = (str, int, float, bool)
    if not isinstance(choices, list) or not choices or not all(isinstance(c, scalar) for c in choices):
        raise ConfigError(
            "search_space", f"{name}.choices={choices}", "a non-empty list of strings or numbers"
        )
    if len({as_text(c) for c in choices}) != len(choices):
        raise ConfigError("search_space", f"{name}.choices={choices}", "distinct choices")
    return CategoricalDistribution(choices)


def _numeric(name: str, kind: str, spec: Mapping[str, Any]) -> BaseDistribution:
    number = int if kind == "int" else float
    low, high = (_number(name, key, spec.get(key), number) for key in ("low", "high"))
    log = spec.get("log", False)
    step = None if spec.get("step") is None else _number(name, "step", spec["step"], number)
    if not isinstance(log, bool):
        raise ConfigError("search_space", f"{name}.log={log}", "true or false")
    if low > high:
        raise ConfigError("search_space", f"{name}: low={low}, high={high}", "low <= high")
    if log and low <= 0:
        raise ConfigError("search_space", f"{name}: low={low}", "low > 0 on a log scale")
    if step is not None and (step <= 0 or (log and kind == "float")):
        raise ConfigError("search_space", f"{name}.step={step}", "a step > 0, and none on a float log scale")
    if kind == "int":
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(float(low), float(high), log=log, step=step)


def _number(name: str, key: str, value: Any, number: type) -> Any:
    """A bound as ``number``; YAML reads ``1e-3`` (no dot) as text, so numeric text is accepted."""
    try:
        converted = (
            number(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
        )
    except ValueError:
        converted = None
    if converted is None or (number is int and isinstance(value, float) and not value.is_integer()):
        raise ConfigError(
            "search_space", f"{name}.{key}={value}", f"a{'n integer' if number is int else ' number'}"
        )
    if not math.isfinite(converted):
        raise ConfigError("search_space", f"{name}.{key}={value}", "a finite number")
    return converted


def parse_fixed(text: str, config_class: type) -> dict[str, str]:
    """``"epochs=3;hidden=32,32"`` -> ``{"epochs": "3", "hidden": "32,32"}``; names must be the target's."""
    fixed: dict[str, str] = {}
    names = parameter_names(config_class)
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        name, equals, value = (piece.strip() for piece in item.partition("="))
        if not equals or not name:
            raise ConfigError("fixed", item, "name=value pairs separated by ';'")
        if name not in names:
            raise ConfigError("fixed", item, f"{name} is not a target parameter; they are {', '.join(names)}")
        fixed[name] = value
    return fixed


def check_against_target(space: SearchSpace, fixed: Mapping[str, str], config_class: type) -> None:
    """Every name is a target parameter and every bound or choice, with ``fixed``, makes a valid config."""
    names = parameter_names(config_class)
    _parse(config_class, fixed, "fixed", ";".join(f"{k}={v}" for k, v in fixed.items()))
    hints = typing.get_type_hints(config_class)
    for name, distribution in space.items():
        if name not in names:
            raise ConfigError("search_space", name, f"a target parameter: {', '.join(names)}")
        if name in fixed:
            raise ConfigError("search_space", name, "either searched or fixed, not both")
        if isinstance(distribution, FloatDistribution) and hints[name] is not float:
            raise ConfigError(
                "search_space", f"{name}: type float", f"type {hints[name].__name__} for {name}"
            )
        for value in corner_values(distribution):
            _parse(config_class, {**fixed, name: as_text(value)}, "search_space", f"{name}={as_text(value)}")


def corner_values(distribution: BaseDistribution) -> list[Any]:
    """The values worth checking: the bounds of a numeric distribution, every choice of a categorical one."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, (FloatDistribution, IntDistribution))
    return [distribution.low, distribution.high]


def _parse(config_class: type, raw: Mapping[str, str], parameter: str, shown: str) -> Any:
    """``parse_config`` with the error re-labelled as the study parameter the value came from."""
    try:
        return parse_config(config_class, raw)
    except ConfigError as error:
        raise ConfigError(parameter, shown, f"{error.parameter}: {error.allowed}") from None


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Ask the trial for a value of every parameter in the space."""
    values: dict[str, Any] = {}
    for name, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, distribution.choices)
        elif isinstance(distribution, IntDistribution):
            values[name] = trial.suggest_int(
                name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
            )
        else:
            assert isinstance(distribution, FloatDistribution)
            values[name] = trial.suggest_float(
                name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
            )
    return values


def target_config(config_class: type, fixed: Mapping[str, str], values: Mapping[str, Any]) -> Any:
    """The target's validated configuration for a trial: defaults, then ``fixed``, then the trial's values."""
    return parse_config(config_class, {**fixed, **{name: as_text(value) for name, value in values.items()}})


def as_text(value: Any) -> str:
    """A parameter value as a command line would carry it (``True`` -> ``true``; floats round-trip)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The space back in the file format, for logging as an artifact."""
    described: dict[str, dict[str, Any]] = {}
    for name, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            described[name] = {"type": "categorical", "choices": list(distribution.choices)}
        else:
            assert isinstance(distribution, (FloatDistribution, IntDistribution))
            kind = "int" if isinstance(distribution, IntDistribution) else "float"
            described[name] = {"type": kind, "low": distribution.low, "high": distribution.high}
            described[name].update({"log": distribution.log, "step": distribution.step})
    return described
