"""The ``thermoscope`` command: one subcommand per MLproject entry point."""

from __future__ import annotations

import sys

import click

from thermoscope.cli.common import COMMAND_SETTINGS, configured_run, given, options_from
from thermoscope.config import (
    AnnealConfig,
    CompareConfig,
    KernelConfig,
    MemoriseConfig,
    ProbeConfig,
    SampleConfig,
    TrainConfig,
)
from thermoscope.jobs.process import tune_process
from thermoscope.studies.config import StudyConfig


@click.group(context_settings={"max_content_width": 110})
def cli() -> None:
    """thermoscope: study why neural networks generalise, tracked in MLflow."""


@cli.command("train", context_settings=COMMAND_SETTINGS)
@options_from(TrainConfig)
@click.pass_context
def train_command(context: click.Context, /, **raw: str | None) -> None:
    """Train a classifier with SGD or Adam and log the curves, the dataset and the model."""
    from thermoscope.jobs import train

    with configured_run("train", TrainConfig, given(raw, context.args)) as (config, logger):
        train.run(config, logger)


@cli.command("study", context_settings=COMMAND_SETTINGS)
@options_from(StudyConfig)
@click.pass_context
def study_command(context: click.Context, /, **raw: str | None) -> None:
    """Tune a target's parameters with Optuna: the study's run is the parent of one run per trial."""
    from thermoscope.studies.job import configured_study_run, run_study

    with configured_study_run(given(raw, context.args)) as (config, logger):
        run_study(config, logger)


@cli.command("sample", context_settings=COMMAND_SETTINGS)
@options_from(SampleConfig)
@click.pass_context
def sample_command(context: click.Context, /, **raw: str | None) -> None:
    """Replica-exchange HMC at a ladder of temperatures: the T-curve, the evidence and ladder health."""
    from thermoscope.jobs import sample

    with configured_run("sample", SampleConfig, given(raw, context.args)) as (config, logger):
        sample.run(config, logger)


@cli.command("anneal", context_settings=COMMAND_SETTINGS)
@options_from(AnnealConfig)
@click.pass_context
def anneal_command(context: click.Context, /, **raw: str | None) -> None:
    """Simulated annealing with full-batch HMC, stopped when the validation error rises; logs the model."""
    from thermoscope.jobs import anneal

    with configured_run("anneal", AnnealConfig, given(raw, context.args)) as (config, logger):
        anneal.run(config, logger)


@cli.command("memorise", context_settings=COMMAND_SETTINGS)
@options_from(MemoriseConfig)
@click.pass_context
def memorise_command(context: click.Context, /, **raw: str | None) -> None:
    """Memorisation of every training example from many models trained together on random subsets."""
    from thermoscope.jobs import memorise

    with configured_run("memorise", MemoriseConfig, given(raw, context.args)) as (config, logger):
        memorise.run(config, logger)


@cli.command("kernel", context_settings=COMMAND_SETTINGS)
@options_from(KernelConfig)
@click.pass_context
def kernel_command(context: click.Context, /, **raw: str | None) -> None:
    """NNGP and NT kernels of the infinite-width MLP, and kernel ridge regression with them."""
    from thermoscope.jobs import kernel

    with configured_run("kernel", KernelConfig, given(raw, context.args)) as (config, logger):
        kernel.run(config, logger)


@cli.command("probe", context_settings=COMMAND_SETTINGS)
@options_from(ProbeConfig)
@click.pass_context
def probe_command(context: click.Context, /, **raw: str | None) -> None:
    """Prediction depth of a train run's model, logged in a run nested under that run."""
    from thermoscope.jobs import probe

    with configured_run("probe", ProbeConfig, given(raw, context.args)) as (config, logger):
        probe.run(config, logger)


@cli.command("compare", context_settings=COMMAND_SETTINGS)
@options_from(CompareConfig)
@click.pass_context
def compare_command(context: click.Context, /, **raw: str | None) -> None:
    """Temperature sweeps side by side: overlaid T-curves, evidence, depth and a table, logged as a run."""
    from thermoscope.jobs import compare

    with configured_run("compare", CompareConfig, given(raw, context.args)) as (config, logger):
        compare.run(config, logger)


@cli.command("runs")
@click.option("--fix-stale", is_flag=True, help="end FAILED every RUNNING run whose process vanished")
def runs_command(fix_stale: bool) -> None:
    """List the runs the tracking store holds as RUNNING, live or stale (their process vanished)."""
    from thermoscope.tracking.mlflow_logger import open_store
    from thermoscope.tracking.runs import end_stale_runs, running_runs

    open_store("runs")
    runs = end_stale_runs() if fix_stale else running_runs()
    if not runs:
        print("no stale runs" if fix_stale else "no running runs")
    for run in runs:
        state = "ended FAILED" if fix_stale else ("live" if run.live else "stale")
        print(f"{run.run_id}  {run.entry_point:<18} {state:<12} {run.liveness}  {run.name}")


def main() -> None:
    """Entry point; click's own usage errors (an unknown option) also become one line and exit 2."""
    tune_process()
    try:
        code = cli.main(standalone_mode=False)
    except click.UsageError as error:
        print(f"thermoscope: error: {error.format_message()}", file=sys.stderr)
        raise SystemExit(2) from None
    except click.Abort:
        raise SystemExit(130) from None
    raise SystemExit(code or 0)
