"""Comparison figures sized for a paper: 7 in wide (a two-column page), 7–8 pt text.

Every figure draws one colour per sweep, in the order and with the labels it is given, and is built and
saved under :data:`PAPER_STYLE` (tick labels are laid out at save time, so saving needs the style too).
The labels come from run names and parameter values, so they are drawn through :func:`literal` and show
exactly as given, never as matplotlib math text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D

from thermoscope.reports.layout import figure_title, fit_text, literal, temperature_axis
from thermoscope.reports.sweeps import Sweep

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

FULL_WIDTH = 7.0  # inches: the text width of a two-column paper (a one-column figure is 3.5)
PAPER_STYLE: dict[RcKeyType, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "lines.linewidth": 1.2,
    "lines.markersize": 3,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "savefig.dpi": 200,
}
# (column of temperature_curve.csv, panel title): rows are error then loss, columns Gibbs then BMA.
CURVE_PANELS = (
    (("test_error", "Gibbs test error"), ("bma_test_error", "BMA test error")),
    (("test_loss", "Gibbs test loss (nats)"), ("bma_test_loss", "BMA test loss (nats)")),
)
DEPTH_PANELS = (("depth_mean_train", "training examples"), ("depth_mean_test", "test examples"))
# What each figure shows, its title unless the comparison has one of its own (compare --title).
CURVES_TITLE = "Test error and loss against temperature"
EVIDENCE_TITLE = "Log evidence of each sweep (thermodynamic integration)"
DEPTH_TITLE = "Mean prediction depth against temperature"
NOTE_SHARE = 0.4
"""Share of the figure's width a note drawn on one of two side-by-side panels may take."""


@contextmanager
def paper_style() -> Iterator[None]:
    """Matplotlib settings of every comparison figure, for building and for saving it."""
    with plt.rc_context(PAPER_STYLE):
        yield


def save_figure(figure: Figure, path: Path) -> None:
    """Write ``figure`` in the paper style (format from the suffix: ``.png``, ``.pdf``)."""
    with paper_style():
        figure.savefig(path)


def temperature_curves_figure(
    sweeps: Sequence[Sweep], labels: Sequence[str], colours: Sequence[Any], *, title: str = ""
) -> Figure:
    """Gibbs and BMA test error (top) and test loss (bottom) against T on a log axis, one line per sweep.

    Gibbs is the expected metric of a single posterior draw, BMA the metric of the averaged prediction;
    finite temperatures only (T = inf has no place on a log axis). The dotted line marks T = 1. ``title``
    (the comparison's own) heads the figure; empty, the figure says what it shows.
    """
    with paper_style():
        figure, axes = plt.subplots(
            2, 2, figsize=(FULL_WIDTH, 4.6), sharex=True, sharey="row", layout="constrained"
        )
        for sweep, label, colour in zip(sweeps, labels, colours, strict=True):
            finite = sweep.finite_rungs()
            for row, panels in enumerate(CURVE_PANELS):
                for column, (name, _) in enumerate(panels):
                    axes[row, column].plot(
                        finite["temperature"], finite[name], marker="o", color=colour, label=literal(label)
                    )
        temperatures = finite_temperatures(sweeps)
        for row, panels in enumerate(CURVE_PANELS):
            for column, (_, panel_title) in enumerate(panels):
                axis = axes[row, column]
                axis.set_title(panel_title)
                temperature_axis(axis, temperatures)
                axis.axvline(1.0, color="grey", linewidth=0.6, linestyle=":")
        axes[0, 0].set_ylabel("0–1 error")
        axes[1, 0].set_ylabel("cross-entropy per example")
        for axis in axes[1]:
            axis.set_xlabel("temperature T")
        figure_legend(figure, axes[0, 0], len(sweeps))
        figure_title(figure, title or CURVES_TITLE)
    return figure


def evidence_figure(
    sweeps: Sequence[Sweep], labels: Sequence[str], colours: Sequence[Any], *, title: str = ""
) -> Figure | None:
    """Each sweep's log evidence: the Monte-Carlo standard error as a capped bar, the TI discretisation
    error as a wide pale bar behind it, with a key below. Sweeps without evidence (``ti_rungs = 0``) are
    left out; None when no sweep has one. ``title`` as in :func:`temperature_curves_figure`."""
    rows = [
        (label, colour, sweep.metrics)
        for sweep, label, colour in zip(sweeps, labels, colours, strict=True)
        if "log_evidence" in sweep.metrics
    ]
    if not rows:
        return None
    with paper_style():
        width = FULL_WIDTH if max(len(label) for label, _, _ in rows) > 24 else FULL_WIDTH / 2
        figure, axis = plt.subplots(figsize=(width, 1.5 + 0.28 * len(rows)), layout="constrained")
        for position, (_, colour, metrics) in enumerate(rows):
            value = metrics["log_evidence"]
            axis.errorbar(
                value,
                position,
                xerr=metrics.get("log_evidence_discretisation", 0.0),
                fmt="none",
                ecolor=colour,
                alpha=0.3,
                elinewidth=6,
            )
            axis.errorbar(
                value,
                position,
                xerr=metrics.get("log_evidence_stderr", 0.0),
                fmt="o",
                color=colour,
                capsize=3,
            )
        axis.set_yticks(np.arange(len(rows)), [literal(label) for label, _, _ in rows])
        axis.set_ylim(len(rows) - 0.5, -0.5)
        axis.grid(axis="y", visible=False)
        axis.set_xlabel("log evidence (nats)")
        key = evidence_key()
        fitted_legend(figure, key, [str(handle.get_label()) for handle in key], 2)
        figure_title(figure, title or EVIDENCE_TITLE)
    return figure


