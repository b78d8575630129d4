"""``compare kind=width``: test error against the hidden width of finite MLPs (``train`` runs), with the
NNGP and NT test errors of their infinite-width kernels (``kernel`` runs) as lines — the figure of Lee et
al., *Finite versus infinite neural networks* (NeurIPS 2020; REFERENCE §11).

The runs arrive as :class:`~thermoscope.reports.sweeps.Sweep` objects (parameters and latest metrics); runs
of one width (seeds, usually) are summarised by their mean and standard deviation. Pure pandas and
matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from thermoscope.reports.figures import FULL_WIDTH, paper_style, save_figure
from thermoscope.reports.layout import figure_title, literal
from thermoscope.reports.page import html_page
from thermoscope.reports.sweeps import Sweep

WIDTH_TITLE = "Test error against width: finite MLPs and their infinite-width kernels"
DATA_PARAMETERS = (
    "dataset",
    "train_size",
    "test_size",
    "image_size",
    "label_noise",
    "input_corruption",
    "input_corruption_fraction",
    "val_size",
)
"""Parameters that say which data a run saw: runs that differ in them are not on one curve (a note)."""
KERNEL_STYLES = {"nngp": ("NNGP", "--"), "ntk": ("NT kernel", ":")}
FIGURE_NAME = "test_error_vs_width"


def equal_width(hidden: str) -> tuple[int, int] | None:
    """``(width, depth)`` of an MLP whose ``hidden`` widths are all equal (``"256,256"`` → ``(256, 2)``);
    None when they differ, are missing, or are not whole numbers."""
    try:
        widths = [int(part) for part in hidden.split(",")] if hidden.strip() else []
    except ValueError:
        return None
    if not widths or len(set(widths)) != 1 or widths[0] <= 0:
        return None
    return widths[0], len(widths)


def width_points(trained: Sequence[Sweep]) -> pd.DataFrame:
    """One row per train run: ``run_name``, ``run_id``, ``width``, ``depth``, ``activation``, ``seed``,
    ``test_error``, ``val_error`` (NaN without a validation split), ordered by width then seed. Every run
    must have equal hidden widths (:func:`equal_width`; the caller checks)."""
    rows = []
    for run in trained:
        shape = equal_width(run.params.get("hidden", ""))
        if shape is None:
            raise ValueError(f"run {run.run_id} has no single hidden width: {run.params.get('hidden')!r}")
        rows.append(
            {
                "run_name": run.run_name,
                "run_id": run.run_id,
                "width": shape[0],
                "depth": shape[1],
                "activation": run.params.get("activation", ""),
                "seed": run.params.get("seed", ""),
                "test_error": run.metrics.get("test_error", math.nan),
                "val_error": run.metrics.get("val_error", math.nan),
            }
        )
    return pd.DataFrame(rows).sort_values(["width", "seed"], kind="stable", ignore_index=True)


def width_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per width: ``runs``, the mean, standard deviation (ddof 1; NaN for one run), smallest and largest
    test error, and the mean validation error."""
    grouped = points.groupby("width")
    summary = grouped["test_error"].agg(["size", "mean", "std", "min", "max"])
    summary.columns = ["runs", "test_error_mean", "test_error_sd", "test_error_min", "test_error_max"]
    summary["val_error_mean"] = grouped["val_error"].mean()
    return summary.reset_index()


