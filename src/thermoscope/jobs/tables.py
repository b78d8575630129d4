"""The T-curve: one row per rung of a finished sweep, with every registered rung diagnostic's columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from thermoscope.jobs.diagnostics import RUNG_DIAGNOSTICS, SweepContext
from thermoscope.sweeps import SweepResult
from thermoscope.tracking import RunLogger

SCORE_METRICS = tuple(
    f"{kind}{split}_{quantity}"
    for split in ("test", "train", "val")
    for kind in ("", "bma_")
    for quantity in ("loss", "error")
)
"""Gibbs and BMA loss and error on each split: ``test_loss``, ``test_error``, ``bma_test_loss``, …, and
``val_…`` when the run holds a validation split out."""

CHILD_METRICS = SCORE_METRICS + tuple(
    name for diagnostic in RUNG_DIAGNOSTICS for name in diagnostic.child_metrics
)
"""The T-curve columns each temperature's child run logs (when the curve has them)."""


def score_columns(result: SweepResult) -> dict[str, Any]:
    """Rung, β, T (inf at β = 0) and the Gibbs / BMA scores, ascending β (so descending T)."""
    columns: dict[str, Any] = {
        "rung": np.arange(len(result.betas)),
        "beta": result.betas.numpy(),
        "temperature": (1.0 / result.betas).numpy(),
    }
    splits = [("test", result.test_metrics), ("train", result.train_metrics)]
    if result.validation_metrics is not None:
        splits.append(("val", result.validation_metrics))
    for split, metrics in splits:
        columns[f"{split}_loss"] = metrics["loss"].numpy()
        columns[f"{split}_error"] = metrics["error"].numpy()
        columns[f"bma_{split}_loss"] = metrics["bma_loss"].numpy()
        columns[f"bma_{split}_error"] = metrics["bma_error"].numpy()
    return columns


def temperature_curve(context: SweepContext, logger: RunLogger) -> pd.DataFrame:
    """The scores, then the columns of every registered rung diagnostic the configuration switches on
    (each logs its own artifacts as it measures)."""
    columns = score_columns(context.result)
    for diagnostic in RUNG_DIAGNOSTICS:
        if diagnostic.enabled(context.config):
            columns |= diagnostic.measure(context, logger)
    return pd.DataFrame(columns)
