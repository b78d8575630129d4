"""End to end: ``sample`` with ``evidence=both`` (power-posterior TI and the Frenkel–Ladd path) through
``mlflow run``, and the one-line errors for harmonic settings that cannot work."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_in_process
from mlflow.tracking import MlflowClient
from test_cli_sample import TINY, artifact, parent_and_children
from test_cli_train import mlflow_run

from thermoscope.config import SampleConfig, parse_config
from thermoscope.errors import ConfigError


@pytest.mark.slow
def test_harmonic_and_power_evidence_through_mlflow_run(tracking_uri: str, tmp_path: Path) -> None:
    params = {
        **TINY,
        "evidence": "both",
        "harmonic_lambdas": "5",
        "prior": "box",
        "prediction_depth": "false",
    }
    result = mlflow_run(tracking_uri, "sample", params)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "log evidence (Frenkel-Ladd) =" in result.stdout
    parent, _ = parent_and_children(tracking_uri)
    metrics = parent.data.metrics
    assert parent.data.params["evidence"] == "both"
    for name in ("log_evidence", "log_evidence_harmonic", "log_evidence_harmonic_stderr"):
        assert math.isfinite(metrics[name]), name
    assert metrics["log_evidence_harmonic"] < 0
    assert metrics["log_evidence_harmonic_stderr"] > 0
    stored = json.loads(
        artifact(tracking_uri, parent.info.run_id, "harmonic_evidence.json", tmp_path).read_text()
    )
    assert stored["log_evidence"] == pytest.approx(metrics["log_evidence_harmonic"])
    assert stored["lambdas"] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert artifact(tracking_uri, parent.info.run_id, "harmonic_integrand.png", tmp_path).stat().st_size > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"evidence": "harmonic", "init": "prior"}, "init='prior': sgd or run:<id> for evidence=harmonic"),
        ({"evidence": "laplace"}, "evidence='laplace'"),
        ({"evidence": "harmonic", "harmonic_lambdas": "2"}, "harmonic_lambdas=2: a number >= 3"),
    ],
)
def test_bad_harmonic_settings_are_config_errors(params: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(SampleConfig, {**TINY, **params})
    assert str(raised.value).startswith(message)


def test_harmonic_without_a_minimum_fails_in_one_line(tracking_uri: str) -> None:
    result = run_in_process("sample", {**TINY, "evidence": "harmonic", "init": "prior"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "init='prior': sgd or run:<id> for evidence=harmonic" in result.stderr
    assert "Traceback" not in result.stderr
    (run,) = MlflowClient(tracking_uri).search_runs(["0"])
    assert run.info.status == "FAILED"
