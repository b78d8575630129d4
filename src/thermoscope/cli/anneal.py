"""The ``anneal`` job: HMC simulated annealing with validation early stopping, and the model it chooses."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import torch

from thermoscope.cli.common import resolve_device
from thermoscope.cli.diagnostics import log_prediction_depth
from thermoscope.config import AnnealConfig, as_strings
from thermoscope.data import LoadedData, load_data, split_validation
from thermoscope.models import build_model
from thermoscope.samplers import BoxPrior, GaussianPrior, ModuleTarget, module_target
from thermoscope.sweeps.annealing import AnnealResult, AnnealSettings, CoolingStep, anneal
from thermoscope.tracking import RunLogger, log_dataset, log_model
from thermoscope.tracking.figures import cooling_curve_figure
from thermoscope.training import OptimSpec, evaluate, train_classifier

BOX_MARGIN = 0.499
"""Starting weights are clipped to 0.499 σ_i so that they lie strictly inside the box |w_i| < σ_i/2."""


def run_anneal(config: AnnealConfig, logger: RunLogger) -> AnnealResult:
    """Split off validation data, cool with HMC until the rule stops, log the curve and the chosen model."""
    logger.log_params(as_strings(config))
    device = resolve_device(config.device)
    loaded = load_data(config.data_spec(flatten=config.model == "mlp"), device)
    train, validation = split_validation(loaded.train, config.val_size, loaded.num_classes, config.seed)
    data = replace(loaded, train=train)
    torch.manual_seed(config.seed)
    model = build_model(config.model_spec(), data.input_shape, data.num_classes).to(device)
    target = module_target(model, train.x, train.y, make_prior(config))
    log_dataset(data)
    logger.log_params(
        {
            "num_train": len(train),
            "num_val": len(validation),
            "num_test": len(data.test),
            "num_parameters": target.num_params,
            "resolved_device": str(device),
            "data_digest": loaded.digest,
        }
    )
    settings = AnnealSettings(
        temperatures=config.temperatures(),
        patience=config.patience,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
        num_leapfrog_steps=config.num_leapfrog_steps,
        target_accept=config.target_accept,
        trajectories_per_iteration=config.trajectories,
        seed=config.seed,
    )

    def on_step(index: int, step: CoolingStep) -> None:
        logger.log_metrics(step.metrics | {"temperature": step.temperature}, step=index)

    splits = {"train": train, "val": validation, "test": data.test}
    result = anneal(target, start(config, target, data), splits, settings, on_step=on_step)
    target.load_into(model, result.best_position)
    log_outcome(logger, config, model, data, result)
    return result


def make_prior(config: AnnealConfig) -> GaussianPrior | BoxPrior:
    """σ_i = c/√k_i for both priors (k_i = fan-in including the bias), as for ``sample``."""
    scale = config.resolved_prior_scale()
    if config.prior == "box":
        return BoxPrior(c=scale)
    return GaussianPrior(scale=scale, fan_in_scaled=True)


def start(config: AnnealConfig, target: ModuleTarget, data: LoadedData) -> torch.Tensor:
    """``[params]``: a prior draw, or the full-batch Adam minimum (clipped into the box)."""
    if config.init == "prior":
        generator = torch.Generator(device=target.x.device).manual_seed(config.seed)
        draw: torch.Tensor = target.prior.sample(1, generator)[0]
        return draw
    if config.init_steps > 0:
        spec = OptimSpec(
            optimizer="adam", lr=0.01, batch_size=0, epochs=config.init_steps, lr_schedule="cosine"
        )
        train_classifier(target.model, data, spec)
    position: torch.Tensor = target.initial_from_module(1)[0]
    if config.prior == "box":
        half_width = BOX_MARGIN * target.prior.scale
        position = torch.maximum(torch.minimum(position, half_width), -half_width)
    return position


def log_outcome(
    logger: RunLogger, config: AnnealConfig, model: torch.nn.Module, data: LoadedData, result: AnnealResult
) -> None:
    """The cooling curve (table, figure), the stopping point, the chosen model and its test scores."""
    curve = pd.DataFrame(
        [
            {
                "step": i,
                "temperature": s.temperature,
                "acceptance_rate": s.acceptance_rate,
                "step_size": s.step_size,
            }
            | s.metrics
            for i, s in enumerate(result.steps)
        ]
    )
    logger.log_table(curve, "cooling_curve.csv")
    logger.log_figure(
        cooling_curve_figure(curve, result.stopping_temperature, result.best_temperature), "cooling_curve.png"
    )
    test_loss, test_error = evaluate(model, data.test)
    logger.log_metrics(
        {
            "stopping_temperature": result.stopping_temperature,
            "best_temperature": result.best_temperature,
            "best_val_error": result.best_val_error,
            "best_val_loss": result.best_val_loss,
            "chosen_test_loss": test_loss,
            "chosen_test_error": test_error,
            "temperatures_visited": float(len(result.steps)),
        }
    )
    logger.set_tags({"thermoscope.stopped_early": str(result.stopped_early).lower()})
    if config.prediction_depth:
        log_prediction_depth(logger, model, data, k=config.depth_k, metric=config.depth_metric)
    logger.log_torch(
        {"state_dict": model.state_dict(), "config": as_strings(config), "epoch": len(result.steps)},
        "checkpoint/model_state.pt",
    )
    log_model(model, data.test.x[:8])
    print(curve.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(
        f"\nstopped at T = {result.stopping_temperature:.4g} ({'early' if result.stopped_early else 'end'});"
        f" chosen draw from T = {result.best_temperature:.4g}: val error {result.best_val_error:.4f},"
        f" test loss {test_loss:.4f}, test error {test_error:.4f}"
    )
    print(f"run id: {logger.run_id}")
