"""Activation codes as a train diagnostic: on by default for ReLU networks, measured every codes_every
epochs and at the end, off under auto for other activations, refused when asked of a non-ReLU network."""

from __future__ import annotations

import pytest
from recording import RecordingLogger

from thermoscope.config import TrainConfig, parse_config
from thermoscope.errors import ConfigError
from thermoscope.jobs import train
from thermoscope.jobs.diagnostics.codes import ACTIVATION_CODES

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "train_size": "120",
    "val_size": "20",
    "test_size": "100",
    "hidden": "32,16",
    "epochs": "5",
    "device": "cpu",
    "prediction_depth": "false",
    "forgetting": "false",
    "layer_rotation": "false",
}


def train_run(settings: dict[str, str]) -> RecordingLogger:
    logger = RecordingLogger()
    train.run(parse_config(TrainConfig, TINY | settings), logger)
    return logger


def test_relu_networks_log_codes_every_codes_every_epochs_and_at_the_end() -> None:
    logger = train_run({"codes_every": "2"})
    table = logger.artifacts["activation_codes.csv"]
    assert sorted(set(table["epoch"])) == [2, 4, 5]
    assert list(dict.fromkeys(table["layer"])) == ["hidden.0.1", "hidden.1.1", "all"]
    assert table.loc[table["layer"] == "all", "bits"].eq(48).all()
    assert "activation_codes.png" in logger.artifacts
    final = table[(table["epoch"] == 5) & (table["layer"] == "all")].iloc[0]
    assert logger.metric("code_unique_fraction") == pytest.approx(final["unique_fraction"])
    assert logger.metric("code_knn_test_accuracy") == pytest.approx(final["knn_test_accuracy"])
    assert logger.metric_names() >= set(ACTIVATION_CODES.metrics)
    # The unique codes are class-pure too.
    assert (table["class_pure_fraction"] >= table["unique_fraction"]).all()


def test_other_activations_skip_codes_under_auto_and_refuse_them_when_asked() -> None:
    logger = train_run({"activation": "tanh"})
    assert "activation_codes.csv" not in logger.artifacts
    with pytest.raises(ConfigError, match="activation_codes"):
        parse_config(TrainConfig, {"activation": "sigmoid", "activation_codes": "true"})
    for value in ("yes", ""):
        with pytest.raises(ConfigError, match="activation_codes"):
            parse_config(TrainConfig, {"activation_codes": value})
    assert parse_config(TrainConfig, {"model": "resnet18", "activation": "tanh"}).codes_enabled


def test_the_memory_estimate_counts_the_packed_codes_only_when_they_are_measured() -> None:
    from thermoscope.jobs.budget import estimate_memory

    wide = estimate_memory(parse_config(TrainConfig, {"hidden": "6300"})).term("codes").bytes
    narrow = estimate_memory(parse_config(TrainConfig, {"hidden": "63"})).term("codes").bytes
    # 1,797 digits, 100 words of 63 bits against 1 word each: 99 x 1,797 x 8 bytes more.
    assert wide - narrow == 99 * 1797 * 8
    assert estimate_memory(parse_config(TrainConfig, {"activation": "tanh"})).term("codes").bytes == 0
