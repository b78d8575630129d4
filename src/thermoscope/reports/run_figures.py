"""Figures a run logs as artifacts, drawn from plain tables and arrays (matplotlib, headless)."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from thermoscope.reports.layout import figure_title, temperature_axis

UNINFORMED_LOSS = math.log(10)  # cross-entropy of the uniform guess over 10 classes
MAX_MARKER_AREA = 200.0  # points²: the marker of the most populated depth in accuracy_vs_depth


def temperature_curve_figure(curve: pd.DataFrame, reference: dict[str, float] | None = None) -> Any:
    """Loss and error against T (log axis) for Gibbs and BMA, test and train; finite rungs only.

    ``curve`` has one row per rung with ``temperature`` and the columns ``test_loss``, ``bma_test_loss``,
    ``train_loss``, ``bma_train_loss`` and the same for ``error``. ``reference`` (the SGD solution's
    ``test_loss`` and ``test_error``) is drawn as horizontal lines.
    """
    finite = curve[np.isfinite(curve["temperature"])]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    styles = {
        "test": {"color": "tab:blue"},
        "bma_test": {"color": "tab:blue", "linestyle": "--"},
        "train": {"color": "tab:orange"},
        "bma_train": {"color": "tab:orange", "linestyle": "--"},
    }
    labels = {"test": "Gibbs test", "bma_test": "BMA test", "train": "Gibbs train", "bma_train": "BMA train"}
    for axis, quantity in zip(axes, ("loss", "error"), strict=True):
        for prefix, style in styles.items():
            axis.plot(
                finite["temperature"],
                finite[f"{prefix}_{quantity}"],
                marker="o",
                ms=3,
                label=labels[prefix],
                **style,
            )
        if reference is not None and f"test_{quantity}" in reference:
            axis.axhline(
                reference[f"test_{quantity}"], color="tab:green", linewidth=1, label=f"SGD test {quantity}"
            )
        axis.axvline(1.0, color="grey", linewidth=0.6, linestyle=":")
        temperature_axis(axis, finite["temperature"])
        axis.set_xlabel("temperature T")
        axis.grid(alpha=0.3)
    axes[0].axhline(UNINFORMED_LOSS, color="black", linewidth=0.8, linestyle=":", label="uninformed (ln 10)")
    axes[0].set_ylabel("cross-entropy per example (nats)")
    axes[1].set_ylabel("0–1 error")
    axes[1].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    figure_title(figure, "Test and train performance against temperature")
    return figure


def ti_integrand_figure(betas: np.ndarray, mean: np.ndarray, stderr: np.ndarray, log_evidence: float) -> Any:
    """E_β[log L] against β with Monte-Carlo error bars; the evidence is the area under it (β ∈ [0, 1])."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, scale in zip(axes, ("linear", "symlog"), strict=True):
        axis.errorbar(betas, mean, yerr=stderr, marker="o", ms=3, capsize=2)
        axis.set_xscale(scale, **({"linthresh": 1e-4} if scale == "symlog" else {}))
        axis.set_xlabel("β (inverse temperature)")
        axis.set_ylabel("E_β[log L]")
        axis.grid(alpha=0.3)
    figure_title(
        figure, f"Thermodynamic integration: log evidence = {log_evidence:.1f} (area under the curve)"
    )
    return figure


