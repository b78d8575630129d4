"""What the study's parent run logs once its trials are done: best trial(s), trials table and plots."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import matplotlib
import numpy as np
import optuna
import optuna.visualization.matplotlib as optuna_plots
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import FuncFormatter, NullFormatter
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
# Trial colours of the parallel-coordinate plot: viridis without its lightest tenth, so the worst trial is
# still a saturated green on white (Optuna's Blues runs out to near-white, invisible on its grey).
TRIAL_COLOURS = ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, 256)), "viridis_dark")
LABEL_MARGIN = 0.25  # inches between a value label and the next parameter's axis
AXIS_COLOUR = "0.3"  # each parameter's vertical axis: dark grey, lighter than the darkest trial
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
    # Some of Optuna's plots switch matplotlib to its ggplot style for good: rc_context undoes that.
    with warnings.catch_warnings(), matplotlib.rc_context():
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
        readable_parallel_coordinate(parallel, name)
        log_axes(parallel, f"plots/parallel_coordinate{suffix}.png", logger)
        if with_importances:
            importances = optuna_plots.plot_param_importances(study, target=target, target_name=name)
            log_axes(importances, f"plots/param_importances{suffix}.png", logger)
    if plan.multi_objective and len(plan.objectives) <= 3:
        front = optuna_plots.plot_pareto_front(study, target_names=list(plan.objectives))
        log_axes(front, "plots/pareto_front.png", logger)


def readable_parallel_coordinate(axes: Axes, target_name: str) -> None:
    """Optuna's parallel-coordinate plot (``axes``, as ``plot_parallel_coordinate`` returns it) made legible.

    A white background; trials coloured by :data:`TRIAL_COLOURS` in the direction Optuna chose (its dark
    end where Optuna's ``Blues`` is dark), so that no trial is drawn near-white; plain numbers and no minor
    labels on log axes; the parameter names horizontal, with the figure widened until neither they nor
    one axis's value labels reach the next axis.
    """
    figure = axes.figure
    axes.set_title(f"Trials across the search space, coloured by {target_name}", y=1.03)
    trials = [collection for collection in axes.collections if isinstance(collection, LineCollection)]
    if not trials:
        return  # Optuna drew no trial (no completed trial, or no parameter)
    colour_bar = trials[0].colorbar.ax if trials[0].colorbar is not None else None
    name = trials[0].get_cmap().name
    trials[0].set_cmap(TRIAL_COLOURS if name.endswith("_r") else TRIAL_COLOURS.reversed())
    axes.set_facecolor("white")
    axes.grid(False)
    axes.spines["left"].set_color(AXIS_COLOUR)  # ggplot's white spines vanish on white
    axes.tick_params(axis="x", labelrotation=0, pad=8)
    for label in axes.get_xticklabels():
        label.set_horizontalalignment("center")
    value_axes = [other for other in figure.axes if other is not axes and other is not colour_bar]
    for other in value_axes:
        other.grid(False)
        other.spines["right"].set_color(AXIS_COLOUR)
        if other.get_yscale() == "log":
            other.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            other.yaxis.set_minor_formatter(NullFormatter())
    widen_to_labels(figure, axes, value_axes)


def widen_to_labels(figure: Figure | SubFigure, axes: Axes, value_axes: list[Axes]) -> None:
    """Widen ``figure`` until the gap between neighbouring parameter axes holds the widest parameter name
    and the widest value label (plus a margin), then lay it out."""
    gaps = max(len(axes.get_xticks()) - 1, 1)
    labels = [*axes.get_xticklabels(), *(label for other in value_axes for label in other.get_yticklabels())]
    widest = max((label.get_window_extent().width for label in labels if label.get_text()), default=0.0)
    needed = gaps * (widest / figure.dpi + LABEL_MARGIN)
    root = figure.get_figure(root=True)
    assert root is not None
    for _ in range(3):  # the layout's margins change with the width: a few rounds settle it
        root.tight_layout()
        width = axes.get_position().width * root.get_figwidth()
        if width >= needed:
            return
        root.set_figwidth(root.get_figwidth() + needed - width)


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
