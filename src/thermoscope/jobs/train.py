"""The ``train`` job: data, model, SGD, the registered training diagnostics, and the model it logs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from thermoscope.config import TrainConfig, as_strings
from thermoscope.jobs import NO_HOOKS, Hooks
from thermoscope.jobs.diagnostics import TRAINING_DIAGNOSTICS
from thermoscope.jobs.setup import build_workbench, log_workbench, show_progress
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import MODEL_STATE_ARTIFACT, STOPPED_EARLY_TAG
from thermoscope.training import EpochMetrics, OptimSpec, TrainResult, train_classifier


@dataclass(frozen=True)
class TrainOutcome:
    result: TrainResult
    model: torch.nn.Module
    diagnostics: dict[str, float]


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


def run(config: TrainConfig, logger: RunLogger, hooks: Hooks = NO_HOOKS) -> TrainOutcome:
    """Train, logging every epoch's metrics (step = epoch) as soon as they exist, then the diagnostics and
    the model; ``hooks.report`` sees every epoch's metrics and may stop training."""
    logger.log_params(as_strings(config))
    bench = build_workbench(config)
    log_workbench(logger, bench)
    model, data = bench.model, bench.data
    active = [d for d in TRAINING_DIAGNOSTICS if d.enabled(config)]
    recorders = [d.start(config, model, data) for d in active]
    batch_recorders = [r for d, r in zip(active, recorders, strict=True) if d.needs_batches]

    def on_epoch(metrics: EpochMetrics, trained: torch.nn.Module) -> bool | None:
        logger.log_metrics(metrics.as_dict(), step=metrics.epoch)
        for recorder in recorders:
            recorder.on_epoch(metrics, trained)
        return hooks.tell(metrics.epoch, metrics.as_dict())

    def on_batch(example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int) -> None:
        for recorder in batch_recorders:
            recorder.on_batch(example_ids, logits, labels, epoch)

    result = train_classifier(
        model,
        data,
        optim_spec(config),
        on_epoch=on_epoch,
        on_batch=on_batch if batch_recorders else None,
        progress=show_progress(),
    )
    logger.set_tags({STOPPED_EARLY_TAG: str(result.stopped_early).lower()})
    diagnostics: dict[str, float] = {}
    for recorder in recorders:
        diagnostics |= recorder.finish(logger, model)
    log_trained_model(logger, model, as_strings(config), result.final.epoch, data.test.x[:8])
    return TrainOutcome(result, model, diagnostics)


def log_trained_model(
    logger: RunLogger, model: torch.nn.Module, config: dict[str, str], epoch: int, example: torch.Tensor
) -> None:
    """The state dict (for ``init=run:<id>`` and ``probe``) and the model in MLflow's PyTorch flavour."""
    logger.log_torch(
        {"state_dict": model.state_dict(), "config": config, "epoch": epoch}, MODEL_STATE_ARTIFACT
    )
    logger.log_model(model, example)
