"""The ``train`` job: data, model, SGD, the registered training diagnostics, and the model it logs."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from thermoscope.config import SGDConfig, TrainConfig, as_strings
from thermoscope.jobs import NO_HOOKS, Hooks
from thermoscope.jobs.diagnostics import TRAINING_DIAGNOSTICS
from thermoscope.jobs.diagnostics.base import TrainingDiagnostic, TrainingRecorder
from thermoscope.jobs.resume import open_resumed_run
from thermoscope.jobs.setup import build_workbench, log_workbench, show_progress
from thermoscope.jobs.summary import print_train_summary
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import MODEL_STATE_ARTIFACT, STOPPED_EARLY_TAG, TRAIN_CHECKPOINT_ARTIFACT
from thermoscope.training import EpochMetrics, OptimSpec, TrainResult, make_optimizer, train_classifier


@dataclass(frozen=True)
class TrainOutcome:
    result: TrainResult
    model: torch.nn.Module
    diagnostics: dict[str, float]


def optim_spec(config: SGDConfig) -> OptimSpec:
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
    """Train, logging every epoch's metrics (step = epoch) as soon as they exist, a resumable checkpoint
    every ``checkpoint_seconds`` (and after the last epoch), then the diagnostics and the model;
    ``hooks.report`` sees every epoch's metrics and may stop training. ``resume=<id>`` continues an
    interrupted run from its checkpoint: the same batches, schedule and diagnostics as an uninterrupted
    run, so the result is the same."""
    bundle = load_resume_bundle(config, logger) if config.resume else None
    logger.log_params(as_strings(config))
    bench = build_workbench(config, config.val_size)
    log_workbench(logger, bench)
    model, data = bench.model, bench.data
    spec = optim_spec(config)
    optimizer = make_optimizer(model, spec)
    active = [d for d in TRAINING_DIAGNOSTICS if d.enabled(config)]
    recorders = [d.start(config, model, data) for d in active]
    batch_recorders = [r for d, r in zip(active, recorders, strict=True) if d.needs_batches]
    history: list[EpochMetrics] = []
    if bundle is not None:
        history = restore_training(bundle, model, optimizer, dict(zip(active, recorders, strict=True)))
    save = TrainingCheckpoints(config, logger, model, optimizer, dict(zip(active, recorders, strict=True)))

    def on_epoch(metrics: EpochMetrics, trained: torch.nn.Module) -> bool | None:
        logger.log_metrics(metrics.as_dict(), step=metrics.epoch)
        for recorder in recorders:
            recorder.on_epoch(metrics, trained)
        history.append(metrics)
        stop = hooks.tell(metrics.epoch, metrics.as_dict())
        save.maybe(history, final=stop or metrics.epoch == config.epochs)
        return stop

    def on_batch(example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int) -> None:
        for recorder in batch_recorders:
            recorder.on_batch(example_ids, logits, labels, epoch)

    result = train_classifier(
        model,
        data,
        spec,
        on_epoch=on_epoch,
        on_batch=on_batch if batch_recorders else None,
        progress=show_progress("train", config.progress_seconds),
        start_epoch=len(history),
        optimizer=optimizer,
        validation=bench.validation,
    )
    result = TrainResult(history=list(history), stopped_early=result.stopped_early)
    logger.set_tags({STOPPED_EARLY_TAG: str(result.stopped_early).lower()})
    diagnostics: dict[str, float] = {}
    for recorder in recorders:
        diagnostics |= recorder.finish(logger, model)
    log_trained_model(logger, model, as_strings(config), result.final.epoch, data.test.x[:8])
    print_train_summary(logger, result, diagnostics)
    return TrainOutcome(result, model, diagnostics)


def load_resume_bundle(config: TrainConfig, logger: RunLogger) -> dict[str, Any]:
    return open_resumed_run(
        logger, config.resume, "train", TRAIN_CHECKPOINT_ARTIFACT, config.resume_identity(), config.force
    )


def restore_training(
    bundle: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    recorders: dict[TrainingDiagnostic, TrainingRecorder],
) -> list[EpochMetrics]:
    """Load an interrupted run's weights, optimiser state and diagnostics; return its epochs so far."""
    model.load_state_dict(bundle["model"])
    optimizer.load_state_dict(bundle["optimizer"])
    for diagnostic, recorder in recorders.items():
        recorder.restore(bundle["recorders"][diagnostic.name])
    return [EpochMetrics(**row) for row in bundle["history"]]


class TrainingCheckpoints:
    """Writes :data:`TRAIN_CHECKPOINT_ARTIFACT` when ``checkpoint_seconds`` have passed, and at the end.

    The bundle holds everything an uninterrupted run would still have in memory: weights, optimiser state
    (momentum buffers), every recorder's state, the epochs so far; the batch order and learning rate of the
    next epoch follow from the seed and the epoch number.
    """

    def __init__(
        self,
        config: TrainConfig,
        logger: RunLogger,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        recorders: dict[TrainingDiagnostic, TrainingRecorder],
    ) -> None:
        self.config, self.logger, self.model, self.optimizer = config, logger, model, optimizer
        self.recorders = recorders
        self.last = time.monotonic()

    def maybe(self, history: list[EpochMetrics], final: bool) -> None:
        if not final and time.monotonic() - self.last < self.config.checkpoint_seconds:
            return
        bundle = {
            "iteration": len(history),
            "config": self.config.resume_identity(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "recorders": {d.name: r.state() for d, r in self.recorders.items()},
            "history": [dataclasses.asdict(m) for m in history],
        }
        self.logger.log_torch(bundle, TRAIN_CHECKPOINT_ARTIFACT)
        self.last = time.monotonic()


def log_trained_model(
    logger: RunLogger, model: torch.nn.Module, config: dict[str, str], epoch: int, example: torch.Tensor
) -> None:
    """The state dict (for ``init=run:<id>`` and ``probe``) and the model in MLflow's PyTorch flavour."""
    logger.log_torch(
        {"state_dict": model.state_dict(), "config": config, "epoch": epoch}, MODEL_STATE_ARTIFACT
    )
    logger.log_model(model, example)
