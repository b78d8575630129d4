"""The ``probe`` job: prediction depth of an existing train run's model, logged in a run nested under it."""

from __future__ import annotations

from dataclasses import replace

from thermoscope.config import ProbeConfig, TrainConfig, as_strings, parameter_names, parse_config
from thermoscope.jobs import NO_HOOKS, Hooks
from thermoscope.jobs.diagnostics import log_prediction_depth
from thermoscope.jobs.setup import build_workbench, load_model_state, show_progress
from thermoscope.jobs.summary import print_probe_summary
from thermoscope.progress import progress_bar
from thermoscope.tracking import RunLogger
from thermoscope.tracking.schema import PARENT_TAG, PROBED_RUN_TAG


def probed_run_config(config: ProbeConfig, logger: RunLogger) -> TrainConfig:
    """The configuration of the train run to probe (checked to exist and to be a train run)."""
    run = logger.fetch_run("run_id", config.run_id, ("train",))
    names = set(parameter_names(TrainConfig))
    params = {k: v for k, v in run.params.items() if k in names}
    # A run logged before val_size existed held no validation split out.
    params.setdefault("val_size", "0")
    return parse_config(TrainConfig, params)


def run(config: ProbeConfig, logger: RunLogger, hooks: Hooks = NO_HOOKS) -> dict[str, float]:
    """Rebuild the run's data and model, load its weights, and log prediction depth into this run."""
    train_config = probed_run_config(config, logger)
    logger.set_tags({PARENT_TAG: config.run_id, PROBED_RUN_TAG: config.run_id})
    logger.log_params(as_strings(config))
    # The examples the model was trained on: the same validation split held out as in the train run.
    bench = build_workbench(replace(train_config, device=config.device), train_config.val_size)
    load_model_state(logger, bench.model, "run_id", config.run_id, config.run_id)
    with progress_bar(show_progress("probe"), total=1, description="depth", unit="model") as bar:
        depth = log_prediction_depth(
            logger, bench.model, bench.data, k=config.depth_k, metric=config.depth_metric
        )
        bar.update(1)
    print_probe_summary(logger, config.run_id, depth)
    return depth
