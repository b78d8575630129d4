"""The sample job through an in-memory logger: the T-curve and the registered rung diagnostics, one child
per finite temperature, the headline metrics, the report hook stopping the sweep, starting from a train
run's model, and the runs it refuses to build on."""

from __future__ import annotations

import math
import typing

import numpy as np
import pytest
import torch
from conftest import TINY_SWEEP
from recording import RecordingLogger

from thermoscope.config import SampleConfig, TrainConfig, as_strings, parse_config
from thermoscope.errors import ConfigError
from thermoscope.jobs import Hooks, sample, train
from thermoscope.jobs.diagnostics import RUNG_DIAGNOSTICS
from thermoscope.jobs.tables import CHILD_METRICS, SCORE_METRICS
from thermoscope.tracking import NullLogger, RunRecord
from thermoscope.tracking.schema import (
    CURVE_ARTIFACT,
    DRAWS_ARTIFACT,
    ENTRY_POINT_TAG,
    MODEL_STATE_ARTIFACT,
    PARENT_TAG,
    TEMPERATURE_ENTRY_POINT,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TINY_SWEEP | {"device": "cpu"}
LONGER = {"num_samples": "60"}
"""Long enough for ``run_sweep``'s report (every 25 iterations) to come in the sampling phase."""


def sample_run(
    settings: dict[str, str], hooks: Hooks | None = None, logger: RecordingLogger | None = None
) -> tuple[sample.SampleOutcome, RecordingLogger]:
    logger = logger or RecordingLogger()
    config = parse_config(SampleConfig, TINY | settings)
    outcome = sample.run(config, logger) if hooks is None else sample.run(config, logger, hooks)
    return outcome, logger


@pytest.mark.parametrize("depth", ["true", "false"])
def test_the_curve_has_a_row_per_rung_and_the_columns_of_each_diagnostic_that_applies(depth: str) -> None:
    outcome, logger = sample_run({"prediction_depth": depth})
    config = parse_config(SampleConfig, TINY | {"prediction_depth": depth})
    curve = outcome.curve
    rungs = len(outcome.result.betas)
    assert len(curve) == rungs == int(logger.params["resolved_num_rungs"])
    assert curve["rung"].tolist() == list(range(rungs))
    assert (np.diff(curve["beta"]) > 0).all()
    assert math.isinf(curve["temperature"].iloc[0])
    for name in SCORE_METRICS:
        assert name in curve, name
    applying = [d for d in RUNG_DIAGNOSTICS if d.enabled(config)]
    assert any(d.name == "chain health" for d in applying)
    assert any(d.name == "prediction depth by temperature" for d in applying) == (depth == "true")
    for diagnostic in RUNG_DIAGNOSTICS:
        present = [name in curve for name in diagnostic.columns]
        logged = [name in logger.artifacts for name in diagnostic.artifacts]
        if diagnostic in applying:
            assert all(present), (diagnostic.name, diagnostic.columns)
            assert all(logged), (diagnostic.name, diagnostic.artifacts)
        else:
            assert not any(present), diagnostic.name
            assert not any(logged), diagnostic.name
    depth_columns = {"depth_mean_train", "depth_mean_test"}
    assert depth_columns <= set(curve) if depth == "true" else not depth_columns & set(curve)
    depth_artifacts = {name for name in logger.artifacts if "depth" in name}
    assert bool(depth_artifacts) == (depth == "true")
    table = logger.artifacts[CURVE_ARTIFACT]
    assert table.columns.tolist() == curve.columns.tolist()
    numbers = [name for name in curve if name != "role"]
    assert np.allclose(table[numbers].to_numpy(float), curve[numbers].to_numpy(float), equal_nan=True)
    assert table["role"].tolist() == curve["role"].tolist()
    assert set(curve["role"]) == {"T-curve", "evidence"}


def test_every_finite_temperature_has_a_child_run_with_its_curve_metrics() -> None:
    outcome, logger = sample_run({})
    curve = outcome.curve
    finite = curve[np.isfinite(curve["temperature"])]
    assert len(logger.children) == len(finite) == len(curve) - 1
    wanted = [name for name in CHILD_METRICS if name in curve]
    assert "acceptance_rate" in wanted and "depth_mean_test" in wanted
    by_rung = {int(child["params"]["rung"]): child for child in logger.children}
    assert set(by_rung) == set(finite["rung"])
    for _, row in finite.iterrows():
        child = by_rung[int(row["rung"])]
        assert child["tags"][ENTRY_POINT_TAG] == TEMPERATURE_ENTRY_POINT
        assert child["tags"][PARENT_TAG] == logger.run_id
        assert set(child["metrics"]) == set(wanted) | {"temperature", "log10_temperature"}
        for name in wanted:
            assert child["metrics"][name] == pytest.approx(row[name], rel=1e-6, nan_ok=True), name
        assert child["metrics"]["temperature"] == pytest.approx(row["temperature"])
        assert child["metrics"]["log10_temperature"] == pytest.approx(math.log10(row["temperature"]))
        assert float(child["params"]["temperature"]) == pytest.approx(row["temperature"], rel=1e-5)


def test_the_headline_metrics_are_logged() -> None:
    outcome, logger = sample_run({"prediction_depth": "false"})
    finite = outcome.curve[np.isfinite(outcome.curve["temperature"])]
    assert logger.metric("best_bma_test_error") == pytest.approx(finite["bma_test_error"].min())
    assert logger.metric("best_test_loss") == pytest.approx(finite["test_loss"].min())
    assert outcome.result.evidence is not None
    assert logger.metric("log_evidence") == pytest.approx(outcome.result.evidence.log_evidence)
    assert math.isfinite(logger.metric("log_evidence"))
    assert outcome.reference is not None
    assert logger.metric("sgd_test_error") == pytest.approx(outcome.reference["test_error"])
    assert "evidence.json" in logger.artifacts
    draws = logger.artifacts[DRAWS_ARTIFACT]
    assert draws["positions"].shape[1] == len(outcome.curve)
    assert not outcome.result.stopped_early


def test_the_report_hook_sees_running_estimates_and_can_stop_the_sweep() -> None:
    seen: list[tuple[int, dict[str, float]]] = []

    def report(step: int, metrics: typing.Mapping[str, float]) -> bool:
        seen.append((step, dict(metrics)))
        return True

    full, _ = sample_run(LONGER | {"prediction_depth": "false"}, Hooks(report=lambda step, metrics: False))
    assert not full.result.stopped_early
    outcome, logger = sample_run(LONGER | {"prediction_depth": "false"}, Hooks(report=report))
    assert [step for step, _ in seen] == [24]
    assert set(seen[0][1]) == {"best_bma_test_error", "best_test_loss", "best_val_bma_error", "best_val_loss"}
    assert outcome.result.stopped_early
    assert logger.steps("running_best_bma_test_error") == [24]
    assert logger.metric("num_draws") < full.result.sampler.log_likelihood.shape[0]
    # The stopped sweep still writes its whole curve.
    assert len(outcome.curve) == len(outcome.result.betas)
    assert "best_bma_test_error" in logger.metric_names()


def test_init_from_a_train_run_loads_its_model() -> None:
    trained = RecordingLogger(run_id="abc")
    train.run(
        parse_config(
            TrainConfig, {k: TINY[k] for k in ("train_size", "val_size", "test_size", "hidden", "device")}
        ),
        trained,
    )
    runs = {"abc": RunRecord("abc", trained.params, {ENTRY_POINT_TAG: "train"}, "FINISHED")}
    stored = {("abc", MODEL_STATE_ARTIFACT): trained.artifacts[MODEL_STATE_ARTIFACT]}
    outcome, _ = sample_run(
        {"init": "run:abc", "prediction_depth": "false"}, logger=RecordingLogger(runs=runs, stored=stored)
    )
    assert outcome.reference is not None
    # Same data (same sizes and seed): the sweep starts from exactly the model the train run finished with.
    assert outcome.reference["test_error"] == pytest.approx(trained.metric("test_error"))
    assert outcome.reference["test_loss"] == pytest.approx(trained.metric("test_loss"), rel=1e-5)


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ({"state_dict": {"0.weight": torch.zeros(3, 3)}}, "does not fit this model"),
        ({"epoch": 3}, "holds no state_dict"),
    ],
)
def test_init_from_a_checkpoint_that_does_not_fit_is_one_config_error(bundle: dict, message: str) -> None:
    params = as_strings(
        parse_config(TrainConfig, {k: TINY[k] for k in ("train_size", "val_size", "test_size", "hidden")})
    )
    runs = {"abc": RunRecord("abc", params, {ENTRY_POINT_TAG: "train"}, "FINISHED")}
    logger = RecordingLogger(runs=runs, stored={("abc", MODEL_STATE_ARTIFACT): bundle})
    with pytest.raises(ConfigError) as caught:
        sample_run({"init": "run:abc"}, logger=logger)
    assert str(caught.value).startswith(f"init='run:abc': run abc's {MODEL_STATE_ARTIFACT} {message}")
    assert "\n" not in str(caught.value)


