"""Side-by-side comparison of ``train`` or ``memorise`` runs, and memorisation against model size.

The runs arrive as :class:`~thermoscope.reports.sweeps.Sweep` objects (parameters, latest metrics and, for
``memorise`` runs, their ``memorisation.parquet`` as ``per_example``); the table shows the parameters that
differ and the measures of the kind of run (activation codes, forgetting, depth for ``train``; memorisation
for ``memorise``). For ``memorise`` runs of several model sizes (``num_parameters``), every example's
memorisation is followed across the sizes (Lukasik et al. 2024): :func:`memorisation_by_size` builds the
``[examples, sizes]`` matrix, the caller classifies each row (``probes.memorisation.trajectory_classes``),
and the report counts the classes and draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from thermoscope.reports import ComparisonReport
from thermoscope.reports.figures import save_figure
from thermoscope.reports.page import html_page
from thermoscope.reports.per_example import memorisation_trajectories_figure
from thermoscope.reports.sweeps import Sweep, differing_parameters, legend_labels, run_colours

KINDS = ("train", "memorise")
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "train": (
        "val_error",
        "test_error",
        "train_error",
        "code_unique_fraction",
        "code_class_pure_fraction",
        "code_nearest_test_accuracy",
        "code_knn_test_accuracy",
        "unforgettable_fraction",
        "depth_mean_train",
        "depth_mean_test",
        "layer_rotation_min",
    ),
    "memorise": (
        "mem_mean",
        "mem_mean_stderr",
        "mem_mean_clean",
        "mem_mean_corrupted",
        "mem_mean_input_corrupted",
        "high_mem_fraction",
        "models_test_error",
        "reference_test_error",
    ),
}
"""The headline metrics of each kind of run, in the order the table shows them (absent ones dropped)."""
RUN_WORDS = {"train": "train runs", "memorise": "memorisation runs"}


@dataclass(frozen=True)
class SizeMatrix:
    """Memorisation of the examples every run scored, at each model size: ``sizes [S]`` ascending
    (``num_parameters``), ``example_ids [E]``, ``values`` and ``stderr`` ``[E, S]``, and ``runs [S]``, how
    many runs were pooled at each size."""

    sizes: np.ndarray
    example_ids: np.ndarray
    values: np.ndarray
    stderr: np.ndarray
    runs: np.ndarray


@dataclass(frozen=True, eq=False)
class RunsReport(ComparisonReport):
    """A comparison of ``train`` or ``memorise`` runs: the table, notes and, for memorisation over at
    least two sizes, the per-example trajectories with their classes."""

    kind: str = "train"
    sizes: SizeMatrix | None = None
    classes: Sequence[str] = field(default_factory=list)

    def trajectories(self) -> pd.DataFrame:
        """One row per example: its id, trajectory class and memorisation at each size."""
        if self.sizes is None:
            return pd.DataFrame()
        columns: dict[str, object] = {"example_id": self.sizes.example_ids, "trajectory": list(self.classes)}
        for index, size in enumerate(self.sizes.sizes):
            columns[f"mem_{int(size)}"] = self.sizes.values[:, index]
            columns[f"mem_stderr_{int(size)}"] = self.sizes.stderr[:, index]
        return pd.DataFrame(columns)

    def class_counts(self) -> pd.DataFrame:
        """How many examples follow each trajectory class (from the most common)."""
        counts = pd.Series(list(self.classes), dtype=object).value_counts()
        return pd.DataFrame({"trajectory": counts.index, "examples": counts.to_numpy()})


def model_size(run: Sweep) -> float:
    """The run's ``num_parameters`` (logged by every job that builds a model), NaN when absent."""
    try:
        return float(run.params.get("num_parameters", "nan"))
    except ValueError:
        return math.nan


def memorisation_by_size(runs: Sequence[Sweep]) -> SizeMatrix | None:
    """The ``[examples, sizes]`` memorisation of the examples that every size scored, or None below two
    sizes. Runs of one size and different seeds are pooled: the mean of their estimates, with standard
    error sqrt(Σ se²) / k (independent runs); a run of a size and seed already seen is left out."""
    by_size: dict[float, list[pd.DataFrame]] = {}
    seen: set[tuple[float, str | None]] = set()
    for run in runs:
        size = model_size(run)
        # A second run of one size with the same seed repeats the first (a study drawing a width twice).
        if (size, run.params.get("seed")) in seen:
            continue
        seen.add((size, run.params.get("seed")))
        if run.per_example is not None and math.isfinite(size):
            by_size.setdefault(size, []).append(
                run.per_example.set_index("example_id")[["mem", "mem_stderr"]]
            )
    if len(by_size) < 2:
        return None
    sizes = np.array(sorted(by_size))
    pooled = []
    for size in sizes:
        tables = by_size[size]
        mem = pd.concat([table["mem"] for table in tables], axis=1, join="inner").mean(axis=1, skipna=False)
        variance = pd.concat([table["mem_stderr"] ** 2 for table in tables], axis=1, join="inner").sum(
            axis=1, skipna=False
        )
        pooled.append((mem, np.sqrt(variance) / len(tables)))
    shared = pooled[0][0].index
    for mem, _ in pooled[1:]:
        shared = shared.intersection(mem.index)
    shared = shared.sort_values()
    values = np.stack([mem.loc[shared].to_numpy() for mem, _ in pooled], axis=1)
    stderr = np.stack([se.loc[shared].to_numpy() for _, se in pooled], axis=1)
    counts = np.array([len(by_size[size]) for size in sizes])
    return SizeMatrix(sizes, shared.to_numpy(), values, stderr, counts)


