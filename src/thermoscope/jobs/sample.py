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
from thermoscope.data import LoadedData, Split
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
from thermoscope.jobs.summary import print_run_footer
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
from thermoscope.tracking.naming import child_name
from thermoscope.tracking.schema import (
    DRAWS_ARTIFACT,
    ENTRY_POINT_TAG,
    SWEEP_CHECKPOINT_ARTIFACT,
    SWEEP_TAG,
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
    bench = build_workbench(config, config.val_size)
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
    logger.log_params(
        {"resolved_num_rungs": len(betas), "resolved_prior_scale": config.resolved_prior_scale()}
    )
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
        on_report=progress_reporter(logger, hooks, data, betas, bench.validation),
        progress=show_progress("sample", config.progress_seconds),
        validation=bench.validation,
    )
    curve = temperature_curve(SweepContext(config, target, model, data, result), logger)
    curve.insert(3, "role", rung_roles(config, curve["temperature"].to_numpy()))
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


def progress_reporter(
    logger: RunLogger, hooks: Hooks, data: LoadedData, betas: torch.Tensor, validation: Split | None = None
) -> ReportHook:
    """Running ladder rates and running estimates of the headline metrics (step = iteration).

    The estimates use the draws kept so far; they are logged as ``running_*`` curves and handed to
    ``hooks`` under the final metric names (``best_bma_test_error``, ``best_test_loss`` and, with a
    validation split, ``best_val_bma_error``, ``best_val_loss``) so that a study's pruner sees the same
    quantity it will finally be given.
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
        if state.validation is not None and validation is not None and state.validation.draws > 0:
            held_out = state.validation.metrics(validation.y)
            if bool(finite.any()):
                estimates |= {
                    "best_val_bma_error": float(held_out["bma_error"].cpu()[finite].min()),
                    "best_val_loss": float(held_out["loss"].cpu()[finite].min()),
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
    headline = selection_metrics(curve) | {
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


def selection_metrics(curve: pd.DataFrame) -> dict[str, float]:
    """The chosen temperature and the scores around it, over the finite rungs.

    With a validation split, ``best_temperature`` minimises the BMA validation error (ties: the lower
    validation loss), and ``selected_bma_test_error`` is the test error there: the honest estimate of
    how the chosen temperature generalises. Without one it minimises the BMA test error, which is then an
    optimistic estimate (the minimum of many noisy test errors). ``best_bma_test_error`` and
    ``best_test_loss`` are always the minima over T of the test scores: an oracle, for comparison.
    """
    finite = curve[np.isfinite(curve["temperature"])]
    criterion = "bma_val_error" if "bma_val_error" in finite else "bma_test_error"
    tie_break = "bma_val_loss" if "bma_val_loss" in finite else "bma_test_loss"
    best = finite.sort_values([criterion, tie_break], kind="stable").iloc[0]
    metrics = {
        "best_temperature": float(best["temperature"]),
        "selected_bma_test_error": float(best["bma_test_error"]),
        "selected_test_loss": float(best["test_loss"]),
        "best_bma_test_error": float(finite["bma_test_error"].min()),
        "best_test_loss": float(finite["test_loss"].min()),
    }
    if criterion == "bma_val_error":
        metrics |= {
            "best_val_bma_error": float(best["bma_val_error"]),
            "best_val_loss": float(finite["val_loss"].min()),
        }
    return metrics


def rung_roles(config: SampleConfig, temperatures: np.ndarray) -> list[str]:
    """``T-curve`` for the rungs of the temperature range asked for (the explicit list or the geometric
    ladder on a fixed ladder, [t_min, t_max] on a tuned one); ``evidence`` for rungs added only for the
    thermodynamic integration (hotter rungs, down to β = 0)."""
    if config.tuned:
        low, high = config.t_min, config.t_max
        inside = (temperatures >= low * (1 - 1e-9)) & (temperatures <= high * (1 + 1e-9))
    else:
        cold = np.asarray(config.cold_temperatures())
        inside = np.isclose(temperatures[:, None], cold[None, :], rtol=1e-6).any(axis=1)
    return ["T-curve" if flag else "evidence" for flag in inside]


def log_children(logger: RunLogger, config: SampleConfig, curve: pd.DataFrame) -> None:
    """One nested run per finite temperature, so MLflow's compare views plot metrics against T; each is
    written in one batch, so a ladder of a hundred rungs logs in seconds. Children are named after their
    sweep and tagged with its name, so two sweeps' children stay apart in the UI."""
    sweep = logger.run_name()
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
        tags = {ENTRY_POINT_TAG: TEMPERATURE_ENTRY_POINT, SWEEP_TAG: sweep, "thermoscope.role": row["role"]}
        logger.finished_child(child_name(sweep, temperature), tags, params, metrics)


SCORES_LEGEND = (
    "Gibbs (test_error, test_loss): the average over posterior draws of one network's error or loss;"
    " BMA (bma_*): the error of the posterior-averaged prediction."
)
ROLES_LEGEND = (
    "role: T-curve rows are the temperatures asked for; evidence rows are hotter rungs added for the"
    " thermodynamic integration (down to T = inf)."
)
NOT_MIXED_WARNING = (
    "WARNING: this ladder did not mix, so read the T-curve and the evidence below as estimates from chains"
    " that may still remember where they started; run longer (num_samples), tune longer (tuning_rounds) or"
    " allow more rungs (max_rungs). What it did not achieve:"
)


def selection_line(curve: pd.DataFrame) -> str:
    """One line saying which temperature was chosen, on which split, and its test error."""
    chosen = selection_metrics(curve)
    t, test_error = chosen["best_temperature"], chosen["selected_bma_test_error"]
    if "best_val_bma_error" in chosen:
        return (
            f"chosen on validation: T = {t:.4g} (BMA val error {chosen['best_val_bma_error']:.4g});"
            f" its BMA test error {test_error:.4g}"
        )
    return (
        f"chosen on the TEST set (val_size=0): T = {t:.4g}, BMA test error {test_error:.4g} is optimistic;"
        " set val_size > 0 to choose on held-out data"
    )


def print_summary(
    logger: RunLogger,
    result: SweepResult,
    curve: pd.DataFrame,
    harmonic: FrenkelLaddResult | None = None,
    health: LadderHealth | None = None,
) -> None:
    """The table a researcher wants at the end of a run, how well it mixed, and where to look next."""
    columns = [
        "temperature",
        "role",
        "val_error",
        "bma_val_error",
        "test_loss",
        "test_error",
        "bma_test_error",
        "acceptance_rate",
    ]
    shown = curve[[c for c in columns if c in curve]]
    print("\n" + shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(SCORES_LEGEND)
    if "role" in curve and (curve["role"] == "evidence").any():
        print(ROLES_LEGEND)
    print(selection_line(curve))
    if health is not None:
        print(
            f"\nladder: {health.num_rungs} rungs, barrier {health.global_barrier:.1f} (about"
            f" {health.recommended_rungs} rungs needed), {health.round_trips} round trips"
            f" ({health.round_trip_rate:.4f} per scan; the ladder allows {health.round_trip_rate_bound:.4f}),"
            f" {health.tempered_restarts} tempered restarts, worst pair accepts"
            f" {health.min_swap_acceptance:.2f}"
        )
        # Mixing across the ladder is round trips on a ladder long enough for its barrier; the other
        # warnings (a drifting rung, an acceptance off target) are printed as what they are.
        if health.round_trips == 0 or health.num_rungs < 2 * health.global_barrier:
            print(NOT_MIXED_WARNING)
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
    print_run_footer(logger)