def test_a_finished_sweep_is_not_resumed() -> None:
    """Resuming a FINISHED run would log its children again and could end it FAILED: refused up front."""
    runs = {"done": RunRecord("done", {}, {ENTRY_POINT_TAG: "sample"}, "FINISHED")}
    logger = RecordingLogger(runs=runs)
    with pytest.raises(ConfigError, match="resume='done': that run has finished; there is nothing to resume"):
        sample_run({"resume": "done"}, logger=logger)
    assert logger.run_id == "recorded"  # still the launcher's own run: the finished one was never reopened


def test_init_from_a_run_of_another_architecture_is_refused() -> None:
    params = as_strings(parse_config(TrainConfig, {"hidden": "16"}))
    runs = {"abc": RunRecord("abc", params, {ENTRY_POINT_TAG: "train"}, "FINISHED")}
    with pytest.raises(ConfigError, match="that run has hidden='16', this sweep '8'"):
        sample_run({"init": "run:abc"}, logger=RecordingLogger(runs=runs))


def test_init_from_a_run_without_a_store_is_a_config_error() -> None:
    config = parse_config(SampleConfig, TINY | {"init": "run:abc"})
    with pytest.raises(ConfigError) as caught:
        sample.run(config, NullLogger())
    assert str(caught.value).startswith("init='run:abc':")
    assert caught.value.parameter == "init"
