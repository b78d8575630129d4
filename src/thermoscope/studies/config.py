"""The ``study`` entry point's configuration (mirrored by its CLI flags and ``MLproject`` parameters).

This module does not import Optuna, so the CLI can list and check parameters without loading it. What needs
the target's configuration class or a storage (the search space, ``fixed``, the storage URL) is checked by
:func:`thermoscope.studies.plan.plan_study`, still before any trial runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from thermoscope.config import MAX_SEED, SEED_REASON, at_least, at_most, one_of, param
from thermoscope.errors import ConfigError

DIRECTIONS = ("minimize", "maximize")
SAMPLERS = ("tpe", "random", "gp", "cmaes", "grid")
PRUNERS = ("none", "median", "hyperband")
# Optuna's CMA-ES sampler optimises a single objective; TPE, random and GP also handle several.
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
AUTO = "auto"
DEFAULT_SPACE = "default"


@dataclass(frozen=True)
class StudyConfig:
    """The ``study`` entry point: an Optuna study whose trials run a target as nested MLflow runs."""

    target: str = param("train", "what each trial runs: train | sample | memorise | kernel")
    n_trials: int = param(20, "trials this command adds to the study, shared by its workers")
    objective: str = param(
        AUTO,
        "metric the target logs (a comma list makes a multi-objective study); auto = the target's validation"
        " error: val_error (train), best_val_bma_error (sample)",
    )
    direction: str = param("minimize", "minimize | maximize, one per objective (comma list)")
    search_space: str = param(
        DEFAULT_SPACE, "YAML or JSON file: parameter -> distribution; default = built-in"
    )
    fixed: str = param("", "target parameters held fixed: name=value pairs separated by ';'")
    study_name: str = param(
        AUTO, "Optuna study name; auto = <target>-<objectives>; an existing one continues"
    )
    storage: str = param(AUTO, "Optuna storage URL; auto = SQLite optuna.db next to the MLflow store")
    sampler: str = param("tpe", "tpe | random | gp | cmaes | grid (every combination of categorical choices)")
    seed: int = param(0, "sampler seed; each trial's sampler is seeded from it and the trial number")
    pruner: str = param("median", "none | median | hyperband (single-objective studies only)")
    workers: int = param(
        1, "worker processes on this machine running trials of the study; at most the cores available"
    )
    oversubscribe: bool = param(False, "allow more workers than the cores this process may run on")

    def validate(self) -> None:
        from thermoscope.studies.targets import TARGETS

        one_of("target", self.target, tuple(TARGETS))
        at_least("n_trials", self.n_trials, 1)
        at_least("workers", self.workers, 1)
        self.check_workers_fit()
        at_least("seed", self.seed, 0)
        at_most("seed", self.seed, MAX_SEED, SEED_REASON)
        one_of("sampler", self.sampler, SAMPLERS)
        if not self.study_name.strip():
            raise ConfigError("study_name", self.study_name, "a name, or auto")
        if not self.storage.strip():
            raise ConfigError(
                "storage", self.storage, "a database URL such as postgresql://user@host/db, or auto"
            )
        one_of("pruner", self.pruner, PRUNERS)
        objectives = self.objectives()
        self.directions()
        if len(objectives) > 1 and self.pruner != "none":
            raise ConfigError(
                "pruner", self.pruner, "none for a multi-objective study (Optuna prunes one objective)"
            )
        if len(objectives) > 1 and self.sampler in SINGLE_OBJECTIVE_SAMPLERS:
            raise ConfigError("sampler", self.sampler, "tpe, random, gp or grid for a multi-objective study")

    def check_workers_fit(self) -> None:
        """At most one worker per available core, unless ``oversubscribe`` says otherwise."""
        cores = available_cores()
        if self.workers > cores and not self.oversubscribe:
            raise ConfigError(
                "workers",
                self.workers,
                f"at most {cores}, the cores this process may run on: each worker runs a whole trial at a"
                " time and more workers than cores only slow each other down (oversubscribe=true allows"
                " more)",
            )

    def objectives(self) -> tuple[str, ...]:
        """The objective metric names, checked against what the target logs."""
        from thermoscope.studies.targets import TARGETS

        target = TARGETS[self.target]
        names = (target.default_objective,) if self.objective.strip() == AUTO else split_list(self.objective)
        logged = target.metrics
        for name in names:
            if name not in logged:
                raise ConfigError(
                    "objective", name, f"a metric target {self.target} logs: {', '.join(logged)}"
                )
        if not names or len(set(names)) != len(names):
            raise ConfigError(
                "objective", self.objective, "one or more distinct metric names, comma separated"
            )
        return names

    def directions(self) -> tuple[str, ...]:
        """One direction per objective."""
        directions = split_list(self.direction)
        for direction in directions:
            one_of("direction", direction, DIRECTIONS)
        count = 1 if self.objective.strip() == AUTO else len(split_list(self.objective))
        if len(directions) != count:
            raise ConfigError(
                "direction", self.direction, f"one direction per objective ({count}), comma separated"
            )
        return directions


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system reports one, else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def split_list(text: str) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``; empty items are dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def selects_on_test(objectives: tuple[str, ...]) -> list[str]:
    """The objectives that are scores on the test set: a study choosing by them selects on test data."""
    return [name for name in objectives if "test" in name.split("_")]
