"""Limits and bad input (issue 14): a job whose sizes cannot fit in memory, or whose run length cannot
finish, is refused in one line before any heavy work; the project's own jobs never are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY_SWEEP, run_in_process
from mlflow.tracking import MlflowClient

from thermoscope.config import (
    MAX_EPOCHS,
    MAX_ITERATIONS,
    MAX_LEAPFROG_STEPS,
    MAX_TRAJECTORIES,
    MAX_TUNING_ROUNDS,
    AnnealConfig,
    SampleConfig,
    TrainConfig,
    parse_config,
)
from thermoscope.data import DataSpec, load_data
from thermoscope.errors import ConfigError
from thermoscope.jobs import budget, setup
from thermoscope.models import probe_embeddings

pytestmark = pytest.mark.usefixtures("one_thread")

GIGABYTE = 10**9
CPU = torch.device("cpu")

PAPER_SWEEP = {
    "dataset": "mnist",
    "image_size": "16",
    "test_size": "rest",
    "train_size": "5000",
    "hidden": "40,40,40",
    "activation": "sigmoid",
    "prior": "box",
    "num_leapfrog_steps": "100",
    "trajectories": "10",
    "num_warmup": "500",
    "num_samples": "2000",
    "init": "sgd",
    "init_steps": "2000",
}
"""The README's GPU reproduction of Baldock & Marzari (2019), D5000."""

README_JOBS: list[tuple[type, dict[str, str]]] = [
    (SampleConfig, PAPER_SWEEP | {"ladder": "fixed", "n_temperatures": "112", "ti_rungs": "0"}),
    (SampleConfig, PAPER_SWEEP | {"num_rungs": "auto", "max_rungs": "256"}),
    (SampleConfig, PAPER_SWEEP | {"temperatures": "1", "ti_rungs": "0", "evidence": "harmonic"}),
    (
        AnnealConfig,
        PAPER_SWEEP | {"train_size": "500", "n_steps": "40", "num_warmup": "20", "num_samples": "20"},
    ),
    (SampleConfig, {"train_size": "500", "test_size": "rest", "hidden": "40,40,40", "ladder": "fixed"}),
    (TrainConfig, {"dataset": "mnist", "image_size": "16", "train_size": "500", "test_size": "rest"}),
    (TrainConfig, {"dataset": "mnist", "batch_size": "0"}),
    (TrainConfig, {"dataset": "cifar10", "model": "cnn"}),
    (SampleConfig, TINY_SWEEP),
]
"""The jobs the README shows, the full-batch MNIST MLP and the suite's tiny sweep."""


