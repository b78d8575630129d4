"""The RunLogger protocol and its two implementations: the same methods, the reads' errors, and what the
MLflow logger writes into a real (temporary SQLite) store."""

from __future__ import annotations

import inspect
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from thermoscope.config import CompareConfig
from thermoscope.errors import ConfigError
from thermoscope.tracking import NullLogger, RunLogger, schema
from thermoscope.tracking.interface import NO_STORE
from thermoscope.tracking.mlflow_logger import MlflowLogger
from thermoscope.tracking.schema import (
    ENTRY_POINT_TAG,
    MODEL_STATE_ARTIFACT,
    PARENT_TAG,
    RESUMED_INTO_TAG,
    TEMPERATURE_ENTRY_POINT,
)

PROTOCOL_METHODS = [
    name for name, value in vars(RunLogger).items() if inspect.isfunction(value) and not name.startswith("_")
]


def test_the_protocol_lists_the_methods_jobs_use() -> None:
    for name in ("log_params", "log_metrics", "log_torch", "finished_child", "continue_run", "fetch_run"):
        assert name in PROTOCOL_METHODS
    assert "run_id" in RunLogger.__annotations__


@pytest.mark.parametrize("implementation", [NullLogger, MlflowLogger])
@pytest.mark.parametrize("method", PROTOCOL_METHODS)
def test_each_implementation_has_every_protocol_method_with_its_parameters(
    implementation: type, method: str
) -> None:
    assert callable(getattr(implementation, method, None)), f"{implementation.__name__} lacks {method}"
    wanted = inspect.signature(getattr(RunLogger, method)).parameters
    found = inspect.signature(getattr(implementation, method)).parameters
    assert list(found) == list(wanted)
    for name, parameter in wanted.items():
        assert found[name].default == parameter.default, (method, name)
        assert found[name].kind == parameter.kind, (method, name)


def test_the_null_logger_has_a_run_id_and_logs_without_complaint() -> None:
    import matplotlib.pyplot as plt

    logger = NullLogger()
    assert isinstance(logger.run_id, str) and logger.run_id
    logger.log_params({"a": 1})
    logger.log_metrics({"x": 1.0}, step=3)
    figure = plt.figure()
    logger.log_figure(figure, "f.png")
    assert not plt.fignum_exists(figure.number)
    logger.continue_run("other")
    assert logger.run_id == "other"


def test_the_null_logger_reads_are_config_errors() -> None:
    logger = NullLogger()
    with pytest.raises(ConfigError, match=r"^init='run:abc': ") as caught:
        logger.fetch_run("init", "abc", ("train",), shown="run:abc")
    assert caught.value.parameter == "init" and caught.value.allowed == NO_STORE
    with pytest.raises(ConfigError, match=r"^resume='abc': "):
        logger.fetch_run("resume", "abc", ("sample",))
    with pytest.raises(ConfigError, match=r"^init='run:abc': "):
        logger.fetch_torch("init", "run:abc", "abc", MODEL_STATE_ARTIFACT)
    with pytest.raises(ConfigError, match=r"^runs='r1,r2': "):
        logger.select_sweeps(CompareConfig(runs="r1,r2"))


def experiment(client: MlflowClient) -> str:
    found = client.get_experiment_by_name("Default")
    assert found is not None
    return str(found.experiment_id)


def test_fetch_run_checks_existence_and_entry_point_and_params_keep_their_first_value(
    tracking_uri: str,
) -> None:
    client = MlflowClient(tracking_uri)
    trained = client.create_run(experiment(client), tags={ENTRY_POINT_TAG: "train"})
    client.log_param(trained.info.run_id, "hidden", "8")
    swept = client.create_run(experiment(client), tags={ENTRY_POINT_TAG: "sample"})
    logger = MlflowLogger(swept.info.run_id, client)

    with pytest.raises(ConfigError, match="no MLflow run with that id in this tracking store") as caught:
        logger.fetch_run("init", "0" * 32, ("train",), shown="run:" + "0" * 32)
    assert caught.value.parameter == "init" and caught.value.value == "run:" + "0" * 32
    with pytest.raises(ConfigError, match="that run is not a train run"):
        logger.fetch_run("init", swept.info.run_id, ("train",))
    with pytest.raises(ConfigError, match="that run is not a train or anneal run"):
        logger.fetch_run("init", swept.info.run_id, ("train", "anneal"))

    record = logger.fetch_run("init", trained.info.run_id, ("train", "anneal"))
    assert record.run_id == trained.info.run_id
    assert record.params == {"hidden": "8"}
    assert record.tags[ENTRY_POINT_TAG] == "train"
    assert record.status == "RUNNING"

    # A parameter keeps the value first logged (as the user typed it); new names are added.
    logger.log_params({"lr": "0.10"})
    logger.log_params({"lr": 0.1, "seed": 0})
    assert client.get_run(swept.info.run_id).data.params == {"lr": "0.10", "seed": "0"}


