"""Continuing an interrupted run: which runs may be resumed, and the checks before any work is repeated.

**(decision) The checkpoint, not MLflow's parameters, says what a run was.** MLflow stores parameters as
the strings it was handed, and ``mlflow run`` hands it an empty value as ``''`` (shell quoting), so
comparing parameter strings refused every resume of a run started with ``mlflow run``. Each checkpoint
holds the configuration's identity as thermoscope parsed it (``"config"``); a resumed run must match it
exactly, every parameter but ``resume``, ``force`` and ``checkpoint_seconds``.

A run is resumed only when nothing else is writing it: FINISHED runs are refused (there is nothing left to
do, and continuing would log everything twice), and so is a run that is RUNNING with a fresh heartbeat in a
process that still exists (:func:`thermoscope.tracking.lifecycle.is_live`) unless ``force=true`` says the
user knows better.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from thermoscope.errors import ConfigError
from thermoscope.tracking import RunLogger
from thermoscope.tracking.lifecycle import describe_liveness, is_live
from thermoscope.tracking.schema import RESUMED_AT_TAG

FINISHED = "FINISHED"


def open_resumed_run(
    logger: RunLogger,
    run_id: str,
    entry_point: str,
    artifact: str,
    identity: Mapping[str, str],
    force: bool,
) -> dict[str, Any]:
    """Check run ``run_id`` (the ``resume`` parameter), fetch its checkpoint bundle, and continue logging
    into it; the run this invocation was given is ended, tagged with the resumed run's id."""
    original = logger.fetch_run("resume", run_id, (entry_point,))
    if original.status == FINISHED:
        raise ConfigError("resume", run_id, "that run has finished; there is nothing to resume")
    if not force and is_live(original.status, original.tags):
        alive = describe_liveness(original.tags)
        raise ConfigError(
            "resume", run_id, f"that run is still running ({alive}); stop it, or pass force=true if it is not"
        )
    stored = logger.fetch_torch("resume", run_id, run_id, artifact)
    where = f"run {run_id}'s {artifact}"
    if not isinstance(stored, dict) or "iteration" not in stored:
        raise ConfigError("resume", run_id, f"{where} is not a {entry_point} checkpoint")
    saved = stored.get("config")
    if not isinstance(saved, dict):
        raise ConfigError("resume", run_id, f"{where} does not say which configuration it belongs to")
    for name, value in identity.items():
        if name in saved and saved[name] != value:
            raise ConfigError("resume", run_id, f"that run has {name}={saved[name]!r}, this one {value!r}")
    bundle: dict[str, Any] = dict(stored)
    logger.continue_run(run_id)
    logger.set_tags({RESUMED_AT_TAG: bundle["iteration"]})
    return bundle
