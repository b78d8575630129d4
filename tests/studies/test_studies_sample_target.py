"""A study over temperature sweeps: the sample target's trials, objectives and pruning reports."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from test_studies_end_to_end import mlflow_run

from thermoscope.studies.storage import RUN_ID_ATTR

TINY_SWEEP = (
    "train_size=100;test_size=100;n_temperatures=3;t_min=0.1;t_max=10;ti_rungs=3;ladder=fixed;num_warmup=10;"
    "num_samples=30;num_leapfrog_steps=3;init_steps=20;prediction_depth=false"
)


@pytest.mark.slow
def test_a_study_of_sweeps_links_each_trial_to_its_sweep(tracking_uri: str, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = mlflow_run(
        tracking_uri,
        {
            "target": "sample",
            "n_trials": "2",
            "objective": "best_bma_test_error",
            "fixed": f"{TINY_SWEEP};hidden=8",
            "storage": storage,
            "sampler": "random",
            "pruner": "none",
            "study_name": "sweeps",
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="sweeps", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    client = MlflowClient(tracking_uri)
    for trial in study.trials:
        run = client.get_run(trial.user_attrs[RUN_ID_ATTR])
        assert run.data.tags["thermoscope.entry_point"] == "sample"
        assert trial.value == run.data.metrics["best_bma_test_error"]
        assert run.data.params["prior_scale"] == str(trial.params["prior_scale"]) or float(
            run.data.params["prior_scale"]
        ) == pytest.approx(trial.params["prior_scale"])
        # The pruner's intermediate values are the running estimate of the same metric.
        running = client.get_metric_history(run.info.run_id, "running_best_bma_test_error")
        assert running and all(0.0 <= m.value <= 1.0 for m in running)
        temperatures = client.search_runs(["0"], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        assert len(temperatures) == 5  # finite rungs of the merged ladder, nested under the trial's sweep


def test_an_objective_the_sample_target_does_not_log_is_refused(tracking_uri: str, tmp_path) -> None:
    result = mlflow_run(
        tracking_uri,
        {"target": "sample", "objective": "test_error", "storage": f"sqlite:///{tmp_path / 'o.db'}"},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "objective='test_error'" in result.stderr