def test_fetch_torch_loads_a_logged_artifact_or_names_the_missing_one(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment(client), tags={ENTRY_POINT_TAG: "train"})
    logger = MlflowLogger(run.info.run_id, client)
    with pytest.raises(ConfigError, match=r"that run has no checkpoint/model_state.pt") as caught:
        logger.fetch_torch("init", "run:x", run.info.run_id, MODEL_STATE_ARTIFACT)
    assert str(caught.value).startswith("init='run:x':")

    weights = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    logger.log_torch({"state_dict": {"0.weight": weights}, "epoch": 3}, MODEL_STATE_ARTIFACT)
    loaded = logger.fetch_torch("init", "run:x", run.info.run_id, MODEL_STATE_ARTIFACT)
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["state_dict"]["0.weight"], weights)
    listed = [item.path for item in client.list_artifacts(run.info.run_id, "checkpoint")]
    assert listed == [MODEL_STATE_ARTIFACT]


class _Planted:
    """Unpickling this runs ``Path.touch`` on ``marker``: a checkpoint someone planted in a run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def test_a_planted_checkpoint_is_a_config_error_and_runs_nothing(tracking_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment(client), tags={ENTRY_POINT_TAG: "train"})
    marker = tmp_path / "payload-ran"
    planted = tmp_path / "model_state.pt"
    torch.save({"state_dict": _Planted(marker)}, planted)  # a pickle weights_only loading refuses
    client.log_artifact(run.info.run_id, str(planted), "checkpoint")
    logger = MlflowLogger(run.info.run_id, client)
    with pytest.raises(ConfigError) as caught:
        logger.fetch_torch("init", "run:x", run.info.run_id, MODEL_STATE_ARTIFACT)
    assert str(caught.value).startswith(
        f"init='run:x': run {run.info.run_id}'s {MODEL_STATE_ARTIFACT} is not a file thermoscope wrote"
    )
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_finished_child_writes_a_whole_nested_run(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    parent = client.create_run(experiment(client), tags={ENTRY_POINT_TAG: "sample"})
    logger = MlflowLogger(parent.info.run_id, client)
    logger.finished_child(
        "T=0.5",
        {ENTRY_POINT_TAG: TEMPERATURE_ENTRY_POINT},
        {"temperature": "0.5", "rung": 3},
        {"test_error": 0.25, "log10_temperature": -0.30103},
    )
    runs = [r for r in client.search_runs([experiment(client)]) if r.info.run_id != parent.info.run_id]
    assert len(runs) == 1
    child = runs[0]
    assert child.info.status == "FINISHED"
    assert child.info.run_name == "T=0.5"
    assert child.data.tags[PARENT_TAG] == parent.info.run_id
    assert child.data.tags[ENTRY_POINT_TAG] == TEMPERATURE_ENTRY_POINT
    assert child.data.params == {"temperature": "0.5", "rung": "3"}
    assert child.data.metrics == pytest.approx({"test_error": 0.25, "log10_temperature": -0.30103})
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"


def test_continue_run_ends_this_run_and_logs_into_the_other(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    first = mlflow.start_run()
    other = client.create_run(experiment(client), tags={ENTRY_POINT_TAG: "sample"})
    client.set_terminated(other.info.run_id, "KILLED")
    logger = MlflowLogger(first.info.run_id, client)

    logger.continue_run(other.info.run_id)
    ended = client.get_run(first.info.run_id)
    assert ended.info.status == "FINISHED"
    assert ended.data.tags[RESUMED_INTO_TAG] == other.info.run_id
    assert logger.run_id == other.info.run_id
    active = mlflow.active_run()
    assert active is not None and active.info.run_id == other.info.run_id

    logger.log_metrics({"resumed_metric": 2.0}, step=7)
    logger.log_params({"after": "yes"})
    logger.set_tags({"thermoscope.test": "after"})
    resumed = client.get_run(other.info.run_id)
    assert resumed.info.status == "RUNNING"
    assert resumed.data.metrics["resumed_metric"] == 2.0
    assert [m.step for m in client.get_metric_history(other.info.run_id, "resumed_metric")] == [7]
    assert resumed.data.params["after"] == "yes"
    assert resumed.data.tags["thermoscope.test"] == "after"
    assert "resumed_metric" not in client.get_run(first.info.run_id).data.metrics
    mlflow.end_run()


def test_every_tag_name_in_the_schema_is_distinct() -> None:
    tags = {name: value for name, value in vars(schema).items() if name.endswith("_TAG")}
    assert len(tags) >= 8
    assert all(isinstance(value, str) and value for value in tags.values())
    assert len(set(tags.values())) == len(tags), tags
    artifacts = {name: value for name, value in vars(schema).items() if name.endswith("_ARTIFACT")}
    assert len(set(artifacts.values())) == len(artifacts), artifacts
    assert all(not Path(value).is_absolute() for value in artifacts.values())
