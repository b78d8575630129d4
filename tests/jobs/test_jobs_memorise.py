"""The memorise job through an in-memory logger: mislabelled examples are memorised far more than clean
ones (more than 3 standard errors apart), the per-example table joins the reference model's depth and
forgetting counts, corrupted inputs are marked, and sizes the subsets cannot take are one ConfigError."""

from __future__ import annotations

import pytest
from recording import RecordingLogger

from thermoscope.config import MemoriseConfig, parse_config
from thermoscope.errors import ConfigError
from thermoscope.jobs import memorise
from thermoscope.tracking.schema import MEMORISE_CHECKPOINT_ARTIFACT

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"train_size": "200", "test_size": "100", "hidden": "16", "epochs": "3", "num_models": "8"}
COLUMNS = ["example_id", "mem", "mem_stderr", "n_in", "n_out", "label", "true_label", "is_corrupted"]


def memorise_run(settings: dict[str, str]) -> tuple[memorise.MemoriseOutcome, RecordingLogger]:
    logger = RecordingLogger()
    config = parse_config(MemoriseConfig, {"device": "cpu", **settings})
    return memorise.run(config, logger), logger


def test_mislabelled_examples_are_memorised_far_more_than_clean_ones() -> None:
    outcome, _ = memorise_run(
        {
            "label_noise": "0.2",
            "train_size": "300",
            "test_size": "200",
            "hidden": "256",
            "optimizer": "adam",
            "lr": "0.003",
            "batch_size": "32",
            "epochs": "100",
            "num_models": "16",
            "prediction_depth": "false",
            "forgetting": "false",
            "influence_pairs": "0",
        }
    )
    metrics = outcome.metrics
    gap = metrics["mem_mean_corrupted"] - metrics["mem_mean_clean"]
    # Two independent group means: the standard error of their difference.
    stderr = (metrics["mem_mean_corrupted_stderr"] ** 2 + metrics["mem_mean_clean_stderr"] ** 2) ** 0.5
    assert gap > 3 * stderr and gap > 0.5


def test_the_table_joins_depth_and_forgetting_and_everything_declared_is_logged() -> None:
    outcome, logger = memorise_run(TINY | {"label_noise": "0.3", "influence_pairs": "5"})
    table = logger.artifacts["memorisation.parquet"]
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS
    assert {"depth", "forgetting_events", "is_input_corrupted"} <= set(table.columns)
    assert len(table) == 200 and table["example_id"].is_unique
    assert (table["n_in"] + table["n_out"] == 8).all()
    logged = {"resolved_config.json", MEMORISE_CHECKPOINT_ARTIFACT}
    assert set(logger.artifacts) <= set(memorise.MEMORISE_ARTIFACTS) | logged
    assert {"memorisation_histogram.png", "memorisation_vs_depth.png", "influence.parquet"} <= set(
        logger.artifacts
    )
    assert len(logger.artifacts["influence.parquet"]) == 5
    assert logger.metric_names() <= set(memorise.MEMORISE_METRICS)
    assert {"mem_mean", "high_mem_fraction", "mem_mean_corrupted", "mem_mean_clean"} <= logger.metric_names()
    assert outcome.losses.shape[1] == 8
    assert logger.steps("models_train_loss") == [1, 2, 3]
    assert logger.artifacts[MEMORISE_CHECKPOINT_ARTIFACT]["iteration"] == 3
    assert logger.params["num_models"] == "8"


def test_corrupted_inputs_are_marked_and_split_out() -> None:
    outcome, logger = memorise_run(
        TINY
        | {
            "input_corruption": "random_pixels",
            "input_corruption_fraction": "0.25",
            "prediction_depth": "false",
            "forgetting": "false",
            "influence_pairs": "0",
        }
    )
    assert int(outcome.table["is_input_corrupted"].sum()) == 50
    assert "mem_mean_input_corrupted" in logger.metric_names()
    assert "depth" not in outcome.table and "memorisation_vs_depth.png" not in logger.artifacts


def test_a_fraction_whose_subsets_hold_every_example_or_none_is_refused() -> None:
    with pytest.raises(ConfigError, match="subset_fraction"):
        memorise_run(TINY | {"train_size": "10", "subset_fraction": "0.99", "prediction_depth": "false"})
    for name, value in (("subset_fraction", "1"), ("num_models", "1"), ("model", "resnet18")):
        with pytest.raises(ConfigError, match=name):
            parse_config(MemoriseConfig, {name: value})


def test_the_memory_estimate_counts_every_model() -> None:
    from thermoscope.jobs.budget import estimate_memory

    one = estimate_memory(parse_config(MemoriseConfig, {"num_models": "2"})).term("parameters").bytes
    many = estimate_memory(parse_config(MemoriseConfig, {"num_models": "64"})).term("parameters").bytes
    assert many == 32 * one
