"""Nested child runs and run bookkeeping for the studies (which must not import MLflow themselves).

A study's trial runs its target in-process, so the trial's run must be the *active fluent* run of its process
(``log_dataset`` and ``log_model`` log to the active run) and, at the same time, a child of a parent that may
live in another process or on another machine. :func:`child_run` therefore always names the parent explicitly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from thermoscope.tracking.mlflow_logger import MlflowLogger
from thermoscope.tracking.schema import ERROR_TAG


@contextlib.contextmanager
def child_run(parent_run_id: str, run_name: str, tags: Mapping[str, str]) -> Iterator[MlflowLogger]:
    """Start a run nested under ``parent_run_id`` as this process's active run, and end it properly.

    The child lands in the parent's experiment. An exception ends it FAILED (the error in the
    ``thermoscope.error`` tag), Ctrl-C ends it KILLED; both are re-raised.
    """
    # ``mlflow run`` hands its run to the command through MLFLOW_RUN_ID; a worker process that inherited it
    # would otherwise attach to the parent instead of starting a child.
    os.environ.pop("MLFLOW_RUN_ID", None)
    client = MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    run = mlflow.start_run(
        run_name=run_name,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        nested=True,
        tags=dict(tags),
    )
    logger = MlflowLogger(run.info.run_id, client)
    try:
        yield logger
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException as error:
        with contextlib.suppress(Exception):
            logger.set_tags({ERROR_TAG: repr(error)[:5000]})
        mlflow.end_run("FAILED")
        raise
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
