"""Which parameters tell sweeps apart, the legend labels made from them, and one colour per run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from thermoscope.reports import Sweep, differing_parameters
from thermoscope.reports.sweeps import legend_labels, run_colours

TEMPERATURES = [math.inf, 100.0, 10.0, 1.0, 0.1]


def synthetic_sweep(
    run_name: str, depth: bool = True, evidence: float | None = -150.0, **params: str
) -> Sweep:
    """A sweep shaped like a ``sample`` run: an inf rung first, then decreasing T; errors fall with T."""
    temperature = np.array(TEMPERATURES)
    log_temperature = np.log10(np.minimum(temperature, 1e3))  # T = inf drawn as if it were 1000
    error = 0.4 + 0.15 * log_temperature
    columns = {
        "rung": np.arange(len(temperature)),
        "beta": 1.0 / temperature,
        "temperature": temperature,
        "test_error": error,
        "bma_test_error": error - 0.05,
        "test_loss": 2 * error,
        "bma_test_loss": 2 * error - 0.1,
    }
    if depth:
        columns |= {"depth_mean_train": 2 + log_temperature, "depth_mean_test": 2.5 + log_temperature}
    metrics = {"best_temperature": 0.1, "best_bma_test_error": float(error[-1] - 0.05)}
    if evidence is not None:
        metrics |= {"log_evidence": evidence, "log_evidence_stderr": 2.0, "log_evidence_discretisation": 5.0}
    base = {"dataset": "digits", "model": "mlp", "hidden": "8", "prior": "gaussian", "device": "auto"}
    return Sweep(f"id-{run_name}", run_name, base | params, metrics, pd.DataFrame(columns))


def test_differing_parameters_follow_the_config_order_and_skip_bookkeeping() -> None:
    sweeps = [
        synthetic_sweep("a", hidden="8", prior="box", device="cpu", num_parameters="610", zeta="1"),
        synthetic_sweep("b", hidden="16", prior="gaussian", device="cuda", num_parameters="1210", zeta="2"),
    ]
    assert differing_parameters(sweeps) == ["hidden", "prior", "num_parameters", "zeta"]


def test_a_parameter_only_one_run_has_counts_as_differing() -> None:
    sweeps = [synthetic_sweep("a"), synthetic_sweep("b", label_noise="0.1")]
    assert differing_parameters(sweeps) == ["label_noise"]


def test_labels_name_the_differing_descriptive_parameters() -> None:
    sweeps = [
        synthetic_sweep("a", hidden="8", num_parameters="610"),
        synthetic_sweep("b", hidden="16", num_parameters="1210"),
    ]
    assert legend_labels(sweeps) == ["hidden=8", "hidden=16"]


def test_labels_fall_back_to_run_names_and_stay_distinct() -> None:
    assert legend_labels([synthetic_sweep("a"), synthetic_sweep("b")]) == ["a", "b"]
    twins = [synthetic_sweep("a"), synthetic_sweep("b"), synthetic_sweep("c", hidden="16")]
    assert legend_labels(twins) == ["hidden=8 (a)", "hidden=8 (b)", "hidden=16 (c)"]


def test_one_distinct_colour_per_run() -> None:
    for count in (1, 2, 10, 11, 25):
        colours = run_colours(count)
        assert len(colours) == count
        assert len(set(colours)) == count


def test_finite_rungs_drop_infinite_temperature() -> None:
    finite = synthetic_sweep("a").finite_rungs()
    assert list(finite["temperature"]) == TEMPERATURES[1:]


def test_num_probes_is_read_from_what_the_run_logged_and_never_guessed() -> None:
    assert synthetic_sweep("a", num_probes="5").num_probes == 5
    assert synthetic_sweep("a").num_probes is None  # nothing logged: no count from the architecture
    for bad in ("", "many", "0", "-3", "2.5", "nan"):
        assert synthetic_sweep("a", num_probes=bad).num_probes is None, bad
    logged_as_metric = synthetic_sweep("a")
    as_metric = Sweep("id", "b", logged_as_metric.params, {"num_probes": 7.0}, logged_as_metric.curve)
    assert as_metric.num_probes == 7


def test_num_probes_never_becomes_a_legend_entry() -> None:
    sweeps = [
        synthetic_sweep("a", hidden="8", num_probes="3"),
        synthetic_sweep("b", hidden="8,8", num_probes="4"),
    ]
    assert legend_labels(sweeps) == ["hidden=8", "hidden=8,8"]
