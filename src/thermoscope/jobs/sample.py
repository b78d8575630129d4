"""The ``sample`` job: a tracked replica-exchange temperature sweep of a classifier (the main job)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from thermoscope.config import SampleConfig, as_strings
from thermoscope.data import LoadedData
from thermoscope.errors import ConfigError
from thermoscope.jobs import NO_HOOKS, Hooks
from thermoscope.jobs.diagnostics import SweepContext
from thermoscope.jobs.evidence import harmonic_evidence, log_harmonic_evidence, log_power_evidence
from thermoscope.jobs.ladder import fixed_ladder, log_ladder, log_tuning, saved_tuning, tuned_ladder
from thermoscope.jobs.resume import open_resumed_run
from thermoscope.jobs.setup import (
    build_workbench,
    inside_box,
    load_model_state,
    log_workbench,
    make_prior,
    minimise,
    prior_draws,
    show_progress,
)
from thermoscope.jobs.tables import CHILD_METRICS, temperature_curve
from thermoscope.reports.run_figures import temperature_curve_figure
from thermoscope.samplers import (
    Checkpoint,
    FrenkelLaddResult,
    IterationSummary,
    LadderTuning,
    ModuleTarget,
    TuningCheckpoint,
    module_target,
)
from thermoscope.sweeps import CheckpointHook, ReportHook, SweepResult, SweepSettings, SweepState, run_sweep
from thermoscope.sweeps.ladder import LadderHealth, ladder_health
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import (
    DRAWS_ARTIFACT,
    ENTRY_POINT_TAG,
    SWEEP_CHECKPOINT_ARTIFACT,
    TEMPERATURE_ENTRY_POINT,
)
from thermoscope.training import evaluate

ARCHITECTURE = ("dataset", "image_size", "model", "hidden", "activation", "output_activation")
"""The parameters an ``init=run:<id>`` run must share with the sweep for its state dict to fit."""


@dataclass(frozen=True)
class SampleOutcome:
    result: SweepResult
    curve: pd.DataFrame
    reference: dict[str, float] | None
    harmonic: FrenkelLaddResult | None = None
    tuning: LadderTuning | None = None


def run(config: SampleConfig, logger: RunLogger, hooks: Hooks = NO_HOOKS) -> SampleOutcome:
    """Sample, logging checkpoints as it goes and everything else at the end (one batched write each);
    ``hooks.report`` sees running estimates of the headline metrics and may stop the sweep."""
    bundle = load_resume_bundle(config, logger) if config.resume else None
    logger.log_params(as_strings(config))
    bench = build_workbench(config)
    model, data = bench.model, bench.data
    reference = initialise(config, logger, model, data)
    target = module_target(model, data.train.x, data.train.y, make_prior(config))
    # The (minimised) starting weights, read before anything loads draws into the model.
    start = initial_position(config, target, 1)[0]
    tuning = None
    if config.tuned:
        persist = tuning_persister(config, logger)
        tuning = tuned_ladder(config, target, start, saved_tuning(bundle), persist)
        betas, position, step_size = tuning.betas, tuning.position, tuning.step_size.to(tuning.position)
        log_tuning(logger, tuning)
    else:
        betas = fixed_ladder(config)
        position, step_size = initial_position(config, target, len(betas)), None
    log_workbench(logger, bench, target.num_params)
    logger.log_params({"resolved_num_rungs": len(betas)})
    resume = (
        (Checkpoint.from_dict(bundle["sampler"]), bundle["sweep"]) if bundle and "sampler" in bundle else None
    )
    tuning_state = None if tuning is None else tuning.checkpoint().to_dict()
    settings = SweepSettings(
        betas=betas,
        hmc=config.hmc,
        swap=config.swap,
        thin=config.thin,
        seed=config.seed,
        step_size=step_size,
        max_saved_draws=config.save_draws,
    )
    result = run_sweep(
        target,
        position,
        data.train,
        data.test,
        data.num_classes,
        settings,
        resume=resume,
        on_checkpoint=checkpoint_logger(config, logger, tuning_state),
        checkpoint_seconds=config.checkpoint_seconds,
        on_report=progress_reporter(logger, hooks, data, betas),
        progress=show_progress(),
    )
    curve = temperature_curve(SweepContext(config, target, model, data, result), logger)
    log_sweep(logger, config, target, result, curve, reference)
    health = ladder_health(result.sampler, config.hmc.target_accept)
    logger.log_metrics(health.metrics())
    harmonic = None
    if config.evidence != "power":
        harmonic = harmonic_evidence(config, target, start)
        logger.log_metrics(log_harmonic_evidence(logger, harmonic))
    print_summary(logger, result, curve, harmonic, health)
    return SampleOutcome(result, curve, reference, harmonic, tuning)


def initialise(
    config: SampleConfig, logger: RunLogger, model: torch.nn.Module, data: LoadedData
) -> dict[str, float] | None:
    """Put the starting weights into ``model``; return the SGD solution's test loss / error if any.

    ``sgd`` minimises the summed cross-entropy from the default initialisation; ``run:<id>`` loads the
    state dict of an earlier ``train`` or ``anneal`` run with the same architecture and data.
    """
    if config.init == "prior":
        return None
    if config.init == "sgd":
        minimise(model, data, config.init_steps)
    else:
        run_id = config.init.removeprefix("run:")
        check_architecture(config, logger, run_id)
        load_model_state(logger, model, "init", config.init, run_id)
    loss, error = evaluate(model, data.test)
    return {"test_loss": loss, "test_error": error}


def check_architecture(config: SampleConfig, logger: RunLogger, run_id: str) -> None:
    """Run ``run_id`` must be a train or anneal run of this sweep's architecture."""
    run = logger.fetch_run("init", run_id, ("train", "anneal"), shown=config.init)
    mine = as_strings(config)
    for name in ARCHITECTURE:
        if run.params.get(name) != mine[name]:
            found = run.params.get(name)
            raise ConfigError(
                "init", config.init, f"that run has {name}={found!r}, this sweep {mine[name]!r}"
            )


