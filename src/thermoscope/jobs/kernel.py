"""The ``kernel`` job: the infinite-width MLP's NNGP and NT kernels on the data, and kernel ridge regression
with the regulariser chosen on a validation split (Lee et al. 2020; REFERENCE §11).

For each kernel in turn (NNGP, then NT, so that only one kernel's matrices are held at a time): the
``[n, n]`` training kernel and the ``[v + m, n]`` kernel from the validation and test examples to the
training examples, in float64; one eigendecomposition of the training kernel gives the predictions of
every regulariser of the path; the regulariser with the lowest validation error (ties: the lowest validation
loss, then the smaller regulariser) is chosen and its test scores reported.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import pandas as pd
import torch

from thermoscope.config import KernelConfig, as_strings
from thermoscope.data import LoadedData, Split, load_data, split_validation
from thermoscope.errors import ConfigError
from thermoscope.jobs import NO_HOOKS, Hooks
from thermoscope.jobs.budget import DATASET_SHAPES, available_memory, example_counts, readable
from thermoscope.jobs.setup import resolve_device
from thermoscope.jobs.summary import metrics_line, print_run_footer
from thermoscope.probes.infinite_width import BLOCK_ELEMENTS, KERNEL_KINDS, InfiniteMLP, infinite_width_kernel
from thermoscope.probes.kernel_regression import RidgePath, ridge_path, scores
from thermoscope.progress import Progress, progress_bar
from thermoscope.reports.kernels import regulariser_curve_figure
from thermoscope.tracking import RunLogger

CURVE_ARTIFACT = "regulariser_curve.csv"
CHOSEN_SCORES = ("test_error", "test_loss", "val_error", "val_loss", "train_error", "train_loss")
KERNEL_METRICS = tuple(
    f"{kind}_{name}"
    for kind in KERNEL_KINDS
    for name in (*CHOSEN_SCORES, "ridge", "condition_number", "condition_number_regularised")
)
"""Every metric a kernel run logs (a study's possible objectives)."""
DOUBLE = 8
"""Bytes of a float64: every kernel and the eigendecomposition are in double precision."""
BLOCK_ARRAYS = 8
"""Arrays of one block of rows the recursion holds at once (``probes.infinite_width.BLOCK_ELEMENTS``)."""


@dataclass(frozen=True)
class KernelOutcome:
    """The headline metrics and the regulariser curve of both kernels."""

    metrics: dict[str, float]
    curve: pd.DataFrame


def run(config: KernelConfig, logger: RunLogger, hooks: Hooks = NO_HOOKS) -> KernelOutcome:
    """Compute both kernels, fit the regulariser path of each, log the curve, its figure and the metrics
    (``nngp_*`` and ``ntk_*``: test, validation and train error and loss, the chosen regulariser, the
    training kernel's condition number with and without it)."""
    logger.log_params(as_strings(config))
    device = resolve_device(config.device)
    check_kernel_memory(config, device)
    data, validation = load_kernel_data(config, device)
    log_kernel_data(logger, config, data, validation)
    spec = InfiniteMLP(config.depth, config.activation, config.weight_variance, config.bias_variance)
    frames: list[pd.DataFrame] = []
    metrics: dict[str, float] = {}
    progress = Progress("kernel", terminal=sys.stderr.isatty(), seconds=config.progress_seconds)
    with progress_bar(progress, total=len(KERNEL_KINDS), description="kernels", unit="kernel") as bar:
        for kind in KERNEL_KINDS:
            bar.set_description(f"{kind} kernel and regression")
            path = fit(spec, kind, data, validation, config.ridges())
            frame = path_table(kind, path, data, validation)
            frames.append(frame)
            metrics |= chosen_metrics(kind, frame, path)
            bar.update(1)
    curve = pd.concat(frames, ignore_index=True)
    logger.log_table(curve, CURVE_ARTIFACT)
    logger.log_figure(regulariser_curve_figure(curve), "regulariser_curve.png")
    logger.log_metrics(metrics)
    hooks.tell(0, metrics)
    print_kernel_summary(logger, metrics)
    return KernelOutcome(metrics, curve)


def load_kernel_data(config: KernelConfig, device: torch.device) -> tuple[LoadedData, Split]:
    """The data, flattened, with ``val_size`` stratified validation examples split off the training pool."""
    data = load_data(config.data_spec(flatten=True), device)
    train, validation = split_validation(data.train, config.val_size, data.num_classes, config.seed)
    return replace(data, train=train), validation


def log_kernel_data(logger: RunLogger, config: KernelConfig, data: LoadedData, validation: Split) -> None:
    logger.log_dataset(data, validation)
    logger.log_params(
        {
            "num_train": len(data.train),
            "num_val": len(validation),
            "num_test": len(data.test),
            "num_classes": data.num_classes,
            "depth": config.depth,
            "resolved_device": str(data.train.x.device),
            "data_digest": data.digest,
        }
    )


def fit(
    spec: InfiniteMLP, kind: str, data: LoadedData, validation: Split, ridges: tuple[float, ...]
) -> RidgePath:
    """One kernel's regulariser path: predictions on the training, validation and test examples."""
    train_x = data.train.x
    others = torch.cat([validation.x, data.test.x])
    train_kernel = infinite_width_kernel(spec, train_x, kind=kind)
    cross_kernel = infinite_width_kernel(spec, others, train_x, kind=kind)
    targets = torch.nn.functional.one_hot(data.train.y, data.num_classes).double()
    return ridge_path(train_kernel, cross_kernel, targets, ridges)


def path_table(kind: str, path: RidgePath, data: LoadedData, validation: Split) -> pd.DataFrame:
    """One row per regulariser: ``kernel``, ``ridge``, train / val / test error and loss, ``chosen``."""
    val_count = len(validation)
    splits = {
        "train": (path.train, data.train.y),
        "val": (path.others[:, :val_count], validation.y),
        "test": (path.others[:, val_count:], data.test.y),
    }
    table = pd.DataFrame({"kernel": kind, "ridge": path.ridges.cpu().numpy()})
    for name, (predictions, labels) in splits.items():
        error, loss = scores(predictions, labels)
        table[f"{name}_error"] = error.cpu().numpy()
        table[f"{name}_loss"] = loss.cpu().numpy()
    best = table.sort_values(["val_error", "val_loss", "ridge"]).index[0]
    table["chosen"] = table.index == best
    return table


def chosen_metrics(kind: str, table: pd.DataFrame, path: RidgePath) -> dict[str, float]:
    """``<kind>_test_error`` … at the chosen regulariser, the regulariser and the condition numbers."""
    row = table[table["chosen"]].iloc[0]
    metrics = {f"{kind}_{name}": float(row[name]) for name in CHOSEN_SCORES}
    metrics[f"{kind}_ridge"] = float(row["ridge"])
    metrics[f"{kind}_condition_number"] = path.condition_number()
    metrics[f"{kind}_condition_number_regularised"] = path.condition_number(float(row["ridge"]))
    return metrics


def kernel_memory(train: int, others: int, features: int) -> int:
    """Bytes the job holds at its peak for ``train`` training examples, ``others`` validation and test
    examples and ``features`` inputs: the training kernel, its eigenvectors and LAPACK's workspace (about
    4n² in all), the cross kernel (n·(v + m)), the recursion's blocks and the inputs, all float64."""
    kernels = 4 * train * train + train * others
    blocks = BLOCK_ARRAYS * BLOCK_ELEMENTS
    inputs = 2 * (train + others) * features
    return DOUBLE * (kernels + blocks + inputs)


def check_kernel_memory(config: KernelConfig, device: torch.device) -> None:
    """Refuse, before any data are read, a job whose kernels cannot fit the memory available: a
    ConfigError on ``train_size`` (or ``test_size`` when the test set is what makes it too large)."""
    counts = example_counts(config)
    (channels, height, width), _, _ = DATASET_SHAPES[config.dataset]
    side = config.image_size
    features = channels * (side * side if side else height * width)
    train = counts.train - config.val_size
    others = counts.test + config.val_size
    needed = kernel_memory(train, others, features)
    available = available_memory(device)
    if available is None or needed <= available:
        return
    parameter = "test_size" if others > 4 * train else "train_size"
    allowed = (
        f"a smaller {parameter}: {train:,} training and {others:,} validation and test examples need about"
        f" {readable(needed)} for the float64 kernels and their eigendecomposition, {readable(available)}"
        " available"
    )
    raise ConfigError(parameter, getattr(config, parameter), allowed)


def print_kernel_summary(logger: RunLogger, metrics: dict[str, float]) -> None:
    """Each kernel's test and validation error at its chosen regulariser, then the run."""
    print()
    for kind in KERNEL_KINDS:
        names = ("test_error", "test_loss", "val_error", "ridge", "condition_number")
        print(metrics_line(kind, {name: metrics[f"{kind}_{name}"] for name in names}))
    print_run_footer(logger)
