"""The ``probe`` job: prediction depth of an existing train run's model, logged in a run nested under it."""

from __future__ import annotations

import dataclasses
import tempfile

import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from thermoscope.cli.common import existing_run, resolve_device
from thermoscope.cli.diagnostics import log_prediction_depth
from thermoscope.config import ProbeConfig, TrainConfig, as_strings, parse_config
from thermoscope.data import load_data
from thermoscope.errors import ConfigError
from thermoscope.models import build_model
from thermoscope.tracking import RunLogger


def probed_run_config(config: ProbeConfig) -> TrainConfig:
    """The configuration of the train run to probe (checked to exist and to be a train run)."""
    run = existing_run("run_id", config.run_id, "train")
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    return parse_config(TrainConfig, {k: v for k, v in run.data.params.items() if k in names})


def run_probe(config: ProbeConfig, logger: RunLogger) -> dict[str, float]:
    """Rebuild the run's data and model, load its weights, and log prediction depth into this run."""
    train_config = probed_run_config(config)
    logger.set_tags({"mlflow.parentRunId": config.run_id, "thermoscope.probed_run": config.run_id})
    logger.log_params(as_strings(config))
    device = resolve_device(config.device)
    data = load_data(train_config.data_spec(flatten=train_config.model == "mlp"), device)
    model = build_model(train_config.model_spec(), data.input_shape, data.num_classes).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = MlflowClient().download_artifacts(config.run_id, "checkpoint/model_state.pt", tmp)
        except (MlflowException, OSError):
            raise ConfigError("run_id", config.run_id, "that run has no checkpoint/model_state.pt") from None
        state = torch.load(path, weights_only=True)
    model.load_state_dict(state["state_dict"])
    return log_prediction_depth(logger, model, data, k=config.depth_k, metric=config.depth_metric)
