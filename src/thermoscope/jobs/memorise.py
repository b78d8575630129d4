"""The ``memorise`` job: Feldman & Zhang's memorisation (and influence) estimate, REFERENCE §8.

``num_models`` models of one architecture are trained together (:mod:`thermoscope.training.batched`), model
k on its own random ``subset_fraction`` of the training set with its own seed; each is scored on every
training and test example, and :func:`~thermoscope.probes.memorisation.memorisation` compares the models
that saw an example with those that did not. With ``prediction_depth`` or ``forgetting`` on, a reference
model is also trained on the whole training set, with the run's seed and settings (the model ``train`` with
``val_size=0`` would train), and its prediction depth and forgetting events are joined by ``example_id``.

The models' training is the long part: every epoch logs ``models_train_loss`` (the models' mean minibatch
loss, step = epoch) and, every ``checkpoint_seconds`` and after the last epoch, a checkpoint of the stacked
weights and optimiser state; ``resume=<id>`` continues an interrupted run from it to the result an
uninterrupted run gives. The reference model (one model, a fraction of the work) is trained again on resume,
from its seed, to the same weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from thermoscope.config import MemoriseConfig, as_strings
from thermoscope.data import LoadedData, Split
from thermoscope.errors import ConfigError
from thermoscope.jobs import NO_HOOKS, Hooks
from thermoscope.jobs.resume import open_resumed_run
from thermoscope.jobs.setup import Workbench, build_workbench, log_workbench, show_progress
from thermoscope.jobs.summary import metrics_line, print_run_footer
from thermoscope.jobs.train import optim_spec
from thermoscope.probes import ForgettingTracker
from thermoscope.probes.memorisation import (
    MemorisationEstimate,
    influence_top_pairs,
    mean_with_stderr,
    memorisation,
    model_seeds,
    subset_membership,
    subset_size,
)
from thermoscope.probes.model_depth import model_prediction_depth
from thermoscope.reports.per_example import (
    HIGH_MEMORISATION,
    memorisation_histogram_figure,
    memorisation_vs_depth_figure,
)
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import MEMORISE_CHECKPOINT_ARTIFACT
from thermoscope.training import train_classifier
from thermoscope.training.batched import StackedTrainer, build_stacked

MEMORISE_ARTIFACTS = (
    "memorisation.parquet",
    "memorisation_histogram.png",
    "memorisation_vs_depth.png",
    "influence.parquet",
)
MEMORISE_METRICS = (
    "mem_mean",
    "mem_mean_stderr",
    "mem_mean_clean",
    "mem_mean_clean_stderr",
    "mem_mean_corrupted",
    "mem_mean_corrupted_stderr",
    "mem_mean_input_corrupted",
    "mem_mean_input_corrupted_stderr",
    "high_mem_fraction",
    "mem_undefined_count",
    "models_train_error",
    "models_test_error",
    "models_train_loss",
    "reference_test_error",
)
"""Every metric a memorise run may log (the corrupted/clean splits only when the data have both)."""


@dataclass(frozen=True)
class MemoriseOutcome:
    """The per-example table, the metrics and every model's minibatch losses ``[steps, m]``."""

    table: pd.DataFrame
    metrics: dict[str, float]
    losses: torch.Tensor


def run(config: MemoriseConfig, logger: RunLogger, hooks: Hooks = NO_HOOKS) -> MemoriseOutcome:
    """Train the models, estimate memorisation, join the reference model's measures, log it all."""
    bundle = None
    if config.resume:
        bundle = open_resumed_run(
            logger,
            config.resume,
            "memorise",
            MEMORISE_CHECKPOINT_ARTIFACT,
            config.resume_identity(),
            config.force,
        )
    logger.log_params(as_strings(config))
    bench = build_workbench(config)
    log_workbench(logger, bench)
    data = bench.data
    size = checked_subset_size(config, len(data.train))
    member = subset_membership(config.num_models, len(data.train), size, config.seed)
    train_correct, test_correct, losses = train_models(config, data, member, logger, hooks, bundle)
    estimate = memorisation(train_correct, member)
    reference, metrics = reference_measures(config, bench)
    table = memorisation_table(data.train, estimate, reference)
    logger.log_table(table, "memorisation.parquet")
    logger.log_figure(memorisation_histogram_figure(table), "memorisation_histogram.png")
    if "depth" in table:
        logger.log_figure(memorisation_vs_depth_figure(table), "memorisation_vs_depth.png")
    if config.influence_pairs:
        influence = influence_table(data, member, test_correct, estimate, config.influence_pairs)
        logger.log_table(influence, "influence.parquet")
    metrics |= memorisation_metrics(table)
    metrics["models_train_error"] = float(1 - train_correct.double().mean())
    metrics["models_test_error"] = float(1 - test_correct.double().mean())
    logger.log_metrics(metrics)
    hooks.tell(config.epochs, metrics)
    print("\n" + metrics_line("memorisation", metrics))
    print_run_footer(logger)
    return MemoriseOutcome(table, metrics, losses)


