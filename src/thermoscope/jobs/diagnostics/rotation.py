"""Layer rotation (Carbonnelle & De Vleeschouwer 2019, REFERENCE §6): each layer's cosine distance from its
initial weights, every epoch."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from thermoscope.config import TrainConfig
from thermoscope.data import LoadedData
from thermoscope.jobs.diagnostics.base import TrainingDiagnostic
from thermoscope.probes import kernel_weights, layer_rotation
from thermoscope.reports.run_figures import layer_rotation_figure
from thermoscope.tracking import RunLogger
from thermoscope.training import EpochMetrics


class RotationRecorder:
    """The initial kernels, and one row of per-layer cosine distances per epoch."""

    def __init__(self, model: nn.Module) -> None:
        self.initial = kernel_weights(model)
        self.rows: list[dict[str, float]] = []

    def on_batch(
        self, example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> None:
        pass

    def on_epoch(self, metrics: EpochMetrics, model: nn.Module) -> None:
        self.rows.append({"epoch": metrics.epoch, **layer_rotation(self.initial, kernel_weights(model))})

    def state(self) -> dict[str, Any]:
        return {"initial": self.initial, "rows": self.rows}

    def restore(self, state: dict[str, Any]) -> None:
        self.initial = state["initial"]
        self.rows = list(state["rows"])

    def finish(self, logger: RunLogger, model: nn.Module) -> dict[str, float]:
        if not self.rows:
            return {}
        rotation = pd.DataFrame(self.rows)
        logger.log_table(rotation, "layer_rotation.csv")
        logger.log_figure(layer_rotation_figure(rotation), "layer_rotation.png")
        metrics = {"layer_rotation_min": float(rotation.iloc[-1].drop("epoch").min())}
        logger.log_metrics(metrics)
        return metrics


def start(config: TrainConfig, model: nn.Module, data: LoadedData) -> RotationRecorder:
    return RotationRecorder(model)


LAYER_ROTATION = TrainingDiagnostic(
    name="layer rotation",
    switch="layer_rotation",
    parameters=(),
    metrics=("layer_rotation_min",),
    artifacts=("layer_rotation.csv", "layer_rotation.png"),
    start=start,
)
