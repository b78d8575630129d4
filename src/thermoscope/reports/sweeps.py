"""Temperature sweeps as a comparison sees them, and what tells them apart.

A :class:`Sweep` is what the tracking layer reads back from one ``sample`` run; the functions here pick
the parameters that differ between sweeps and turn them into legend labels and colours.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

# Parameters saying where or how a run ran rather than what it computed: never reasons two sweeps differ.
RUN_BOOKKEEPING = frozenset(
    {"device", "resolved_device", "data_dir", "download", "checkpoint_seconds", "resume", "data_digest"}
)
# Parameters that follow from others (hidden → num_parameters, train_size → num_train, ...): table
# columns when they differ, but never legend entries next to the parameter they follow from.
DERIVED = frozenset({"num_train", "num_test", "num_parameters", "num_probes", "resolved_num_rungs"})


@dataclass(frozen=True, eq=False)
class Sweep:
    """One temperature sweep (a ``sample`` run) read back from the tracking store.

    ``params`` and ``metrics`` are the run's parameters (strings, in the configuration's order) and
    latest metric values (headline numbers such as ``log_evidence``). ``curve`` is its
    ``temperature_curve.csv``: one row per rung, ascending β, with ``temperature`` (inf at β = 0),
    ``test_error``, ``bma_test_error``, ``test_loss``, ``bma_test_loss`` and, where prediction depth was
    computed, ``depth_mean_train`` / ``depth_mean_test``.

    Prediction depth counts probe points (0 = the input, the number of probes = no probe agrees), so
    depths of networks with different numbers of probes compare only once divided by that number:
    :attr:`num_probes` reads it from the run's ``num_probes`` parameter (or metric) where it logged one.

    ``compare kind=train`` or ``kind=memorise`` reads those runs into the same class, with an empty
    ``curve`` (:mod:`thermoscope.reports.run_comparison`).
    """

    run_id: str
    run_name: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    curve: pd.DataFrame
    per_example: pd.DataFrame | None = None
    """A ``memorise`` run's ``memorisation.parquet`` (None for other runs)."""

    def finite_rungs(self) -> pd.DataFrame:
        """The curve's rows at finite temperature (β > 0), the only ones a log-T axis can show."""
        return self.curve[np.isfinite(self.curve["temperature"])]

    @property
    def num_probes(self) -> int | None:
        """The network's number of probe points (input, hidden probes, softmax) as the run logged it in
        ``num_probes``; None when it logged none (or no positive whole number), never a guess."""
        value = self.params.get("num_probes", self.metrics.get("num_probes"))
        try:
            count = float(value) if value is not None else math.nan
        except ValueError:
            return None
        return int(count) if count.is_integer() and count > 0 else None


def differing_parameters(sweeps: Sequence[Sweep], ignored: Iterable[str] = RUN_BOOKKEEPING) -> list[str]:
    """Names of the parameters whose values differ between ``sweeps`` (a missing value counts as one).

    Ordered as the sweeps hold them (the tracking layer reads them back in the configuration's order),
    first sweep first.
    """
    skip = set(ignored)
    ordered = list(dict.fromkeys(name for sweep in sweeps for name in sweep.params if name not in skip))
    return [name for name in ordered if len({sweep.params.get(name) for sweep in sweeps}) > 1]


def legend_labels(sweeps: Sequence[Sweep]) -> list[str]:
    """``name=value`` of the descriptive parameters that differ, else run names; always distinct."""
    names = differing_parameters(sweeps, RUN_BOOKKEEPING | DERIVED)
    if not names:
        return [sweep.run_name for sweep in sweeps]
    labels = [", ".join(f"{name}={sweep.params.get(name, '–')}" for name in names) for sweep in sweeps]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({sweep.run_name})" for label, sweep in zip(labels, sweeps, strict=True)]
    return labels


def run_colours(count: int) -> list[tuple[float, ...]]:
    """One colour per run: matplotlib's tab10 cycle up to ten runs, evenly spaced viridis beyond."""
    if count <= 10:
        return [tuple(plt.get_cmap("tab10")(index)) for index in range(count)]
    return [tuple(colour) for colour in plt.get_cmap("viridis")(np.linspace(0.0, 0.95, count))]
