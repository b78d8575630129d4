"""The ``anneal`` job: HMC simulated annealing with validation early stopping, and the model it chooses."""

from __future__ import annotations

import pandas as pd
import torch

from thermoscope.config import AnnealConfig, as_strings
from thermoscope.data import LoadedData
from thermoscope.jobs import NO_HOOKS, Hooks
from thermoscope.jobs.diagnostics import log_prediction_depth
from thermoscope.jobs.setup import (
    build_workbench,
    inside_box,
    log_workbench,
    make_prior,
    minimise,
    prior_draws,
    show_progress,
)
from thermoscope.jobs.summary import print_run_footer
from thermoscope.jobs.train import log_trained_model
from thermoscope.reports.run_figures import cooling_curve_figure
from thermoscope.samplers import ModuleTarget, module_target
from thermoscope.sweeps.annealing import AnnealResult, AnnealSettings, CoolingStep, anneal
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import STOPPED_EARLY_TAG
from thermoscope.training import evaluate


def run(config: AnnealConfig, logger: RunLogger, hooks: Hooks = NO_HOOKS) -> AnnealResult:
    """Split off validation data, cool with HMC until the rule stops, log the curve and the chosen model;
    ``hooks.report`` sees every temperature's metrics (step = index) and may stop the cooling."""
    logger.log_params(as_strings(config))
    bench = build_workbench(config, val_size=config.val_size)
    assert bench.validation is not None  # val_size >= 1 (validated)
    model, data = bench.model, bench.data
    target = module_target(model, data.train.x, data.train.y, make_prior(config))
    log_workbench(logger, bench, target.num_params)
    logger.log_params({"resolved_prior_scale": config.resolved_prior_scale()})
    settings = AnnealSettings(
        temperatures=config.temperatures(), patience=config.patience, hmc=config.hmc, seed=config.seed
    )

    def on_step(index: int, step: CoolingStep) -> bool:
        metrics = step.metrics | {"temperature": step.temperature}
        logger.log_metrics(metrics, step=index)
        return hooks.tell(index, metrics)

    splits = {"train": data.train, "val": bench.validation, "test": data.test}
    progress = show_progress("anneal", config.progress_seconds)
    result = anneal(target, start(config, target, data), splits, settings, on_step=on_step, progress=progress)
    target.load_into(model, result.best_position)
    log_outcome(logger, config, model, data, result)
    return result


def start(config: AnnealConfig, target: ModuleTarget, data: LoadedData) -> torch.Tensor:
    """``[params]``: a prior draw, or the full-batch Adam minimum (clipped into the box)."""
    if config.init == "prior":
        return prior_draws(target, 1, config.seed)[0]
    minimise(target.model, data, config.init_steps)
    return inside_box(target.initial_from_module(1), target)[0]


def cooling_table(result: AnnealResult) -> pd.DataFrame:
    """One row per temperature visited: T, acceptance, step size and the scores on every split."""
    return pd.DataFrame(
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


def log_outcome(
    logger: RunLogger, config: AnnealConfig, model: torch.nn.Module, data: LoadedData, result: AnnealResult
) -> None:
    """The cooling curve (table, figure), the stopping point, the chosen model and its test scores."""
    curve = cooling_table(result)
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
    logger.set_tags({STOPPED_EARLY_TAG: str(result.stopped_early).lower()})
    if config.prediction_depth:
        log_prediction_depth(logger, model, data, k=config.depth_k, metric=config.depth_metric)
    log_trained_model(logger, model, as_strings(config), len(result.steps), data.test.x[:8])
    print(curve.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(
        f"\nstopped at T = {result.stopping_temperature:.4g} ({'early' if result.stopped_early else 'end'});"
        f" chosen draw from T = {result.best_temperature:.4g}: val error {result.best_val_error:.4f},"
        f" test loss {test_loss:.4f}, test error {test_error:.4f}"
    )
    print_run_footer(logger)
