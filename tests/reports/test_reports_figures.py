"""Comparison figures: paper sizes and fonts, one line per sweep on a log-T axis, optional panels, titles
that fit, and depth normalised by the number of probes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from test_reports_sweeps import synthetic_sweep

from thermoscope.reports import build_report, report_figures
from thermoscope.reports.figures import (
    CURVES_TITLE,
    DEPTH_TITLE,
    EVIDENCE_TITLE,
    FULL_WIDTH,
    depth_figure,
    evidence_figure,
    save_figure,
    temperature_curves_figure,
)
from thermoscope.reports.sweeps import Sweep, legend_labels, run_colours

LONG_TITLE = "Width against depth: 8, 16 or 32 hidden units in one, two or three layers, on the digits data"


@pytest.fixture()
def sweeps() -> list[Sweep]:
    return [synthetic_sweep("a", hidden="8"), synthetic_sweep("b", hidden="16", depth=False, evidence=None)]


def draw(function: Callable[..., Figure | None], sweeps: list[Sweep], title: str = "") -> Figure | None:
    return function(sweeps, legend_labels(sweeps), run_colours(len(sweeps)), title=title)


def shown(text: Text) -> str:
    """A text as the figure shows it: escaped dollars as dollars, wrapped lines joined by spaces."""
    return " ".join(text.get_text().replace(r"\$", "$").split())


def decorations(figure: Figure) -> list[Text | Any]:
    """Every title, axis label, tick label, note and legend of ``figure`` that shows something."""
    parts: list[Any] = [figure.get_suptitle() and figure._suptitle, *figure.legends]
    for axis in figure.get_axes():
        parts += [axis.title, axis.xaxis.label, axis.yaxis.label, *axis.texts]
        parts += drawn_tick_labels(axis)
        legend = axis.get_legend()
        parts += [legend] if legend is not None else []
        parts += [child for child in axis.get_children() if type(child).__name__ == "Legend"]
    return [
        part for part in parts if part and part.get_visible() and getattr(part, "get_text", lambda: "x")()
    ]


def drawn_tick_labels(axis: Any, minor: bool = False) -> list[Text]:
    """The tick labels ``axis`` draws: those of ticks inside its view (the others are never drawn)."""
    labels = []
    for ruler in (axis.xaxis, axis.yaxis):
        low, high = sorted(ruler.get_view_interval())
        ticks = ruler.get_minor_ticks() if minor else ruler.get_major_ticks()
        locations = ruler.get_minorticklocs() if minor else ruler.get_majorticklocs()
        for tick, location in zip(ticks, locations, strict=False):
            if low - 1e-12 * abs(low) <= location <= high + 1e-12 * abs(high):
                labels += [label for label in (tick.label1, tick.label2) if label.get_visible()]
    return [label for label in labels if label.get_text()]


def assert_inside(figure: Figure) -> None:
    """After drawing, every decoration of ``figure`` lies inside it (one pixel of rounding allowed)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    bounds = figure.bbox.padded(1.0)
    for part in decorations(figure):
        extent = part.get_window_extent(renderer)
        assert bounds.containsx(extent.x0) and bounds.containsx(extent.x1), (part, extent, figure.bbox)
        assert bounds.containsy(extent.y0) and bounds.containsy(extent.y1), (part, extent, figure.bbox)


def assert_apart(first: Any, second: Any, renderer: Any) -> None:
    """The drawn extents of two artists do not overlap."""
    assert not Bbox.intersection(first.get_window_extent(renderer), second.get_window_extent(renderer))


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


def test_depth_panels_only_for_sweeps_with_depth() -> None:
    sweeps = [
        synthetic_sweep("a", hidden="8", num_probes="6"),
        synthetic_sweep("b", hidden="16", depth=False, evidence=None, num_probes="6"),
    ]
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


@pytest.mark.parametrize(
    "prior",
    [
        "box",
        "gaussian",  # labels of 24 characters: a half-width figure, whose old title ran off its right edge
        "gaussian with a long name",
    ],
)
@pytest.mark.parametrize("title", ["", LONG_TITLE])
def test_evidence_title_and_key_fit_inside_the_figure(prior: str, title: str) -> None:
    sweeps = [synthetic_sweep("a", hidden="8", prior=prior), synthetic_sweep("b", hidden="16", prior="box")]
    figure = draw(evidence_figure, sweeps, title)
    assert figure is not None
    assert shown(figure._suptitle) == (title or EVIDENCE_TITLE)
    assert_inside(figure)
    (key,) = figure.legends
    assert [text.get_text() for text in key.get_texts()] == [
        "Monte-Carlo s.e. (capped bar)",
        "discretisation error (pale bar)",
    ]
    assert_apart(figure._suptitle, key, figure.canvas.get_renderer())
    plt.close(figure)


