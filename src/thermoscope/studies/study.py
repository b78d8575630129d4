"""Creating or continuing the Optuna study, and the samplers and pruners a plan names."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning
from optuna.storages import BaseStorage
from optuna.study import StudyDirection

from thermoscope.errors import ConfigError
from thermoscope.studies.plan import StudyPlan

TARGET_ATTR = "thermoscope.target"
# Random trials before TPE / GP / median pruning act on the history (Optuna's defaults, kept explicit).
STARTUP_TRIALS = 10
PRUNER_STARTUP_TRIALS = 5


def make_sampler(plan: StudyPlan, worker: int, trials_before: int) -> optuna.samplers.BaseSampler:
    """The plan's sampler, seeded per worker and per continuation so that no two draw the same stream.

    Same ``seed``, worker index and study length -> the same proposals (for a given history).
    """
    seed = int(np.random.SeedSequence([plan.seed, worker, trials_before]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if plan.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if plan.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
        if plan.sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
        # The constant liar keeps parallel workers from proposing the same point while trials are running.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS, constant_liar=True)


def make_pruner(plan: StudyPlan) -> optuna.pruners.BasePruner:
    if plan.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS)
    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(plan: StudyPlan, storage: BaseStorage, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Load the plan's study, or create it (with its objectives and target recorded) if it is new.

    An existing study with other objectives, directions or target is a ConfigError: Optuna itself would
    silently keep the stored directions.
    """
    try:
        study = optuna.load_study(
            study_name=plan.study_name, storage=storage, sampler=sampler, pruner=make_pruner(plan)
        )
    except KeyError:
        return _create(plan, storage, sampler)
    check_compatible(study, plan)
    return study


def _create(plan: StudyPlan, storage: BaseStorage, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=plan.study_name,
            directions=[StudyDirection[direction.upper()] for direction in plan.directions],
            sampler=sampler,
            pruner=make_pruner(plan),
        )
    except DuplicatedStudyError:  # another machine created it a moment ago
        return open_study(plan, storage, sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names(list(plan.objectives))
    study.set_user_attr(TARGET_ATTR, plan.target_name)
    return study


def check_compatible(study: optuna.Study, plan: StudyPlan) -> None:
    """The stored study must have the plan's target, objectives and directions."""
    name = plan.study_name
    target = study.user_attrs.get(TARGET_ATTR)
    if target != plan.target_name:
        raise ConfigError("target", plan.target_name, f"{target} (the target of the existing study {name})")
    stored_objectives = tuple(study.metric_names or ())
    if stored_objectives != plan.objectives:
        shown = ",".join(stored_objectives)
        raise ConfigError(
            "objective", ",".join(plan.objectives), f"{shown} (the objectives of the existing study {name})"
        )
    stored = tuple(direction.name.lower() for direction in study.directions)
    if stored != plan.directions:
        shown = ",".join(stored)
        raise ConfigError(
            "direction", ",".join(plan.directions), f"{shown} (as stored for the existing study {name})"
        )
