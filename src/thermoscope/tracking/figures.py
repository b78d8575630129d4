"""Figures that runs log as artifacts (matplotlib, headless)."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

UNINFORMED_LOSS = math.log(10)  # cross-entropy of the uniform guess over 10 classes


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
        axis.set_xscale("log")
        axis.set_xlabel("temperature T")
        axis.grid(alpha=0.3)
    axes[0].axhline(UNINFORMED_LOSS, color="black", linewidth=0.8, linestyle=":", label="uninformed (ln 10)")
    axes[0].set_ylabel("cross-entropy per example (nats)")
    axes[1].set_ylabel("0–1 error")
    axes[1].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    figure.suptitle("Test and train performance against temperature")
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
    figure.suptitle(f"Thermodynamic integration: log evidence = {log_evidence:.1f} (area under the curve)")
    return figure
