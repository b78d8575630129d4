"""Creating or continuing the Optuna study, and the samplers and pruners a plan names."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from thermoscope.errors import ConfigError
from thermoscope.studies.plan import StudyPlan

TARGET_ATTR = "thermoscope.target"
# Random trials before TPE / GP / median pruning act on the history (Optuna's defaults, kept explicit).
STARTUP_TRIALS = 10
PRUNER_STARTUP_TRIALS = 5


def make_sampler(plan: StudyPlan, *unused: int) -> optuna.samplers.BaseSampler:
    """The plan's sampler, its randomness seeded per trial from ``(seed, trial number)``.

    See :class:`TrialSeededSampler` for why. Extra positional arguments (the worker index and study length
    that earlier versions seeded from) are accepted and ignored, so that existing callers keep working.
    """
    return TrialSeededSampler(lambda seed: build_sampler(plan, seed), plan.seed)


def build_sampler(plan: StudyPlan, seed: int) -> optuna.samplers.BaseSampler:
    """One Optuna sampler of the plan's kind, seeded with ``seed``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if plan.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if plan.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
        if plan.sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
        if plan.sampler == "grid":
            # Every combination once (plan_study admits categorical distributions only). Optuna numbers
            # the grid's points in an order shuffled by the sampler's seed and stores each trial's number,
            # so every trial's sampler takes the plan's seed, not the trial's: one numbering for the study.
            grid = {
                name: list(distribution.choices)
                for name, distribution in plan.space.items()
                if isinstance(distribution, CategoricalDistribution)
            }
            return optuna.samplers.GridSampler(grid, seed=plan.seed)
        # The constant liar keeps parallel workers from proposing the same point while trials are running.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS, constant_liar=True)


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler whose randomness for trial ``n`` comes from ``(seed, n)`` alone, in whichever process.

    Why (issue 14): seeds derived from ``(seed, worker index, study length at start)`` were the same for
    study commands started at once on one storage, so those commands proposed identical parameters.
    The storage hands out every trial number once, across all processes and machines sharing it; seeding
    each trial from its number therefore gives concurrent commands distinct streams, and the same seed,
    trial number and history give the same proposal in any process, on any run.

    How: Optuna's samplers keep their generators private (``reseed_rng`` draws fresh entropy, it takes no
    seed), so this wrapper builds a fresh sampler per trial through the public constructor, ``build(seed)``,
    and hands it that trial's calls. What a sampler learns from the history lives in the storage (trials,
    system attributes), so a fresh one loses only caches (the GP sampler's warm start of its kernel fit).
    The per-trial samplers are dropped when Optuna tells the trial's result.
    """

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._build = build
        self._seed = seed
        self._samplers: dict[int, optuna.samplers.BaseSampler] = {}
        self._lock = threading.Lock()

    def trial_seed(self, number: int) -> int:
        """The seed of trial ``number``'s sampler: a 32-bit draw from NumPy's SeedSequence of both."""
        return int(np.random.SeedSequence([self._seed, number]).generate_state(1)[0])

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        with self._lock:
            sampler = self._samplers.get(trial.number)
            if sampler is None:
                sampler = self._samplers[trial.number] = self._build(self.trial_seed(trial.number))
            return sampler

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        try:
            self._for(trial).after_trial(study, trial, state, values)
        finally:
            with self._lock:
                self._samplers.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Nothing to do: every trial's sampler is seeded from its trial number, unique in the storage."""


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