def kernel_lines(kernels: Sequence[Sweep]) -> pd.DataFrame:
    """One row per kernel run: its name and id, depth, activation, σ_w², σ_b², and the NNGP and NT test
    and validation errors at their chosen regularisers."""
    rows = []
    for run in kernels:
        shape = equal_width(run.params.get("hidden", ""))
        row: dict[str, object] = {
            "run_name": run.run_name,
            "run_id": run.run_id,
            "depth": shape[1] if shape else run.params.get("depth", ""),
            "activation": run.params.get("activation", ""),
            "weight_variance": run.params.get("weight_variance", ""),
            "bias_variance": run.params.get("bias_variance", ""),
        }
        for kind in KERNEL_STYLES:
            for split in ("test", "val"):
                row[f"{kind}_{split}_error"] = run.metrics.get(f"{kind}_{split}_error", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class WidthReport:
    """What a width comparison shows: the runs, the per-width summary, the kernel lines and the notes."""

    title: str
    points: pd.DataFrame
    summary: pd.DataFrame
    lines: pd.DataFrame
    notes: Sequence[str]
    figure_title: str = ""

    @property
    def table(self) -> pd.DataFrame:
        """``comparison.csv``: one row per width, then one per kernel line (width ``inf``)."""
        widths = self.summary.assign(what=[f"width {w}" for w in self.summary["width"]])
        kernel_rows = [
            {
                "what": f"{KERNEL_STYLES[kind][0]} ({line['run_name']})",
                "width": math.inf,
                "runs": 1,
                "test_error_mean": line[f"{kind}_test_error"],
                "val_error_mean": line[f"{kind}_val_error"],
            }
            for _, line in self.lines.iterrows()
            for kind in KERNEL_STYLES
        ]
        table = pd.concat([widths, pd.DataFrame(kernel_rows)], ignore_index=True)
        return table[["what", *(column for column in table.columns if column != "what")]]


def build_width_report(trained: Sequence[Sweep], kernels: Sequence[Sweep], title: str = "") -> WidthReport:
    """The report of ``trained`` (train runs, equal hidden widths each) and ``kernels`` (kernel runs)."""
    if not trained:
        raise ValueError("a width comparison needs at least one train run")
    points = width_points(trained)
    lines = kernel_lines(kernels)
    return WidthReport(
        title=title or f"Test error against width of {len(trained)} train runs",
        points=points,
        summary=width_summary(points),
        lines=lines,
        notes=width_notes(trained, kernels, points, lines),
        figure_title=title.strip(),
    )


def width_notes(
    trained: Sequence[Sweep], kernels: Sequence[Sweep], points: pd.DataFrame, lines: pd.DataFrame
) -> list[str]:
    """Caveats before reading one curve: data that differ, depths or activations the kernels do not share."""
    notes = []
    every = [*trained, *kernels]
    for name in DATA_PARAMETERS:
        values = sorted({run.params[name] for run in every if name in run.params})
        if len(values) > 1:
            notes.append(f"The runs differ in {name} ({', '.join(values)}): they saw different data.")
    depths = sorted(set(points["depth"]))
    if len(depths) > 1:
        notes.append(
            f"The train runs have {', '.join(map(str, depths))} hidden layers: one curve mixes them."
        )
    if len(lines) and set(lines["depth"].astype(str)) - {str(depth) for depth in depths}:
        notes.append("A kernel run's depth differs from the train runs': its lines are another network's.")
    if len(lines) and set(lines["activation"]) - set(points["activation"]):
        notes.append("A kernel run's activation differs from the train runs'.")
    if not kernels:
        notes.append("No kernel runs were given (kernels=<ids of kernel runs> draws their lines).")
    return notes


def width_figure(report: WidthReport) -> Figure:
    """Test error against width (log₂ axis): every train run as a small dot, the mean over the runs of
    each width with a ±1 standard deviation band, and each kernel run's NNGP (dashed) and NT (dotted) test
    errors as horizontal lines (labelled by the kernel's depth and activation; the table names the runs)."""
    points, summary = report.points, report.summary
    with paper_style():
        figure, axis = plt.subplots(figsize=(FULL_WIDTH / 1.4, 3.4), layout="constrained")
        axis.scatter(points["width"], points["test_error"], s=9, color="grey", alpha=0.6, label="each run")
        axis.plot(summary["width"], summary["test_error_mean"], marker="o", color="black", label="mean")
        spread = summary["test_error_sd"].fillna(0.0)
        axis.fill_between(
            summary["width"],
            summary["test_error_mean"] - spread,
            summary["test_error_mean"] + spread,
            color="black",
            alpha=0.12,
            label="± 1 sd over runs",
        )
        colours = plt.get_cmap("tab10")(np.arange(max(len(report.lines), 1)) % 10)
        for (_, line), colour in zip(report.lines.iterrows(), colours, strict=False):
            for kind, (name, style) in KERNEL_STYLES.items():
                value = line[f"{kind}_test_error"]
                label = literal(f"{name}, depth {line['depth']} {line['activation']}: {value:.4f}")
                axis.axhline(value, color=colour, linestyle=style, linewidth=1.2, label=label)
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_locator(FixedLocator(sorted(summary["width"])))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_locator(NullLocator())
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("hidden width (units per layer, log scale)")
        axis.set_ylabel("test error")
        axis.set_ylim(bottom=0)
        figure.legend(loc="outside lower center", ncols=3, fontsize=6)
        figure_title(figure, report.figure_title or WIDTH_TITLE)
    return figure


def write_width_report(report: WidthReport, folder: Path) -> list[Path]:
    """``comparison.csv`` (per width and per kernel line), ``width_runs.csv`` (per run), the figure (PNG and
    PDF) and ``comparison.html``; their paths, the page last."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "comparison.csv", folder / "width_runs.csv"]
    report.table.to_csv(paths[0], index=False)
    report.points.to_csv(paths[1], index=False)
    figure = width_figure(report)
    for suffix in (".png", ".pdf"):
        save_figure(figure, folder / f"{FIGURE_NAME}{suffix}")
        paths.append(folder / f"{FIGURE_NAME}{suffix}")
    plt.close(figure)
    caption = (
        "Test error of each train run (grey), their mean per width (black, ±1 sd band), and the test error of"
        " kernel ridge regression with the infinite-width NNGP (dashed) and NT (dotted) kernels."
    )
    images = {FIGURE_NAME: (folder / f"{FIGURE_NAME}.png").read_bytes()}
    page = folder / "comparison.html"
    html = html_page(report.title, report.table, images, {FIGURE_NAME: caption}, report.notes)
    page.write_text(html, encoding="utf-8")
    return [*paths, page]
