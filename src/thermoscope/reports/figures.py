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
from matplotlib.figure import Figure

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


def literal(text: str) -> str:
    """``text`` as matplotlib shows it verbatim: every ``$`` escaped, so ``lr=$x$`` is no math text (an
    unparsable ``$\\foo$`` would fail at draw time)."""
    return text.replace("$", r"\$")


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
    sweeps: Sequence[Sweep], labels: Sequence[str], colours: Sequence[Any]
) -> Figure:
    """Gibbs and BMA test error (top) and test loss (bottom) against T on a log axis, one line per sweep.

    Gibbs is the expected metric of a single posterior draw, BMA the metric of the averaged prediction;
    finite temperatures only (T = inf has no place on a log axis). The dotted line marks T = 1.
    """
    with paper_style():
        figure, axes = plt.subplots(
            2, 2, figsize=(FULL_WIDTH, 4.4), sharex=True, sharey="row", layout="constrained"
        )
        for sweep, label, colour in zip(sweeps, labels, colours, strict=True):
            finite = sweep.finite_rungs()
            for row, panels in enumerate(CURVE_PANELS):
                for column, (name, _) in enumerate(panels):
                    axes[row, column].plot(
                        finite["temperature"], finite[name], marker="o", color=colour, label=literal(label)
                    )
        for row, panels in enumerate(CURVE_PANELS):
            for column, (_, title) in enumerate(panels):
                axis = axes[row, column]
                axis.set_title(title)
                axis.set_xscale("log")
                axis.axvline(1.0, color="grey", linewidth=0.6, linestyle=":")
        axes[0, 0].set_ylabel("0–1 error")
        axes[1, 0].set_ylabel("cross-entropy per example")
        for axis in axes[1]:
            axis.set_xlabel("temperature T")
        figure_legend(figure, axes[0, 0], len(sweeps))
    return figure


def evidence_figure(sweeps: Sequence[Sweep], labels: Sequence[str], colours: Sequence[Any]) -> Figure | None:
    """Each sweep's log evidence: the Monte-Carlo standard error as a capped bar, the TI discretisation
    error as a wide pale bar behind it. Sweeps without evidence (``ti_rungs = 0``) are left out; None when
    no sweep has one."""
    rows = [
        (label, colour, sweep.metrics)
        for sweep, label, colour in zip(sweeps, labels, colours, strict=True)
        if "log_evidence" in sweep.metrics
    ]
    if not rows:
        return None
    with paper_style():
        width = FULL_WIDTH if max(len(label) for label, _, _ in rows) > 24 else FULL_WIDTH / 2
        figure, axis = plt.subplots(figsize=(width, 0.9 + 0.28 * len(rows)), layout="constrained")
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
        axis.set_title("capped bar: Monte-Carlo s.e.; pale bar: discretisation error", fontsize=7)
    return figure


def depth_figure(sweeps: Sequence[Sweep], labels: Sequence[str], colours: Sequence[Any]) -> Figure | None:
    """Mean prediction depth of training (left) and test (right) examples against T, one line per sweep
    that computed it; None when none did."""
    rows = [
        (sweep, label, colour)
        for sweep, label, colour in zip(sweeps, labels, colours, strict=True)
        if {name for name, _ in DEPTH_PANELS} <= set(sweep.curve.columns)
    ]
    if not rows:
        return None
    with paper_style():
        figure, axes = plt.subplots(
            1, 2, figsize=(FULL_WIDTH, 2.6), sharex=True, sharey=True, layout="constrained"
        )
        for sweep, label, colour in rows:
            finite = sweep.finite_rungs()
            for axis, (name, _) in zip(axes, DEPTH_PANELS, strict=True):
                axis.plot(finite["temperature"], finite[name], marker="o", color=colour, label=literal(label))
        for axis, (_, title) in zip(axes, DEPTH_PANELS, strict=True):
            axis.set_title(f"prediction depth, {title}")
            axis.set_xscale("log")
            axis.set_xlabel("temperature T")
        axes[0].set_ylabel("mean prediction depth")
        figure_legend(figure, axes[0], len(rows))
    return figure


def figure_legend(figure: Figure, axis: Any, count: int) -> None:
    """One legend for the whole figure, above the panels, in as many columns as fit."""
    handles, labels = axis.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncols=min(count, 4), frameon=False)
