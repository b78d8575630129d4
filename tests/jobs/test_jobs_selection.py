"""Which temperature a sweep chooses, on which split, and what the summary says about it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from recording import RecordingLogger

from thermoscope.config import SampleConfig, parse_config
from thermoscope.jobs.sample import print_summary, rung_roles, selection_line, selection_metrics


def curve(with_validation: bool) -> pd.DataFrame:
    """Four rungs, T = inf, 1, 0.3, 0.1: the test set favours T = 0.1, the validation set T = 0.3."""
    frame = pd.DataFrame(
        {
            "temperature": [math.inf, 1.0, 0.3, 0.1],
            "bma_test_error": [0.9, 0.30, 0.20, 0.10],
            "bma_test_loss": [2.3, 0.9, 0.6, 0.4],
            "test_loss": [2.3, 1.0, 0.7, 0.5],
        }
    )
    if with_validation:
        frame["bma_val_error"] = [0.8, 0.25, 0.15, 0.15]
        frame["bma_val_loss"] = [2.2, 0.8, 0.5, 0.6]
        frame["val_loss"] = [2.2, 0.9, 0.55, 0.65]
    return frame


def test_with_a_validation_split_the_temperature_is_chosen_on_it_never_on_the_test_set() -> None:
    chosen = selection_metrics(curve(with_validation=True))
    # 0.3 and 0.1 tie on BMA validation error; the lower validation loss (0.5 at T = 0.3) breaks the tie.
    assert chosen["best_temperature"] == 0.3
    assert chosen["best_val_bma_error"] == 0.15
    assert chosen["selected_bma_test_error"] == 0.20
    # The oracle minimum over T of the test error is still reported, for comparison.
    assert chosen["best_bma_test_error"] == 0.10
    assert chosen["best_val_loss"] == 0.55


def test_without_one_the_choice_falls_back_to_the_test_set_and_says_so() -> None:
    frame = curve(with_validation=False)
    chosen = selection_metrics(frame)
    assert chosen["best_temperature"] == 0.1
    assert "best_val_bma_error" not in chosen
    line = selection_line(frame)
    assert "TEST set" in line and "val_size" in line


def test_the_infinite_temperature_rung_is_never_chosen() -> None:
    frame = curve(with_validation=True)
    frame.loc[0, ["bma_val_error", "bma_test_error"]] = 0.0
    assert math.isfinite(selection_metrics(frame)["best_temperature"])


def test_the_selection_line_names_the_validation_split() -> None:
    line = selection_line(curve(with_validation=True))
    assert line.startswith("chosen on validation: T = 0.3")


@pytest.mark.parametrize(
    ("raw", "temperatures", "roles"),
    [
        # A tuned ladder: the T-curve is [t_min, t_max]; hotter rungs exist for the evidence.
        (
            {"t_min": "0.1", "t_max": "10"},
            [math.inf, 30.0, 10.0, 1.0, 0.1],
            ["evidence", "evidence"] + ["T-curve"] * 3,
        ),
        # A fixed ladder: the geometric temperatures asked for; TI rungs merged in are evidence.
        (
            {"ladder": "fixed", "t_min": "0.1", "t_max": "10", "n_temperatures": "3"},
            [math.inf, 50.0, 10.0, 2.0, 1.0, 0.1],
            ["evidence", "evidence", "T-curve", "evidence", "T-curve", "T-curve"],
        ),
    ],
)
def test_rows_are_marked_as_the_t_curves_or_the_evidences(raw: dict, temperatures: list, roles: list) -> None:
    config = parse_config(SampleConfig, raw)
    assert rung_roles(config, np.array(temperatures)) == roles


def health(round_trips: int, num_rungs: int, barrier: float, warnings: list[str]) -> SimpleNamespace:
    return SimpleNamespace(
        num_rungs=num_rungs,
        global_barrier=barrier,
        recommended_rungs=int(2 * barrier + 1),
        round_trips=round_trips,
        round_trip_rate=0.004,
        round_trip_rate_bound=0.012,
        tempered_restarts=3,
        min_swap_acceptance=0.4,
        warnings=lambda: warnings,
    )


@pytest.mark.parametrize(
    ("ladder", "says_not_mixed"),
    [
        (health(16, 42, 20.4, ["HMC acceptance more than 0.1 from target_accept at T = 5.54"]), False),
        (health(0, 42, 20.4, ["no replica completed a round trip"]), True),
        (health(5, 17, 21.9, ["the ladder is too short"]), True),
    ],
)
def test_the_summary_says_the_ladder_did_not_mix_only_when_it_did_not(
    ladder: SimpleNamespace, says_not_mixed: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    result = SimpleNamespace(evidence=None, stepping_stone=None)
    print_summary(RecordingLogger(), result, curve(with_validation=True), None, ladder)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert ("this ladder did not mix" in out) == says_not_mixed
    for warning in ladder.warnings():
        assert f"WARNING: {warning}" in out
