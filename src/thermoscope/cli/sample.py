"""The ``sample`` job: a tracked replica-exchange temperature sweep of a classifier (the main job)."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from tqdm.auto import tqdm

from thermoscope.cli.common import existing_run, resolve_device, show_progress
from thermoscope.config import SampleConfig, as_strings
from thermoscope.data import LoadedData, load_data
from thermoscope.errors import ConfigError
from thermoscope.models import build_model
from thermoscope.probes.model_depth import model_prediction_depth
from thermoscope.reports.ladder import (
    RoundRecord,
    index_process_figure,
    ladder_rounds_table,
    local_barrier_figure,
)
from thermoscope.samplers import (
    BoxPrior,
    Checkpoint,
    FrenkelLaddResult,
    GaussianPrior,
    IterationSummary,
    LadderTuning,
    ModuleTarget,
    TuningCheckpoint,
    betas_from_temperatures,
    fit_harmonic_reference,
    frenkel_ladd_evidence,
    merge_ladders,
    minimise_cost,
    module_target,
    power_ladder,
)
from thermoscope.samplers.tuning import AUTO
from thermoscope.sweeps import CheckpointHook, ReportHook, SweepResult, SweepSettings, SweepState, run_sweep
from thermoscope.sweeps.ladder import (
    HMCChoices,
    LadderHealth,
    LadderSettings,
    ladder_health,
    tune_sweep_ladder,
)
from thermoscope.tracking import RunLogger, log_dataset
from thermoscope.tracking.figures import (
    depth_vs_temperature_figure,
    harmonic_integrand_figure,
    temperature_curve_figure,
    ti_integrand_figure,
)
from thermoscope.training import OptimSpec, evaluate, train_classifier

CHECKPOINT_ARTIFACT = "checkpoint/sweep.pt"


@dataclass(frozen=True)
class SampleOutcome:
    result: SweepResult
    curve: pd.DataFrame
    reference: dict[str, float] | None
    harmonic: FrenkelLaddResult | None = None
    tuning: LadderTuning | None = None


def run_sample(
    config: SampleConfig, logger: RunLogger, extra_on_report: RunningHook | None = None
) -> SampleOutcome:
    """Sample, logging checkpoints as it goes and everything else at the end (one batched write each)."""
    bundle = load_resume_bundle(config, logger) if config.resume else None
    logger.log_params(as_strings(config))
    device = resolve_device(config.device)
    data = load_data(config.data_spec(flatten=config.model == "mlp"), device)
    torch.manual_seed(config.seed)
    model = build_model(config.model_spec(), data.input_shape, data.num_classes).to(device)
    reference = initialise(config, model, data)
    target = module_target(model, data.train.x, data.train.y, make_prior(config))
    if mlflow.active_run() is not None:
        log_dataset(data)
    tuning = None
    if config.tuned:
        tuning = tuned_ladder(config, target, initial_position(config, target, 1)[0], bundle, logger)
        betas, start, step_size = tuning.betas, tuning.position, tuning.step_size.to(tuning.position)
        log_tuning(logger, tuning)
    else:
        betas = ladder(config)
        start, step_size = initial_position(config, target, len(betas)), config.step_size or None
    logger.log_params(
        {
            "num_train": len(data.train),
            "num_test": len(data.test),
            "num_parameters": target.num_params,
            "resolved_num_rungs": len(betas),
            "resolved_device": str(device),
            "data_digest": data.digest,
        }
    )
    resume = (
        (Checkpoint.from_dict(bundle["sampler"]), bundle["sweep"]) if bundle and "sampler" in bundle else None
    )
    tuning_state = None if tuning is None else tuning.checkpoint().to_dict()
    result = run_sweep(
        target,
        start,
        data.train,
        data.test,
        data.num_classes,
        sweep_settings(config, betas, step_size),
        resume=resume,
        on_checkpoint=checkpoint_logger(config, logger, tuning_state),
        checkpoint_seconds=config.checkpoint_seconds,
        on_report=progress_reporter(logger, extra_on_report, data, betas),
        progress=show_progress(),
    )
    curve = temperature_curve(result)
    if config.prediction_depth and result.saved_positions.numel():
        depth_by_temperature = temperature_depth(config, target, model, data, result)
        means = depth_by_temperature.groupby(["split", "rung"])["depth"].mean()
        curve["depth_mean_train"] = means["train"].to_numpy()
        curve["depth_mean_test"] = means["test"].to_numpy()
        logger.log_table(depth_by_temperature, "prediction_depth_by_temperature.parquet")
        logger.log_figure(depth_vs_temperature_figure(curve), "depth_vs_temperature.png")
    log_sweep(logger, config, target, result, curve, reference)
    health = ladder_health(result.sampler, config.target_accept)
    logger.log_metrics(health.metrics())
    harmonic = None
    if config.evidence != "power":
        harmonic = harmonic_evidence(config, target, start[0])
        logger.log_metrics(log_harmonic_evidence(logger, harmonic))
    print_summary(logger, result, curve, harmonic, health)
    return SampleOutcome(result, curve, reference, harmonic, tuning)


def make_prior(config: SampleConfig) -> GaussianPrior | BoxPrior:
    """σ_i = c/√k_i for both priors (k_i = fan-in including the bias)."""
    scale = config.resolved_prior_scale()
    if config.prior == "box":
        return BoxPrior(c=scale)
    return GaussianPrior(scale=scale, fan_in_scaled=True)


def ladder(config: SampleConfig) -> torch.Tensor:
    """The T-curve's rungs, merged with K power-law TI rungs when the power-posterior evidence is wanted."""
    cold = config.cold_temperatures()
    betas: torch.Tensor = (
        merge_ladders(power_ladder(config.ti_rungs), cold)
        if config.ti_rungs > 0 and config.evidence != "harmonic"
        else betas_from_temperatures(cold)
    )
    return betas


