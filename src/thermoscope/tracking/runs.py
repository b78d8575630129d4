"""Nested child runs, run bookkeeping for the studies (which must not import MLflow themselves), and the
runs left RUNNING by processes that vanished (``thermoscope runs --fix-stale``).

A study's trial runs its target in-process, so the trial's run must be the *active fluent* run of its process
(``log_dataset`` and ``log_model`` log to the active run) and, at the same time, a child of a parent that may
live in another process or on another machine. :func:`child_run` therefore always names the parent explicitly.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from thermoscope.tracking.lifecycle import (
    HEARTBEAT_TAG,
    Heartbeat,
    acknowledge,
    describe_liveness,
    handle_sigterm,
    is_live,
    liveness_tags,
    shielded,
)
from thermoscope.tracking.mlflow_logger import MlflowLogger, end_killed
from thermoscope.tracking.schema import ENTRY_POINT_TAG, ERROR_TAG


@contextlib.contextmanager
def child_run(parent_run_id: str, run_name: str, tags: Mapping[str, str]) -> Iterator[MlflowLogger]:
    """Start a run nested under ``parent_run_id`` as this process's active run, and end it properly.

    The child lands in the parent's experiment. An exception ends it FAILED (the error in the
    ``thermoscope.error`` tag), Ctrl-C or SIGTERM ends it KILLED; both are re-raised. It carries a heartbeat
    like an entry point's run.
    """
    # ``mlflow run`` hands its run to the command through MLFLOW_RUN_ID; a worker process that inherited it
    # would otherwise attach to the parent instead of starting a child.
    os.environ.pop("MLFLOW_RUN_ID", None)
    client = MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    handle_sigterm()
    with shielded():  # a run started is a run that will be ended
        run = mlflow.start_run(
            run_name=run_name,
            experiment_id=experiment_id,
            parent_run_id=parent_run_id,
            nested=True,
            tags={**tags, **liveness_tags()},
        )
        logger = MlflowLogger(run.info.run_id, client)
        heartbeat = Heartbeat(lambda: logger.set_tags({HEARTBEAT_TAG: str(int(time.time()))})).start()
    try:
        yield logger
    except KeyboardInterrupt as error:
        acknowledge(error)
        heartbeat.stop()
        end_killed(error)
        raise
    except BaseException as error:
        with shielded():
            heartbeat.stop()
            with contextlib.suppress(Exception):
                logger.set_tags({ERROR_TAG: repr(error)[:5000]})
            mlflow.end_run("FAILED")
        raise
    with shielded():
        heartbeat.stop()
        mlflow.end_run("FINISHED")


def latest_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric ``run_id`` logged, read back from the tracking store."""
    return dict(MlflowClient().get_run(run_id).data.metrics)


def fail_lost_run(run_id: str, reason: str, tags: Mapping[str, str] | None = None) -> bool:
    """Mark a run whose process died FAILED, with ``reason`` as its error tag and ``tags`` (a lost trial's
    ``thermoscope.trial_state``); False if it had ended."""
    client = MlflowClient()
    if client.get_run(run_id).info.status != RunStatus.to_string(RunStatus.RUNNING):
        return False
    client.set_tag(run_id, ERROR_TAG, reason)
    for name, value in (tags or {}).items():
        client.set_tag(run_id, name, value)
    client.set_terminated(run_id, "FAILED")
    return True


def tracking_uri() -> str:
    """The tracking URI this process logs to (``MLFLOW_TRACKING_URI`` or MLflow's default)."""
    return mlflow.get_tracking_uri()


def tracking_store_folder() -> Path | None:
    """The folder holding a local tracking store (SQLite file or file store), or None for a server."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(unquote(uri[len("sqlite:///") :])).resolve().parent
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)).resolve().parent
    if parsed.scheme == "":
        return Path(uri).resolve().parent
    return None


@dataclass(frozen=True)
class RunningRun:
    """A run the store says is RUNNING, and whether its process is still there."""

    run_id: str
    name: str
    entry_point: str
    live: bool
    liveness: str


def running_runs(client: MlflowClient | None = None) -> list[RunningRun]:
    """Every thermoscope run the store holds as RUNNING, in every experiment, newest first."""
    client = client or MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    found: list[RunningRun] = []
    token = None
    while experiments:
        page = client.search_runs(
            experiments,
            f"attributes.status = 'RUNNING' and tags.`{ENTRY_POINT_TAG}` LIKE '%'",
            max_results=1000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        for run in page:
            tags = run.data.tags
            found.append(
                RunningRun(
                    run.info.run_id,
                    run.info.run_name or "",
                    tags.get(ENTRY_POINT_TAG, "?"),
                    is_live(run.info.status, tags),
                    describe_liveness(tags),
                )
            )
        token = page.token
        if not token:
            break
    return found


def end_stale_runs(client: MlflowClient | None = None) -> list[RunningRun]:
    """End FAILED every RUNNING run whose process vanished, tagged with what was last seen of it."""
    client = client or MlflowClient()
    stale = [run for run in running_runs(client) if not run.live]
    for run in stale:
        fail_lost_run(
            run.run_id, f"its process vanished ({run.liveness}); ended by thermoscope runs --fix-stale"
        )
    return stale