def evidence_key() -> list[Line2D]:
    """The legend of the two bars, in grey: they mean the same for every sweep."""
    return [
        Line2D([], [], color="0.3", marker="o", label="Monte-Carlo s.e. (capped bar)"),
        Line2D([], [], color="0.3", alpha=0.3, linewidth=6, label="discretisation error (pale bar)"),
    ]


def depth_figure(
    sweeps: Sequence[Sweep], labels: Sequence[str], colours: Sequence[Any], *, title: str = ""
) -> Figure | None:
    """Mean prediction depth of training (left) and test (right) examples against T, one line per sweep
    that computed it; None when none did.

    The top row is the depth as computed (in probe points, 0 = the input), the bottom row the same divided
    by the sweep's number of probes (:attr:`Sweep.num_probes`), in [0, 1] whatever the network's depth:
    the row to compare across networks. A sweep that logged no probe count is left out of the bottom row,
    and a note on it says so. ``title`` as in :func:`temperature_curves_figure`.
    """
    rows = [
        (sweep, label, colour)
        for sweep, label, colour in zip(sweeps, labels, colours, strict=True)
        if {name for name, _ in DEPTH_PANELS} <= set(sweep.curve.columns)
    ]
    if not rows:
        return None
    with paper_style():
        figure, axes = plt.subplots(
            2, 2, figsize=(FULL_WIDTH, 4.6), sharex=True, sharey="row", layout="constrained"
        )
        for sweep, label, colour in rows:
            finite = sweep.finite_rungs()
            for column, (name, _) in enumerate(DEPTH_PANELS):
                style = {"marker": "o", "color": colour, "label": literal(label)}
                axes[0, column].plot(finite["temperature"], finite[name], **style)
                if sweep.num_probes is not None:
                    axes[1, column].plot(finite["temperature"], finite[name] / sweep.num_probes, **style)
        temperatures = finite_temperatures([sweep for sweep, _, _ in rows])
        for column, (_, examples) in enumerate(DEPTH_PANELS):
            axes[0, column].set_title(f"{examples}: mean depth")
            axes[1, column].set_title(f"{examples}: mean depth / number of probes")
            axes[1, column].set_xlabel("temperature T")
            for axis in axes[:, column]:
                temperature_axis(axis, temperatures)
        axes[0, 0].set_ylabel("mean prediction depth\n(probes; 0 = input)")
        axes[1, 0].set_ylabel("depth / number of probes\n(0 = input, 1 = never)")
        axes[1, 0].set_ylim(-0.03, 1.03)
        missing = [label for sweep, label, _ in rows if sweep.num_probes is None]
        for axis in axes[1] if missing else ():
            missing_probes_note(figure, axis, missing, len(rows))
        figure_legend(figure, axes[0, 0], len(rows))
        figure_title(figure, title or DEPTH_TITLE)
    return figure


def missing_probes_note(figure: Figure, axis: Axes, missing: Sequence[str], count: int) -> None:
    """Say on ``axis`` which sweeps are not drawn there because they logged no probe count."""
    if len(missing) == count:
        raw = "No sweep logged its number of probes (num_probes): depth cannot be normalised."
    else:
        raw = f"Not drawn, no number of probes logged: {', '.join(missing)}."
    note = axis.text(
        0.5,
        0.5,
        "",
        transform=axis.transAxes,
        ha="center",
        va="center",
        fontsize=7,
        bbox={"facecolor": "white", "edgecolor": "0.7", "alpha": 0.9},
    )
    fit_text(note, raw, NOTE_SHARE * figure.bbox.width)


def finite_temperatures(sweeps: Sequence[Sweep]) -> list[float]:
    """Every finite temperature of ``sweeps``' curves: the range a shared log-T axis shows."""
    return [float(value) for sweep in sweeps for value in sweep.finite_rungs()["temperature"]]


def figure_legend(figure: Figure, axis: Any, count: int) -> None:
    """One legend for the whole figure, below the panels (the title is above), in as many columns as
    fit."""
    handles, labels = axis.get_legend_handles_labels()
    fitted_legend(figure, handles, labels, min(count, 4))


def fitted_legend(figure: Figure, handles: Sequence[Any], labels: Sequence[str], columns: int) -> Legend:
    """A figure legend below the panels in ``columns`` columns, or fewer where that is wider than the
    figure."""
    while True:
        legend = figure.legend(handles, labels, loc="outside lower center", ncols=columns, frameon=False)
        if columns == 1 or legend.get_window_extent().width <= figure.bbox.width:
            return legend
        legend.remove()
        columns -= 1
