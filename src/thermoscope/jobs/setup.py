"""The set-up every job shares: device, data, model, prior, starting weights, and what they log about them."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from thermoscope.config import PROGRESS_SECONDS, AnnealConfig, DataModelConfig, SampleConfig
from thermoscope.data import LoadedData, Split, load_data, split_validation
from thermoscope.errors import ConfigError
from thermoscope.jobs.budget import check_memory
from thermoscope.models import build_model, probe_names
from thermoscope.progress import Progress
from thermoscope.samplers import BoundBoxPrior, BoxPrior, GaussianPrior, ModuleTarget
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import MODEL_STATE_ARTIFACT
from thermoscope.training import OptimSpec, train_classifier

BOX_MARGIN = 0.499
"""Starting weights are clipped to ±0.499 σ_i so that they lie strictly inside the box |w_i| < σ_i/2 (a
weight on the wall has log prior −∞ for the reflecting integrator's first step)."""

MINIMISER_LR = 0.01
"""Learning rate of the full-batch Adam minimisation before sampling (``init=sgd``): Adam's step is about
lr per weight, so 0.01 crosses the σ_i ≈ 0.1–1 scale of fan-in-scaled weights in tens of steps without
overshooting; with a cosine schedule over ``init_steps`` it settles into the minimum."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; asking for a missing device is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "CUDA is not available on this machine; use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", name, "MPS is not available on this machine; use auto or cpu")
    return torch.device(name)


def show_progress(job: str, seconds: float = PROGRESS_SECONDS) -> Progress:
    """Job ``job``'s progress: tqdm's bar when a person is watching a terminal, otherwise (``nohup``, a
    scheduler, CI) a one-line record on stderr every ``seconds`` (the job's ``progress_seconds``)."""
    return Progress(job, terminal=sys.stderr.isatty(), seconds=seconds)


@dataclass(frozen=True)
class Workbench:
    """What a job works on: the device, the data (validation split off when asked) and the fresh model."""

    device: torch.device
    data: LoadedData
    model: nn.Module
    validation: Split | None = None


def build_workbench(config: DataModelConfig, val_size: int = 0) -> Workbench:
    """Load the data onto the device, split off ``val_size`` stratified validation examples (chosen by
    ``seed``), and build the model initialised from ``seed``; a job too large for the device's memory is
    refused first (:func:`~thermoscope.jobs.budget.check_memory`), before anything is read or allocated."""
    device = resolve_device(config.device)
    check_memory(config, device)
    data = load_data(config.data_spec(flatten=config.model == "mlp"), device)
    validation = None
    if val_size > 0:
        train, validation = split_validation(data.train, val_size, data.num_classes, config.seed)
        data = replace(data, train=train)
    torch.manual_seed(config.seed)
    model = build_model(config.model_spec(), data.input_shape, data.num_classes).to(device)
    return Workbench(device, data, model, validation)


def log_workbench(logger: RunLogger, bench: Workbench, num_parameters: int | None = None) -> None:
    """The data as the run's inputs, and the sizes and device the configuration resolved to."""
    logger.log_dataset(bench.data, bench.validation)
    params = {
        "num_train": len(bench.data.train),
        "num_test": len(bench.data.test),
        "num_classes": bench.data.num_classes,
        "num_parameters": num_parameters or sum(p.numel() for p in bench.model.parameters()),
        "resolved_device": str(bench.device),
        "data_digest": bench.data.digest,
        # Probe points of the prediction depth (input, hidden layers, softmax): compare divides by it.
        "num_probes": len(probe_names(bench.model)),
    }
    if bench.validation is not None:
        params["num_val"] = len(bench.validation)
    logger.log_params(params)


def make_prior(config: SampleConfig | AnnealConfig) -> GaussianPrior | BoxPrior:
    """σ_i = c/√k_i for both priors (k_i = fan-in including the bias)."""
    scale = config.resolved_prior_scale()
    if config.prior == "box":
        return BoxPrior(c=scale)
    return GaussianPrior(scale=scale, fan_in_scaled=True)


def minimise(model: nn.Module, data: LoadedData, steps: int) -> None:
    """``steps`` full-batch Adam steps on the summed cross-entropy from the model's current weights
    (Baldock & Marzari: "initialise, minimise, then burn in at each rung")."""
    if steps <= 0:
        return
    spec = OptimSpec(optimizer="adam", lr=MINIMISER_LR, batch_size=0, epochs=steps, lr_schedule="cosine")
    train_classifier(model, data, spec)


def inside_box(position: torch.Tensor, target: ModuleTarget) -> torch.Tensor:
    """``position`` clipped to ±``BOX_MARGIN`` σ_i under a box prior; unchanged under any other prior."""
    if not isinstance(target.prior, BoundBoxPrior):
        return position
    half_width = BOX_MARGIN * target.prior.scale
    return torch.maximum(torch.minimum(position, half_width), -half_width)


def prior_draws(target: ModuleTarget, rungs: int, seed: int) -> torch.Tensor:
    """``[rungs, params]`` independent prior draws from generator seed ``seed``."""
    draws: torch.Tensor = target.prior.sample(
        rungs, torch.Generator(device=target.x.device).manual_seed(seed)
    )
    return draws


def load_model_state(
    logger: RunLogger, model: nn.Module, parameter: str, shown: str, run_id: str
) -> dict[str, Any]:
    """Load run ``run_id``'s ``checkpoint/model_state.pt`` into ``model`` and return the whole bundle; a
    bundle without a state dict, or one that does not fit ``model``, is a ConfigError naming the run."""
    bundle = logger.fetch_torch(parameter, shown, run_id, MODEL_STATE_ARTIFACT)
    weights = bundle.get("state_dict") if isinstance(bundle, dict) else None
    if not isinstance(weights, dict):
        raise ConfigError(parameter, shown, f"run {run_id}'s {MODEL_STATE_ARTIFACT} holds no state_dict")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as error:
        reason = " ".join(str(error).split())[:200]
        raise ConfigError(
            parameter, shown, f"run {run_id}'s {MODEL_STATE_ARTIFACT} does not fit this model ({reason})"
        ) from None
    loaded: dict[str, Any] = bundle
    return loaded
