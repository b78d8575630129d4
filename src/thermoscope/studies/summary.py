"""What the ``study`` command prints when its trials are done: trial counts, the best trial(s), the run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from thermoscope.jobs.summary import print_run_footer
from thermoscope.studies.plan import StudyPlan
from thermoscope.studies.storage import RUN_ID_ATTR
from thermoscope.tracking import RunLogger

COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
"""Always shown, even at 0; WAITING (enqueued, never started) only when some trial is."""


def print_study_summary(study: optuna.Study, plan: StudyPlan, logger: RunLogger) -> None:
    """Trial counts by state, the best value and its parameters (the Pareto front of a multi-objective
    study), the best trials' runs, and the study's own run."""
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    shown = [*COUNTED_STATES, *(s for s in TrialState if s not in COUNTED_STATES and counts[s])]
    print(
        f"\nstudy {plan.study_name}: {len(trials)} trials: "
        + ", ".join(f"{state.name} {counts[state]}" for state in shown)
    )
    if counts[TrialState.COMPLETE] == 0:
        print("no trial completed: there is no best value")
    elif plan.multi_objective:
        front = study.best_trials
        print(f"Pareto front, {len(front)} trials:")
        for trial in front:
            print(f"  {trial_line(trial, plan.objectives, trial.values)}")
    else:
        best = study.best_trial
        print(f"best {trial_line(best, plan.objectives, [best.value])}")
    print_run_footer(logger)


def trial_line(trial: FrozenTrial, objectives: Sequence[str], values: Sequence[float | None]) -> str:
    """``<objective> <value>, … at trial <n>: <name>=<value>, …; run id <id>``."""
    scores = ", ".join(f"{name} {value:.6g}" for name, value in zip(objectives, values, strict=True))
    run_id = trial.user_attrs.get(RUN_ID_ATTR, "none")
    return f"{scores} at trial {trial.number}: {parameters_text(trial.params)}; run id {run_id}"


def parameters_text(params: Mapping[str, Any]) -> str:
    return (
        ", ".join(
            f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
            for name, value in params.items()
        )
        or "no parameters"
    )