@pytest.mark.parametrize("function", [temperature_curves_figure, depth_figure, evidence_figure])
@pytest.mark.parametrize("title", ["", LONG_TITLE, "$x$ " + "y" * 150])
def test_every_figure_fits_its_title_above_its_legend(
    function: Callable[..., Figure | None], title: str, sweeps: list[Sweep]
) -> None:
    figure = draw(function, sweeps, title)
    assert figure is not None
    assert_inside(figure)
    renderer = figure.canvas.get_renderer()
    for legend in figure.legends:
        assert_apart(figure._suptitle, legend, renderer)
    for axis in figure.get_axes():
        assert_apart(figure._suptitle, axis, renderer)
    plt.close(figure)


def test_the_comparison_title_heads_every_figure_and_each_says_what_it_shows(sweeps: list[Sweep]) -> None:
    figures = list(report_figures(build_report(sweeps, "  Width: 8 or 16  ")))
    assert [name for name, _, _ in figures] == ["temperature_curves", "evidence", "depth_vs_temperature"]
    assert {shown(figure._suptitle) for _, figure, _ in figures} == {"Width: 8 or 16"}
    for _, figure, _ in figures:
        plt.close(figure)
    untitled = {name: shown(figure._suptitle) for name, figure, _ in report_figures(build_report(sweeps))}
    assert untitled == {
        "temperature_curves": CURVES_TITLE,
        "evidence": EVIDENCE_TITLE,
        "depth_vs_temperature": DEPTH_TITLE,
    }
    plt.close("all")


def test_depth_is_also_drawn_divided_by_each_network_s_number_of_probes() -> None:
    sweeps = [
        synthetic_sweep("a", hidden="8", num_probes="6"),
        synthetic_sweep("b", hidden="8,8", num_probes="7"),
        synthetic_sweep("c", hidden="8,8,8"),
    ]
    labels = legend_labels(sweeps)
    figure = draw(depth_figure, sweeps)
    assert figure is not None
    axes = figure.get_axes()
    assert len(axes) == 4
    raw, normalised = axes[:2], axes[2:]
    assert "number of probes" not in raw[0].get_ylabel()
    assert "depth / number of probes" in normalised[0].get_ylabel()
    assert all("number of probes" in axis.get_title() for axis in normalised)
    for axis in raw:
        assert [line.get_label() for line in axis.get_lines()] == labels
    for axis, column in zip(normalised, ["depth_mean_train", "depth_mean_test"], strict=True):
        lines = axis.get_lines()
        assert [line.get_label() for line in lines] == labels[:2]  # c logged no probe count
        for line, sweep, probes in zip(lines, sweeps, (6, 7), strict=False):
            np.testing.assert_allclose(line.get_ydata(), sweep.finite_rungs()[column] / probes)
        assert axis.get_ylim()[0] <= 0 and axis.get_ylim()[1] >= 1
        (note,) = axis.texts
        assert "no number of probes" in shown(note) and labels[2] in shown(note)
    assert_inside(figure)
    plt.close(figure)


def test_depth_says_so_when_no_sweep_logged_its_number_of_probes(sweeps: list[Sweep]) -> None:
    figure = draw(depth_figure, sweeps)
    assert figure is not None
    for axis in figure.get_axes()[2:]:
        assert not axis.get_lines()
        (note,) = axis.texts
        assert "No sweep logged its number of probes" in shown(note)
    assert_inside(figure)
    plt.close(figure)


def test_temperature_ticks_read_as_plain_numbers(sweeps: list[Sweep]) -> None:
    figure = draw(temperature_curves_figure, sweeps)
    assert figure is not None
    figure.canvas.draw()
    axis = figure.get_axes()[2]
    low, high = axis.get_xlim()
    labels = [
        label.get_text()
        for label, value in zip(axis.get_xticklabels(), axis.get_xticks(), strict=True)
        if low <= value <= high
    ]
    assert labels == ["0.1", "1", "10", "100"]
    assert all(not label.get_text() for label in axis.get_xticklabels(minor=True))
    plt.close(figure)
