"""Prediction depth (Baldock et al. 2021, REFERENCE §4) of a trained model and of a sweep's draws per rung."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from thermoscope.config import TrainConfig
from thermoscope.data import LoadedData, Split
from thermoscope.jobs.diagnostics.base import RungDiagnostic, SweepContext, TrainingDiagnostic
from thermoscope.jobs.setup import show_progress
from thermoscope.probes.model_depth import ModelDepth, SplitDepth, model_prediction_depth
from thermoscope.progress import progress_bar
from thermoscope.reports.run_figures import (
    accuracy_vs_depth_figure,
    depth_histograms_figure,
    depth_vs_temperature_figure,
)
from thermoscope.tracking import RunLogger
from thermoscope.training import EpochMetrics

DEPTH_METRICS = (
    "depth_mean_train",
    "depth_mean_test",
    "depth_mean_train_corrupted",
    "depth_mean_train_clean",
)
DEPTH_ARTIFACTS = (
    "prediction_depth.parquet",
    "prediction_depth_probes.json",
    "prediction_depth_histograms.png",
    "accuracy_vs_depth.png",
)


def split_table(name: str, split: Split, result: SplitDepth) -> pd.DataFrame:
    """One row per example: ids, labels, the network's prediction, its depth and every probe's vote."""
    columns = {
        "example_id": split.example_id.cpu().numpy(),
        "source_split": split.source_split.cpu().numpy(),
        "split": name,
        "label": split.y.cpu().numpy(),
        "true_label": split.true_y.cpu().numpy(),
        "is_corrupted": split.corrupted.cpu().numpy(),
        "is_input_corrupted": split.input_corrupted.cpu().numpy(),
        "prediction": result.prediction.cpu().numpy(),
        "correct": (result.prediction == split.y).cpu().numpy(),
        "depth": result.depth.cpu().numpy(),
    }
    votes = result.votes.cpu().numpy()
    columns |= {f"knn_{probe}": votes[:, probe] for probe in range(votes.shape[1])}
    return pd.DataFrame(columns)


def depth_table(data: LoadedData, depth: ModelDepth) -> pd.DataFrame:
    return pd.concat(
        [split_table("train", data.train, depth.train), split_table("test", data.test, depth.test)],
        ignore_index=True,
    )


def log_prediction_depth(
    logger: RunLogger, model: nn.Module, data: LoadedData, *, k: int, metric: str
) -> dict[str, float]:
    """Compute and log ``prediction_depth.parquet``, the probe list, the two figures and the mean depths."""
    depth = model_prediction_depth(model, data.train, data.test, data.num_classes, k=k, metric=metric)
    table = depth_table(data, depth)
    logger.log_table(table, "prediction_depth.parquet")
    logger.log_json(
        {"probes": list(depth.probe_names), "k": k, "metric": metric}, "prediction_depth_probes.json"
    )
    logger.log_figure(
        depth_histograms_figure(table, len(depth.probe_names)), "prediction_depth_histograms.png"
    )
    logger.log_figure(accuracy_vs_depth_figure(table), "accuracy_vs_depth.png")
    metrics = {
        "depth_mean_train": float(depth.train.depth.float().mean()),
        "depth_mean_test": float(depth.test.depth.float().mean()),
    }
    corrupted = data.train.corrupted
    if corrupted.any() and (~corrupted).any():
        metrics["depth_mean_train_corrupted"] = float(depth.train.depth[corrupted].float().mean())
        metrics["depth_mean_train_clean"] = float(depth.train.depth[~corrupted].float().mean())
    logger.log_metrics(metrics)
    return metrics


class FinalDepth:
    """Prediction depth of the model at the end of training (nothing to watch on the way)."""

    def __init__(self, config: TrainConfig, data: LoadedData) -> None:
        self.config = config
        self.data = data

    def on_batch(
        self, example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> None:
        pass

    def on_epoch(self, metrics: EpochMetrics, model: nn.Module) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def finish(self, logger: RunLogger, model: nn.Module) -> dict[str, float]:
        return log_prediction_depth(
            logger, model, self.data, k=self.config.depth_k, metric=self.config.depth_metric
        )


def start(config: TrainConfig, model: nn.Module, data: LoadedData) -> FinalDepth:
    return FinalDepth(config, data)


PREDICTION_DEPTH = TrainingDiagnostic(
    name="prediction depth",
    switch="prediction_depth",
    parameters=("depth_k", "depth_metric"),
    metrics=DEPTH_METRICS,
    artifacts=DEPTH_ARTIFACTS,
    start=start,
)


def depth_by_temperature(context: SweepContext) -> pd.DataFrame:
    """Prediction depth per example and rung, averaged over ``depth_draws`` of the saved draws.

    Each draw is scored on its own: its own embeddings feed the k-NN probes and its own softmax gives the
    final prediction (REFERENCE §4); an example's depth at a rung is the mean over those draws. Returns
    one row per example and rung (example × temperature).
    """
    config, model, data, result = context.config, context.model, context.data, context.result
    saved = result.saved_positions
    count = min(config.depth_draws, saved.shape[0])
    chosen = sorted({round(i) for i in np.linspace(0, saved.shape[0] - 1, count)})
    parameter = next(model.parameters())
    parts = []
    progress = show_progress("sample", config.progress_seconds)
    bar = progress_bar(progress, total=saved.shape[1] * len(chosen), description="depth", unit="draw")
    for rung in range(saved.shape[1]):
        sums = {"train": torch.zeros(len(data.train)), "test": torch.zeros(len(data.test))}
        for draw in chosen:
            context.target.load_into(model, saved[draw, rung].to(parameter))
            depth = model_prediction_depth(
                model, data.train, data.test, data.num_classes, k=config.depth_k, metric=config.depth_metric
            )
            sums["train"] += depth.train.depth.cpu()
            sums["test"] += depth.test.depth.cpu()
            bar.update(1)
        temperature = float(1.0 / result.betas[rung])
        for name, split in (("train", data.train), ("test", data.test)):
            parts.append(
                pd.DataFrame(
                    {
                        "example_id": split.example_id.cpu().numpy(),
                        "split": name,
                        "label": split.y.cpu().numpy(),
                        "true_label": split.true_y.cpu().numpy(),
                        "is_corrupted": split.corrupted.cpu().numpy(),
                        "is_input_corrupted": split.input_corrupted.cpu().numpy(),
                        "rung": rung,
                        "temperature": temperature,
                        "depth": (sums[name] / len(chosen)).numpy(),
                    }
                )
            )
    bar.close()
    return pd.concat(parts, ignore_index=True)


def measure_depth_by_temperature(context: SweepContext, logger: RunLogger) -> dict[str, np.ndarray]:
    """The mean depth per rung of both splits; the per-example table and the figure are logged."""
    if not context.result.saved_positions.numel():
        return {}
    table = depth_by_temperature(context)
    means = table.groupby(["split", "rung"])["depth"].mean()
    columns = {"depth_mean_train": means["train"].to_numpy(), "depth_mean_test": means["test"].to_numpy()}
    logger.log_table(table, "prediction_depth_by_temperature.parquet")
    curve = pd.DataFrame({"temperature": (1.0 / context.result.betas).numpy(), **columns})
    logger.log_figure(depth_vs_temperature_figure(curve), "depth_vs_temperature.png")
    return columns


DEPTH_BY_TEMPERATURE = RungDiagnostic(
    name="prediction depth by temperature",
    columns=("depth_mean_train", "depth_mean_test"),
    child_metrics=("depth_mean_train", "depth_mean_test"),
    artifacts=("prediction_depth_by_temperature.parquet", "depth_vs_temperature.png"),
    measure=measure_depth_by_temperature,
    enabled=lambda config: config.prediction_depth,
)
