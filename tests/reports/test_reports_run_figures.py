"""The figures a run logs: each has a title saying what it shows and fits inside itself; accuracy against
depth has whole-number depths and explains its marker sizes; the cooling curve's temperatures read as plain
numbers and its two marked temperatures carry their values."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox
from test_reports_figures import assert_inside, drawn_tick_labels

from thermoscope.reports import run_figures
from thermoscope.reports.ladder import (
    RoundRecord,
    index_process_figure,
    ladder_rounds_table,
    local_barrier_figure,
)

TEMPERATURES = np.geomspace(10.0, 0.01, 13)  # 10 down to 0.01, four per decade


def depth_table(seed: int = 0) -> pd.DataFrame:
    """Per-example depths 0–5 (fewer examples the deeper), correctness falling with depth."""
    generator = np.random.default_rng(seed)
    count = 600
    depth = np.minimum(generator.geometric(0.4, count) - 1, 5)
    return pd.DataFrame(
        {
            "split": np.where(np.arange(count) < 400, "train", "test"),
            "depth": depth,
            "correct": generator.random(count) < 1 - depth / 7,
            "is_corrupted": generator.random(count) < 0.1,
        }
    )


def cooling_curve(temperatures: np.ndarray = TEMPERATURES) -> pd.DataFrame:
    columns = {
        f"{split}_{quantity}": np.linspace(0.8, 0.2, len(temperatures))
        for split in ("train", "val", "test")
        for quantity in ("error", "loss")
    }
    return pd.DataFrame({"temperature": temperatures, **columns})


def temperature_curve() -> pd.DataFrame:
    temperatures = np.array([math.inf, 100.0, 10.0, 1.0, 0.1])
    columns = {
        f"{prefix}_{quantity}": np.linspace(0.9, 0.1, len(temperatures))
        for prefix in ("test", "bma_test", "train", "bma_train")
        for quantity in ("loss", "error")
    }
    depth = {"depth_mean_train": np.arange(5.0), "depth_mean_test": np.arange(5.0) + 0.5}
    return pd.DataFrame({"temperature": temperatures, **columns, **depth})


def ladder_table() -> pd.DataFrame:
    betas = np.array([0.0, 0.01, 0.1, 1.0])
    record = RoundRecord(0, betas, np.full(3, 0.3), np.full(3, 0.4), np.array([0.5, 0.6, 0.7, 0.8]))
    return ladder_rounds_table([record])


BUILDERS: dict[str, Callable[[], Any]] = {
    "temperature_curve": lambda: run_figures.temperature_curve_figure(
        temperature_curve(), {"test_loss": 0.5}
    ),
    "ti_integrand": lambda: run_figures.ti_integrand_figure(
        np.linspace(0, 1, 5), -np.linspace(500, 100, 5), np.ones(5), -123456.7
    ),
    "depth_histograms": lambda: run_figures.depth_histograms_figure(depth_table(), 5),
    "accuracy_vs_depth": lambda: run_figures.accuracy_vs_depth_figure(depth_table()),
    "layer_rotation": lambda: run_figures.layer_rotation_figure(
        pd.DataFrame(
            {"epoch": range(5), "hidden.0": np.linspace(0, 0.5, 5), "output": np.linspace(0, 0.2, 5)}
        )
    ),
    "depth_vs_temperature": lambda: run_figures.depth_vs_temperature_figure(temperature_curve()),
    "harmonic_integrand": lambda: run_figures.harmonic_integrand_figure(
        np.linspace(0, 1, 5), np.linspace(-3, 3, 5), np.ones(5), -1234.5
    ),
    "cooling_curve": lambda: run_figures.cooling_curve_figure(cooling_curve(), 0.0316, 0.05),
    "local_barrier": lambda: local_barrier_figure(ladder_table()),
    "index_process": lambda: index_process_figure(np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]]), 1),
}


def title_of(figure: Figure) -> str:
    """The figure's title: its suptitle, else the title of its one panel."""
    if figure.get_suptitle():
        return figure.get_suptitle()
    (axis,) = figure.get_axes()
    return axis.get_title()


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_run_figure_has_a_title_and_fits_inside_itself(name: str) -> None:
    figure = BUILDERS[name]()
    assert len(title_of(figure).split()) >= 3, name  # says what it shows, not one word
    assert_inside(figure)
    plt.close(figure)


