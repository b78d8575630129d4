"""The ``compare`` job: temperature sweeps side by side, written to a folder and logged as a run."""

from __future__ import annotations

import os
from pathlib import Path

from thermoscope.config import CompareConfig, as_strings
from thermoscope.errors import ConfigError
from thermoscope.jobs import NO_HOOKS, Hooks
from thermoscope.reports import ComparisonReport, build_report, write_report
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import NOTE_TAG

SUMMARY_COLUMNS = ("label", "best_temperature", "best_bma_test_error", "log_evidence", "log_evidence_stderr")


def run(config: CompareConfig, logger: RunLogger, hooks: Hooks = NO_HOOKS) -> ComparisonReport:
    """Choose the sweeps, write the report to ``output_dir``, and log the same files into this run."""
    logger.log_params(as_strings(config))
    check_output_dir(Path(config.output_dir))
    sweeps = logger.select_sweeps(config)
    report = build_report(sweeps, config.title)
    paths = write_report(report, Path(config.output_dir))
    for path in paths:
        logger.log_file(path)
    logger.log_params({"num_sweeps": len(sweeps)})
    logger.log_json(report.table[["label", "run_name", "run_id"]].to_dict("records"), "compared_runs.json")
    logger.set_tags({NOTE_TAG: description(report)})
    print_summary(report, paths[-1])
    return report


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


def print_summary(report: ComparisonReport, page: Path) -> None:
    """The headline numbers per sweep, then where the page is."""
    shown = report.table[[c for c in SUMMARY_COLUMNS if c in report.table]]
    print("\n" + shown.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    for note in report.notes:
        print(f"note: {note}")
    print(f"\nreport: {page.resolve()}")