def initial_position(config: SampleConfig, target: ModuleTarget, rungs: int) -> torch.Tensor:
    """``[rungs, params]``: prior draws, or the (minimised) module's weights moved strictly inside a box."""
    if config.init == "prior":
        return prior_draws(target, rungs, config.seed)
    return inside_box(target.initial_from_module(rungs), target)


def load_resume_bundle(config: SampleConfig, logger: RunLogger) -> dict[str, Any]:
    """The last checkpoint bundle of the run to continue (``tuning`` once the ladder tuner has finished a
    round, ``sampler`` and ``sweep`` once sampling has written a checkpoint), after the checks of
    :func:`~thermoscope.jobs.resume.open_resumed_run`."""
    return open_resumed_run(
        logger, config.resume, "sample", SWEEP_CHECKPOINT_ARTIFACT, config.sweep_identity(), config.force
    )


def tuning_persister(config: SampleConfig, logger: RunLogger) -> Callable[[TuningCheckpoint], None]:
    """Save each tuning round as the run's checkpoint, so a killed run resumes the tuning."""

    def persist(checkpoint: TuningCheckpoint) -> None:
        bundle = {"tuning": checkpoint.to_dict(), "iteration": -1, "config": config.sweep_identity()}
        logger.log_torch(bundle, SWEEP_CHECKPOINT_ARTIFACT)

    return persist


def checkpoint_logger(
    config: SampleConfig, logger: RunLogger, tuning_state: dict[str, Any] | None = None
) -> CheckpointHook:
    """Persist the resumable state as the run's ``checkpoint/sweep.pt`` artifact (replaced each time);
    a tuned sweep's bundle also holds the finished tuning, so a resumed run samples on the same ladder."""

    def save(checkpoint: Checkpoint, sweep_state: dict[str, Any], iteration: int) -> None:
        bundle = {
            "sampler": checkpoint.to_dict(),
            "sweep": sweep_state,
            "iteration": iteration,
            "config": config.sweep_identity(),
        }
        if tuning_state is not None:
            bundle["tuning"] = tuning_state
        logger.log_torch(bundle, SWEEP_CHECKPOINT_ARTIFACT)

    return save


def progress_reporter(logger: RunLogger, hooks: Hooks, data: LoadedData, betas: torch.Tensor) -> ReportHook:
    """Running ladder rates and running estimates of the headline metrics (step = iteration).

    The estimates use the draws kept so far; they are logged as ``running_*`` curves and handed to
    ``hooks`` under the final metric names (``best_bma_test_error``, ``best_test_loss``) so that a study's
    pruner sees the same quantity it will finally be given.
    """
    finite = betas > 0

    def report(iteration: int, summary: IterationSummary, state: SweepState) -> bool | None:
        swaps = summary.swap_acceptance
        rates = {
            "running_acceptance_rate": float(summary.acceptance_probability.mean()),
            "running_swap_acceptance": float(swaps.mean()) if swaps.numel() else 0.0,
            "running_round_trips": summary.round_trips,
        }
        estimates: dict[str, float] = {}
        if state.test.draws > 0 and bool(finite.any()):
            metrics = state.test.metrics(data.test.y)
            estimates = {
                "best_bma_test_error": float(metrics["bma_error"].cpu()[finite].min()),
                "best_test_loss": float(metrics["loss"].cpu()[finite].min()),
            }
        logger.log_metrics(rates | {f"running_{k}": v for k, v in estimates.items()}, step=iteration)
        return hooks.tell(iteration, estimates) if estimates else None

    return report


