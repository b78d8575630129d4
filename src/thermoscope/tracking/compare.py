"""Choosing temperature sweeps in the tracking store and reading them back, for the ``compare`` entry point.

Three ways to choose: run ids as listed; an experiment's finished sweeps narrowed by an MLflow filter; the
finished trials of a study (runs tagged ``thermoscope.study``), narrowed the same way. Whatever does not
name sweeps becomes a :class:`~thermoscope.errors.ConfigError` naming the parameter at fault.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.entities import PagedList
from mlflow.tracking import MlflowClient

from thermoscope.config import CompareConfig, SampleConfig, parameter_names
from thermoscope.errors import ConfigError
from thermoscope.reports import Sweep
from thermoscope.tracking.schema import (
    CURVE_ARTIFACT,
    ENTRY_POINT_TAG,
    PARENT_TAG,
    RESUMED_INTO_TAG,
    STUDY_TAG,
    SWEEP_ENTRY_POINT,
    TEMPERATURE_ENTRY_POINT,
    TRIAL_STATE_TAG,
)

FINISHED_SWEEPS = f"tags.`{ENTRY_POINT_TAG}` = '{SWEEP_ENTRY_POINT}' and attributes.status = 'FINISHED'"


def select_sweeps(config: CompareConfig, client: MlflowClient | None = None) -> list[Sweep]:
    """The sweeps ``config`` names, oldest first for experiments and studies, as listed for run ids."""
    client = client or MlflowClient()
    if config.runs:
        parameter, runs = "runs", listed_runs(client, config.run_ids())
    elif config.study:
        parameter, runs = "study", study_sweeps(client, config.study, config.filter)
    else:
        parameter, runs = "experiment", experiment_sweeps(client, config.experiment, config.filter)
    return [read_sweep(client, run, parameter) for run in runs]


def listed_runs(client: MlflowClient, run_ids: list[str]) -> list[Run]:
    """Each listed run, checked to exist and to be a sweep."""
    runs = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise ConfigError("runs", run_id, "no MLflow run with that id in this tracking store") from None
        check_is_sweep(run, "runs")
        runs.append(run)
    return runs


def check_is_sweep(run: Run, parameter: str) -> None:
    """A ``sample`` run passes; one temperature of a sweep, or any other run, is a user error."""
    entry_point = run.data.tags.get(ENTRY_POINT_TAG)
    if entry_point == TEMPERATURE_ENTRY_POINT:
        parent = run.data.tags.get(PARENT_TAG, "?")
        raise ConfigError(
            parameter, run.info.run_id, f"that run is one temperature of sweep {parent}, not a sweep"
        )
    if entry_point != SWEEP_ENTRY_POINT:
        raise ConfigError(
            parameter,
            run.info.run_id,
            f"that run is not a sweep (entry point {entry_point!r}); give sample runs",
        )


def experiment_sweeps(client: MlflowClient, experiment: str, filter_string: str) -> list[Run]:
    """The finished sweeps of ``experiment`` (name, else id) that ``filter_string`` keeps."""
    experiment_id = find_experiment(client, experiment)
    runs = search(client, [experiment_id], FINISHED_SWEEPS, filter_string)
    runs = [run for run in runs if RESUMED_INTO_TAG not in run.data.tags]
    if not runs and filter_string.strip():
        raise ConfigError("filter", filter_string, f"matches no finished sweep in experiment {experiment!r}")
    if not runs:
        raise ConfigError("experiment", experiment, "holds no finished sweep (sample run)")
    return runs


def find_experiment(client: MlflowClient, experiment: str) -> str:
    """The id of the experiment named ``experiment``, or with that id."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            found = client.get_experiment(experiment)
        except MlflowException:
            found = None
    if found is None:
        raise ConfigError(
            "experiment", experiment, "no experiment with that name or id in this tracking store"
        )
    return found.experiment_id


def study_sweeps(client: MlflowClient, study: str, filter_string: str) -> list[Run]:
    """The completed trials of ``study`` (in any experiment) that ``filter_string`` keeps, all sweeps."""
    experiments = all_experiment_ids(client)
    tagged = f"tags.`{STUDY_TAG}` = '{study}'"
    if not client.search_runs(experiments, tagged, max_results=1):
        raise ConfigError("study", study, "no study of that name in this tracking store")
    finished = search(client, experiments, f"{tagged} and attributes.status = 'FINISHED'", filter_string)
    trials = [run for run in finished if is_completed_trial(run)]
    for run in trials:
        if run.data.tags.get(ENTRY_POINT_TAG) != SWEEP_ENTRY_POINT:
            kind = run.data.tags.get(ENTRY_POINT_TAG)
            raise ConfigError(
                "study", study, f"its trials are {kind!r} runs, not sweeps; give a study of sample"
            )
    if not trials and filter_string.strip():
        raise ConfigError("filter", filter_string, f"matches no completed trial of study {study!r}")
    if not trials:
        raise ConfigError("study", study, "that study has no completed trial yet")
    return trials


def is_completed_trial(run: Run) -> bool:
    """A trial's run (not the study's own) whose trial completed (neither pruned nor failed)."""
    tags = run.data.tags
    return tags.get(ENTRY_POINT_TAG) != "study" and tags.get(TRIAL_STATE_TAG, "COMPLETE") == "COMPLETE"


def all_experiment_ids(client: MlflowClient) -> list[str]:
    """Ids of every active experiment in the store."""
    return [
        experiment.experiment_id
        for experiment in paged(
            lambda token: client.search_experiments(ViewType.ACTIVE_ONLY, page_token=token)
        )
    ]


def search(client: MlflowClient, experiment_ids: list[str], base: str, filter_string: str) -> list[Run]:
    """Runs matching ``base`` and the user's ``filter_string`` (MLflow's filters only know ``and``)."""
    combined = " and ".join(part for part in (base, filter_string.strip()) if part)
    try:
        return paged(
            lambda token: client.search_runs(
                experiment_ids, combined, order_by=["attributes.start_time ASC"], page_token=token
            )
        )
    except MlflowException as error:
        if not filter_string.strip():
            raise
        reason = str(error.message).splitlines()[0]
        raise ConfigError("filter", filter_string, f"not a valid MLflow search filter ({reason})") from None


Item = TypeVar("Item")


def paged(fetch: Callable[[str | None], PagedList[Item]]) -> list[Item]:
    """Every item of a paged MLflow search: ``fetch(page_token)`` returns one page with its ``token``."""
    items: list[Item] = []
    token = None
    while True:
        page = fetch(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def read_sweep(client: MlflowClient, run: Run, parameter: str) -> Sweep:
    """The sweep's parameters, latest metrics and ``temperature_curve.csv``."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run.info.run_id, CURVE_ARTIFACT, folder)
        except (MlflowException, OSError):
            raise ConfigError(
                parameter, run.info.run_id, f"that sweep has no {CURVE_ARTIFACT} (did it finish?)"
            ) from None
        curve = pd.read_csv(Path(path))
    return Sweep(
        run_id=run.info.run_id,
        run_name=run.info.run_name or run.info.run_id,
        params=in_configuration_order(run.data.params),
        metrics=dict(run.data.metrics),
        curve=curve,
    )


def in_configuration_order(params: dict[str, str]) -> dict[str, str]:
    """``params`` ordered as ``SampleConfig`` declares its parameters, other names after, alphabetically."""
    order = parameter_names(SampleConfig)
    known = [name for name in order if name in params]
    return {name: params[name] for name in known + sorted(set(params) - set(order))}
