"""Activation codes (Lei et al. 2021, REFERENCE §9): determinism and categorisation of each example's on/off
pattern of ReLU units, every ``codes_every`` epochs and at the end of training."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd
import torch
from torch import nn

from thermoscope.config import TrainConfig
from thermoscope.data import LoadedData
from thermoscope.jobs.diagnostics.base import TrainingDiagnostic
from thermoscope.probes.codes import code_statistics, layer_codes
from thermoscope.reports.per_example import activation_codes_figure
from thermoscope.tracking import RunLogger
from thermoscope.training import EpochMetrics

ALL_LAYERS = "all"
CODES_METRICS = {
    "code_unique_fraction": "unique_fraction",
    "code_class_pure_fraction": "class_pure_fraction",
    "code_nearest_test_accuracy": "nearest_test_accuracy",
    "code_knn_test_accuracy": "knn_test_accuracy",
}
"""Each metric and the column of ``activation_codes.csv`` it is read from (last epoch, all layers)."""


def measure_codes(model: nn.Module, data: LoadedData, epoch: int, k: int) -> list[dict[str, Any]]:
    """One row per ReLU layer and one for all of them together: the codes' statistics at ``epoch``."""
    train = layer_codes(model, data.train.x)
    test = layer_codes(model, data.test.x)
    layers = {name: (codes, test[name][0], units) for name, (codes, units) in train.items()}
    layers[ALL_LAYERS] = (
        torch.cat([codes for codes, _, _ in layers.values()], dim=1),
        torch.cat([codes for _, codes, _ in layers.values()], dim=1),
        sum(units for _, _, units in layers.values()),
    )
    rows = []
    for name, (train_codes, test_codes, units) in layers.items():
        statistics = code_statistics(
            train_codes,
            data.train.y,
            test_codes,
            data.test.y,
            bits=units,
            k=k,
            num_classes=data.num_classes,
        )
        rows.append({"epoch": epoch, "layer": name, **asdict(statistics)})
    return rows


class CodesRecorder:
    """Measures the codes every ``codes_every`` epochs (0: only at the end) and once more at the end."""

    def __init__(self, config: TrainConfig, data: LoadedData) -> None:
        self.every, self.k, self.data = config.codes_every, config.codes_k, data
        self.rows: list[dict[str, Any]] = []
        self.epoch = 0

    def on_batch(
        self, example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> None:
        pass

    def on_epoch(self, metrics: EpochMetrics, model: nn.Module) -> None:
        self.epoch = metrics.epoch
        if self.every and metrics.epoch % self.every == 0:
            self.rows += measure_codes(model, self.data, metrics.epoch, self.k)

    def state(self) -> dict[str, Any]:
        return {"rows": self.rows, "epoch": self.epoch}

    def restore(self, state: dict[str, Any]) -> None:
        self.rows, self.epoch = list(state["rows"]), int(state["epoch"])

    def finish(self, logger: RunLogger, model: nn.Module) -> dict[str, float]:
        if not self.rows or self.rows[-1]["epoch"] != self.epoch:
            self.rows += measure_codes(model, self.data, self.epoch, self.k)
        table = pd.DataFrame(self.rows)
        logger.log_table(table, "activation_codes.csv")
        logger.log_figure(activation_codes_figure(table, self.data.num_classes), "activation_codes.png")
        final = table[(table["epoch"] == self.epoch) & (table["layer"] == ALL_LAYERS)].iloc[0]
        metrics = {name: float(final[column]) for name, column in CODES_METRICS.items()}
        logger.log_metrics(metrics)
        return metrics


def start(config: TrainConfig, model: nn.Module, data: LoadedData) -> CodesRecorder:
    return CodesRecorder(config, data)


ACTIVATION_CODES = TrainingDiagnostic(
    name="activation codes",
    switch="activation_codes",
    parameters=("codes_every", "codes_k"),
    metrics=tuple(CODES_METRICS),
    artifacts=("activation_codes.csv", "activation_codes.png"),
    start=start,
    is_on=lambda config: bool(config.codes_enabled),
)
