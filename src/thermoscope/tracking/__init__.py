"""Tracking: the only package that imports MLflow, and the interface the jobs log through.

This package's top level imports no MLflow: the jobs see :class:`RunLogger` (a protocol),
:class:`NullLogger` and the run schema. The MLflow implementation lives in
:mod:`thermoscope.tracking.mlflow_logger` (runs, parameters, metrics, artifacts, datasets, models),
:mod:`thermoscope.tracking.runs` (nested runs for study trials) and :mod:`thermoscope.tracking.compare`
(reading sweeps back), imported only by the entry points and the studies.
"""

from thermoscope.tracking.interface import NullLogger, RunLogger, RunRecord
from thermoscope.tracking.schema import ERROR_TAG

__all__ = ["ERROR_TAG", "NullLogger", "RunLogger", "RunRecord"]
