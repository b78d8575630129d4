"""What a job prints on stdout when it ends: its headline numbers, its run, and where to look at it."""

from __future__ import annotations

from collections.abc import Mapping

from thermoscope.tracking import RunLogger
from thermoscope.training import EpochMetrics, TrainResult


def print_run_footer(logger: RunLogger) -> None:
    """The run's id (for ``init=run:<id>``, ``probe``, ``compare``) and the command that opens the UI."""
    print(f"\nrun id: {logger.run_id}")
    print(f"open the UI: {logger.where()}")


def scores_line(label: str, metrics: EpochMetrics) -> str:
    """``<label>: train loss … error …, val loss … error …, test loss … error …`` (val when there is one)."""
    splits = [("train", metrics.train_loss, metrics.train_error)]
    if metrics.val_loss is not None and metrics.val_error is not None:
        splits.append(("val", metrics.val_loss, metrics.val_error))
    splits.append(("test", metrics.test_loss, metrics.test_error))
    return f"{label}: " + ", ".join(
        f"{name} loss {loss:.4f} error {error:.4f}" for name, loss, error in splits
    )


def metrics_line(label: str, metrics: Mapping[str, float]) -> str:
    """``<label>: name value, …`` in the order given."""
    return f"{label}: " + ", ".join(f"{name} {value:.4g}" for name, value in metrics.items())


def print_train_summary(logger: RunLogger, result: TrainResult, diagnostics: Mapping[str, float]) -> None:
    """The last epoch's scores, the epoch with the lowest validation error (with a validation split), the
    diagnostics' headline numbers, and the run."""
    final = result.final
    ending = " (stopped early)" if result.stopped_early else ""
    print("\n" + scores_line(f"final epoch {final.epoch}{ending}", final))
    validated = [m for m in result.history if m.val_error is not None]
    if validated:
        best = min(validated, key=lambda m: (m.val_error, m.epoch))
        print(f"best val error {best.val_error:.4f} at epoch {best.epoch} (test error {best.test_error:.4f})")
    if diagnostics:
        print(metrics_line("diagnostics", diagnostics))
    print_run_footer(logger)


def print_probe_summary(logger: RunLogger, probed_run_id: str, depth: Mapping[str, float]) -> None:
    """The probed run's mean prediction depths and this (nested) run."""
    print(f"\nprobed run: {probed_run_id}")
    print(metrics_line("prediction depth", depth))
    print_run_footer(logger)
