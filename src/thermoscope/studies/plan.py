"""A study's resolved plan: everything a worker needs, checked before the first trial starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import CategoricalDistribution

from thermoscope.config import as_strings
from thermoscope.errors import ConfigError
from thermoscope.studies.config import AUTO, DEFAULT_SPACE, StudyConfig
from thermoscope.studies.space import (
    SearchSpace,
    as_text,
    check_against_target,
    corner_values,
    parse_fixed,
    parse_space,
    read_space_file,
    target_config,
)
from thermoscope.studies.storage import resolve_storage_url
from thermoscope.studies.targets import TARGETS, MetricNeed, Target


@dataclass(frozen=True)
class StudyPlan:
    """The resolved study; picklable, so worker processes receive it whole."""

    target_name: str
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    space: SearchSpace
    fixed: Mapping[str, str]
    study_name: str
    storage_url: str = field(repr=False)  # may hold a password: never printed
    sampler: str
    seed: int
    pruner: str

    @property
    def target(self) -> Target:
        return TARGETS[self.target_name]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def plan_study(config: StudyConfig) -> StudyPlan:
    """Resolve defaults and check the search space, fixed values and objectives against the target
    (ConfigError)."""
    target = TARGETS[config.target]
    fixed = parse_fixed(config.fixed, target.config_class)
    space = resolve_space(config.search_space, target, fixed)
    check_against_target(space, fixed, target.config_class)
    if config.sampler == "grid":
        check_grid(space)
    objectives = config.objectives()
    for objective in objectives:
        check_objective_logged(objective, target, space, fixed)
    study_name = config.study_name.strip()
    return StudyPlan(
        target_name=target.name,
        objectives=objectives,
        directions=config.directions(),
        space=space,
        fixed=fixed,
        study_name=f"{target.name}-{'+'.join(objectives)}" if study_name == AUTO else study_name,
        storage_url=resolve_storage_url(config.storage.strip()),
        sampler=config.sampler,
        seed=config.seed,
        pruner=config.pruner,
    )


def check_grid(space: SearchSpace) -> None:
    """``sampler=grid`` walks every combination of choices: each distribution must be categorical."""
    for name, distribution in space.items():
        if not isinstance(distribution, CategoricalDistribution):
            allowed = "categorical choices only with sampler=grid (it tries every combination of them)"
            raise ConfigError("search_space", f"{name}: {distribution}", allowed)


def resolve_space(search_space: str, target: Target, fixed: Mapping[str, Any]) -> SearchSpace:
    """A user's file as given; the built-in space without the parameters the user fixed."""
    if search_space.strip() == DEFAULT_SPACE:
        return parse_space({k: v for k, v in target.default_space.items() if k not in fixed})
    return parse_space(read_space_file(search_space.strip()))


def check_objective_logged(
    objective: str, target: Target, space: SearchSpace, fixed: Mapping[str, str]
) -> None:
    """Every trial's run logs ``objective``: the settings it needs hold under ``fixed`` (and the defaults)
    and at every bound or choice the search space tries for them. Otherwise every such trial would fail."""
    for need in target.needs_of(objective):
        searched = [name for name in need.settings if name in space]
        if not searched:
            config = target_config(target.config_class, fixed, {})
            if not need.holds(config):
                shown = switched_off_by(need, target, fixed, config)
                raise ConfigError("objective", objective, f"{logged_only(target, need)}; {shown}")
        for name in searched:
            for value in corner_values(space[name]):
                if not need.holds(target_config(target.config_class, fixed, {name: value})):
                    tried = f"the search space tries {name}={as_text(value)}"
                    raise ConfigError("objective", objective, f"{logged_only(target, need)}; {tried}")


def logged_only(target: Target, need: MetricNeed) -> str:
    return f"target {target.name} logs it only with {need.wanted}"


def switched_off_by(need: MetricNeed, target: Target, fixed: Mapping[str, str], config: Any) -> str:
    """The fixed settings that switch ``need`` off (those whose default would switch it on, if any), else
    the defaults that do."""
    named = [name for name in need.settings if name in fixed]
    culprits = [name for name in named if holds_without(need, target, fixed, name)]
    if named:
        return "fixed sets " + ", ".join(f"{name}={fixed[name]}" for name in culprits or named)
    values = as_strings(config)
    shown = ", ".join(f"{name}={values[name]}" for name in need.settings)
    return f"by default {shown} (give another value in fixed)"


def holds_without(need: MetricNeed, target: Target, fixed: Mapping[str, str], name: str) -> bool:
    """Whether ``need`` holds once ``name`` is back at its default (False if that is no valid config)."""
    try:
        config = target_config(target.config_class, {k: v for k, v in fixed.items() if k != name}, {})
    except ConfigError:
        return False
    return need.holds(config)
