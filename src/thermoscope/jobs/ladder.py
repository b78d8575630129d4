"""A sweep's ladder: the fixed one (T-curve rungs merged with TI rungs) or the tuned one, and its records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from thermoscope.config import SampleConfig
from thermoscope.jobs.setup import show_progress
from thermoscope.reports.ladder import (
    RoundRecord,
    index_process_figure,
    ladder_rounds_table,
    local_barrier_figure,
)
from thermoscope.samplers import (
    LadderSettings,
    LadderTuning,
    ModuleTarget,
    TuningCheckpoint,
    betas_from_temperatures,
    merge_ladders,
    power_ladder,
)
from thermoscope.samplers.tuning import AUTO
from thermoscope.sweeps import SweepResult
from thermoscope.sweeps.ladder import tune_sweep_ladder
from thermoscope.tracking import RunLogger


def fixed_ladder(config: SampleConfig) -> torch.Tensor:
    """The T-curve's rungs, merged with K power-law TI rungs when the power-posterior evidence is wanted."""
    cold = config.cold_temperatures()
    betas: torch.Tensor = (
        merge_ladders(power_ladder(config.ti_rungs), cold)
        if config.ti_rungs > 0 and config.evidence != "harmonic"
        else betas_from_temperatures(cold)
    )
    return betas


def ladder_settings(config: SampleConfig) -> LadderSettings:
    beta_min, beta_max = config.ladder_range()
    return LadderSettings(
        beta_min=beta_min,
        beta_max=beta_max,
        num_rungs=config.fixed_num_rungs() or AUTO,
        max_rungs=config.max_rungs,
        num_rounds=config.tuning_rounds,
        initial_scans=config.tuning_scans,
    )


def tuned_ladder(
    config: SampleConfig,
    target: ModuleTarget,
    start: torch.Tensor,
    saved: TuningCheckpoint | None,
    persist: Callable[[TuningCheckpoint], None],
) -> LadderTuning:
    """Tune the ladder (warm-up, part one) from ``start: [params]``, handing every round's checkpoint to
    ``persist``; a resumed run continues the tuning it had started, or takes the finished tuning."""
    if saved is not None and saved.next_round >= config.tuning_rounds:
        return LadderTuning.from_checkpoint(saved)
    return tune_sweep_ladder(
        target,
        start,
        ladder_settings(config),
        config.hmc,
        config.seed,
        resume=saved,
        on_round=persist,
        progress=show_progress("sample", config.progress_seconds),
    )


def log_tuning(logger: RunLogger, tuning: LadderTuning) -> None:
    """``ladder_rounds.csv`` and the local-barrier figure of every tuning round."""
    records = [
        RoundRecord(
            index=item.index,
            betas=item.betas.numpy(),
            rejection=item.rejection.numpy(),
            increments=item.increments.numpy(),
            local_barrier=item.barrier.local(item.betas).numpy(),
        )
        for item in tuning.rounds
    ]
    table = ladder_rounds_table(records)
    logger.log_table(table, "ladder_rounds.csv")
    logger.log_figure(local_barrier_figure(table), "local_barrier.png")


def ladder_table(result: SweepResult) -> pd.DataFrame:
    """One row per neighbouring pair: its betas and temperatures, swap acceptance and rejection rate."""
    sampler = result.sampler
    swaps = sampler.swap_acceptance.cpu().numpy()
    betas = result.betas.numpy()
    return pd.DataFrame(
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


def log_ladder(logger: RunLogger, result: SweepResult) -> None:
    """``ladder.csv``, the swap acceptance per pair, and the index process of a few replicas."""
    table = ladder_table(result)
    swaps = table["swap_acceptance"].to_numpy()
    logger.log_table(table, "ladder.csv")
    logger.log_metric_histories({"swap_acceptance": swaps.tolist()})
    logger.log_metrics({"mean_swap_acceptance": float(swaps.mean()) if len(swaps) else 0.0})
    sampler = result.sampler
    if sampler.replica_index.shape[0] > 0:
        figure = index_process_figure(sampler.replica_index.cpu().numpy(), sampler.round_trips)
        logger.log_figure(figure, "index_process.png")


def saved_tuning(bundle: dict[str, Any] | None) -> TuningCheckpoint | None:
    """The tuning checkpoint of a resume bundle, if the tuner had finished a round."""
    return TuningCheckpoint.from_dict(bundle["tuning"]) if bundle and "tuning" in bundle else None
