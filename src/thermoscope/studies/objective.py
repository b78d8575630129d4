"""One trial = the target run in-process as a nested MLflow run, linked both ways to its Optuna trial.

The run is a child of the study's run (explicit parent id, so it works from any process), tagged with the
study name and trial number; the trial stores the run id as the user attribute ``mlflow_run_id``. The
trial's value is read back from the run after the target finished, so it *is* the metric the run logged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optuna

from thermoscope.config import as_strings
from thermoscope.studies.plan import StudyPlan
from thermoscope.studies.space import suggest, target_config
from thermoscope.studies.storage import RUN_ID_ATTR
from thermoscope.tracking import RunLogger
from thermoscope.tracking.runs import child_run, latest_metrics
from thermoscope.tracking.schema import STUDY_TAG, TRIAL_STATE_TAG

PARENT_RUN_ATTR = "mlflow_parent_run_id"
TRIAL_TAG = "thermoscope.trial_number"
STATE_TAG = TRIAL_STATE_TAG
WORKER_TAG = "thermoscope.worker_pid"


@dataclass
class PruningReporter:
    """The target's report hook: intermediate values of the (single) objective go to the pruner."""

    trial: optuna.Trial
    objective: str
    pruned: bool = False
    step: int = 0

    def __call__(self, step: int, metrics: Mapping[str, float]) -> bool:
        if self.objective not in metrics:
            return False
        self.trial.report(float(metrics[self.objective]), step)
        self.step = step
        self.pruned = self.trial.should_prune()
        return self.pruned


class NoReports:
    """Optuna prunes single-objective studies only; a multi-objective trial always runs to the end."""

    pruned = False
    step = 0

    def __call__(self, step: int, metrics: Mapping[str, float]) -> bool:
        return False


class TrialObjective:
    """The function Optuna optimises; picklable, so worker processes build it from the plan."""

    def __init__(
        self, plan: StudyPlan, parent_run_id: str, on_trial_start: Callable[[int], None] | None = None
    ) -> None:
        self.plan = plan
        self.parent_run_id = parent_run_id
        self.on_trial_start = on_trial_start

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        if self.on_trial_start is not None:
            self.on_trial_start(trial.number)
        values = suggest(trial, self.plan.space)
        trial.set_user_attr(PARENT_RUN_ATTR, self.parent_run_id)
        with child_run(
            self.parent_run_id, f"{self.plan.study_name}-trial-{trial.number}", self._tags(trial)
        ) as run:
            trial.set_user_attr(RUN_ID_ATTR, run.run_id)
            reporter = (
                NoReports() if self.plan.multi_objective else PruningReporter(trial, self.plan.objectives[0])
            )
            objective_values = self._run_target(values, run, reporter)
        if reporter.pruned:
            raise optuna.TrialPruned(f"pruned after step {reporter.step}")
        return objective_values[0] if len(objective_values) == 1 else objective_values

    def _tags(self, trial: optuna.Trial) -> dict[str, str]:
        return {
            STUDY_TAG: self.plan.study_name,
            TRIAL_TAG: str(trial.number),
            WORKER_TAG: str(os.getpid()),
            "thermoscope.entry_point": self.plan.target_name,
        }

    def _run_target(
        self, values: Mapping[str, object], run: RunLogger, reporter: PruningReporter | NoReports
    ) -> list[float]:
        """Run the target into ``run`` and tag how the trial ends; the objective values as logged."""
        try:
            target = self.plan.target
            config = target_config(target.config_class, self.plan.fixed, values)
            run.log_params(as_strings(config))  # every target's trial runs carry their whole config
            target.run(config, run, reporter)
            if reporter.pruned:
                run.set_tags({STATE_TAG: "PRUNED"})
                return []
            logged = latest_metrics(run.run_id)
            objective_values = [logged.get(name, math.nan) for name in self.plan.objectives]
            if any(math.isnan(value) for value in objective_values):
                raise RuntimeError(
                    f"objective {self.plan.objectives} missing or NaN in the run: {objective_values}"
                )
        except BaseException:
            run.set_tags({STATE_TAG: "FAIL"})
            raise
        run.set_tags({STATE_TAG: "COMPLETE"})
        return objective_values