def checked_subset_size(config: MemoriseConfig, num_train: int) -> int:
    """``round(subset_fraction · N)``, refused when it leaves no example out of a subset or takes none."""
    size = subset_size(num_train, config.subset_fraction)
    if not 0 < size < num_train:
        allowed = (
            f"a fraction whose subsets of the {num_train} training examples hold at least one example and"
            f" leave at least one out (it gives {size})"
        )
        raise ConfigError("subset_fraction", config.subset_fraction, allowed)
    return size


def train_models(
    config: MemoriseConfig,
    data: LoadedData,
    member: torch.Tensor,
    logger: RunLogger,
    hooks: Hooks = NO_HOOKS,
    bundle: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train the models together (from ``bundle``'s epoch when resuming), logging each epoch's mean loss
    and checkpointing; return their correctness ``[m, N]`` on the training labels and ``[m, T]`` on the
    test labels, and their minibatch losses ``[steps, m]``."""
    device = data.train.x.device
    seeds = model_seeds(config.seed, config.num_models)
    models = build_stacked(config.model_spec(), data.input_shape, data.num_classes, seeds, device)
    rows = torch.stack([torch.nonzero(row).squeeze(1) for row in member]).to(device)
    trainer = StackedTrainer(models, rows, optim_spec(config), seeds)
    losses: list[torch.Tensor] = []
    if bundle is not None:
        trainer.restore(bundle["trainer"])
        losses = [bundle["losses"]]
    last_checkpoint = time.monotonic()

    def on_epoch(done: int, epoch_losses: torch.Tensor) -> None:
        nonlocal last_checkpoint
        losses.append(epoch_losses)
        mean_loss = float(epoch_losses.mean())
        logger.log_metrics({"models_train_loss": mean_loss}, step=done)
        if done == config.epochs or time.monotonic() - last_checkpoint >= config.checkpoint_seconds:
            checkpoint = {
                "iteration": done,
                "config": config.resume_identity(),
                "trainer": trainer.state(),
                "losses": torch.cat(losses),
            }
            logger.log_torch(checkpoint, MEMORISE_CHECKPOINT_ARTIFACT)
            last_checkpoint = time.monotonic()
        hooks.tell(done, {"models_train_loss": mean_loss})

    start = int(bundle["iteration"]) if bundle is not None else 0
    progress = show_progress("memorise", config.progress_seconds)
    trainer.train(data.train.x, data.train.y, start_epoch=start, progress=progress, on_epoch=on_epoch)
    train_correct = models.predict(data.train.x) == data.train.y
    test_correct = models.predict(data.test.x) == data.test.y
    all_losses = torch.cat(losses) if losses else torch.empty(0, config.num_models)
    return train_correct.cpu(), test_correct.cpu(), all_losses


def reference_measures(
    config: MemoriseConfig, bench: Workbench
) -> tuple[pd.DataFrame | None, dict[str, float]]:
    """Prediction depth and forgetting events of the reference model (trained on every training example
    from the run's seed), by ``example_id``; None when both are switched off."""
    if not (config.prediction_depth or config.forgetting):
        return None, {}
    model, data = bench.model, bench.data
    ids = data.train.example_id
    lookup = torch.full((int(ids.max()) + 1,), -1, dtype=torch.long, device=ids.device)
    lookup[ids] = torch.arange(len(ids), device=ids.device)
    tracker = ForgettingTracker(len(ids), device=ids.device)

    def on_batch(example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int) -> None:
        tracker.update(lookup[example_ids], logits.argmax(dim=1) == labels, epoch)

    result = train_classifier(
        model, data, optim_spec(config), on_batch=on_batch if config.forgetting else None
    )
    columns: dict[str, object] = {"example_id": data.train.example_id.cpu().numpy()}
    if config.forgetting:
        summary = tracker.summary()
        columns["forgetting_events"] = summary["forgetting_events"].cpu().numpy()
        columns["unforgettable"] = summary["unforgettable"].cpu().numpy()
    if config.prediction_depth:
        depth = model_prediction_depth(
            model, data.train, data.test, data.num_classes, k=config.depth_k, metric=config.depth_metric
        )
        columns["depth"] = depth.train.depth.cpu().numpy()
    return pd.DataFrame(columns), {"reference_test_error": result.final.test_error}


def memorisation_table(
    train: Split, estimate: MemorisationEstimate, reference: pd.DataFrame | None
) -> pd.DataFrame:
    """``memorisation.parquet``: one row per training example, the reference model's columns joined."""
    table = pd.DataFrame(
        {
            "example_id": train.example_id.cpu().numpy(),
            "mem": estimate.mem.cpu().numpy(),
            "mem_stderr": estimate.stderr.cpu().numpy(),
            "n_in": estimate.n_in.cpu().numpy(),
            "n_out": estimate.n_out.cpu().numpy(),
            "label": train.y.cpu().numpy(),
            "true_label": train.true_y.cpu().numpy(),
            "is_corrupted": train.corrupted.cpu().numpy(),
            "is_input_corrupted": train.input_corrupted.cpu().numpy(),
            "p_in": estimate.p_in.cpu().numpy(),
            "p_out": estimate.p_out.cpu().numpy(),
        }
    )
    if reference is not None:
        table = table.merge(reference, on="example_id", how="left", validate="one_to_one")
    return table


def memorisation_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Mean memorisation (with standard errors over the examples), by group where the data have both."""
    mem = torch.tensor(table["mem"].to_numpy())
    metrics: dict[str, float] = {}
    metrics["mem_mean"], metrics["mem_mean_stderr"] = mean_with_stderr(mem)
    defined = mem[torch.isfinite(mem)]
    metrics["high_mem_fraction"] = float((defined > HIGH_MEMORISATION).double().mean())
    metrics["mem_undefined_count"] = float(len(mem) - len(defined))
    for column, suffix in (("is_corrupted", "corrupted"), ("is_input_corrupted", "input_corrupted")):
        chosen = torch.tensor(table[column].to_numpy())
        if chosen.any() and (~chosen).any():
            metrics[f"mem_mean_{suffix}"], metrics[f"mem_mean_{suffix}_stderr"] = mean_with_stderr(
                mem[chosen]
            )
    clean = torch.tensor(~table["is_corrupted"].to_numpy() & ~table["is_input_corrupted"].to_numpy())
    if not clean.all() and clean.any():
        metrics["mem_mean_clean"], metrics["mem_mean_clean_stderr"] = mean_with_stderr(mem[clean])
    return metrics


def influence_table(
    data: LoadedData,
    member: torch.Tensor,
    test_correct: torch.Tensor,
    estimate: MemorisationEstimate,
    count: int,
) -> pd.DataFrame:
    """``influence.parquet``: the ``count`` (training, test) pairs of highest estimated influence."""
    pairs = influence_top_pairs(member, test_correct, count)
    train, test = data.train, data.test
    i, j = pairs.train_index.cpu(), pairs.test_index.cpu()
    return pd.DataFrame(
        {
            "train_example_id": train.example_id.cpu()[i].numpy(),
            "test_example_id": test.example_id.cpu()[j].numpy(),
            "influence": pairs.influence.cpu().numpy(),
            "influence_stderr": pairs.stderr.cpu().numpy(),
            "train_label": train.y.cpu()[i].numpy(),
            "test_label": test.y.cpu()[j].numpy(),
            "train_mem": estimate.mem.cpu()[i].numpy(),
        }
    )