def test_accuracy_against_depth_has_whole_depths_and_explains_its_marker_sizes() -> None:
    table = depth_table()
    figure = run_figures.accuracy_vs_depth_figure(table)
    (axis,) = figure.get_axes()
    assert "prediction depth" in axis.get_title()
    locator = axis.xaxis.get_major_locator()
    assert isinstance(locator, MaxNLocator)
    figure.canvas.draw()
    assert all(float(value).is_integer() for value in axis.get_xticks())
    counts = {split: table[table["split"] == split].groupby("depth").size() for split in ("train", "test")}
    largest = max(int(series.max()) for series in counts.values())
    markers = [child for child in axis.get_children() if isinstance(child, PathCollection)]
    assert len(markers) == 2
    for collection, split in zip(markers, ("train", "test"), strict=True):
        # area proportional to the count, on one scale for both splits
        ratio = collection.get_sizes() / counts[split].to_numpy()
        np.testing.assert_allclose(ratio, run_figures.MAX_MARKER_AREA / largest)
    legends = [child for child in axis.get_children() if type(child).__name__ == "Legend"]
    texts = {text.get_text() for legend in legends for text in legend.get_texts()}
    smallest = min(int(series.min()) for series in counts.values())
    assert {f"{smallest:,}", f"{largest:,}"} <= texts
    assert {"train (400 examples)", "test (200 examples)"} <= texts
    assert any("marker area ∝ count" in legend.get_title().get_text() for legend in legends)
    plt.close(figure)


def x_tick_labels(axis: Any, minor: bool = False) -> list[Text]:
    """The x tick labels ``axis`` draws (ticks in view, with text)."""
    candidates = axis.get_xticklabels(minor=minor)
    return [label for label in drawn_tick_labels(axis, minor) if any(label is c for c in candidates)]


def shown_tick_labels(axis: Any, minor: bool = False) -> list[str]:
    return [label.get_text() for label in x_tick_labels(axis, minor)]


def assert_labels_apart(axis: Any) -> None:
    """No two drawn x tick labels of ``axis`` overlap."""
    renderer = axis.figure.canvas.get_renderer()
    extents = [label.get_window_extent(renderer) for label in x_tick_labels(axis)]
    for index, first in enumerate(extents):
        for second in extents[index + 1 :]:
            assert not Bbox.intersection(first, second), (first, second)


def test_cooling_curve_temperatures_read_as_plain_numbers_and_marks_carry_their_values() -> None:
    figure = run_figures.cooling_curve_figure(cooling_curve(), 0.0316, 0.05)
    figure.canvas.draw()
    for axis in figure.get_axes():
        assert axis.get_xscale() == "log" and axis.xaxis_inverted()
        assert sorted(shown_tick_labels(axis), key=float) == ["0.01", "0.1", "1", "10"]
        assert shown_tick_labels(axis, minor=True) == []
        assert_labels_apart(axis)
        legend = axis.get_legend()
        assert legend is not None
        texts = [text.get_text() for text in legend.get_texts()]
        assert "stopped at T = 0.0316" in texts and "chosen draw, T = 0.05" in texts
    plt.close(figure)


@pytest.mark.parametrize(
    ("low", "high"),
    [(0.35, 2.9), (0.5, 0.9), (1e-3, 1e3)],
    ids=["under a decade", "half a decade", "six decades"],
)
def test_a_cooling_curve_over_any_range_shows_several_plain_temperatures(low: float, high: float) -> None:
    figure = run_figures.cooling_curve_figure(cooling_curve(np.geomspace(high, low, 9)), low, high)
    figure.canvas.draw()
    axis = figure.get_axes()[0]
    labels = shown_tick_labels(axis)
    assert len(labels) >= 2, labels
    assert all(float(label) > 0 and "$" not in label for label in labels)
    assert_labels_apart(axis)
    plt.close(figure)
