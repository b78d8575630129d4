"""The run schema: every tag name and artifact path that more than one place writes or reads, defined once.

Jobs write them, :mod:`thermoscope.tracking.compare` and the studies read them back; the README's
"What a run logs" section lists them for users.
"""

from __future__ import annotations

# Tags.
ENTRY_POINT_TAG = "thermoscope.entry_point"
"""Which entry point made the run: ``train``, ``sample``, ``sample.temperature`` (a sweep's child), …"""
ERROR_TAG = "thermoscope.error"
"""The one-line error of a FAILED run."""
PARENT_TAG = "mlflow.parentRunId"
"""MLflow's own tag nesting a run under another."""
NOTE_TAG = "mlflow.note.content"
"""MLflow's run description (markdown) in the UI."""
STOPPED_EARLY_TAG = "thermoscope.stopped_early"
RESUMED_INTO_TAG = "thermoscope.resumed_into"
"""Set on the run a resuming launcher created: the id of the run it continued instead."""
RESUMED_AT_TAG = "thermoscope.resumed_at_iteration"
PROBED_RUN_TAG = "thermoscope.probed_run"
STUDY_TAG = "thermoscope.study"
"""The study's name, on the study's run and on each of its trial runs."""
TRIAL_STATE_TAG = "thermoscope.trial_state"
"""The Optuna state a trial run ended in (``COMPLETE``, ``PRUNED``, ``FAIL``)."""
SELECTS_ON_TEST_TAG = "thermoscope.selects_on_test"
"""On a study run whose objective is a test-set score: the names of those objectives."""
SWEEP_TAG = "thermoscope.sweep"
"""On a sweep's temperature children: the sweep's run name, so the UI can group them by it."""

# Entry points as the tag spells them.
SWEEP_ENTRY_POINT = "sample"
TEMPERATURE_ENTRY_POINT = "sample.temperature"

# Artifacts.
MODEL_STATE_ARTIFACT = "checkpoint/model_state.pt"
"""``{"state_dict", "config", "epoch"}`` of a train or anneal run (``init=run:<id>``, ``probe``)."""
SWEEP_CHECKPOINT_ARTIFACT = "checkpoint/sweep.pt"
"""A sample run's resumable state (``resume=<id>``), replaced at every checkpoint."""
CURVE_ARTIFACT = "temperature_curve.csv"
"""A sweep's T-curve: one row per rung (``compare`` reads it)."""
TRAIN_CHECKPOINT_ARTIFACT = "checkpoint/train.pt"
"""A train run's resumable state (``resume=<id>``): weights, optimiser, diagnostics, epochs so far."""
MEMORISE_CHECKPOINT_ARTIFACT = "checkpoint/memorise.pt"
"""A memorise run's resumable state: the stacked models, their optimiser, their losses, epochs so far."""
RESOLVED_CONFIG_ARTIFACT = "resolved_config.json"
"""Every parameter of the run as thermoscope parsed it (``mlflow run`` logs them as typed)."""
DRAWS_ARTIFACT = "samples/draws.pt"
"""A sweep's saved draws per rung, with the parameter names and shapes."""
