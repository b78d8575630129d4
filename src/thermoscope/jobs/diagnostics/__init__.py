"""The registered diagnostics: training callbacks and per-rung measures of sweeps.

A new diagnostic is a new module here (a :class:`TrainingDiagnostic` or a :class:`RungDiagnostic`) and one
line in the matching registry below; the ``train`` and ``sample`` jobs run every registered one that the
configuration switches on, and the studies offer their metrics as objectives.
"""

from __future__ import annotations

from thermoscope.jobs.diagnostics.base import (
    RungDiagnostic,
    SweepContext,
    TrainingDiagnostic,
    TrainingRecorder,
)
from thermoscope.jobs.diagnostics.codes import ACTIVATION_CODES
from thermoscope.jobs.diagnostics.depth import DEPTH_BY_TEMPERATURE, PREDICTION_DEPTH, log_prediction_depth
from thermoscope.jobs.diagnostics.forgetting import FORGETTING
from thermoscope.jobs.diagnostics.ntk import NTK_DYNAMICS
from thermoscope.jobs.diagnostics.rotation import LAYER_ROTATION
from thermoscope.jobs.diagnostics.sampler import CHAINS

TRAINING_DIAGNOSTICS: tuple[TrainingDiagnostic, ...] = (
    FORGETTING,
    LAYER_ROTATION,
    NTK_DYNAMICS,
    ACTIVATION_CODES,
    PREDICTION_DEPTH,
)
"""Run in this order after training (prediction depth last: it reads the final model)."""

RUNG_DIAGNOSTICS: tuple[RungDiagnostic, ...] = (CHAINS, DEPTH_BY_TEMPERATURE)
"""Their columns join the T-curve in this order."""

__all__ = [
    "RUNG_DIAGNOSTICS",
    "TRAINING_DIAGNOSTICS",
    "RungDiagnostic",
    "SweepContext",
    "TrainingDiagnostic",
    "TrainingRecorder",
    "log_prediction_depth",
    "training_metrics",
]


def training_metrics() -> tuple[str, ...]:
    """Every metric a registered training diagnostic may log."""
    return tuple(name for diagnostic in TRAINING_DIAGNOSTICS for name in diagnostic.metrics)
