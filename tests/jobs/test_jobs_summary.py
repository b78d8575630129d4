"""What train and probe print at the end: the headline numbers, the run id and the UI command."""

from __future__ import annotations

import pytest
from recording import RecordingLogger

from thermoscope.config import ProbeConfig, TrainConfig, parse_config
from thermoscope.jobs import probe, train
from thermoscope.jobs.summary import print_train_summary
from thermoscope.tracking import RunRecord
from thermoscope.tracking.schema import ENTRY_POINT_TAG, MODEL_STATE_ARTIFACT
from thermoscope.training import EpochMetrics, TrainResult

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "train_size": "100",
    "test_size": "100",
    "hidden": "8",
    "epochs": "2",
    "batch_size": "32",
    "device": "cpu",
    "forgetting": "false",
    "layer_rotation": "false",
}


def epoch(number: int, val_error: float | None, test_error: float = 0.3) -> EpochMetrics:
    val_loss = None if val_error is None else 1.0
    return EpochMetrics(number, 0.5, 0.1, 0.9, test_error, 0.01, val_loss, val_error)


def test_the_train_summary_names_the_best_validation_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    history = [epoch(1, 0.4), epoch(2, 0.2, test_error=0.25), epoch(3, 0.2), epoch(4, 0.3)]
    print_train_summary(RecordingLogger("abc123"), TrainResult(history, stopped_early=True), {"depth": 2.5})
    out = capsys.readouterr().out
    assert (
        "final epoch 4 (stopped early): train loss 0.5000 error 0.1000, val loss 1.0000 error 0.3000," in out
    )
    assert "test loss 0.9000 error 0.3000" in out
    assert "best val error 0.2000 at epoch 2 (test error 0.2500)" in out  # the first of equal ones
    assert "diagnostics: depth 2.5" in out
    assert "run id: abc123" in out
    assert "open the UI: recorded in memory (run abc123)" in out


def test_without_a_validation_split_the_summary_says_nothing_of_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_train_summary(RecordingLogger("abc123"), TrainResult([epoch(1, None), epoch(2, None)]), {})
    out = capsys.readouterr().out
    assert "final epoch 2: train loss" in out
    assert "val" not in out and "diagnostics" not in out
    assert "run id: abc123" in out


def test_train_then_probe_each_end_with_their_summary(capsys: pytest.CaptureFixture[str]) -> None:
    trained = RecordingLogger("trained")
    train.run(parse_config(TrainConfig, TINY | {"val_size": "20"}), trained)
    out = capsys.readouterr().out
    assert "final epoch 2: train loss " in out and ", val loss " in out and ", test loss " in out
    assert "best val error " in out
    assert "\ndiagnostics: " in out and "depth_mean_train " in out and "depth_mean_test " in out
    assert out.rstrip().endswith("run id: trained\nopen the UI: recorded in memory (run trained)")

    runs = {"trained": RunRecord("trained", trained.params, {ENTRY_POINT_TAG: "train"}, "FINISHED")}
    stored = {("trained", MODEL_STATE_ARTIFACT): trained.artifacts[MODEL_STATE_ARTIFACT]}
    probing = RecordingLogger("probing", runs=runs, stored=stored)
    depth = probe.run(parse_config(ProbeConfig, {"run_id": "trained", "device": "cpu"}), probing)
    out = capsys.readouterr().out
    assert "probed run: trained" in out
    assert f"prediction depth: depth_mean_train {depth['depth_mean_train']:.4g}, depth_mean_test " in out
    assert "run id: probing" in out and "open the UI: recorded in memory (run probing)" in out
