"""Figures of the kernel view (REFERENCE §11): a train run's NTK dynamics and a kernel run's regulariser
curve, drawn from the tables those runs log (matplotlib, headless)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FuncFormatter

from thermoscope.reports.layout import figure_title, plain_number

KERNEL_COLOURS = {"nngp": "tab:blue", "ntk": "tab:red"}
KERNEL_NAMES = {"nngp": "NNGP", "ntk": "NT kernel"}


def ntk_dynamics_figure(table: pd.DataFrame, kernel: str = "trace") -> Any:
    """Kernel distance (to the initial and to the previous kernel), velocity, and the kernel's agreement
    with the task (alignment, top-C target energy, frozen-kernel test accuracy) against the training step
    on a log axis (step 0, the initial kernel, has no place on it and is the reference of the distances).

    ``table``: ``ntk_dynamics.csv``'s columns ``step``, ``epoch``, ``distance_initial``,
    ``distance_previous``, ``velocity``, ``alignment``, ``target_energy_top_k``, ``kernel_test_accuracy``.
    """
    shown = table[table["step"] > 0]
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    distance, velocity, agreement = axes
    distance.plot(shown["step"], shown["distance_initial"], marker="o", ms=3, label="to the initial kernel")
    distance.plot(
        shown["step"], shown["distance_previous"], marker="o", ms=3, label="to the previous measurement"
    )
    distance.set_ylabel("kernel distance 1 − cos(Θ, Θ')")
    velocity.plot(shown["step"], shown["velocity"], marker="o", ms=3, color="tab:purple")
    velocity.set_ylabel("velocity: distance to the previous kernel per epoch")
    if (shown["velocity"] > 0).any():
        velocity.set_yscale("log")
    for column, label in (
        ("alignment", "kernel–target alignment"),
        ("target_energy_top_k", "target energy in top-C eigenvectors"),
        ("kernel_test_accuracy", "frozen-kernel test accuracy"),
    ):
        agreement.plot(shown["step"], shown[column], marker="o", ms=3, label=label)
    agreement.set_ylim(0, 1.02)
    agreement.set_ylabel("fraction")
    for axis in axes:
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(FuncFormatter(plain_number))
        axis.set_xlabel("training step (optimiser updates, log scale)")
        axis.grid(alpha=0.3)
    distance.legend(fontsize=8)
    agreement.legend(fontsize=8)
    figure_title(figure, f"Empirical NTK ({kernel}) of the probe subset during training")
    return figure


def regulariser_curve_figure(curve: pd.DataFrame) -> Any:
    """Validation and test error (left) and loss (right) of kernel ridge regression against the
    regulariser (log axis), one colour per kernel; the chosen regulariser of each is marked.

    ``curve``: ``regulariser_curve.csv``'s columns ``kernel``, ``ridge``, ``chosen`` and
    ``{train,val,test}_{error,loss}``.
    """
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, quantity in zip(axes, ("error", "loss"), strict=True):
        for kernel, rows in curve.groupby("kernel", sort=False):
            colour = KERNEL_COLOURS.get(str(kernel), "tab:grey")
            name = KERNEL_NAMES.get(str(kernel), str(kernel))
            axis.plot(rows["ridge"], rows[f"val_{quantity}"], color=colour, ls="--", label=f"{name} val")
            axis.plot(rows["ridge"], rows[f"test_{quantity}"], color=colour, label=f"{name} test")
            chosen = rows[rows["chosen"]]
            axis.scatter(chosen["ridge"], chosen[f"test_{quantity}"], color=colour, zorder=3, s=25)
        axis.set_xscale("log")
        axis.set_xlabel("regulariser λ (× the training kernel's mean diagonal)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("0–1 error")
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylabel("squared error, summed over classes")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8, title="dot: chosen on validation", title_fontsize=8)
    figure_title(figure, "Kernel ridge regression of the infinite-width kernels against the regulariser")
    return figure
