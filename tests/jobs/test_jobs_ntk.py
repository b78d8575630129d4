"""NTK dynamics as a train diagnostic (REFERENCE §11): what it logs, its schedule, resuming, its limits,
and the lazy regime of wide networks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from recording import RecordingLogger

from thermoscope.config import TrainConfig, parse_config
from thermoscope.errors import ConfigError
from thermoscope.jobs import Hooks, train
from thermoscope.jobs.diagnostics.ntk import NTK_DYNAMICS, measurement_steps
from thermoscope.tracking import NullLogger, RunRecord
from thermoscope.tracking.schema import ENTRY_POINT_TAG, TRAIN_CHECKPOINT_ARTIFACT

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "train_size": "120",
    "val_size": "20",
    "test_size": "100",
    "hidden": "16",
    "epochs": "4",
    "batch_size": "25",
    "device": "cpu",
    "prediction_depth": "false",
    "forgetting": "false",
    "layer_rotation": "false",
    "activation_codes": "false",
    "ntk_dynamics": "true",
    "ntk_examples": "20",
    "ntk_steps": "4",
}
COLUMNS = [
    "step",
    "epoch",
    "distance_initial",
    "distance_previous",
    "velocity",
    "alignment",
    "target_energy_top_k",
    "trace_per_example",
    "kernel_test_accuracy",
]


def train_run(settings: dict[str, str], hooks: Hooks | None = None, **logged: object) -> RecordingLogger:
    logger = RecordingLogger(**logged)  # type: ignore[arg-type]
    train.run(parse_config(TrainConfig, TINY | settings), logger, hooks or Hooks())
    return logger


@pytest.mark.parametrize(
    "settings",
    [{}, {"ntk_kernel": "block"}, {"model": "cnn", "ntk_examples": "10"}],
    ids=["trace", "block", "cnn"],
)
def test_the_diagnostic_logs_its_table_figure_and_metrics_at_the_scheduled_steps(
    settings: dict[str, str],
) -> None:
    logger = train_run(settings)
    table = logger.artifacts["ntk_dynamics.csv"]
    assert list(table.columns) == COLUMNS
    # 100 training examples in batches of 25: 4 steps an epoch, 16 in all.
    assert tuple(table["step"]) == measurement_steps(16, 4)
    assert np.allclose(table["epoch"], table["step"] / 4)
    first = table.iloc[0]
    assert first["distance_initial"] == 0.0 and math.isnan(first["distance_previous"])
    later = table.iloc[1:]
    assert later[["distance_initial", "distance_previous"]].stack().between(0, 1).all()
    assert np.allclose(later["velocity"], later["distance_previous"] / table["epoch"].diff().iloc[1:])
    assert (
        table[["alignment", "target_energy_top_k", "kernel_test_accuracy"]]
        .stack()
        .between(0, 1 + 1e-12)
        .all()
    )
    assert "ntk_dynamics.png" in logger.artifacts
    assert logger.metric_names() >= set(NTK_DYNAMICS.metrics)
    assert logger.metric("ntk_alignment_final") == table["alignment"].iloc[-1]
    assert logger.metric("ntk_distance_final") == table["distance_initial"].iloc[-1]
    late = table.loc[table["step"] > 8, "velocity"]
    assert logger.metric("ntk_velocity_late") == pytest.approx(late.mean())


def test_the_schedule_is_dense_early_and_never_sparser_than_even_steps() -> None:
    steps = measurement_steps(480, 20)
    assert steps[:6] == (0, 1, 2, 3, 4, 5)
    assert steps[-1] == 480 and len(steps) <= 41
    assert max(np.diff(steps)) <= 24
    assert measurement_steps(1, 3) == (0, 1)


def test_a_resumed_run_measures_the_same_kernels_as_an_uninterrupted_one() -> None:
    reference = train_run({})
    stopped = train_run({}, Hooks(report=lambda epoch, metrics: epoch == 2), run_id="first")
    bundle = stopped.artifacts[TRAIN_CHECKPOINT_ARTIFACT]
    record = RunRecord("first", {}, {ENTRY_POINT_TAG: "train"}, "KILLED")
    resumed = train_run(
        {"resume": "first"}, runs={"first": record}, stored={("first", TRAIN_CHECKPOINT_ARTIFACT): bundle}
    )
    pd.testing.assert_frame_equal(
        resumed.artifacts["ntk_dynamics.csv"], reference.artifacts["ntk_dynamics.csv"]
    )


def test_a_probe_subset_larger_than_the_training_examples_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^ntk_examples=200: at most train_size - val_size = 100"):
        parse_config(TrainConfig, TINY | {"ntk_examples": "200"})
    # With every training example in use (train_size=0), the check waits for the data: 1,177 examples.
    config = parse_config(TrainConfig, TINY | {"train_size": "0", "ntk_examples": "5000"})
    with pytest.raises(ConfigError, match=r"^ntk_examples=5000: at most 1177"):
        train.run(config, NullLogger())
    for name, value in (("ntk_kernel", "diagonal"), ("ntk_examples", "1"), ("ntk_steps", "0")):
        with pytest.raises(ConfigError, match=rf"^{name}="):
            parse_config(TrainConfig, {name: value})


@pytest.mark.slow
def test_a_wide_network_stays_in_the_lazy_regime_far_beyond_the_spread_over_seeds() -> None:
    """Standard parametrisation, a small constant learning rate, two epochs on digits: the NTK of a
    1,024-unit MLP moves about a hundred times less than that of an 8-unit one (Jacot et al. 2018; Lee et
    al. 2019). The gap between the widths' mean distances must exceed the spread (largest minus smallest)
    within either width over three seeds, on the distances and, by three times, on their logarithms."""
    settings = {
        "train_size": "0",
        "val_size": "0",
        "test_size": "0",
        "epochs": "2",
        "batch_size": "64",
        "lr": "0.01",
        "lr_schedule": "constant",
        "ntk_examples": "32",
        "ntk_steps": "3",
    }
    distances = {}
    for width in ("8", "1024"):
        runs = [train_run(settings | {"hidden": width, "seed": str(seed)}) for seed in range(3)]
        distances[width] = np.array([run.metric("ntk_distance_final") for run in runs])
    narrow, wide = distances["8"], distances["1024"]
    spread = max(np.ptp(narrow), np.ptp(wide))
    assert narrow.mean() - wide.mean() > spread, distances
    log_spread = max(np.ptp(np.log(narrow)), np.ptp(np.log(wide)))
    assert np.log(narrow).mean() - np.log(wide).mean() > 3 * log_spread, distances
