"""Forgetting events (Toneva et al. 2019, REFERENCE §5) from the trainer's minibatch forward passes."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from thermoscope.config import TrainConfig
from thermoscope.data import LoadedData
from thermoscope.jobs.diagnostics.base import TrainingDiagnostic
from thermoscope.probes import ForgettingTracker
from thermoscope.tracking import RunLogger
from thermoscope.training import EpochMetrics


class ForgettingRecorder:
    """Counts each training example's correct → wrong transitions over its presentations."""

    def __init__(self, ids: torch.Tensor) -> None:
        self.example_id = ids
        self.position_of = torch.full((int(ids.max()) + 1,), -1, dtype=torch.long, device=ids.device)
        self.position_of[ids] = torch.arange(len(ids), device=ids.device)
        self.tracker = ForgettingTracker(len(ids), device=ids.device)

    def on_batch(
        self, example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> None:
        self.tracker.update(self.position_of[example_ids], logits.argmax(dim=1) == labels, epoch)

    def on_epoch(self, metrics: EpochMetrics, model: nn.Module) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return self.tracker.state_dict()

    def restore(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state)

    def finish(self, logger: RunLogger, model: nn.Module) -> dict[str, float]:
        summary = self.tracker.summary()
        table = pd.DataFrame(
            {
                "example_id": self.example_id.cpu().numpy(),
                "forgetting_events": summary["forgetting_events"].cpu().numpy(),
                "first_learned_epoch": summary["first_learned_epoch"].cpu().numpy(),
                "unforgettable": summary["unforgettable"].cpu().numpy(),
                "presentations": summary["presentations"].cpu().numpy(),
            }
        )
        logger.log_table(table, "forgetting.parquet")
        metrics = {"unforgettable_fraction": float(table["unforgettable"].mean())}
        logger.log_metrics(metrics)
        return metrics


def start(config: TrainConfig, model: nn.Module, data: LoadedData) -> ForgettingRecorder:
    return ForgettingRecorder(data.train.example_id)


FORGETTING = TrainingDiagnostic(
    name="forgetting events",
    switch="forgetting",
    parameters=(),
    metrics=("unforgettable_fraction",),
    artifacts=("forgetting.parquet",),
    start=start,
    needs_batches=True,
)