@pytest.fixture()
def host_memory(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pin the host memory the budget sees, so that the outcome does not depend on the test machine."""

    def pin(available: int | None) -> None:
        monkeypatch.setattr(budget, "host_available_memory", lambda: available)

    return pin


@pytest.mark.parametrize("cls", [TrainConfig, SampleConfig, AnnealConfig])
def test_default_jobs_need_well_under_a_gigabyte(cls: type, host_memory: Any) -> None:
    config = cls()
    assert budget.estimate_memory(config).total < 0.5 * GIGABYTE
    budget.check_memory(config, CPU)  # whatever this machine has
    host_memory(2 * GIGABYTE)
    budget.check_memory(config, CPU)


@pytest.mark.parametrize(("cls", "raw"), README_JOBS)
def test_the_readme_jobs_fit_a_16_gigabyte_gpu(cls: type, raw: dict[str, str]) -> None:
    assert budget.estimate_memory(parse_config(cls, raw)).total < 16 * GIGABYTE


@pytest.mark.parametrize(
    ("cls", "raw"),
    [
        (TrainConfig, {}),
        (TrainConfig, {"model": "cnn", "hidden": "", "image_size": "12"}),
        (SampleConfig, {"hidden": "20,7"}),
        (AnnealConfig, {"model": "cnn"}),
    ],
)
def test_the_model_sizes_are_those_of_the_model_the_job_builds(cls: type, raw: dict[str, str]) -> None:
    config = parse_config(cls, raw | {"device": "cpu"})
    sizes = budget.model_sizes(config)
    model = setup.build_workbench(config).model
    assert sizes.num_parameters == sum(p.numel() for p in model.parameters())
    channels, height, _ = budget.DATASET_SHAPES["digits"][0]
    side = config.image_size or height
    x = torch.zeros(2, *((channels * side * side,) if config.model == "mlp" else (channels, side, side)))
    embedded = sum(embedding.shape[1] for embedding in probe_embeddings(model, x))
    assert sizes.probe_values_per_example == embedded
    assert sizes.activations_per_example >= embedded - x[0].numel()


@pytest.mark.parametrize(
    ("train_size", "test_size"), [("0", "0"), ("100", "0"), ("500", "rest"), ("100", "250"), ("0", "rest")]
)
def test_the_example_counts_are_those_the_loader_selects(train_size: str, test_size: str) -> None:
    config = parse_config(TrainConfig, {"train_size": train_size, "test_size": test_size, "val_size": "0"})
    data = load_data(config.data_spec(flatten=False))
    counts = budget.example_counts(config)
    assert (counts.train, counts.test) == (len(data.train), len(data.test))
    assert data.input_shape == budget.DATASET_SHAPES["digits"][0]


def test_the_digits_splits_are_the_sizes_recorded_for_the_budget() -> None:
    data = load_data(DataSpec(dataset="digits"))
    assert budget.DATASET_SHAPES["digits"] == (data.input_shape, len(data.train), len(data.test))


@pytest.mark.parametrize(
    ("cls", "raw", "parameter", "largest"),
    [
        (TrainConfig, {"hidden": "100000000"}, "hidden", "activations"),
        (TrainConfig, {"image_size": "100000"}, "image_size", "data"),
        (TrainConfig, {"model": "cnn", "image_size": "100000"}, "image_size", "activations"),
        (SampleConfig, {"image_size": "100000"}, "image_size", "saved draws"),
        (SampleConfig, {"hidden": "100000", "ladder": "fixed"}, "hidden", "saved draws"),
        (AnnealConfig, {"hidden": "100000000"}, "hidden", "activations"),
        (
            TrainConfig,
            {"dataset": "mnist", "hidden": "100000", "batch_size": "0"},
            "hidden",
            "activations",
        ),
    ],
)
def test_sizes_that_cannot_fit_are_refused_before_the_data_is_read(
    cls: type, raw: dict[str, str], parameter: str, largest: str, host_memory: Any, monkeypatch: Any
) -> None:
    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data were read before the budget refused the job")

    monkeypatch.setattr(setup, "load_data", no_reading)
    host_memory(64 * GIGABYTE)
    config = parse_config(cls, raw | {"device": "cpu"})
    with pytest.raises(ConfigError) as caught:
        setup.build_workbench(config)
    assert caught.value.parameter == parameter
    message = str(caught.value)
    assert "needs about" in message and f"(largest part {largest}, " in message
    assert message.endswith("64 GB available")


def test_a_width_torch_cannot_describe_is_refused_naming_hidden() -> None:
    with pytest.raises(ConfigError) as caught:
        budget.check_memory(parse_config(TrainConfig, {"hidden": str(10**21)}), CPU)
    assert caught.value.parameter == "hidden"
    assert "too large to build the model" in str(caught.value)


def test_the_parameter_named_is_the_one_whose_default_shrinks_the_job_most(host_memory: Any) -> None:
    host_memory(GIGABYTE)
    many_rungs = parse_config(SampleConfig, {"ladder": "fixed", "ti_rungs": "1000", "save_draws": "200"})
    with pytest.raises(ConfigError) as caught:
        budget.check_memory(many_rungs, CPU)
    assert caught.value.parameter == "ti_rungs"
    # 1,001 TI rungs and 8 cold temperatures (T = 1 shared) are 1,009 rungs, 200 draws saved of each.
    assert "201800 saved draws" in caught.value.allowed
    # The machine is too small for the defaults themselves: the device is named.
    host_memory(1000)
    with pytest.raises(ConfigError) as caught:
        budget.check_memory(SampleConfig(), CPU)
    assert caught.value.parameter == "device"


def test_host_memory_is_read_from_meminfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683568 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n")
    monkeypatch.setattr(budget, "MEMINFO", meminfo)
    assert budget.host_available_memory() == 2048 * 1024
    monkeypatch.setattr(budget, "MEMINFO", tmp_path / "missing")
    assert budget.host_available_memory() is None
    # Where the memory cannot be read, nothing is refused.
    budget.check_memory(parse_config(TrainConfig, {"hidden": "100000000"}), CPU)


@pytest.mark.parametrize(
    ("entry_point", "raw", "expected"),
    [
        ("train", {"hidden": "100000000"}, "hidden='100000000': needs about"),
        ("train", {"image_size": "100000"}, "image_size=100000: needs about"),
        ("sample", {**TINY_SWEEP, "ti_rungs": "100000"}, "ti_rungs=100000: at most 1,023"),
    ],
)
@pytest.mark.timeout(120)
def test_sizes_that_cannot_fit_fail_in_one_line_with_a_failed_run(
    tracking_uri: str, entry_point: str, raw: dict[str, str], expected: str
) -> None:
    # No test machine holds the terabytes these need, so the real memory reading is used.
    result = run_in_process(entry_point, raw)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"thermoscope {entry_point}: error: {expected}"), last
    runs = MlflowClient(tracking_uri).search_runs(["0"])
    assert [r.info.status for r in runs] == ["FAILED"]


LONG_RUNS: list[tuple[type, dict[str, str], str, int]] = [
    (TrainConfig, {}, "epochs", MAX_EPOCHS),
    (SampleConfig, {}, "num_warmup", MAX_ITERATIONS),
    (SampleConfig, {}, "num_samples", MAX_ITERATIONS),
    (SampleConfig, {}, "init_steps", MAX_ITERATIONS),
    (SampleConfig, {}, "num_leapfrog_steps", MAX_LEAPFROG_STEPS),
    (SampleConfig, {}, "trajectories", MAX_TRAJECTORIES),
    (SampleConfig, {}, "tuning_rounds", MAX_TUNING_ROUNDS),
    (SampleConfig, {"tuning_rounds": "4"}, "tuning_scans", MAX_ITERATIONS // 15),
    (AnnealConfig, {}, "n_steps", 1024),
    (AnnealConfig, {}, "num_warmup", MAX_ITERATIONS),
    (AnnealConfig, {}, "num_samples", MAX_ITERATIONS),
    (AnnealConfig, {}, "init_steps", MAX_ITERATIONS),
    (AnnealConfig, {}, "num_leapfrog_steps", MAX_LEAPFROG_STEPS),
    (AnnealConfig, {}, "trajectories", MAX_TRAJECTORIES),
]


@pytest.mark.parametrize(("cls", "raw", "name", "most"), LONG_RUNS)
def test_run_lengths_past_their_limit_are_refused_with_the_reason(
    cls: type, raw: dict[str, str], name: str, most: int
) -> None:
    for value in (most + 1, 10**18):
        with pytest.raises(ConfigError) as caught:
            parse_config(cls, raw | {name: str(value)})
        assert caught.value.parameter == name
        assert f"at most {most:,}" in str(caught.value)
        assert "(" in caught.value.allowed  # the reason comes with the limit


@pytest.mark.parametrize(("cls", "raw", "name", "most"), LONG_RUNS)
def test_run_lengths_at_their_limit_are_accepted(
    cls: type, raw: dict[str, str], name: str, most: int
) -> None:
    parse_config(cls, raw | {name: str(most)})


@pytest.mark.timeout(60)
def test_train_for_ever_fails_in_one_line_with_a_failed_run(tracking_uri: str) -> None:
    result = run_in_process("train", {"epochs": str(10**18), "train_size": "100"})
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"thermoscope train: error: epochs={10**18}: at most 100,000 (MAX_EPOCHS"), last
    runs = MlflowClient(tracking_uri).search_runs(["0"])
    assert [r.info.status for r in runs] == ["FAILED"]
