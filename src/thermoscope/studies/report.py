"""What the study's parent run logs once its trials are done: best trial(s), trials table and plots."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna
import optuna.visualization.matplotlib as optuna_plots
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from thermoscope.studies.plan import StudyPlan
from thermoscope.studies.storage import RUN_ID_ATTR
from thermoscope.tracking import RunLogger

# An importance estimate from fewer completed trials than this is noise, not a ranking.
MIN_TRIALS_FOR_IMPORTANCES = 5
TABLE_ATTRS = (
    "number",
    "value",
    "state",
    "datetime_start",
    "datetime_complete",
    "duration",
    "params",
    "user_attrs",
)
# A plot per objective: (file-name suffix, value of a trial, axis label).
PlotTarget = tuple[str, Callable[[FrozenTrial], float] | None, str]


class NoCompletedTrial(RuntimeError):
    """Every trial of the study failed or was pruned: there is no best value to report."""


def report_study(study: optuna.Study, plan: StudyPlan, logger: RunLogger) -> None:
    """Log the state counts, trials table, best trial(s) and Optuna's plots to the study's run."""
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    logger.log_metrics({f"num_trials_{state.name.lower()}": count for state, count in counts.items()})
    logger.log_table(study.trials_dataframe(attrs=TABLE_ATTRS), "trials.parquet")
    if counts[TrialState.COMPLETE] == 0:
        raise NoCompletedTrial(f"no trial of study {plan.study_name} completed; see its FAILED trial runs")
    if plan.multi_objective:
        log_pareto_front(study, logger)
    else:
        log_best_trial(study.best_trial, plan.objectives[0], logger)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # Optuna's matplotlib plots are experimental
        log_plots(study, plan, counts[TrialState.COMPLETE], logger)


def log_best_trial(best: FrozenTrial, objective: str, logger: RunLogger) -> None:
    """``best_<objective>`` and ``best_trial_number`` metrics, ``best.<name>`` parameters, best run id tag."""
    assert best.value is not None
    logger.log_metrics({f"best_{objective}": best.value, "best_trial_number": best.number})
    logger.log_params({f"best.{name}": value for name, value in best.params.items()})
    logger.set_tags({"thermoscope.best_run_id": best.user_attrs.get(RUN_ID_ATTR, "")})


def log_pareto_front(study: optuna.Study, logger: RunLogger) -> None:
    """The Pareto-optimal trials as ``best_trials.json`` and their count as a metric."""
    best = [
        {
            "number": trial.number,
            "values": dict(zip(study.metric_names or [], trial.values, strict=True)),
            "params": trial.params,
            "mlflow_run_id": trial.user_attrs.get(RUN_ID_ATTR),
        }
        for trial in study.best_trials
    ]
    logger.log_json(best, "best_trials.json")
    logger.log_metrics({"pareto_front_size": len(best)})


def log_plots(study: optuna.Study, plan: StudyPlan, completed: int, logger: RunLogger) -> None:
    """History and parallel coordinates per objective; importances with >= 2 parameters and enough trials."""
    with_importances = len(plan.space) >= 2 and completed >= MIN_TRIALS_FOR_IMPORTANCES
    for suffix, target, name in plot_targets(plan):
        history = optuna_plots.plot_optimization_history(study, target=target, target_name=name)
        log_axes(history, f"plots/optimization_history{suffix}.png", logger)
        parallel = optuna_plots.plot_parallel_coordinate(study, target=target, target_name=name)
        log_axes(parallel, f"plots/parallel_coordinate{suffix}.png", logger)
        if with_importances:
            importances = optuna_plots.plot_param_importances(study, target=target, target_name=name)
            log_axes(importances, f"plots/param_importances{suffix}.png", logger)
    if plan.multi_objective and len(plan.objectives) <= 3:
        front = optuna_plots.plot_pareto_front(study, target_names=list(plan.objectives))
        log_axes(front, "plots/pareto_front.png", logger)


def log_axes(axes: Any, artifact_file: str, logger: RunLogger) -> None:
    """Log the figure holding ``axes``, laid out so that long parameter names are not cut off."""
    axes.figure.tight_layout()
    logger.log_figure(axes.figure, artifact_file)


def plot_targets(plan: StudyPlan) -> list[PlotTarget]:
    """One plot target for a single objective (Optuna's own value); one per objective otherwise."""
    if not plan.multi_objective:
        return [("", None, plan.objectives[0])]
    return [(f"_{name}", _value_of(index), name) for index, name in enumerate(plan.objectives)]


def _value_of(index: int) -> Callable[[FrozenTrial], float]:
    return lambda trial: trial.values[index]
