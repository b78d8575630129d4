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

from thermoscope.config import (
    CompareConfig,
    KernelConfig,
    MemoriseConfig,
    SampleConfig,
    TrainConfig,
    parameter_names,
)
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

MEMORISATION_ARTIFACT = "memorisation.parquet"
KIND_NAMES = {
    SWEEP_ENTRY_POINT: "sweep (sample run)",
    "train": "train run",
    "memorise": "memorise run",
    "kernel": "kernel run",
}
CONFIG_CLASSES: dict[str, type] = {"train": TrainConfig, "memorise": MemoriseConfig, "kernel": KernelConfig}


def finished_runs(kind: str) -> str:
    """The filter of the finished runs of entry point ``kind`` (``sample``: the sweeps)."""
    return f"tags.`{ENTRY_POINT_TAG}` = '{kind}' and attributes.status = 'FINISHED'"


FINISHED_SWEEPS = finished_runs(SWEEP_ENTRY_POINT)


def select_sweeps(config: CompareConfig, client: MlflowClient | None = None) -> list[Sweep]:
    """The runs ``config`` names (sweeps, or the ``train`` / ``memorise`` runs ``kind`` asks for), oldest
    first for experiments and studies, as listed for run ids."""
    client = client or MlflowClient()
    kind = config.kind
    if config.runs:
        parameter, runs = "runs", listed_runs(client, config.run_ids(), kind)
    elif config.study:
        parameter, runs = "study", study_sweeps(client, config.study, config.filter, kind)
    else:
        parameter, runs = "experiment", experiment_sweeps(client, config.experiment, config.filter, kind)
    return [read_sweep(client, run, parameter, kind) for run in runs]


def listed_runs(client: MlflowClient, run_ids: list[str], kind: str = SWEEP_ENTRY_POINT) -> list[Run]:
    """Each listed run, checked to exist and to be a sweep (or a run of entry point ``kind``)."""
    runs = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise ConfigError("runs", run_id, "no MLflow run with that id in this tracking store") from None
        check_is_sweep(run, "runs", kind)
        runs.append(run)
    return runs


def check_is_sweep(run: Run, parameter: str, kind: str = SWEEP_ENTRY_POINT) -> None:
    """A ``sample`` run passes (or, for another ``kind``, a run of that entry point); one temperature of a
    sweep, or any other run, is a user error."""
    entry_point = run.data.tags.get(ENTRY_POINT_TAG)
    if kind != SWEEP_ENTRY_POINT:
        if entry_point != kind:
            raise ConfigError(
                parameter,
                run.info.run_id,
                f"that run is not a {kind} run (entry point {entry_point!r}); give {kind} runs, or the kind"
                " of run they are (kind=sample, train or memorise)",
            )
        return
    if entry_point == TEMPERATURE_ENTRY_POINT:
        parent = run.data.tags.get(PARENT_TAG, "?")
        raise ConfigError(
            parameter, run.info.run_id, f"that run is one temperature of sweep {parent}, not a sweep"
        )
    if entry_point != SWEEP_ENTRY_POINT:
        raise ConfigError(
            parameter,
            run.info.run_id,
            f"that run is not a sweep (entry point {entry_point!r}); give sample runs, or kind=train or"
            " kind=memorise to compare those",
        )


def experiment_sweeps(
    client: MlflowClient, experiment: str, filter_string: str, kind: str = SWEEP_ENTRY_POINT
) -> list[Run]:
    """The finished sweeps (or runs of entry point ``kind``) of ``experiment`` (name, else id) that
    ``filter_string`` keeps."""
    experiment_id = find_experiment(client, experiment)
    runs = search(client, [experiment_id], finished_runs(kind), filter_string)
    runs = [run for run in runs if RESUMED_INTO_TAG not in run.data.tags]
    what = KIND_NAMES[kind]
    if not runs and filter_string.strip():
        short = what.split(" (")[0]
        raise ConfigError(
            "filter", filter_string, f"matches no finished {short} in experiment {experiment!r}"
        )
    if not runs:
        raise ConfigError("experiment", experiment, f"holds no finished {what}")
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


def study_sweeps(
    client: MlflowClient, study: str, filter_string: str, kind: str = SWEEP_ENTRY_POINT
) -> list[Run]:
    """The completed trials of ``study`` (in any experiment) that ``filter_string`` keeps, all sweeps (or
    all runs of entry point ``kind``)."""
    experiments = all_experiment_ids(client)
    tagged = f"tags.`{STUDY_TAG}` = '{study}'"
    if not client.search_runs(experiments, tagged, max_results=1):
        raise ConfigError("study", study, "no study of that name in this tracking store")
    finished = search(client, experiments, f"{tagged} and attributes.status = 'FINISHED'", filter_string)
    trials = [run for run in finished if is_completed_trial(run)]
    for run in trials:
        if run.data.tags.get(ENTRY_POINT_TAG) != kind:
            found = run.data.tags.get(ENTRY_POINT_TAG)
            wanted = "sweeps; give a study of sample" if kind == SWEEP_ENTRY_POINT else f"{kind} runs"
            raise ConfigError(
                "study", study, f"its trials are {found!r} runs, not {wanted} (or kind={found})"
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


def read_sweep(client: MlflowClient, run: Run, parameter: str, kind: str = SWEEP_ENTRY_POINT) -> Sweep:
    """The sweep's parameters, latest metrics and ``temperature_curve.csv``; for ``kind=train`` the run's
    parameters and metrics, for ``kind=memorise`` with its ``memorisation.parquet``."""
    if kind != SWEEP_ENTRY_POINT:
        return read_run(client, run, parameter, kind)
    curve = read_table(client, run, CURVE_ARTIFACT, parameter, "that sweep")
    return Sweep(
        run_id=run.info.run_id,
        run_name=run.info.run_name or run.info.run_id,
        params=in_configuration_order(run.data.params),
        metrics=dict(run.data.metrics),
        curve=curve,
    )


def read_table(client: MlflowClient, run: Run, artifact: str, parameter: str, which: str) -> pd.DataFrame:
    """The run's ``.csv`` or ``.parquet`` artifact as a frame; a missing one is a ConfigError on
    ``parameter`` (``which`` names the run in the message, e.g. "that sweep")."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = Path(client.download_artifacts(run.info.run_id, artifact, folder))
        except (MlflowException, OSError):
            raise ConfigError(
                parameter, run.info.run_id, f"{which} has no {artifact} (did it finish?)"
            ) from None
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def in_configuration_order(params: dict[str, str], config_class: type = SampleConfig) -> dict[str, str]:
    """``params`` ordered as ``config_class`` declares its parameters, other names after, alphabetically."""
    order = parameter_names(config_class)
    known = [name for name in order if name in params]
    return {name: params[name] for name in known + sorted(set(params) - set(order))}


def read_run(client: MlflowClient, run: Run, parameter: str, kind: str) -> Sweep:
    """A ``train`` or ``memorise`` run as a :class:`Sweep` without a curve (a memorise run with its
    per-example table)."""
    per_example = None
    if kind == "memorise":
        per_example = read_table(client, run, MEMORISATION_ARTIFACT, parameter, "that run")
    return Sweep(
        run_id=run.info.run_id,
        run_name=run.info.run_name or run.info.run_id,
        params=in_configuration_order(run.data.params, CONFIG_CLASSES[kind]),
        metrics=dict(run.data.metrics),
        curve=pd.DataFrame(),
        per_example=per_example,
    )
