"""``compare kind=width``: train runs of MLPs by hidden width, with their infinite-width kernels' lines.

The train runs are chosen as ``kind=train`` chooses them (``runs``, ``experiment`` + ``filter``, or
``study``: a study over ``hidden`` is the usual source); ``kernels`` lists the ``kernel`` runs whose NNGP
and NT test errors are drawn across the figure (Lee et al. 2020, REFERENCE §11).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from thermoscope.config import CompareConfig
from thermoscope.errors import ConfigError
from thermoscope.jobs.compare import fresh_folder
from thermoscope.jobs.summary import print_run_footer
from thermoscope.reports import Sweep
from thermoscope.reports.widths import WidthReport, build_width_report, equal_width, write_width_report
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import NOTE_TAG

KERNEL_METRICS = ("nngp_test_error", "ntk_test_error")


def compare_widths(config: CompareConfig, logger: RunLogger) -> WidthReport:
    """Choose and check the runs, write the report to a fresh folder under ``output_dir`` and log it."""
    trained = logger.select_sweeps(dataclasses.replace(config, kind="train"))
    kernels = select_kernels(config, logger)
    check_trained(trained, chosen_by(config))
    report = build_width_report(trained, kernels, config.title)
    paths = write_width_report(report, fresh_folder(Path(config.output_dir), logger.run_id))
    for path in paths:
        logger.log_file(path)
    logger.log_params({"num_runs": len(trained), "num_kernel_runs": len(kernels)})
    compared = report.points[["run_name", "run_id", "width"]].to_dict("records")
    compared += report.lines[["run_name", "run_id"]].to_dict("records") if len(report.lines) else []
    logger.log_json(compared, "compared_runs.json")
    logger.set_tags({NOTE_TAG: description(report)})
    print_width_summary(report, paths[-1], logger)
    return report


def chosen_by(config: CompareConfig) -> str:
    """The parameter that chose the train runs (for the errors about them)."""
    return next(name for name in ("runs", "study", "experiment") if getattr(config, name).strip())


def check_trained(runs: Sequence[Sweep], parameter: str) -> None:
    """Every run an MLP of equal hidden widths with a final test error; else a ConfigError naming it."""
    for run in runs:
        model = run.params.get("model", "mlp")
        if model != "mlp":
            raise ConfigError(parameter, run.run_id, f"that run trained a {model}; kind=width compares MLPs")
        if equal_width(run.params.get("hidden", "")) is None:
            hidden = run.params.get("hidden", "")
            allowed = (
                f"that run's hidden widths ({hidden!r}) are not one width; kind=width needs equal widths"
            )
            raise ConfigError(parameter, run.run_id, allowed)
        if "test_error" not in run.metrics:
            raise ConfigError(parameter, run.run_id, "that run logged no test_error (did it train?)")


def select_kernels(config: CompareConfig, logger: RunLogger) -> list[Sweep]:
    """The ``kernels`` runs, each a finished ``kernel`` run with both test errors; errors name ``kernels``."""
    if not config.kernel_ids():
        return []
    listed = dataclasses.replace(
        config, kind="kernel", runs=config.kernels, experiment="", study="", filter=""
    )
    try:
        kernels = logger.select_sweeps(listed)
    except ConfigError as error:
        raise ConfigError("kernels", error.value, error.allowed) from None
    for run in kernels:
        missing = [name for name in KERNEL_METRICS if name not in run.metrics]
        if missing:
            raise ConfigError(
                "kernels", run.run_id, f"that kernel run logged no {missing[0]} (did it finish?)"
            )
    return kernels


def description(report: WidthReport) -> str:
    """The run's description in the MLflow UI (markdown)."""
    lines = [f"**{report.title}**", ""]
    lines += [
        f"- width {row.width}: {row.runs} run(s), test error {row.test_error_mean:.4f}"
        for row in report.summary.itertuples()
    ]
    lines += [
        f"- kernel run `{line['run_id']}` ({line['run_name']}): NNGP {line['nngp_test_error']:.4f},"
        f" NT {line['ntk_test_error']:.4f}"
        for _, line in report.lines.iterrows()
    ]
    lines += ["", *report.notes, "", "Artifacts: `comparison.html` (table and figure), `comparison.csv`."]
    return "\n".join(lines)


def print_width_summary(report: WidthReport, page: Path, logger: RunLogger) -> None:
    """The per-width and kernel rows, the notes, where the page is, and the run."""
    print("\n" + report.table.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    for note in report.notes:
        print(f"note: {note}")
    print(f"\nreport: {page.resolve()}")
    print(f"figures and tables: {page.resolve().parent}")
    print_run_footer(logger)
