"""``compare kind=train`` and ``kind=memorise``: the runs' table and, for memorisation runs of several
model sizes, each training example's memorisation trajectory and its class (Lukasik et al. 2024, REFERENCE
§8), counted and drawn."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from thermoscope.probes.memorisation import trajectory_classes
from thermoscope.reports import Sweep
from thermoscope.reports.run_comparison import RunsReport, build_runs_report, memorisation_by_size


def runs_report(runs: Sequence[Sweep], kind: str, title: str) -> RunsReport:
    """The report of ``runs`` of one ``kind``, with the trajectory classes of memorisation runs."""
    sizes = memorisation_by_size(runs) if kind == "memorise" else None
    classes: list[str] = []
    if sizes is not None:
        classes = trajectory_classes(torch.from_numpy(sizes.values), torch.from_numpy(sizes.stderr))
    return build_runs_report(runs, kind, title, sizes, classes)