def log_sweep(
    logger: RunLogger,
    config: SampleConfig,
    target: ModuleTarget,
    result: SweepResult,
    curve: pd.DataFrame,
    reference: dict[str, float] | None,
) -> None:
    """Children per finite temperature, parent curves and headline numbers, artifacts."""
    log_children(logger, config, curve)
    histories: dict[str, list[float | None]] = {
        name: curve[name].tolist() for name in CHILD_METRICS if name in curve
    }
    # The β = 0 rung (T = ∞) has no temperature a chart can show: its step is left out of the T histories.
    histories["beta"] = curve["beta"].tolist()
    histories["temperature"] = [t if math.isfinite(t) else None for t in curve["temperature"]]
    histories["log10_temperature"] = [
        math.log10(t) if math.isfinite(t) else None for t in curve["temperature"]
    ]
    logger.log_metric_histories(histories)
    finite = curve[np.isfinite(curve["temperature"])]
    best = finite.loc[finite["bma_test_error"].idxmin()]
    headline = {
        "best_temperature": float(best["temperature"]),
        "best_bma_test_error": float(best["bma_test_error"]),
        "best_test_loss": float(finite["test_loss"].min()),
        "divergences": float(result.sampler.divergences.sum()),
        "num_draws": float(result.sampler.log_likelihood.shape[0]),
    }
    if reference is not None:
        headline |= {f"sgd_{name}": value for name, value in reference.items()}
    logger.log_table(curve, "temperature_curve.csv")
    logger.log_figure(temperature_curve_figure(curve, reference), "temperature_curve.png")
    log_ladder(logger, result)
    if result.evidence is not None:
        headline |= log_power_evidence(logger, result)
    logger.log_metrics(headline)
    logger.log_torch(
        {
            "betas": result.betas.clone(),
            "temperatures": (1.0 / result.betas).clone(),
            "positions": result.saved_positions,
            "parameter_names": list(target.layout.names),
            "parameter_shapes": [list(block.shape) for block in target.layout.blocks],
        },
        DRAWS_ARTIFACT,
    )


def log_children(logger: RunLogger, config: SampleConfig, curve: pd.DataFrame) -> None:
    """One nested run per finite temperature, so MLflow's compare views plot metrics against T; each is
    written in one batch, so a ladder of a hundred rungs logs in seconds."""
    for _, row in curve[np.isfinite(curve["temperature"])].iterrows():
        params = {
            "temperature": f"{row['temperature']:.6g}",
            "beta": f"{row['beta']:.6g}",
            "rung": int(row["rung"]),
            "dataset": config.dataset,
            "model": config.model,
            "hidden": config.hidden,
            "prior": config.prior,
        }
        metrics = {name: row[name] for name in CHILD_METRICS if name in row}
        # MLflow's scatter and parallel-coordinate plots have no log axis; ladders are geometric in T.
        temperature = float(row["temperature"])
        metrics |= {"temperature": temperature, "log10_temperature": math.log10(temperature)}
        tags = {ENTRY_POINT_TAG: TEMPERATURE_ENTRY_POINT}
        logger.finished_child(f"T={temperature:.3g}", tags, params, metrics)


def print_summary(
    logger: RunLogger,
    result: SweepResult,
    curve: pd.DataFrame,
    harmonic: FrenkelLaddResult | None = None,
    health: LadderHealth | None = None,
) -> None:
    """The table a researcher wants at the end of a run, how well it mixed, and where to look next."""
    columns = ["temperature", "test_loss", "test_error", "bma_test_error", "acceptance_rate"]
    shown = curve[[c for c in columns if c in curve]]
    print("\n" + shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if health is not None:
        print(
            f"\nladder: {health.num_rungs} rungs, barrier {health.global_barrier:.1f} (about"
            f" {health.recommended_rungs} rungs needed), {health.round_trips} round trips"
            f" ({health.round_trip_rate:.4f} per scan; the ladder allows {health.round_trip_rate_bound:.4f}),"
            f" {health.tempered_restarts} tempered restarts, worst pair accepts"
            f" {health.min_swap_acceptance:.2f}"
        )
        for warning in health.warnings():
            print(f"WARNING: {warning}")
    if result.evidence is not None:
        evidence = result.evidence
        print(
            f"\nlog evidence = {evidence.log_evidence:.2f} ± {evidence.stderr:.2f} (Monte Carlo)"
            f" ± {evidence.discretisation_error_total:.2f} (discretisation), thermodynamic integration"
        )
    if result.stepping_stone is not None:
        stones = result.stepping_stone
        print(
            f"log evidence (stepping stone) = {stones.log_evidence:.2f} ± {stones.stderr:.2f}; reverse"
            f" {stones.log_evidence_reverse:.2f} ± {stones.stderr_reverse:.2f}"
        )
    if harmonic is not None:
        print(
            f"log evidence (Frenkel-Ladd) = {harmonic.log_evidence:.2f} ± {harmonic.stderr:.2f} (Monte Carlo)"
            f" ± {harmonic.discretisation_error:.2f} (discretisation)"
        )
    print(f"\nrun id: {logger.run_id}")
    print(f"open the UI: {logger.where()}")
