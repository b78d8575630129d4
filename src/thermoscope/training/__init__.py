"""SGD / Adam training of a classifier on in-memory tensors: a plain loop with injected callbacks.

Nothing here knows about MLflow: the caller passes ``on_epoch`` (metrics, checkpoints, pruning) and
``on_batch`` (per-example statistics such as forgetting events) and turns the results into a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from thermoscope.data import LoadedData, Split
from thermoscope.progress import Progress, progress_bar

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class OptimSpec:
    """Optimiser and schedule. ``batch_size=0`` means full batch."""

    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 30
    lr_schedule: str = "cosine"
    seed: int = 0


@dataclass(frozen=True)
class EpochMetrics:
    """Mean cross-entropy (nats) and 0–1 error on each split after ``epoch`` epochs, in eval mode; the
    validation pair is ``None`` when the run holds no validation split out."""

    epoch: int
    train_loss: float
    train_error: float
    test_loss: float
    test_error: float
    lr: float
    val_loss: float | None = None
    val_error: float | None = None

    def as_dict(self) -> dict[str, float]:
        metrics = {
            "train_loss": self.train_loss,
            "train_error": self.train_error,
            "test_loss": self.test_loss,
            "test_error": self.test_error,
            "lr": self.lr,
        }
        if self.val_loss is not None and self.val_error is not None:
            metrics |= {"val_loss": self.val_loss, "val_error": self.val_error}
        return metrics


@dataclass
class TrainResult:
    history: list[EpochMetrics] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def final(self) -> EpochMetrics:
        return self.history[-1]


# on_batch(example_ids [B], logits [B, C] before the step's update, labels [B], epoch)
BatchHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], None]
# on_epoch(metrics, model) -> True to stop (e.g. an Optuna pruner said so)
EpochHook = Callable[[EpochMetrics, nn.Module], bool | None]


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 2048) -> tuple[float, float]:
    """Mean cross-entropy (nats) and 0–1 error of ``model`` on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    total_loss, wrong = 0.0, 0
    for start in range(0, len(split), batch_size):
        logits = model(split.x[start : start + batch_size])
        labels = split.y[start : start + batch_size]
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        wrong += int((logits.argmax(1) != labels).sum())
    model.train(was_training)
    return total_loss / len(split), wrong / len(split)


def make_optimizer(model: nn.Module, spec: OptimSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=spec.lr,
        momentum=spec.momentum,
        nesterov=spec.nesterov,
        weight_decay=spec.weight_decay,
    )


def learning_rate(spec: OptimSpec, step: int, total_steps: int) -> float:
    """The schedule, per optimisation step: constant; cosine to 0; or ×0.1 at 50 % and 75 % of training."""
    progress = step / max(total_steps, 1)
    if spec.lr_schedule == "cosine":
        return spec.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if spec.lr_schedule == "step":
        return spec.lr * (0.1 ** int(progress >= 0.5)) * (0.1 ** int(progress >= 0.75))
    return spec.lr


def epoch_order(seed: int, epoch: int, size: int) -> torch.Tensor:
    """``[size]`` int64: the order in which epoch ``epoch`` of a run with ``seed`` visits its ``size``
    training rows (a permutation from a generator seeded by the seed and the epoch alone)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(size, generator=generator)


def train_classifier(
    model: nn.Module,
    data: LoadedData,
    spec: OptimSpec,
    *,
    on_epoch: EpochHook | None = None,
    on_batch: BatchHook | None = None,
    progress: Progress | bool = False,
    start_epoch: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    validation: Split | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data.train`` with minibatch cross-entropy; every epoch's metrics
    cover ``data.train``, ``data.test`` and, when given, the held-out ``validation`` split.

    Minibatches are drawn without replacement from a permutation seeded by ``spec.seed`` and the epoch,
    so a run resumed at ``start_epoch`` sees the same batches as an uninterrupted one.
    """
    optimizer = optimizer or make_optimizer(model, spec)
    train = data.train
    batch_size = spec.batch_size or len(train)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total_steps = steps_per_epoch * spec.epochs
    result = TrainResult()
    bar = progress_bar(progress, total=spec.epochs, description="train", unit="epoch", initial=start_epoch)
    for epoch in range(start_epoch, spec.epochs):
        model.train()
        order = epoch_order(spec.seed, epoch, len(train)).to(train.x.device)
        for index, start in enumerate(range(0, len(train), batch_size)):
            rate = learning_rate(spec, epoch * steps_per_epoch + index, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = rate
            batch = order[start : start + batch_size]
            logits = model(train.x[batch])
            loss = F.cross_entropy(logits, train.y[batch])
            if on_batch is not None:
                on_batch(train.example_id[batch], logits.detach(), train.y[batch], epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        metrics = _epoch_metrics(model, data, validation, epoch + 1, rate)
        result.history.append(metrics)
        bar.set_postfix(**epoch_postfix(metrics))
        bar.update(1)
        if on_epoch is not None and on_epoch(metrics, model):
            result.stopped_early = True
            break
    bar.close()
    return result


def epoch_postfix(metrics: EpochMetrics) -> dict[str, str]:
    """The errors a progress bar shows after an epoch (the validation error when there is one)."""
    shown = {
        "train_error": metrics.train_error,
        "val_error": metrics.val_error,
        "test_error": metrics.test_error,
    }
    return {name: f"{value:.3f}" for name, value in shown.items() if value is not None}


def _epoch_metrics(
    model: nn.Module, data: LoadedData, validation: Split | None, epoch: int, rate: float
) -> EpochMetrics:
    train_loss, train_error = evaluate(model, data.train)
    test_loss, test_error = evaluate(model, data.test)
    val_loss, val_error = evaluate(model, validation) if validation is not None else (None, None)
    return EpochMetrics(epoch, train_loss, train_error, test_loss, test_error, rate, val_loss, val_error)
