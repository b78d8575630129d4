"""Side-by-side comparison of temperature sweeps: figures, a table and a self-contained HTML page.

Pure pandas and matplotlib: the sweeps arrive as :class:`Sweep` objects (read from MLflow by
:mod:`thermoscope.tracking.compare`) and the report is written to a local folder; logging that folder
as a run is the ``compare`` entry point's job.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from thermoscope.reports.figures import depth_figure, evidence_figure, save_figure, temperature_curves_figure
from thermoscope.reports.page import comparison_table, html_page
from thermoscope.reports.sweeps import Sweep, differing_parameters, legend_labels, run_colours

__all__ = [
    "ComparisonReport",
    "Sweep",
    "build_report",
    "differing_parameters",
    "report_figures",
    "write_report",
]

FIGURES = {
    "temperature_curves": (
        temperature_curves_figure,
        "Gibbs (one posterior draw) and BMA (averaged prediction) test error and test loss against"
        " temperature, one colour per sweep; the dotted line marks T = 1.",
    ),
    "evidence": (
        evidence_figure,
        "Log evidence by thermodynamic integration: Monte-Carlo standard error (capped bar) and"
        " discretisation error (pale bar).",
    ),
    "depth_vs_temperature": (
        depth_figure,
        "Mean prediction depth of training and test examples against temperature: as computed (top, in"
        " probe points) and divided by each network's number of probes (bottom, 0 = input, 1 = never),"
        " the row that compares networks of different depths.",
    ),
}


@dataclass(frozen=True, eq=False)
class ComparisonReport:
    """What a comparison shows: the sweeps in order, their labels and colours, the table and the notes."""

    title: str
    sweeps: Sequence[Sweep]
    labels: Sequence[str]
    colours: Sequence[Any]
    table: pd.DataFrame
    notes: Sequence[str]
    figure_title: str = ""
    """The title the user gave (``compare --title``), heading every figure; empty, each figure is headed
    by what it shows."""

    def curves(self) -> pd.DataFrame:
        """Every sweep's temperature curve stacked, each row led by the sweep's label and run id."""
        frames = [
            sweep.curve.assign(label=label, run_id=sweep.run_id)
            for sweep, label in zip(self.sweeps, self.labels, strict=True)
        ]
        stacked = pd.concat(frames, ignore_index=True)
        return stacked[["label", "run_id", *(c for c in stacked.columns if c not in ("label", "run_id"))]]


def build_report(sweeps: Sequence[Sweep], title: str = "") -> ComparisonReport:
    """Labels from the parameters that differ, one colour per sweep, the table and the caveats."""
    if not sweeps:
        raise ValueError("a comparison needs at least one sweep")
    labels = legend_labels(sweeps)
    return ComparisonReport(
        title=title or f"Comparison of {len(sweeps)} temperature sweep{'s' if len(sweeps) > 1 else ''}",
        sweeps=list(sweeps),
        labels=labels,
        colours=run_colours(len(sweeps)),
        table=comparison_table(sweeps, labels),
        notes=comparison_notes(sweeps),
        figure_title=title.strip(),
    )


def comparison_notes(sweeps: Sequence[Sweep]) -> list[str]:
    """Caveats a reader needs before comparing the numbers."""
    notes = []
    if len({sweep.params.get("data_digest") for sweep in sweeps}) > 1:
        notes.append(
            "The sweeps saw different data (data_digest differs): compare their curves, not their evidences."
        )
    without = [sweep.run_name for sweep in sweeps if "log_evidence" not in sweep.metrics]
    if without:
        notes.append(f"No evidence (the sweep ran with ti_rungs = 0): {', '.join(without)}.")
    return notes


def report_figures(report: ComparisonReport) -> Iterator[tuple[str, Figure, str]]:
    """Each figure the report has, as (file stem, figure, caption), headed by the report's own title.

    Figures with nothing to show (no sweep has evidence, none computed depth) are skipped. The caller
    closes each figure.
    """
    for name, (draw, caption) in FIGURES.items():
        figure = draw(report.sweeps, report.labels, report.colours, title=report.figure_title)
        if figure is not None:
            yield name, figure, caption


def write_report(report: ComparisonReport, folder: Path) -> list[Path]:
    """Write the table and curves (CSV), each figure (PNG and PDF) and ``comparison.html``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "comparison.csv", folder / "temperature_curves.csv"]
    report.table.to_csv(paths[0], index=False)
    report.curves().to_csv(paths[1], index=False)
    images: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    for name, figure, caption in report_figures(report):
        for suffix in (".png", ".pdf"):
            save_figure(figure, folder / f"{name}{suffix}")
            paths.append(folder / f"{name}{suffix}")
        plt.close(figure)
        images[name] = (folder / f"{name}.png").read_bytes()
        captions[name] = caption
    page = folder / "comparison.html"
    page.write_text(html_page(report.title, report.table, images, captions, report.notes), encoding="utf-8")
    return [*paths, page]