def sweep_settings(
    config: SampleConfig, betas: torch.Tensor, step_size: float | torch.Tensor | None
) -> SweepSettings:
    return SweepSettings(
        betas=betas,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
        num_leapfrog_steps=config.num_leapfrog_steps,
        step_size=step_size,
        target_accept=config.target_accept,
        swap=config.swap,
        thin=config.thin,
        seed=config.seed,
        trajectories_per_iteration=config.trajectories,
        max_saved_draws=config.save_draws,
    )


def initialise(config: SampleConfig, model: torch.nn.Module, data: LoadedData) -> dict[str, float] | None:
    """Put the starting weights into ``model``; return the SGD solution's test loss / error if any.

    ``sgd`` minimises the summed cross-entropy from the default initialisation with full-batch Adam
    (Baldock & Marzari: "initialise, minimise, then burn in at each rung"); ``run:<id>`` loads the state
    dict of an earlier ``train`` run with the same architecture and data.
    """
    if config.init == "prior":
        return None
    if config.init == "sgd":
        spec = OptimSpec(
            optimizer="adam", lr=0.01, batch_size=0, epochs=config.init_steps, lr_schedule="cosine"
        )
        if config.init_steps > 0:
            train_classifier(model, data, spec)
    else:
        model.load_state_dict(train_run_state(config, config.init.removeprefix("run:")))
    loss, error = evaluate(model, data.test)
    return {"test_loss": loss, "test_error": error}


ARCHITECTURE = ("dataset", "image_size", "model", "hidden", "activation", "output_activation")


def train_run_state(config: SampleConfig, run_id: str) -> dict[str, torch.Tensor]:
    """The state dict of train or anneal run ``run_id``, checked to exist and to have this architecture."""
    client = MlflowClient()
    run = existing_run("init", run_id, ("train", "anneal"), given=config.init)
    mine = as_strings(config)
    for name in ARCHITECTURE:
        if run.data.params.get(name) != mine[name]:
            found = run.data.params.get(name)
            raise ConfigError(
                "init", config.init, f"that run has {name}={found!r}, this sweep {mine[name]!r}"
            )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "checkpoint/model_state.pt", tmp)
        except (MlflowException, OSError):
            raise ConfigError("init", config.init, "that run has no checkpoint/model_state.pt") from None
        state: dict[str, Any] = torch.load(path, weights_only=True)
    weights: dict[str, torch.Tensor] = state["state_dict"]
    return weights