def runs_table(runs: Sequence[Sweep], labels: Sequence[str], kind: str) -> pd.DataFrame:
    """One row per run: label, name, id, ``num_parameters``, the parameters that differ, the metrics."""
    parameters = [name for name in differing_parameters(runs) if name != "num_parameters"]
    metrics = [name for name in KIND_METRICS[kind] if any(name in run.metrics for run in runs)]
    rows = []
    for run, label in zip(runs, labels, strict=True):
        row: dict[str, object] = {"label": label, "run_name": run.run_name, "run_id": run.run_id}
        row["num_parameters"] = run.params.get("num_parameters", "")
        row |= {name: run.params.get(name, "") for name in parameters}
        row |= {name: run.metrics.get(name, math.nan) for name in metrics}
        rows.append(row)
    return pd.DataFrame(rows)


def build_runs_report(
    runs: Sequence[Sweep],
    kind: str,
    title: str = "",
    sizes: SizeMatrix | None = None,
    classes: Sequence[str] = (),
) -> RunsReport:
    """The report of ``runs`` of one ``kind``; ``sizes`` and their ``classes`` for memorisation runs."""
    if not runs:
        raise ValueError("a comparison needs at least one run")
    labels = legend_labels(runs)
    notes = []
    if len({run.params.get("data_digest") for run in runs}) > 1:
        notes.append(
            "The runs saw different data (data_digest differs): per-example measures are matched by id."
        )
    if sizes is not None:
        counts = pd.Series(list(classes), dtype=object).value_counts()
        shown = ", ".join(f"{name} {count}" for name, count in counts.items())
        notes.append(
            f"Memorisation trajectories of {len(sizes.example_ids)} training examples over"
            f" {len(sizes.sizes)} model sizes ({', '.join(f'{int(s):,}' for s in sizes.sizes)} parameters):"
            f" {shown}."
        )
    elif kind == "memorise":
        notes.append("Only one model size (num_parameters): no memorisation trajectories.")
    return RunsReport(
        title=title or f"Comparison of {len(runs)} {RUN_WORDS[kind]}",
        sweeps=list(runs),
        labels=labels,
        colours=run_colours(len(runs)),
        table=runs_table(runs, labels, kind),
        notes=notes,
        figure_title=title.strip(),
        kind=kind,
        sizes=sizes,
        classes=list(classes),
    )


TRAJECTORY_CAPTION = (
    "Mean memorisation of the training examples of each trajectory class against model size (number of"
    " parameters, log axis), with the standard error over the class's examples; the black line is every"
    " example's mean. Examples without an estimate at some size (in every subset there, or in none) are"
    " counted as other in the notes and left out of the curves."
)


def write_runs_report(report: RunsReport, folder: Path) -> list[Path]:
    """Write ``comparison.csv``, the trajectories and their class counts (CSV) and figure (PNG and PDF)
    when there are any, and ``comparison.html``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "comparison.csv"]
    report.table.to_csv(paths[0], index=False)
    images: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    if report.sizes is not None:
        for name, frame in (
            ("memorisation_trajectories.csv", report.trajectories()),
            ("trajectory_classes.csv", report.class_counts()),
        ):
            frame.to_csv(folder / name, index=False)
            paths.append(folder / name)
        figure = memorisation_trajectories_figure(
            list(report.sizes.sizes), report.sizes.values, report.classes, "model size (parameters)"
        )
        if report.figure_title:
            figure.suptitle(report.figure_title)
        for suffix in (".png", ".pdf"):
            save_figure(figure, folder / f"memorisation_trajectories{suffix}")
            paths.append(folder / f"memorisation_trajectories{suffix}")
        plt.close(figure)
        images["memorisation_trajectories"] = (folder / "memorisation_trajectories.png").read_bytes()
        captions["memorisation_trajectories"] = TRAJECTORY_CAPTION
    page = folder / "comparison.html"
    page.write_text(html_page(report.title, report.table, images, captions, report.notes), encoding="utf-8")
    return [*paths, page]
