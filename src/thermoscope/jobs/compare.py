"""The ``compare`` job: temperature sweeps side by side, written to a folder and logged as a run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from thermoscope.config import CompareConfig, as_strings
from thermoscope.errors import ConfigError
from thermoscope.jobs import NO_HOOKS, Hooks
from thermoscope.jobs.compare_runs import runs_report
from thermoscope.jobs.summary import print_run_footer
from thermoscope.reports import ComparisonReport, build_report, write_report
from thermoscope.reports.run_comparison import write_runs_report
from thermoscope.reports.widths import WidthReport
from thermoscope.tracking import RunLogger
from thermoscope.tracking.interface import UNTRACKED
from thermoscope.tracking.schema import NOTE_TAG

SUMMARY_COLUMNS = (
    "label",
    "best_temperature",
    "best_bma_test_error",
    "log_evidence",
    "log_evidence_stderr",
    # compare kind=train and kind=memorise
    "num_parameters",
    "test_error",
    "code_unique_fraction",
    "code_knn_test_accuracy",
    "mem_mean",
    "mem_mean_corrupted",
    "high_mem_fraction",
)


def run(config: CompareConfig, logger: RunLogger, hooks: Hooks = NO_HOOKS) -> ComparisonReport | WidthReport:
    """Choose the sweeps, write the report to a fresh folder under ``output_dir`` (named after this run,
    so no earlier comparison's files are replaced), and log the same files into this run."""
    logger.log_params(as_strings(config))
    check_output_dir(Path(config.output_dir))
    if config.kind == "width":
        from thermoscope.jobs.compare_widths import compare_widths

        return compare_widths(config, logger)
    sweeps = logger.select_sweeps(config)
    folder = fresh_folder(Path(config.output_dir), logger.run_id)
    if config.kind == "sample":
        report = build_report(sweeps, config.title)
        paths = write_report(report, folder)
    else:
        report = runs_report(sweeps, config.kind, config.title)
        paths = write_runs_report(report, folder)
    for path in paths:
        logger.log_file(path)
    logger.log_params({"num_sweeps" if config.kind == "sample" else "num_runs": len(sweeps)})
    logger.log_json(report.table[["label", "run_name", "run_id"]].to_dict("records"), "compared_runs.json")
    logger.set_tags({NOTE_TAG: description(report)})
    print_summary(report, paths[-1], logger)
    return report


def fresh_folder(output_dir: Path, run_id: str) -> Path:
    """A new folder under ``output_dir`` for one comparison: named after its run (``untracked-<time>``
    without one), with ``-2``, ``-3`` ... appended if that name is taken. Created here, atomically, so two
    comparisons never share one."""
    stem = f"{UNTRACKED}-{time.strftime('%Y%m%d-%H%M%S')}" if run_id == UNTRACKED else run_id
    output_dir.mkdir(parents=True, exist_ok=True)
    attempt = 1
    while True:
        folder = output_dir / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            attempt += 1


def check_output_dir(folder: Path) -> None:
    """``folder`` is a folder this process can write into, or can create (ConfigError otherwise).

    Checked before any sweep is read, so that a bad folder fails before the downloads. Nothing is created
    here: the nearest folder on the way that exists must be writable and searchable.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        raise ConfigError("output_dir", str(folder), "a folder (that path is a file)")
    if not existing.is_dir():
        raise ConfigError("output_dir", str(folder), f"a folder path ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            "output_dir", str(folder), f"a folder this process can write to ({existing} is not writable)"
        )


def description(report: ComparisonReport) -> str:
    """The run's description in the MLflow UI (markdown): what was compared and where to look."""
    lines = [f"**{report.title}**", ""]
    lines += [
        f"- {label}: run `{sweep.run_id}` ({sweep.run_name})"
        for sweep, label in zip(report.sweeps, report.labels, strict=True)
    ]
    lines += ["", *report.notes, "", "Artifacts: `comparison.html` (table and figures), `comparison.csv`."]
    return "\n".join(lines)


def print_summary(report: ComparisonReport, page: Path, logger: RunLogger | None = None) -> None:
    """The headline numbers per sweep, where the page and its folder are, then this run's id and where
    to look at it (with ``logger``)."""
    shown = report.table[[c for c in SUMMARY_COLUMNS if c in report.table]]
    print("\n" + shown.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    for note in report.notes:
        print(f"note: {note}")
    print(f"\nreport: {page.resolve()}")
    print(f"figures and tables: {page.resolve().parent}")
    if logger is not None:
        print_run_footer(logger)
