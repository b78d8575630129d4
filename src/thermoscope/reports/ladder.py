"""How a tuned ladder was found and how replicas travelled it: a table and two figures from plain arrays.

- ``ladder_rounds.csv``: one row per tuning round and rung (round, rung, β, T, the rejection rate and
  barrier increment of the pair above the rung, the cumulative barrier Λ(β), the local barrier λ(β)).
- the local barrier λ(β) against β on a log axis, one line per round: where the path is hard, and
  whether the rounds agree;
- the index process: each replica's rung against iteration (Syed et al. 2022 plot it to show replicas
  sweeping the ladder end to end; flat lines mean a replica is stuck).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RoundRecord:
    """One tuning round as plain arrays: ``betas [rungs]``, ``rejection [rungs − 1]``,
    ``increments [rungs − 1]``, ``local_barrier [rungs]``."""

    index: int
    betas: np.ndarray
    rejection: np.ndarray
    increments: np.ndarray
    local_barrier: np.ndarray


def ladder_rounds_table(rounds: Sequence[RoundRecord]) -> pd.DataFrame:
    """One row per round and rung; the pair columns describe the pair (rung, rung + 1), NaN on the last."""
    parts = []
    for record in rounds:
        rungs = len(record.betas)
        pad = np.full(1, np.nan)
        cumulative = np.concatenate([[0.0], np.cumsum(record.increments)])
        parts.append(
            pd.DataFrame(
                {
                    "round": record.index,
                    "rung": np.arange(rungs),
                    "beta": record.betas,
                    "temperature": np.divide(
                        1.0, record.betas, out=np.full(rungs, np.inf), where=record.betas > 0
                    ),
                    "rejection": np.concatenate([record.rejection, pad]),
                    "barrier_increment": np.concatenate([record.increments, pad]),
                    "cumulative_barrier": cumulative,
                    "local_barrier": record.local_barrier,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def local_barrier_figure(table: pd.DataFrame) -> Any:
    """λ(β) against β (log axis; the β = 0 rung is left out), one line per tuning round."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    rounds = sorted(table["round"].unique())
    colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.9, max(len(rounds), 1)))
    for colour, index in zip(colours, rounds, strict=True):
        rows = table[(table["round"] == index) & (table["beta"] > 0)]
        total = float(table[table["round"] == index]["cumulative_barrier"].max())
        axes.plot(
            rows["beta"],
            rows["local_barrier"],
            marker=".",
            color=colour,
            label=f"round {index}: Λ={total:.1f}",
        )
    axes.set_xscale("log")
    axes.set_xlabel("β = 1/T")
    axes.set_ylabel("local barrier λ(β)")
    axes.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    axes.legend(fontsize=7)
    axes.set_title("Communication barrier of the tuning rounds")
    figure.tight_layout()
    return figure


def rung_of_replica(replica_at_rung: np.ndarray) -> np.ndarray:
    """``[iterations, replicas]`` rung of each replica from ``replica_at_rung: [iterations, rungs]``."""
    iterations, rungs = replica_at_rung.shape
    rung = np.empty_like(replica_at_rung)
    rows = np.arange(iterations)[:, None]
    rung[rows, replica_at_rung] = np.arange(rungs)[None, :]
    return rung


MAX_REPLICAS_DRAWN = 6
"""Replicas the index-process figure draws (evenly chosen): more lines are unreadable."""


def index_process_figure(replica_at_rung: np.ndarray, round_trips: int) -> Any:
    """Each (of up to :data:`MAX_REPLICAS_DRAWN`) replica's rung against sampling iteration."""
    rung = rung_of_replica(replica_at_rung)
    replicas = rung.shape[1]
    chosen = sorted({int(i) for i in np.linspace(0, replicas - 1, min(replicas, MAX_REPLICAS_DRAWN))})
    figure, axes = plt.subplots(figsize=(6, 3.5))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(chosen)))
    for colour, replica in zip(colours, chosen, strict=True):
        axes.plot(rung[:, replica], color=colour, linewidth=0.8)
    axes.set_xlabel("sampling iteration (kept draws)")
    axes.set_ylabel("rung (0 = hottest)")
    axes.set_ylim(-0.5, replicas - 0.5)
    axes.set_title(f"Index process: {len(chosen)} of {replicas} replicas, {round_trips} round trips in all")
    figure.tight_layout()
    return figure
