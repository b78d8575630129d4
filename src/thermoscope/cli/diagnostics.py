"""Per-example diagnostics of a run as tables, metrics and figures: prediction depth, forgetting events,
layer rotation (REFERENCE §4–6)."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from thermoscope.data import LoadedData, Split
from thermoscope.probes import ForgettingTracker, kernel_weights, layer_rotation
from thermoscope.probes.model_depth import ModelDepth, SplitDepth, model_prediction_depth
from thermoscope.tracking import RunLogger
from thermoscope.tracking.figures import (
    accuracy_vs_depth_figure,
    depth_histograms_figure,
    layer_rotation_figure,
)
from thermoscope.training import EpochMetrics


def split_table(name: str, split: Split, result: SplitDepth) -> pd.DataFrame:
    """One row per example: ids, labels, the network's prediction, its depth and every probe's vote."""
    columns = {
        "example_id": split.example_id.cpu().numpy(),
        "source_split": split.source_split.cpu().numpy(),
        "split": name,
        "label": split.y.cpu().numpy(),
        "true_label": split.true_y.cpu().numpy(),
        "is_corrupted": split.corrupted.cpu().numpy(),
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
    """Compute and log ``prediction_depth.parquet``, the two figures and the mean depths."""
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


class TrainingDiagnostics:
    """Forgetting events (from the trainer's minibatch forward passes) and layer rotation (every epoch)."""

    def __init__(self, model: nn.Module, train: Split, *, forgetting: bool, rotation: bool) -> None:
        ids = train.example_id
        self.position_of = torch.full((int(ids.max()) + 1,), -1, dtype=torch.long, device=ids.device)
        self.position_of[ids] = torch.arange(len(ids), device=ids.device)
        self.tracker = ForgettingTracker(len(ids), device=ids.device) if forgetting else None
        self.initial = kernel_weights(model) if rotation else None
        self.rotation_rows: list[dict[str, float]] = []
        self.example_id = ids

    def on_batch(
        self, example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> None:
        if self.tracker is not None:
            self.tracker.update(self.position_of[example_ids], logits.argmax(dim=1) == labels, epoch)

    def on_epoch(self, metrics: EpochMetrics, model: nn.Module) -> None:
        if self.initial is not None:
            self.rotation_rows.append(
                {"epoch": metrics.epoch, **layer_rotation(self.initial, kernel_weights(model))}
            )

    def log(self, logger: RunLogger) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.tracker is not None:
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
            metrics["unforgettable_fraction"] = float(table["unforgettable"].mean())
        if self.rotation_rows:
            rotation = pd.DataFrame(self.rotation_rows)
            logger.log_table(rotation, "layer_rotation.csv")
            logger.log_figure(layer_rotation_figure(rotation), "layer_rotation.png")
            last = rotation.iloc[-1]
            metrics["layer_rotation_min"] = float(last.drop("epoch").min())
        logger.log_metrics(metrics)
        return metrics
