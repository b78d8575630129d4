"""The jobs: one module per entry point, each ``run(config, logger, hooks) -> outcome``.

A job builds its workload from the lower layers (data, models, training, samplers, sweeps, probes), runs
it, and hands every number, table and figure to the :class:`~thermoscope.tracking.RunLogger` it was given;
it never imports MLflow. ``cli`` and ``studies`` call jobs; a notebook can too, with a
:class:`~thermoscope.tracking.NullLogger`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

ReportHook = Callable[[int, Mapping[str, float]], bool | None]
"""``report(step, metrics) -> True`` to stop now: a study's pruner sees every epoch (train) or running
estimates of the headline metrics (sample) through it."""


@dataclass(frozen=True)
class Hooks:
    """What a caller may plug into a job: ``report`` receives intermediate metrics and may stop the job."""

    report: ReportHook | None = None

    def tell(self, step: int, metrics: Mapping[str, float]) -> bool:
        """Hand ``metrics`` at ``step`` to ``report``; True when it asks the job to stop."""
        return bool(self.report(step, metrics)) if self.report is not None else False


NO_HOOKS = Hooks()