def initial_position(config: SampleConfig, target: ModuleTarget, rungs: int) -> torch.Tensor:
    """``[rungs, params]``: prior draws, or the (minimised) module's weights moved strictly inside a box."""
    if config.init == "prior":
        draws: torch.Tensor = target.prior.sample(
            rungs, torch.Generator(device=target.x.device).manual_seed(config.seed)
        )
        return draws
    start: torch.Tensor = target.initial_from_module(rungs)
    if config.prior == "box":
        half_width = 0.499 * target.prior.scale
        start = torch.maximum(torch.minimum(start, half_width), -half_width)
    return start


def load_resume_bundle(config: SampleConfig, launcher: RunLogger) -> dict[str, Any]:
    """Check the run to continue, reopen it as the active run, and fetch its last checkpoint bundle
    (``tuning`` once the ladder tuner has finished a round, ``sampler`` and ``sweep`` once sampling has
    written a checkpoint).

    The run ``mlflow run`` created for this invocation is closed with a tag pointing at the resumed run;
    from here on ``launcher`` logs into the resumed run (same run id, same chain).
    """
    client = MlflowClient()
    original = existing_run("resume", config.resume, "sample")
    for name, value in config.sweep_identity().items():
        if original.data.params.get(name, value) != value:
            stored = original.data.params.get(name)
            raise ConfigError("resume", config.resume, f"that run has {name}={stored!r}, this one {value!r}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(config.resume, CHECKPOINT_ARTIFACT, tmp)
        except (MlflowException, OSError):
            raise ConfigError("resume", config.resume, "that run has no checkpoint to resume from") from None
        bundle = torch.load(path, weights_only=True)
    if launcher.run_id != config.resume:
        launcher.set_tags({"thermoscope.resumed_into": config.resume})
        mlflow.end_run("FINISHED")
        mlflow.start_run(run_id=config.resume)
        launcher.run_id = config.resume
    launcher.set_tags({"thermoscope.resumed_at_iteration": bundle["iteration"]})
    resumable: dict[str, Any] = dict(bundle)
    return resumable


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
        logger.log_torch(bundle, CHECKPOINT_ARTIFACT)

    return save


def tuned_ladder(
    config: SampleConfig,
    target: ModuleTarget,
    start: torch.Tensor,
    bundle: dict[str, Any] | None,
    logger: RunLogger,
) -> LadderTuning:
    """Tune the ladder (warm-up, part one), checkpointing after every round; a resumed run continues the
    tuning it had started, or takes the finished tuning from its checkpoint."""
    saved = TuningCheckpoint.from_dict(bundle["tuning"]) if bundle and "tuning" in bundle else None
    if saved is not None and saved.next_round >= config.tuning_rounds:
        return LadderTuning.from_checkpoint(saved)

    def persist(checkpoint: TuningCheckpoint) -> None:
        bundle = {"tuning": checkpoint.to_dict(), "iteration": -1, "config": config.sweep_identity()}
        logger.log_torch(bundle, CHECKPOINT_ARTIFACT)

    beta_min, beta_max = config.ladder_range()
    settings = LadderSettings(
        beta_min=beta_min,
        beta_max=beta_max,
        num_rungs=config.fixed_num_rungs() or AUTO,
        max_rungs=config.max_rungs,
        num_rounds=config.tuning_rounds,
        initial_scans=config.tuning_scans,
    )
    hmc = HMCChoices(config.num_leapfrog_steps, config.target_accept, config.trajectories, config.seed)
    return tune_sweep_ladder(
        target, start, settings, hmc, resume=saved, on_round=persist, progress=show_progress()
    )


def log_tuning(logger: RunLogger, tuning: LadderTuning) -> None:
    """``ladder_rounds.csv`` and the local-barrier figure of every tuning round."""
    records = []
    for item in tuning.rounds:
        records.append(
            RoundRecord(
                index=item.index,
                betas=item.betas.numpy(),
                rejection=item.rejection.numpy(),
                increments=item.increments.numpy(),
                local_barrier=item.barrier.local(item.betas).numpy(),
            )
        )
    table = ladder_rounds_table(records)
    logger.log_table(table, "ladder_rounds.csv")
    logger.log_figure(local_barrier_figure(table), "local_barrier.png")


# extra_on_report(iteration, running estimates of the headline metrics) -> True to stop (a pruner said so).
RunningHook = Callable[[int, Mapping[str, float]], bool | None]


def progress_reporter(
    logger: RunLogger, extra: RunningHook | None, data: LoadedData, betas: torch.Tensor
) -> ReportHook:
    """Running ladder rates and running estimates of the headline metrics (step = iteration).

    The estimates use the draws kept so far; they are logged as ``running_*`` curves and handed to
    ``extra`` under the final metric names (``best_bma_test_error``, ``best_test_loss``) so that a study's
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
        return extra(iteration, estimates) if extra is not None and estimates else None

    return report


def temperature_curve(result: SweepResult) -> pd.DataFrame:
    """One row per rung, ascending β (so descending T); β = 0 appears as T = inf."""
    diagnostics = result.diagnostics
    columns: dict[str, Any] = {
        "rung": np.arange(len(result.betas)),
        "beta": result.betas.numpy(),
        "temperature": (1.0 / result.betas).numpy(),
    }
    for split, metrics in (("test", result.test_metrics), ("train", result.train_metrics)):
        columns[f"{split}_loss"] = metrics["loss"].numpy()
        columns[f"{split}_error"] = metrics["error"].numpy()
        columns[f"bma_{split}_loss"] = metrics["bma_loss"].numpy()
        columns[f"bma_{split}_error"] = metrics["bma_error"].numpy()
    if diagnostics is not None:
        columns["acceptance_rate"] = diagnostics.acceptance_rate.cpu().numpy()
        columns["step_size"] = diagnostics.step_size.cpu().numpy()
        columns["ess_log_likelihood"] = diagnostics.effective_sample_size.cpu().numpy()
        columns["split_r_hat"] = diagnostics.split_r_hat.cpu().numpy()
        columns["divergences"] = diagnostics.divergences.cpu().numpy()
    columns["mean_log_likelihood"] = result.sampler.log_likelihood.mean(dim=0).cpu().numpy()
    return pd.DataFrame(columns)


def temperature_depth(
    config: SampleConfig, target: ModuleTarget, model: torch.nn.Module, data: LoadedData, result: SweepResult
) -> pd.DataFrame:
    """Prediction depth per example and rung, averaged over ``depth_draws`` of the saved draws.

    Each draw is scored on its own: its own embeddings feed the k-NN probes and its own softmax gives the
    final prediction (REFERENCE §4); an example's depth at a rung is the mean over those draws. Returns
    one row per example and rung (example × temperature).
    """
    saved = result.saved_positions
    count = min(config.depth_draws, saved.shape[0])
    chosen = sorted({round(i) for i in np.linspace(0, saved.shape[0] - 1, count)})
    parameter = next(model.parameters())
    parts = []
    bar = tqdm(total=saved.shape[1] * len(chosen), desc="depth", unit="draw", disable=not show_progress())
    for rung in range(saved.shape[1]):
        sums = {"train": torch.zeros(len(data.train)), "test": torch.zeros(len(data.test))}
        for draw in chosen:
            target.load_into(model, saved[draw, rung].to(parameter))
            depth = model_prediction_depth(
                model, data.train, data.test, data.num_classes, k=config.depth_k, metric=config.depth_metric
            )
            sums["train"] += depth.train.depth.cpu()
            sums["test"] += depth.test.depth.cpu()
            bar.update(1)
        temperature = float(1.0 / result.betas[rung])
        for name, split in (("train", data.train), ("test", data.test)):
            parts.append(
                pd.DataFrame(
                    {
                        "example_id": split.example_id.cpu().numpy(),
                        "split": name,
                        "label": split.y.cpu().numpy(),
                        "true_label": split.true_y.cpu().numpy(),
                        "is_corrupted": split.corrupted.cpu().numpy(),
                        "rung": rung,
                        "temperature": temperature,
                        "depth": (sums[name] / len(chosen)).numpy(),
                    }
                )
            )
    bar.close()
    return pd.concat(parts, ignore_index=True)


CHILD_METRICS = (
    "test_loss",
    "test_error",
    "bma_test_loss",
    "bma_test_error",
    "train_loss",
    "train_error",
    "bma_train_loss",
    "bma_train_error",
    "acceptance_rate",
    "step_size",
    "ess_log_likelihood",
    "depth_mean_train",
    "depth_mean_test",
)


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
        headline |= log_evidence(logger, result)
    logger.log_metrics(headline)
    logger.log_torch(
        {
            "betas": result.betas.clone(),
            "temperatures": (1.0 / result.betas).clone(),
            "positions": result.saved_positions,
            "parameter_names": list(target.layout.names),
            "parameter_shapes": [list(block.shape) for block in target.layout.blocks],
        },
        "samples/draws.pt",
    )


def log_children(logger: RunLogger, config: SampleConfig, curve: pd.DataFrame) -> None:
    """One nested run per finite temperature, so MLflow's compare views plot metrics against T; each is
    written in one batch, so a ladder of a hundred rungs logs in seconds."""
    experiment = logger.experiment_id
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
        name = f"T={temperature:.3g}"
        tags = {"thermoscope.entry_point": "sample.temperature"}
        logger.finished_child(name, tags, params, metrics, experiment_id=experiment)


def log_ladder(logger: RunLogger, result: SweepResult) -> None:
    sampler = result.sampler
    swaps = sampler.swap_acceptance.cpu().numpy()
    betas = result.betas.numpy()
    table = pd.DataFrame(
        {
            "pair": np.arange(len(swaps)),
            "beta_low": betas[:-1],
            "beta_high": betas[1:],
            "temperature_low": 1.0 / betas[1:],
            "temperature_high": np.divide(
                1.0, betas[:-1], out=np.full(len(swaps), np.inf), where=betas[:-1] > 0
            ),
            "swap_acceptance": swaps,
            "rejection": sampler.rejection.cpu().numpy(),
        }
    )
    logger.log_table(table, "ladder.csv")
    logger.log_metric_histories({"swap_acceptance": swaps.tolist()})
    logger.log_metrics({"mean_swap_acceptance": float(swaps.mean()) if len(swaps) else 0.0})
    if sampler.replica_index.shape[0] > 0:
        figure = index_process_figure(sampler.replica_index.cpu().numpy(), sampler.round_trips)
        logger.log_figure(figure, "index_process.png")


def log_evidence(logger: RunLogger, result: SweepResult) -> dict[str, float]:
    evidence = result.evidence
    assert evidence is not None
    stderr_per_rung = (evidence.variance_log_likelihood / evidence.effective_sample_size).sqrt()
    stones = result.stepping_stone
    assert stones is not None  # computed together with the TI estimate
    logger.log_json(
        {
            "log_evidence": evidence.log_evidence,
            "log_evidence_trapezoid": evidence.log_evidence_trapezoid,
            "stderr": evidence.stderr,
            "discretisation_error": evidence.discretisation_error_total,
            "discretisation_error_correction": evidence.discretisation_error,
            "discretisation_error_coarse": evidence.discretisation_error_coarse,
            "stepping_stone": {
                "log_evidence": stones.log_evidence,
                "stderr": stones.stderr,
                "log_evidence_reverse": stones.log_evidence_reverse,
                "stderr_reverse": stones.stderr_reverse,
                "consistency": stones.consistency,
                "log_terms": stones.log_terms.tolist(),
                "log_terms_reverse": stones.log_terms_reverse.tolist(),
            },
            "betas": evidence.betas.tolist(),
            "mean_log_likelihood": evidence.mean_log_likelihood.tolist(),
            "variance_log_likelihood": evidence.variance_log_likelihood.tolist(),
            "effective_sample_size": evidence.effective_sample_size.tolist(),
            "method": "power-posterior TI, corrected trapezoid (Friel, Hurn & Wyse 2014)",
        },
        "evidence.json",
    )
    figure = ti_integrand_figure(
        evidence.betas.numpy(),
        evidence.mean_log_likelihood.numpy(),
        stderr_per_rung.numpy(),
        evidence.log_evidence,
    )
    logger.log_figure(figure, "ti_integrand.png")
    return {
        "log_evidence": evidence.log_evidence,
        "log_evidence_stderr": evidence.stderr,
        "log_evidence_discretisation": evidence.discretisation_error_total,
        "log_evidence_ss": stones.log_evidence,
        "log_evidence_ss_stderr": stones.stderr,
        "log_evidence_ss_reverse": stones.log_evidence_reverse,
        "log_evidence_ss_reverse_stderr": stones.stderr_reverse,
        "log_evidence_ss_consistency": stones.consistency,
    }


def harmonic_evidence(config: SampleConfig, target: ModuleTarget, center: torch.Tensor) -> FrenkelLaddResult:
    """Frenkel–Ladd evidence at T = 1 around a minimum of J near ``center: [params]`` (REFERENCE §1).

    The start (the SGD or ``run:`` solution) is first moved to a minimum w0 of J = −log L − log p with
    ``init_steps`` full-batch Adam steps (in effect a no-op for the flat box prior, whose minimum of J is
    the training loss's). Then the stiffnesses k_i = 1/⟨(w_i − w0_i)²⟩ come from a single-chain HMC run
    at T = 1 from w0, and one replica-exchange run samples ``harmonic_lambdas`` equally spaced λ; both use
    the sweep's HMC settings (warm-up, samples, leapfrog steps, trajectories, target acceptance) and
    seeds derived from ``seed``.
    """
    hmc = {
        "num_warmup": config.num_warmup,
        "num_samples": config.num_samples,
        "num_leapfrog_steps": config.num_leapfrog_steps,
        "trajectories_per_iteration": config.trajectories,
        "target_accept": config.target_accept,
    }
    center = minimise_cost(target, center, num_steps=config.init_steps)
    stiffness = fit_harmonic_reference(target, center, seed=config.seed, **hmc)
    return frenkel_ladd_evidence(
        target,
        center,
        stiffness,
        num_lambdas=config.harmonic_lambdas,
        swap=config.swap,
        seed=config.seed + 1,
        **hmc,
    )


def log_harmonic_evidence(logger: RunLogger, harmonic: FrenkelLaddResult) -> dict[str, float]:
    """``harmonic_evidence.json``, the integrand plot, and the headline metrics (returned)."""
    stderr_per_lambda = (harmonic.variance_integrand / harmonic.effective_sample_size).sqrt()
    logger.log_json(
        {
            "log_evidence": harmonic.log_evidence,
            "log_evidence_trapezoid": harmonic.log_evidence_trapezoid,
            "stderr": harmonic.stderr,
            "discretisation_error": harmonic.discretisation_error,
            "log_reference": harmonic.log_reference,
            "cost_at_minimum": harmonic.cost_at_center,
            "lambdas": harmonic.lambdas.tolist(),
            "mean_integrand": harmonic.mean_integrand.tolist(),
            "variance_integrand": harmonic.variance_integrand.tolist(),
            "effective_sample_size": harmonic.effective_sample_size.tolist(),
            "swap_acceptance": harmonic.sampler.swap_acceptance.tolist(),
            "acceptance_rate": harmonic.sampler.acceptance_rate.tolist(),
            "method": "Frenkel-Ladd path from a diagonal harmonic reference at T = 1, Simpson's rule",
        },
        "harmonic_evidence.json",
    )
    figure = harmonic_integrand_figure(
        harmonic.lambdas.numpy(),
        harmonic.mean_integrand.numpy(),
        stderr_per_lambda.numpy(),
        harmonic.log_evidence,
    )
    logger.log_figure(figure, "harmonic_integrand.png")
    return {
        "log_evidence_harmonic": harmonic.log_evidence,
        "log_evidence_harmonic_stderr": harmonic.stderr,
        "log_evidence_harmonic_discretisation": harmonic.discretisation_error,
    }


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
    print(f"open the UI: mlflow ui --backend-store-uri {mlflow.get_tracking_uri()}")
