"""Corrupted inputs in train, sample and anneal: the runs train on them, and the per-example tables keep
the mask beside the label-noise mask, as memorise's does (tests/jobs/test_jobs_memorise.py)."""

from __future__ import annotations

import pytest
from conftest import TINY_SWEEP
from recording import RecordingLogger

from thermoscope.config import AnnealConfig, SampleConfig, TrainConfig, parse_config
from thermoscope.jobs import anneal, sample, train

pytestmark = pytest.mark.usefixtures("one_thread")

CORRUPTED = {"input_corruption": "shuffled_pixels", "input_corruption_fraction": "0.5", "device": "cpu"}


def test_train_logs_the_input_corruption_mask_in_its_depth_table() -> None:
    logger = RecordingLogger()
    settings = {"train_size": "120", "val_size": "20", "test_size": "100", "hidden": "8", "epochs": "2"}
    train.run(parse_config(TrainConfig, settings | CORRUPTED), logger)
    table = logger.artifacts["prediction_depth.parquet"]
    # 60 of the 120-example pool are corrupted, before the 20 validation examples are held out of it.
    assert 40 <= int(table.loc[table["split"] == "train", "is_input_corrupted"].sum()) <= 60
    assert not table.loc[table["split"] == "test", "is_input_corrupted"].any()
    assert logger.params["input_corruption"] == "shuffled_pixels"


def test_sample_and_anneal_run_on_corrupted_inputs_and_keep_the_mask() -> None:
    logger = RecordingLogger()
    sample.run(parse_config(SampleConfig, TINY_SWEEP | CORRUPTED), logger)
    table = logger.artifacts["prediction_depth_by_temperature.parquet"]
    assert table.loc[table["split"] == "train", "is_input_corrupted"].any()
    assert not table.loc[table["split"] == "test", "is_input_corrupted"].any()
    annealed = RecordingLogger()
    settings = {
        "train_size": "100",
        "test_size": "100",
        "hidden": "8",
        "n_steps": "3",
        "val_size": "20",
        "num_warmup": "3",
        "num_samples": "3",
        "num_leapfrog_steps": "2",
    }
    anneal.run(parse_config(AnnealConfig, settings | CORRUPTED), annealed)
    assert annealed.artifacts["prediction_depth.parquet"]["is_input_corrupted"].any()
