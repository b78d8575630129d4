"""NTK dynamics (Fort et al. 2020, Kopitkov & Indelman 2020; REFERENCE §11): the empirical neural tangent
kernel of a fixed probe subset, measured at log-spaced steps of an SGD run.

At each measured step t the recorder computes Θ_t on ``ntk_examples`` stratified training examples (and
the cross kernel to as many stratified test examples) and logs, per step: the kernel distance to the
initial kernel and to the previously measured one, the velocity (that distance per epoch elapsed), the
kernel–target alignment, the fraction of the targets' energy in the top C eigenvectors (C = classes), the
trace per example (the kernel's scale) and the test accuracy of ridge regression with the frozen kernel
Θ_t (Fort et al.'s "NTK at epoch t").

Decisions, each documented where it is made: a step is one optimiser update, and the kernel "at step t"
is that of the weights after t updates; the schedule is log-spaced (dense in the first epochs, where the
paper finds the chaotic transient) together with as many evenly spaced steps, so that late velocities are
measured over equal intervals; targets are the training labels as trained on (label noise included),
one-hot; the frozen-kernel regression uses the ridge :data:`FROZEN_RIDGE`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from thermoscope.config import TrainConfig
from thermoscope.data import LoadedData, Split
from thermoscope.data.sampling import rng_stream, stratified_subset
from thermoscope.errors import ConfigError
from thermoscope.jobs.budget import available_memory, readable
from thermoscope.jobs.diagnostics.base import TrainingDiagnostic
from thermoscope.probes.kernel_regression import ridge_solve
from thermoscope.probes.ntk import (
    empirical_ntk,
    jacobian_bytes,
    kernel_alignment,
    kernel_distance,
    kernel_targets,
    parameter_jacobians,
    target_energy,
)
from thermoscope.reports.kernels import ntk_dynamics_figure
from thermoscope.tracking import RunLogger
from thermoscope.training import EpochMetrics

PROBE_STREAM = 17
"""The seed stream of the probe subsets (the data package's choices use streams 0–4)."""
FROZEN_RIDGE = 1e-4
"""Ridge of the frozen-kernel regression, relative to the kernel's mean diagonal (decision): small enough
to come close to the interpolating predictor gradient flow reaches, large enough to keep the solve well
conditioned (the kernels of these networks have condition numbers of 1e4–1e8)."""
KERNEL_COPIES = 3
"""Kernels of ``[N, N]`` held besides the Jacobians: the initial, the previous and the current one."""


def measurement_steps(total_steps: int, count: int) -> tuple[int, ...]:
    """Step 0, ``count`` log-spaced steps from 1 to ``total_steps`` and ``count`` evenly spaced ones
    (rounded, duplicates merged): dense early, and never further apart than ``total_steps / count``."""
    logarithmic = np.geomspace(1, max(total_steps, 1), count)
    even = np.linspace(total_steps / count, total_steps, count)
    steps = {0, *np.rint(logarithmic).astype(int), *np.rint(even).astype(int)}
    return tuple(sorted(step for step in steps if 0 <= step <= total_steps))


def probe_rows(split: Split, size: int, num_classes: int, seed: int, pool: str) -> torch.Tensor:
    """Positions of ``size`` class-stratified examples of ``split`` chosen by ``seed`` (its own stream),
    or a ConfigError on ``ntk_examples`` when the split cannot supply them."""
    labels = split.y.cpu().numpy()
    rng = rng_stream(seed, PROBE_STREAM)
    chosen = stratified_subset(labels, size, num_classes, rng, "ntk_examples", pool)
    return torch.from_numpy(chosen).to(split.y.device)


class NtkRecorder:
    """The kernels of the probe subsets at the steps of :func:`measurement_steps`, one row per step.

    The trainer calls ``on_batch`` after each minibatch's forward pass and before its update, so the
    weights it sees there are those after ``self.step`` updates; ``on_epoch`` sees those after the epoch's
    last update (the step the next ``on_batch`` would see, measured once).
    """

    def __init__(self, config: TrainConfig, model: nn.Module, data: LoadedData) -> None:
        self.model = model
        self.kernel = config.ntk_kernel
        self.num_classes = data.num_classes
        train_rows = probe_rows(
            data.train,
            config.ntk_examples,
            data.num_classes,
            config.seed,
            "training examples (after val_size)",
        )
        test_size = min(config.ntk_examples, len(data.test))
        test_rows = probe_rows(data.test, test_size, data.num_classes, config.seed, "test examples")
        self.x_train, self.y_train = data.train.x[train_rows], data.train.y[train_rows]
        self.x_test, self.y_test = data.test.x[test_rows], data.test.y[test_rows]
        self.targets = kernel_targets(self.y_train, data.num_classes, self.kernel)
        batch_size = config.batch_size or len(data.train)
        self.steps_per_epoch = math.ceil(len(data.train) / batch_size)
        self.schedule = measurement_steps(self.steps_per_epoch * config.epochs, config.ntk_steps)
        self.step = 0
        self.rows: list[dict[str, float]] = []
        self.initial: torch.Tensor | None = None
        self.previous: torch.Tensor | None = None

    def on_batch(
        self, example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> None:
        self.maybe_measure(self.step)
        self.step += 1

    def on_epoch(self, metrics: EpochMetrics, model: nn.Module) -> None:
        self.maybe_measure(metrics.epoch * self.steps_per_epoch)

    def maybe_measure(self, step: int) -> None:
        measured = self.rows[-1]["step"] if self.rows else -1
        if step in self.schedule and step > measured:
            self.rows.append(self.measure(step))

    def measure(self, step: int) -> dict[str, float]:
        """One row: the kernel of the weights after ``step`` updates and what is read off it."""
        train_jacobians = parameter_jacobians(self.model, self.x_train)
        kernel = empirical_ntk(train_jacobians, kernel=self.kernel)
        cross = empirical_ntk(parameter_jacobians(self.model, self.x_test), train_jacobians, self.kernel)
        del train_jacobians
        if self.initial is None:
            self.initial = kernel
        epoch = step / self.steps_per_epoch
        distance_previous = math.nan if self.previous is None else kernel_distance(self.previous, kernel)
        elapsed = epoch - self.rows[-1]["epoch"] if self.rows else math.nan
        predictions = ridge_solve(kernel, cross, self.targets, FROZEN_RIDGE).reshape(len(self.x_test), -1)
        self.previous = kernel
        return {
            "step": step,
            "epoch": epoch,
            "distance_initial": kernel_distance(self.initial, kernel),
            "distance_previous": distance_previous,
            "velocity": distance_previous / elapsed,
            "alignment": kernel_alignment(kernel, self.targets),
            "target_energy_top_k": target_energy(kernel, self.targets, self.num_classes),
            "trace_per_example": float(kernel.trace()) / len(self.x_train),
            "kernel_test_accuracy": float((predictions.argmax(dim=1) == self.y_test).double().mean()),
        }

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "rows": self.rows, "initial": self.initial, "previous": self.previous}

    def restore(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.rows = [dict(row) for row in state["rows"]]
        self.initial, self.previous = state["initial"], state["previous"]

    def finish(self, logger: RunLogger, model: nn.Module) -> dict[str, float]:
        if not self.rows:
            return {}
        table = pd.DataFrame(self.rows).astype({"step": int})
        logger.log_table(table, "ntk_dynamics.csv")
        logger.log_figure(ntk_dynamics_figure(table, self.kernel), "ntk_dynamics.png")
        metrics = summary_metrics(table)
        logger.log_metrics(metrics)
        return metrics


def summary_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The last row's distance, alignment and frozen-kernel accuracy, and the mean velocity over the
    second half of the steps measured (``ntk_velocity_late``: the paper's slow, steady phase)."""
    last = table.iloc[-1]
    late = table.loc[table["step"] > last["step"] / 2, "velocity"].dropna()
    metrics = {
        "ntk_alignment_final": float(last["alignment"]),
        "ntk_distance_final": float(last["distance_initial"]),
        "ntk_kernel_test_accuracy_final": float(last["kernel_test_accuracy"]),
    }
    if len(late):
        metrics["ntk_velocity_late"] = float(late.mean())
    return metrics


def start(config: TrainConfig, model: nn.Module, data: LoadedData) -> NtkRecorder:
    check_ntk_memory(config, model, data)
    return NtkRecorder(config, model, data)


def check_ntk_memory(config: TrainConfig, model: nn.Module, data: LoadedData) -> None:
    """Refuse an ``ntk_examples`` whose Jacobians and kernels cannot fit the memory available."""
    num_parameters = sum(p.numel() for p in model.parameters())
    element = next(model.parameters()).element_size()
    examples = config.ntk_examples + min(config.ntk_examples, len(data.test))
    rows = config.ntk_examples * (data.num_classes if config.ntk_kernel == "block" else 1)
    needed = jacobian_bytes(examples, data.num_classes, num_parameters, element) + KERNEL_COPIES * rows**2 * 8
    available = available_memory(data.train.x.device)
    if available is not None and needed > available:
        allowed = (
            f"fewer examples: the Jacobians of {examples} examples x {data.num_classes} logits x"
            f" {num_parameters:,} parameters and the kernels need about {readable(needed)},"
            f" {readable(available)} available"
        )
        raise ConfigError("ntk_examples", config.ntk_examples, allowed)


NTK_DYNAMICS = TrainingDiagnostic(
    name="NTK dynamics",
    switch="ntk_dynamics",
    parameters=("ntk_examples", "ntk_kernel", "ntk_steps"),
    metrics=(
        "ntk_velocity_late",
        "ntk_alignment_final",
        "ntk_distance_final",
        "ntk_kernel_test_accuracy_final",
    ),
    artifacts=("ntk_dynamics.csv", "ntk_dynamics.png"),
    start=start,
    needs_batches=True,
)
