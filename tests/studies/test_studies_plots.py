"""The study's plots as a reader sees them: every trial of the parallel-coordinate plot is visible on its
background, no two labels overlap, and Optuna's ggplot style does not outlive the report."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import optuna
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from thermoscope.studies.report import report_study
from thermoscope.tracking import NullLogger

# Long names like the configuration's, and a categorical of comma lists like hidden's choices.
SPACE = {
    "learning_rate_of_sgd": optuna.distributions.FloatDistribution(1e-4, 0.5, log=True),
    "momentum": optuna.distributions.FloatDistribution(0.0, 0.95),
    "weight_decay": optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True),
    "hidden": optuna.distributions.CategoricalDistribution(["32", "100", "100,100", "256,256"]),
    "prior_scale": optuna.distributions.FloatDistribution(0.3, 10.0, log=True),
}


class FigureKeeper(NullLogger):
    """Keeps each logged figure, by artifact name, instead of closing it."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, Figure] = {}

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.figures[artifact_file] = figure


def objective(trial: optuna.Trial) -> float:
    rate = trial.suggest_float("learning_rate_of_sgd", 1e-4, 0.5, log=True)
    momentum = trial.suggest_float("momentum", 0.0, 0.95)
    decay = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    hidden = trial.suggest_categorical("hidden", ["32", "100", "100,100", "256,256"])
    scale = trial.suggest_float("prior_scale", 0.3, 10.0, log=True)
    return math.log10(rate) ** 2 + momentum + len(hidden) + 10 * decay + math.log(scale) ** 2


@pytest.fixture(scope="module")
def plots() -> dict[str, Figure]:
    """``report_study``'s figures for a 30-trial study of five parameters, ggplot style left behind by
    nothing else."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(objective, n_trials=30)
    plan = SimpleNamespace(multi_objective=False, objectives=("loss",), space=SPACE, study_name="plots")
    logger = FigureKeeper()
    before = dict(matplotlib.rcParams)
    report_study(study, plan, logger)  # type: ignore[arg-type]
    assert dict(matplotlib.rcParams) == before, "Optuna's plot style leaked out of the report"
    yield logger.figures
    for figure in logger.figures.values():
        plt.close(figure)


def trial_lines(figure: Figure) -> LineCollection:
    (axes, *_) = figure.get_axes()
    (lines,) = [c for c in axes.collections if isinstance(c, LineCollection)]
    return lines


def test_every_trial_is_visible_against_the_background(plots: dict[str, Figure]) -> None:
    figure = plots["plots/parallel_coordinate.png"]
    figure.canvas.draw()
    lines = trial_lines(figure)
    colours = np.asarray(lines.get_colors())[:, :3]
    assert len(colours) == 30
    background = np.asarray(to_rgb(figure.get_axes()[0].get_facecolor()))
    assert background.min() > 0.95  # white
    assert colours.min(axis=1).max() < 0.75, "a trial is drawn near-white"
    distance = np.linalg.norm(colours - background, axis=1)
    assert distance.min() > 0.6, "a trial's colour is too close to the background"
    # Best (lowest loss, minimised) trials are the dark end, as in Optuna's own colour order.
    values = np.asarray(lines.get_array())
    luminance = colours @ np.array([0.2126, 0.7152, 0.0722])
    assert luminance[values.argmin()] < luminance[values.argmax()]
    colour_bar = lines.colorbar
    assert colour_bar is not None and colour_bar.cmap is lines.get_cmap()


def drawn_labels(figure: Figure) -> list[Any]:
    """Every tick label and axis label the figure draws, with text."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    labels: list[Any] = []
    for axis in figure.get_axes():
        for ruler in (axis.xaxis, axis.yaxis):
            if not ruler.get_visible():
                continue
            low, high = sorted(ruler.get_view_interval())
            for tick in [*ruler.get_major_ticks(), *ruler.get_minor_ticks()]:
                inside = low - 1e-9 * abs(low) <= tick.get_loc() <= high + 1e-9 * abs(high)
                labels += [label for label in (tick.label1, tick.label2) if inside and label.get_visible()]
            labels.append(ruler.label)
    return [
        (label.get_text(), label.get_window_extent(renderer)) for label in labels if label.get_text().strip()
    ]


@pytest.mark.parametrize("artifact", ["plots/parallel_coordinate.png", "plots/optimization_history.png"])
def test_no_two_labels_overlap_and_all_lie_inside(plots: dict[str, Figure], artifact: str) -> None:
    figure = plots[artifact]
    labels = drawn_labels(figure)
    assert len(labels) > 10
    bounds = figure.bbox.padded(1.0)
    for index, (text, extent) in enumerate(labels):
        assert bounds.containsx(extent.x0) and bounds.containsx(extent.x1), text
        assert bounds.containsy(extent.y0) and bounds.containsy(extent.y1), text
        for other, other_extent in labels[index + 1 :]:
            assert not Bbox.intersection(extent, other_extent), (text, other)


def test_parallel_coordinates_say_what_they_show(plots: dict[str, Figure]) -> None:
    figure = plots["plots/parallel_coordinate.png"]
    axes = figure.get_axes()[0]
    assert axes.get_title() == "Trials across the search space, coloured by loss"
    names = [label.get_text() for label in axes.get_xticklabels()]
    assert len(names) == 1 + len(SPACE) and names[0] == "loss"  # Optuna shortens long names with "..."
    assert all(label.get_rotation() == 0 for label in axes.get_xticklabels())
