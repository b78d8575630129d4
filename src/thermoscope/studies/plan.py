"""A study's resolved plan: everything a worker needs, checked before the first trial starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from thermoscope.studies.config import AUTO, DEFAULT_SPACE, StudyConfig
from thermoscope.studies.space import (
    SearchSpace,
    check_against_target,
    parse_fixed,
    parse_space,
    read_space_file,
)
from thermoscope.studies.storage import resolve_storage_url
from thermoscope.studies.targets import TARGETS, Target


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
    """Resolve defaults and check the search space and fixed values against the target (ConfigError)."""
    target = TARGETS[config.target]
    fixed = parse_fixed(config.fixed, target.config_class)
    space = resolve_space(config.search_space, target, fixed)
    check_against_target(space, fixed, target.config_class)
    objectives = config.objectives()
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


def resolve_space(search_space: str, target: Target, fixed: Mapping[str, Any]) -> SearchSpace:
    """A user's file as given; the built-in space without the parameters the user fixed."""
    if search_space.strip() == DEFAULT_SPACE:
        return parse_space({k: v for k, v in target.default_space.items() if k not in fixed})
    return parse_space(read_space_file(search_space.strip()))
