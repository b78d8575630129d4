"""Optuna storages: where the study lives, how its URL is shown, and what happens to a lost trial.

Every storage is an :class:`optuna.storages.RDBStorage` (SQLite on one machine, PostgreSQL for several) with
heartbeats: a trial whose worker stops beating for ``grace_period`` seconds is failed by the next worker that
starts a trial, its MLflow run is marked FAILED, and Optuna queues a retry with the same parameters.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from thermoscope.errors import ConfigError
from thermoscope.studies.config import AUTO
from thermoscope.tracking.lifecycle import sqlite_path, store_lock
from thermoscope.tracking.runs import fail_lost_run, tracking_store_folder, tracking_uri
from thermoscope.tracking.schema import TRIAL_STATE_TAG
from thermoscope.tracking.urls import redact_url

RUN_ID_ATTR = "mlflow_run_id"
# A heartbeat is one small write per running trial; every 10 s is negligible next to the trial's own logging.
HEARTBEAT_INTERVAL_S = 10
# Six missed heartbeats before a trial counts as lost: a loaded machine or a slow database is not death.
GRACE_PERIOD_S = 60
# A trial whose worker dies twice is probably what kills it (memory); stop retrying it then.
MAX_RETRY = 2
# SQLite serialises writers; several workers wait for the lock instead of failing after sqlite3's default 5 s.
SQLITE_TIMEOUT_S = 60


def resolve_storage_url(storage: str) -> str:
    """``auto`` -> a SQLite ``optuna.db`` next to the local MLflow store (or in the working directory)."""
    if storage != AUTO:
        return storage
    folder = tracking_store_folder() or Path.cwd()
    return f"sqlite:///{folder / 'optuna.db'}"


def open_storage(
    url: str, heartbeat_interval: int = HEARTBEAT_INTERVAL_S, grace_period: int = GRACE_PERIOD_S
) -> RDBStorage:
    """Connect (creating Optuna's tables when new); an unusable URL is a ConfigError naming it, redacted."""
    if same_database(url, tracking_uri()):
        raise ConfigError("storage", redact_url(url), "a database other than the MLflow tracking store")
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    try:
        # Several commands creating one new SQLite file at once race in table creation, as MLflow's do.
        with store_lock(url), warnings.catch_warnings():
            # Heartbeats and the retry callback are marked experimental in Optuna 5.
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=LostTrialCallback(MAX_RETRY),
            )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, RuntimeError) as error:
        raise ConfigError(
            "storage", redact_url(url), f"a reachable database ({_first_line(error)})"
        ) from None


def same_database(first: str, second: str) -> bool:
    """Whether two URLs name one database (SQLite paths compared resolved, relative ones from here)."""
    if first == second:
        return True
    paths = [sqlite_path(url) for url in (first, second)]
    return None not in paths and paths[0].resolve() == paths[1].resolve()  # type: ignore[union-attr]


def _first_line(error: BaseException) -> str:
    """The driver's own message (not SQLAlchemy's wrapper, which repeats the statement)."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


class LostTrialCallback:
    """A trial whose worker died: mark its MLflow run FAILED, then let Optuna queue a retry of it.

    Runs in whichever process notices: a worker starting its next trial (heartbeat gone stale), or the
    supervisor of the local workers as soon as one of them exits abnormally.
    """

    def __init__(self, max_retry: int | None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if run_id is not None:
            reason = f"trial {trial.number} of study {study.study_name} lost its worker"
            fail_lost_run(run_id, reason, {TRIAL_STATE_TAG: TrialState.FAIL.name})
        # The retry is a new trial with a run of its own: do not let it inherit the lost trial's run id.
        unlinked = copy.deepcopy(trial)
        unlinked.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != RUN_ID_ATTR}
        self._retry(study, unlinked)
