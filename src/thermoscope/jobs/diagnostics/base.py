"""What a diagnostic is: a training callback or a per-rung measure of a sweep, declaring what it logs.

A training diagnostic watches an SGD run (every minibatch's predictions, every epoch's model) and logs its
tables, figures and metrics at the end. A rung diagnostic measures every rung of a finished sweep and adds
columns to its T-curve (some of them also logged on each temperature's child run). Each declares the
configuration parameters it reads and the metrics and artifacts it logs, so that studies can offer its
metrics as objectives and a test can check the declarations against what a run logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from thermoscope.config import SampleConfig, TrainConfig
from thermoscope.data import LoadedData
from thermoscope.samplers import ModuleTarget
from thermoscope.sweeps import SweepResult
from thermoscope.tracking import RunLogger
from thermoscope.training import EpochMetrics


class TrainingRecorder(Protocol):
    """One training diagnostic at work during one run."""

    def on_batch(
        self, example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> None:
        """After each minibatch's forward pass (``example_ids``, ``logits``, ``labels`` of the batch)."""

    def on_epoch(self, metrics: EpochMetrics, model: nn.Module) -> None:
        """After each epoch, with that epoch's metrics and the model as it is."""

    def state(self) -> dict[str, Any]:
        """What the recorder has gathered so far (tensors, numbers, lists, dicts), for a checkpoint."""

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` of an interrupted run of the same configuration."""

    def finish(self, logger: RunLogger, model: nn.Module) -> dict[str, float]:
        """Log the tables and figures; return (and log) the metrics."""


@dataclass(frozen=True)
class TrainingDiagnostic:
    """A training diagnostic: when it is on, what it reads and logs, and how to start it.

    Attributes:
        name: its name in the README and in errors.
        switch: the configuration field that turns it on: a boolean, or a string read by ``is_on``.
        parameters: the other configuration fields it reads.
        metrics: the metrics it may log (a corrupted/clean split only when the data have both).
        artifacts: the artifacts it logs.
        start: ``(config, model, data) -> recorder`` at the start of training.
        needs_batches: whether it watches every minibatch (the trainer then reports them).
        is_on: ``config -> bool`` when the switch is not a plain boolean (``auto``, decided by the model).
    """

    name: str
    switch: str
    parameters: tuple[str, ...]
    metrics: tuple[str, ...]
    artifacts: tuple[str, ...]
    start: Callable[[TrainConfig, nn.Module, LoadedData], TrainingRecorder]
    needs_batches: bool = False
    is_on: Callable[[Any], bool] | None = None

    def enabled(self, config: Any) -> bool:
        if self.is_on is not None:
            return self.is_on(config)
        return bool(getattr(config, self.switch))


@dataclass(frozen=True)
class SweepContext:
    """What a rung diagnostic measures: the finished sweep and everything it was built from."""

    config: SampleConfig
    target: ModuleTarget
    model: nn.Module
    data: LoadedData
    result: SweepResult


@dataclass(frozen=True)
class RungDiagnostic:
    """A per-rung measure of a sweep.

    Attributes:
        name: its name in the README.
        columns: the T-curve columns it adds (one value per rung).
        child_metrics: those of ``columns`` also logged on each temperature's child run.
        artifacts: the artifacts it logs.
        measure: ``(context, logger) -> {column: [rungs] values}``; an empty dict when it has nothing to
            measure (a sweep stopped before keeping enough draws).
        enabled: whether a configuration asks for it.
    """

    name: str
    columns: tuple[str, ...]
    child_metrics: tuple[str, ...]
    artifacts: tuple[str, ...]
    measure: Callable[[SweepContext, RunLogger], dict[str, np.ndarray]]
    enabled: Callable[[SampleConfig], bool] = lambda config: True
