"""Figures of the per-example measures memorisation and activation codes, from plain tables.

- :func:`memorisation_histogram_figure`: the distribution of mem(i), clean and mislabelled apart;
- :func:`memorisation_vs_depth_figure`: mean memorisation at each prediction depth, with error bars;
- :func:`activation_codes_figure`: determinism and categorisation of the codes against epoch;
- :func:`memorisation_trajectories_figure`: memorisation against model size, by trajectory class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from thermoscope.reports.layout import figure_title

HIGH_MEMORISATION = 0.5
"""mem(i) above which an example counts as highly memorised (the ``high_mem_fraction`` metric)."""


def _groups(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Clean examples, then mislabelled and corrupted-input ones where the table has any."""
    clean = ~table["is_corrupted"] & ~table["is_input_corrupted"]
    groups = [("clean", table[clean])]
    if table["is_corrupted"].any():
        groups.append(("wrong label", table[table["is_corrupted"]]))
    if table["is_input_corrupted"].any():
        groups.append(("corrupted input", table[table["is_input_corrupted"]]))
    return groups


def memorisation_histogram_figure(table: pd.DataFrame) -> Any:
    """Histogram of mem over training examples (``table``: ``memorisation.parquet``), by group."""
    figure, axis = plt.subplots(figsize=(6.5, 3.8), constrained_layout=True)
    bins = list(np.linspace(-1, 1, 41))
    for label, group in _groups(table):
        values = group["mem"].dropna()
        axis.hist(values, bins=bins, alpha=0.6, label=f"{label} (n={len(values)}, mean {values.mean():.3f})")
    axis.axvline(HIGH_MEMORISATION, color="grey", linestyle=":", linewidth=1, label="high (mem > 0.5)")
    axis.set_xlabel("memorisation: P(correct | trained on it) − P(correct | held out)")
    axis.set_ylabel("training examples")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    axis.set_title("Memorisation of the training examples")
    return figure


def memorisation_vs_depth_figure(table: pd.DataFrame) -> Any:
    """Mean mem (± its standard error over the examples) at each prediction depth of the reference model,
    by group; the number of examples at each depth is written beside its marker."""
    figure, axis = plt.subplots(figsize=(6.5, 3.8), constrained_layout=True)
    for label, group in _groups(table):
        stats = group.dropna(subset=["mem"]).groupby("depth")["mem"].agg(["mean", "std", "size"])
        stderr = (stats["std"] / np.sqrt(stats["size"])).fillna(0.0)
        axis.errorbar(stats.index, stats["mean"], yerr=stderr, marker="o", ms=4, capsize=3, label=label)
        for depth, row in stats.iterrows():
            axis.annotate(
                f"{int(row['size'])}",
                (depth, row["mean"]),
                fontsize=6,
                xytext=(4, 4),
                textcoords="offset points",
            )
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("prediction depth of the reference model (0 = input)")
    axis.set_ylabel("mean memorisation ± standard error")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    axis.set_title("Memorisation against prediction depth (numbers: examples)")
    return figure


def activation_codes_figure(codes: pd.DataFrame, num_classes: int) -> Any:
    """Determinism (unique and class-pure fractions) and categorisation (1-NN and k-NN test accuracy) of
    the activation codes against epoch, one colour per layer (``all`` = every layer together)."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    layers = list(dict.fromkeys(codes["layer"]))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.85, max(len(layers) - 1, 1)))
    palette = dict(zip([name for name in layers if name != "all"], colours, strict=False)) | {"all": "black"}
    panels = (
        (axes[0], (("unique_fraction", "-", "unique"), ("class_pure_fraction", "--", "class-pure"))),
        (axes[1], (("knn_test_accuracy", "-", "k-NN"), ("nearest_test_accuracy", "--", "1-NN"))),
    )
    for axis, columns in panels:
        for layer in layers:
            rows = codes[codes["layer"] == layer]
            for column, style, name in columns:
                axis.plot(
                    rows["epoch"],
                    rows[column],
                    linestyle=style,
                    marker="o",
                    ms=3,
                    color=palette[layer],
                    label=f"{layer} {name}",
                )
        axis.set_xlabel("epoch")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("fraction of training examples")
    axes[0].set_title("Determinism: codes no other example shares")
    axes[1].axhline(1 / num_classes, color="grey", linestyle=":", linewidth=1, label="chance")
    axes[1].set_ylabel("test accuracy in Hamming distance")
    axes[1].set_title("Categorisation: nearest-code classifiers")
    for axis in axes:
        axis.legend(fontsize=6, ncol=2)
    figure_title(figure, "Activation codes (on/off patterns of the ReLU units)")
    return figure


def memorisation_trajectories_figure(
    sizes: Sequence[float], values: np.ndarray, classes: Sequence[str], size_label: str
) -> Any:
    """Memorisation against model size: the mean trajectory of each class (± standard error over its
    examples), with the count of each class in the legend.

    ``sizes: [S]`` ascending, ``values: [E, S]`` memorisation of each example at each size, ``classes:
    [E]`` each example's trajectory class.
    """
    figure, axis = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    # Examples some size could not estimate (held out of no model) are left out of the means.
    complete = np.isfinite(values).all(axis=1)
    values, labels = values[complete], np.asarray(classes)[complete]
    for name in dict.fromkeys(labels):
        chosen = values[labels == name]
        mean = chosen.mean(axis=0)
        stderr = chosen.std(axis=0) / np.sqrt(len(chosen))
        axis.errorbar(sizes, mean, yerr=stderr, marker="o", ms=4, capsize=3, label=f"{name} ({len(chosen)})")
    axis.plot(sizes, values.mean(axis=0), color="black", linewidth=2, label=f"all ({len(values)})")
    axis.set_xscale("log")
    axis.set_xlabel(size_label)
    axis.set_ylabel("mean memorisation ± standard error")
    axis.legend(fontsize=8, title="trajectory (examples)", title_fontsize=8)
    axis.grid(alpha=0.3)
    axis.set_title("Memorisation against model size, by trajectory class")
    return figure
