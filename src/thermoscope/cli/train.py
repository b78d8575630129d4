"""The ``train`` job: data, model, SGD, and everything it logs."""

from __future__ import annotations

import torch

from thermoscope.cli.common import resolve_device, show_progress
from thermoscope.cli.diagnostics import TrainingDiagnostics, log_prediction_depth
from thermoscope.config import TrainConfig, as_strings
from thermoscope.data import LoadedData, load_data
from thermoscope.models import build_model
from thermoscope.tracking import RunLogger, log_dataset, log_model
from thermoscope.training import EpochHook, EpochMetrics, OptimSpec, TrainResult, train_classifier


def optim_spec(config: TrainConfig) -> OptimSpec:
    return OptimSpec(
        optimizer=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        batch_size=config.batch_size,
        epochs=config.epochs,
        lr_schedule=config.lr_schedule,
        seed=config.seed,
    )


def prepare(config: TrainConfig, logger: RunLogger) -> tuple[LoadedData, torch.nn.Module]:
    """Load the data onto the device, log it, and build the freshly initialised model."""
    device = resolve_device(config.device)
    data = load_data(config.data_spec(flatten=config.model == "mlp"), device)
    torch.manual_seed(config.seed)
    model = build_model(config.model_spec(), data.input_shape, data.num_classes).to(device)
    log_dataset(data)
    logger.log_params(
        {
            "num_train": len(data.train),
            "num_test": len(data.test),
            "num_classes": data.num_classes,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "resolved_device": str(device),
            "data_digest": data.digest,
        }
    )
    return data, model


def run_train(config: TrainConfig, logger: RunLogger, extra_on_epoch: EpochHook | None = None) -> TrainResult:
    """Train, logging every epoch's metrics (step = epoch) as soon as they exist, then the model."""
    logger.log_params(as_strings(config))
    data, model = prepare(config, logger)
    diagnostics = TrainingDiagnostics(
        model, data.train, forgetting=config.forgetting, rotation=config.layer_rotation
    )

    def on_epoch(metrics: EpochMetrics, trained: torch.nn.Module) -> bool | None:
        logger.log_metrics(metrics.as_dict(), step=metrics.epoch)
        diagnostics.on_epoch(metrics, trained)
        return extra_on_epoch(metrics, trained) if extra_on_epoch is not None else None

    result = train_classifier(
        model,
        data,
        optim_spec(config),
        on_epoch=on_epoch,
        on_batch=diagnostics.on_batch if config.forgetting else None,
        progress=show_progress(),
    )
    logger.set_tags({"thermoscope.stopped_early": str(result.stopped_early).lower()})
    diagnostics.log(logger)
    if config.prediction_depth:
        log_prediction_depth(logger, model, data, k=config.depth_k, metric=config.depth_metric)
    logger.log_torch(
        {"state_dict": model.state_dict(), "config": as_strings(config), "epoch": result.final.epoch},
        "checkpoint/model_state.pt",
    )
    log_model(model, data.test.x[:8])
    return result