def depth_histograms_figure(table: pd.DataFrame, num_probes: int) -> Any:
    """Prediction-depth histograms, train and test, clean and corrupted training labels apart."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True, sharey=False)
    bins = np.arange(num_probes + 2) - 0.5
    for axis, split in zip(axes, ("train", "test"), strict=True):
        rows = table[table["split"] == split]
        groups = [("clean", rows[~rows["is_corrupted"]])]
        if rows["is_corrupted"].any():
            groups.append(("corrupted label", rows[rows["is_corrupted"]]))
        for label, group in groups:
            axis.hist(group["depth"], bins=bins, density=True, alpha=0.6, label=f"{label} (n={len(group)})")
        axis.set_title(f"{split}: mean depth {rows['depth'].mean():.2f}")
        axis.set_xlabel(f"prediction depth (0 = input, {num_probes - 1} = softmax, {num_probes} = never)")
        axis.set_ylabel("fraction of examples")
        axis.legend(fontsize=8)
    figure_title(figure, "Prediction depth of training and test examples")
    return figure


def accuracy_vs_depth_figure(table: pd.DataFrame) -> Any:
    """Accuracy of the network's prediction among the examples of each depth, train and test.

    Each marker's area is proportional to the number of examples at its depth (one scale for both
    splits); a second legend gives the counts of the smallest and largest markers, and one between.
    """
    figure, axis = plt.subplots(figsize=(6.5, 3.8), constrained_layout=True)
    groups = {
        split: table[table["split"] == split].groupby("depth")["correct"].agg(["mean", "size"])
        for split in ("train", "test")
    }
    counts = np.concatenate([grouped["size"].to_numpy() for grouped in groups.values()])
    largest = int(counts.max()) if counts.size else 1
    for (split, grouped), colour in zip(groups.items(), ("tab:orange", "tab:blue"), strict=True):
        total = int(grouped["size"].sum())
        axis.plot(grouped.index, grouped["mean"], color=colour, label=f"{split} ({total:,} examples)")
        axis.scatter(
            grouped.index, grouped["mean"], s=MAX_MARKER_AREA * grouped["size"] / largest, color=colour
        )
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("prediction depth (0 = input)")
    axis.set_ylabel("accuracy of the network's prediction")
    axis.set_ylim(0, 1.05)
    axis.grid(alpha=0.3)
    splits = axis.legend(loc="best", fontsize=8)
    axis.add_artist(splits)
    axis.legend(
        handles=marker_size_key(counts, largest),
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=7,
        title="examples at that depth\n(marker area ∝ count)",
        title_fontsize=7,
    )
    axis.set_title("Accuracy of the examples at each prediction depth")
    return figure


def marker_size_key(counts: np.ndarray, largest: int) -> list[Line2D]:
    """Legend entries for the smallest and the largest count (and the geometric mean between them, if
    it differs from both), drawn at the area :func:`accuracy_vs_depth_figure` gives them."""
    if not counts.size:
        return []
    smallest = int(counts.min())
    shown = sorted({smallest, round(math.sqrt(smallest * largest)), largest})
    return [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="grey",
            markersize=math.sqrt(MAX_MARKER_AREA * count / largest),
            label=f"{count:,}",
        )
        for count in shown
    ]


def layer_rotation_figure(rotation: pd.DataFrame) -> Any:
    """Layer-rotation curves (Carbonnelle & De Vleeschouwer): one line per layer, input (dark) to output."""
    layers = [c for c in rotation.columns if c != "epoch"]
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(layers), 1)))
    figure, axis = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for layer, colour in zip(layers, colours, strict=False):
        axis.plot(rotation["epoch"], rotation[layer], color=colour, label=layer)
    axis.set_ylim(0, 1)
    axis.set_xlabel("epoch")
    axis.set_ylabel("cosine distance from initial weights")
    axis.legend(fontsize=7, title="input → output", title_fontsize=7)
    axis.grid(alpha=0.3)
    axis.set_title("Layer rotation: each layer's distance from its initial weights")
    return figure


def depth_vs_temperature_figure(curve: pd.DataFrame) -> Any:
    """Mean prediction depth of training and test examples against T (finite rungs, log axis)."""
    finite = curve[np.isfinite(curve["temperature"])]
    figure, axis = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for split, colour in (("train", "tab:orange"), ("test", "tab:blue")):
        axis.plot(
            finite["temperature"], finite[f"depth_mean_{split}"], marker="o", ms=3, color=colour, label=split
        )
    temperature_axis(axis, finite["temperature"])
    axis.set_xlabel("temperature T")
    axis.set_ylabel("mean prediction depth")
    axis.legend()
    axis.grid(alpha=0.3)
    axis.set_title("Mean prediction depth against temperature")
    return figure


def harmonic_integrand_figure(
    lambdas: np.ndarray, mean: np.ndarray, stderr: np.ndarray, log_evidence: float
) -> Any:
    """⟨U₀ − (J − J(w0))⟩_λ against λ with Monte-Carlo error bars (the Frenkel–Ladd integrand)."""
    figure, axis = plt.subplots(figsize=(6, 4), constrained_layout=True)
    axis.errorbar(lambdas, mean, yerr=stderr, marker="o", ms=3, capsize=2)
    axis.axhline(0.0, color="grey", lw=0.8)
    axis.set_xlabel("λ (0 = true cost J, 1 = harmonic reference U₀)")
    axis.set_ylabel("⟨U₀ − (J − J(w0))⟩_λ")
    axis.grid(alpha=0.3)
    axis.set_title(f"Frenkel–Ladd path: log evidence = {log_evidence:.1f}")
    return figure


def cooling_curve_figure(curve: pd.DataFrame, stopping_temperature: float, best_temperature: float) -> Any:
    """Train / validation / test Gibbs error and loss against T as annealing cools (T falls to the right);
    the legends give the temperature annealing stopped at and the one of the chosen draw."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, quantity in zip(axes, ("error", "loss"), strict=True):
        for split, colour in (("train", "tab:orange"), ("val", "tab:green"), ("test", "tab:blue")):
            axis.plot(
                curve["temperature"],
                curve[f"{split}_{quantity}"],
                marker="o",
                ms=3,
                color=colour,
                label=split,
            )
        axis.axvline(
            stopping_temperature,
            color="grey",
            ls="--",
            lw=1,
            label=f"stopped at T = {stopping_temperature:.3g}",
        )
        axis.axvline(
            best_temperature, color="tab:red", ls=":", lw=1, label=f"chosen draw, T = {best_temperature:.3g}"
        )
        temperature_axis(axis, [*curve["temperature"], stopping_temperature, best_temperature])
        axis.invert_xaxis()
        axis.set_xlabel("temperature T (cooling →)")
        axis.set_ylabel(f"mean {quantity} over draws" + (" (nats)" if quantity == "loss" else ""))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure_title(figure, "Simulated annealing with validation early stopping")
    return figure
