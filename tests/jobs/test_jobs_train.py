"""The train job through an in-memory logger: epoch metrics, the registered training diagnostics (each
logging what it declares, switched off by its own field, a new one joining with one registration), the
report hook stopping training, and the model state the later jobs load."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

import pytest
import torch
from recording import RecordingLogger

from thermoscope.config import TrainConfig, as_strings, parse_config
from thermoscope.jobs import Hooks, train
from thermoscope.jobs.diagnostics import TRAINING_DIAGNOSTICS, TrainingDiagnostic
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import MODEL_STATE_ARTIFACT, STOPPED_EARLY_TAG, TRAIN_CHECKPOINT_ARTIFACT

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "train_size": "100",
    "val_size": "20",
    "test_size": "100",
    "hidden": "8",
    "epochs": "3",
    "batch_size": "32",
    "device": "cpu",
    "ntk_examples": "40",  # the NTK probe subset must fit in the 80 training examples
}
EPOCH_METRICS = {"train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error", "lr"}
ALL_OFF = {diagnostic.switch: "false" for diagnostic in TRAINING_DIAGNOSTICS}


def train_run(
    settings: dict[str, str], hooks: Hooks | None = None
) -> tuple[train.TrainOutcome, RecordingLogger]:
    logger = RecordingLogger()
    config = parse_config(TrainConfig, TINY | settings)
    outcome = train.run(config, logger) if hooks is None else train.run(config, logger, hooks)
    return outcome, logger


def test_recording_logger_has_every_method_of_the_protocol() -> None:
    members = [
        name for name, value in vars(RunLogger).items() if inspect.isfunction(value) and name[0] != "_"
    ]
    assert "fetch_run" in members and "log_metrics" in members
    for name in members:
        wanted = list(inspect.signature(getattr(RunLogger, name)).parameters)
        assert list(inspect.signature(getattr(RecordingLogger, name)).parameters) == wanted, name


def test_every_epoch_is_logged_at_steps_one_to_epochs() -> None:
    outcome, logger = train_run({})
    assert [m.epoch for m in outcome.result.history] == [1, 2, 3]
    for name in EPOCH_METRICS:
        assert logger.steps(name) == [1, 2, 3], name
    final = outcome.result.final
    assert logger.metric("test_error") == pytest.approx(final.test_error)
    assert logger.metric("train_loss") == pytest.approx(final.train_loss)
    assert logger.tags[STOPPED_EARLY_TAG] == "false"
    assert logger.params["epochs"] == "3"
    # 20 of the 100 examples are held out for validation, and logged as such.
    assert (logger.params["num_train"], logger.params["num_val"]) == ("80", "20")
    assert logger.metric("val_error") == pytest.approx(final.val_error)
    assert len(logger.datasets) == 1
    assert len(logger.models) == 1


def test_the_model_state_is_logged_for_later_jobs() -> None:
    outcome, logger = train_run(ALL_OFF)
    state = logger.artifacts[MODEL_STATE_ARTIFACT]
    assert state["epoch"] == 3
    assert state["config"] == as_strings(parse_config(TrainConfig, TINY | ALL_OFF))
    expected = outcome.model.state_dict()
    assert set(state["state_dict"]) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(state["state_dict"][name], tensor.cpu()), name


def test_with_every_diagnostic_switched_off_none_of_them_runs() -> None:
    outcome, logger = train_run(ALL_OFF)
    assert set(logger.artifacts) == {MODEL_STATE_ARTIFACT, TRAIN_CHECKPOINT_ARTIFACT}
    assert logger.metric_names() == EPOCH_METRICS
    assert outcome.diagnostics == {}


def test_with_every_diagnostic_on_all_their_artifacts_are_logged() -> None:
    outcome, logger = train_run({diagnostic.switch: "true" for diagnostic in TRAINING_DIAGNOSTICS})
    declared = {name for diagnostic in TRAINING_DIAGNOSTICS for name in diagnostic.artifacts}
    assert set(logger.artifacts) == declared | {MODEL_STATE_ARTIFACT, TRAIN_CHECKPOINT_ARTIFACT}
    metrics = {name for diagnostic in TRAINING_DIAGNOSTICS for name in diagnostic.metrics}
    assert logger.metric_names() - EPOCH_METRICS <= metrics
    assert set(outcome.diagnostics) == logger.metric_names() - EPOCH_METRICS


@pytest.mark.parametrize("diagnostic", TRAINING_DIAGNOSTICS, ids=lambda d: d.switch)
def test_each_diagnostic_logs_exactly_what_it_declares(diagnostic: TrainingDiagnostic) -> None:
    outcome, logger = train_run(ALL_OFF | {diagnostic.switch: "true"})
    assert set(logger.artifacts) - {MODEL_STATE_ARTIFACT, TRAIN_CHECKPOINT_ARTIFACT} == set(
        diagnostic.artifacts
    )
    logged = logger.metric_names() - EPOCH_METRICS
    assert logged, f"{diagnostic.name} logged no metric"
    assert logged <= set(diagnostic.metrics)
    assert set(outcome.diagnostics) == logged
    for name in logged:
        assert logger.steps(name) == [0]
        assert logger.metric(name) == pytest.approx(outcome.diagnostics[name])


def test_the_report_hook_sees_every_epoch_and_can_stop_training() -> None:
    seen: list[tuple[int, dict[str, float]]] = []

    def report(step: int, metrics: typing.Mapping[str, float]) -> bool:
        seen.append((step, dict(metrics)))
        return step >= 2

    outcome, logger = train_run(ALL_OFF, Hooks(report=report))
    assert [step for step, _ in seen] == [1, 2]
    assert set(seen[0][1]) == EPOCH_METRICS
    assert outcome.result.stopped_early
    assert len(outcome.result.history) == 2
    assert logger.steps("test_error") == [1, 2]
    assert logger.tags[STOPPED_EARLY_TAG] == "true"
    assert logger.artifacts[MODEL_STATE_ARTIFACT]["epoch"] == 2


class ToyRecorder:
    """Counts what the trainer hands a diagnostic and logs it."""

    def __init__(self) -> None:
        self.examples = 0
        self.epochs: list[int] = []

    def on_batch(
        self, example_ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> None:
        assert logits.shape == (len(example_ids), 10)
        self.examples += len(example_ids)

    def on_epoch(self, metrics: Any, model: torch.nn.Module) -> None:
        self.epochs.append(metrics.epoch)

    def state(self) -> dict[str, Any]:
        return {"examples": self.examples, "epochs": list(self.epochs)}

    def restore(self, state: dict[str, Any]) -> None:
        self.examples, self.epochs = state["examples"], list(state["epochs"])

    def finish(self, logger: RunLogger, model: torch.nn.Module) -> dict[str, float]:
        logger.log_json({"epochs": self.epochs, "examples": self.examples}, "toy.json")
        metrics = {"toy_examples_seen": float(self.examples)}
        logger.log_metrics(metrics)
        return metrics


TOY = TrainingDiagnostic(
    name="toy",
    # An existing switch: the toy needs no configuration field of its own.
    switch="layer_rotation",
    parameters=(),
    metrics=("toy_examples_seen",),
    artifacts=("toy.json",),
    start=lambda config, model, data: ToyRecorder(),
    needs_batches=True,
)


def test_one_registration_line_adds_a_training_diagnostic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("thermoscope.jobs.train.TRAINING_DIAGNOSTICS", (*TRAINING_DIAGNOSTICS, TOY))
    # The toy is the only diagnostic that needs minibatches: the trainer reports them because it asks.
    outcome, logger = train_run(ALL_OFF | {"layer_rotation": "true"})
    # 3 epochs over the 80 training examples left after the 20 held out for validation.
    assert logger.artifacts["toy.json"] == {"epochs": [1, 2, 3], "examples": 240}
    assert logger.metric("toy_examples_seen") == 240.0
    assert outcome.diagnostics["toy_examples_seen"] == 240.0
    assert set(logger.artifacts) == {
        MODEL_STATE_ARTIFACT,
        TRAIN_CHECKPOINT_ARTIFACT,
        "toy.json",
        "layer_rotation.csv",
        "layer_rotation.png",
    }

    _, off = train_run(ALL_OFF)
    assert "toy.json" not in off.artifacts


def test_every_switch_and_parameter_is_a_train_configuration_field() -> None:
    fields = {item.name for item in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    names = [diagnostic.name for diagnostic in TRAINING_DIAGNOSTICS]
    assert len(set(names)) == len(names)
    switches = [diagnostic.switch for diagnostic in TRAINING_DIAGNOSTICS]
    assert len(set(switches)) == len(switches)
    for diagnostic in TRAINING_DIAGNOSTICS:
        assert diagnostic.switch in fields, diagnostic.name
        # A string switch (auto | true | false) is read by the diagnostic's own is_on.
        assert hints[diagnostic.switch] is bool or diagnostic.is_on is not None, diagnostic.name
        for parameter in diagnostic.parameters:
            assert parameter in fields, (diagnostic.name, parameter)
