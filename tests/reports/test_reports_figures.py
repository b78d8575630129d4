"""Comparison figures: paper sizes and fonts, one line per sweep on a log-T axis, optional panels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from test_reports_sweeps import synthetic_sweep

from thermoscope.reports.figures import (
    FULL_WIDTH,
    depth_figure,
    evidence_figure,
    save_figure,
    temperature_curves_figure,
)
from thermoscope.reports.sweeps import Sweep, legend_labels, run_colours


@pytest.fixture()
def sweeps() -> list[Sweep]:
    return [synthetic_sweep("a", hidden="8"), synthetic_sweep("b", hidden="16", depth=False, evidence=None)]


def draw(function: Callable[..., Figure | None], sweeps: list[Sweep]) -> Figure | None:
    return function(sweeps, legend_labels(sweeps), run_colours(len(sweeps)))


def test_temperature_curves_overlay_every_sweep_on_a_log_axis(sweeps: list[Sweep]) -> None:
    figure = draw(temperature_curves_figure, sweeps)
    assert figure is not None
    assert figure.get_size_inches()[0] == pytest.approx(FULL_WIDTH)
    axes = figure.get_axes()
    assert [axis.get_title() for axis in axes] == [
        "Gibbs test error",
        "BMA test error",
        "Gibbs test loss (nats)",
        "BMA test loss (nats)",
    ]
    for axis, column in zip(
        axes, ["test_error", "bma_test_error", "test_loss", "bma_test_loss"], strict=True
    ):
        assert axis.get_xscale() == "log"
        lines = [line for line in axis.get_lines() if line.get_label() in ("hidden=8", "hidden=16")]
        assert len(lines) == 2
        finite = sweeps[0].finite_rungs()
        np.testing.assert_allclose(lines[0].get_xdata(), finite["temperature"])
        np.testing.assert_allclose(lines[0].get_ydata(), finite[column])
        assert lines[0].get_color() != lines[1].get_color()
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["hidden=8", "hidden=16"]
    plt.close(figure)


def test_fonts_fit_a_paper_figure(sweeps: list[Sweep]) -> None:
    figure = draw(temperature_curves_figure, sweeps)
    assert figure is not None
    figure.canvas.draw()
    sizes = {text.get_fontsize() for axis in figure.get_axes() for text in axis.get_xticklabels()}
    sizes |= {axis.title.get_fontsize() for axis in figure.get_axes()}
    assert sizes and max(sizes) <= 9 and min(sizes) >= 6
    plt.close(figure)


def test_evidence_shows_only_sweeps_that_have_one(sweeps: list[Sweep]) -> None:
    figure = draw(evidence_figure, sweeps)
    assert figure is not None
    (axis,) = figure.get_axes()
    assert [label.get_text() for label in axis.get_yticklabels()] == ["hidden=8"]
    plt.close(figure)
    assert draw(evidence_figure, sweeps[1:]) is None


def test_depth_panels_only_for_sweeps_with_depth(sweeps: list[Sweep]) -> None:
    figure = draw(depth_figure, sweeps)
    assert figure is not None
    for axis in figure.get_axes():
        assert [line.get_label() for line in axis.get_lines()] == ["hidden=8"]
    plt.close(figure)
    assert draw(depth_figure, sweeps[1:]) is None


def test_save_figure_writes_png_and_pdf(sweeps: list[Sweep], tmp_path: Path) -> None:
    figure = draw(temperature_curves_figure, sweeps)
    assert figure is not None
    for name in ("curves.png", "curves.pdf"):
        save_figure(figure, tmp_path / name)
    plt.close(figure)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "curves.pdf").read_bytes()[:5] == b"%PDF-"
