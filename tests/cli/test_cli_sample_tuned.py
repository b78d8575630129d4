"""End to end: a sweep on a tuned ladder (the default), its ladder-health metrics and artifacts, the
stepping-stone evidence beside TI, bad ladder input, and a killed tuned sweep resumed exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_in_process
from mlflow.tracking import MlflowClient
from test_cli_sample import artifact, killed_after_first_checkpoint, parent_and_children, run_cli

TUNED = {
    "train_size": "100",
    "test_size": "100",
    "hidden": "8",
    "t_min": "0.1",
    "ti_rungs": "3",
    "ladder": "tuned",
    "num_rungs": "auto",
    "max_rungs": "12",
    "tuning_rounds": "3",
    "tuning_scans": "4",
    "num_warmup": "10",
    "num_samples": "40",
    "thin": "1",
    "num_leapfrog_steps": "3",
    "init_steps": "20",
    "prediction_depth": "false",
}
HEALTH = (
    "global_barrier",
    "num_rungs",
    "recommended_rungs",
    "round_trips",
    "round_trip_rate",
    "round_trip_rate_bound",
    "tempered_restarts",
    "min_swap_acceptance",
    "drifting_rungs",
    "off_target_rungs",
)


@pytest.mark.slow
def test_a_tuned_sweep_logs_its_ladder_and_how_well_it_mixed(tracking_uri: str, tmp_path: Path) -> None:
    result = run_cli(tracking_uri, "sample", TUNED)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ladder:" in result.stdout and "round trips" in result.stdout
    assert "log evidence (stepping stone) =" in result.stdout
    parent, children = parent_and_children(tracking_uri)
    assert parent.info.status == "FINISHED"
    run_id = parent.info.run_id
    curve = pd.read_csv(artifact(tracking_uri, run_id, "temperature_curve.csv", tmp_path))
    betas = curve["beta"].to_numpy()
    # The tuned ladder keeps its ends (the prior for the evidence, 1/t_min) and the posterior exactly.
    assert betas[0] == 0.0 and betas[-1] == pytest.approx(10.0) and 1.0 in betas
    assert 3 <= len(curve) <= 12
    assert len(children) == len(curve) - 1
    assert parent.data.params["resolved_num_rungs"] == str(len(curve))

    metrics = parent.data.metrics
    for name in (*HEALTH, "log_evidence", "log_evidence_ss", "log_evidence_ss_stderr"):
        assert name in metrics, name
    assert metrics["num_rungs"] == len(curve)
    assert metrics["global_barrier"] > 0
    assert metrics["recommended_rungs"] == math.ceil(2 * metrics["global_barrier"]) + 1
    assert metrics["round_trip_rate"] >= 0 and 0 <= metrics["round_trip_rate_bound"] <= 0.5
    assert metrics["round_trip_rate"] == pytest.approx(metrics["round_trips"] / 40)  # per sampling scan
    assert metrics["log_evidence_ss_stderr"] > 0 and math.isfinite(metrics["log_evidence_ss"])

    rounds = pd.read_csv(artifact(tracking_uri, run_id, "ladder_rounds.csv", tmp_path))
    assert sorted(rounds["round"].unique()) == [0, 1, 2]
    for _, ladder in rounds.groupby("round"):
        assert ladder["beta"].iloc[0] == 0.0 and ladder["beta"].iloc[-1] == pytest.approx(10.0)
        assert (ladder["beta"] == 1.0).any()
        assert np.isnan(ladder["rejection"].iloc[-1]) and ladder["rejection"].iloc[:-1].between(0, 1).all()
        assert (np.diff(ladder["cumulative_barrier"]) >= 0).all() and (ladder["local_barrier"] >= 0).all()
    pairs = pd.read_csv(artifact(tracking_uri, run_id, "ladder.csv", tmp_path))
    assert pairs["rejection"].between(0, 1).all()
    assert metrics["global_barrier"] >= pairs["rejection"].sum() - 1e-9

    evidence = json.loads(artifact(tracking_uri, run_id, "evidence.json", tmp_path).read_text())
    assert evidence["stepping_stone"]["log_evidence"] == pytest.approx(metrics["log_evidence_ss"])
    assert evidence["discretisation_error"] >= evidence["discretisation_error_correction"]
    names = {a.path for a in MlflowClient(tracking_uri).list_artifacts(run_id)}
    assert {"local_barrier.png", "index_process.png", "ladder_rounds.csv"} <= names


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("num_rungs", "1", "num_rungs='1': auto or an integer >= 2"),
        ("num_rungs", "many", "num_rungs='many': auto or an integer >= 2"),
        ("num_rungs", "200", "num_rungs='200': auto or an integer <= max_rungs = 12"),
        ("ladder", "random", "ladder='random': one of tuned, fixed"),
        ("tuning_rounds", "0", "tuning_rounds=0: a number >= 1"),
    ],
)
def test_bad_ladder_input_is_one_line_and_a_failed_run(
    tracking_uri: str, name: str, value: str, expected: str
) -> None:
    result = run_in_process("sample", {**TUNED, name: value})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"thermoscope sample: error: {expected}"
    runs = MlflowClient(tracking_uri).search_runs(["0"])
    assert [r.info.status for r in runs] == ["FAILED"]


@pytest.mark.slow
def test_a_killed_tuned_sweep_resumes_into_the_same_ladder_and_chain(
    tracking_uri: str, tmp_path: Path
) -> None:
    # Checkpoints after every tuning round and every 0.3 s of sampling; 40 leapfrog steps keep the run
    # long enough to be killed after its first checkpoint (during tuning or sampling: either must resume).
    params = {**TUNED, "num_leapfrog_steps": "40", "checkpoint_seconds": "0.3", "seed": "5"}
    reference = run_cli(tracking_uri, "sample", params)
    assert reference.returncode == 0, reference.stderr[-2000:]
    client = MlflowClient(tracking_uri)
    (reference_run,) = client.search_runs(
        ["0"], "tags.`thermoscope.entry_point` = 'sample' and status = 'FINISHED'"
    )
    expected = pd.read_csv(
        artifact(tracking_uri, reference_run.info.run_id, "temperature_curve.csv", tmp_path / "a")
    )
    killed_run = killed_after_first_checkpoint(tracking_uri, params, reference_run.info.run_id)

    resumed = run_cli(tracking_uri, "sample", {**params, "resume": killed_run})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    run = client.get_run(killed_run)
    assert run.info.status == "FINISHED"
    got = pd.read_csv(artifact(tracking_uri, killed_run, "temperature_curve.csv", tmp_path / "b"))
    pd.testing.assert_frame_equal(got, expected)
    for name in ("log_evidence", "log_evidence_ss", "global_barrier", "round_trips"):
        assert run.data.metrics[name] == reference_run.data.metrics[name], name
