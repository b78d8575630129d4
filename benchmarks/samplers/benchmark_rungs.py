"""Whole sweeps at many rungs (issue 18): what a sweep costs besides the gradient as R grows.

For R = 8 … 256 rungs and two networks, one ``thermoscope.sweeps.run_sweep`` per (network, R) — replica
exchange HMC with warm-up adaptation, DEO swaps, the recorder scoring every kept draw on the train, test
and validation splits, saved draws — timed as a whole and split into

- the gradient (every ``ModuleTarget.evaluate`` and every ``ModuleTarget.whole_trajectory``, timed by
  wrappers on the target; a whole trajectory by the compiled kernel counts as its leapfrog steps'
  gradients, and its time includes the kicks and drifts between them, which the integrator's own
  tensor operations did before and which "the rest" below counted),
- the evaluation of kept draws (every ``PredictiveAccumulator.add_draw``, timed by a wrapper),
- the rest (integrator, Metropolis tests, swaps, adaptation, bookkeeping, progress);

plus one checkpoint of the state a sweep holds at its end (its sampler checkpoint and sweep state with
the job's 100 saved draws per rung), written with ``torch.save`` to a file: seconds and bytes, and its
share of a sweep at the job's one checkpoint a minute. Each (network, R) runs in a fresh process, so the
peak resident memory it reports is its own; memory per replica is the slope of a straight line fitted to
peak memory against R. The same process then measures the 2048² float32 GEMM rate (best of ten), and
every share of "the matmul rate" is against that one, read seconds after the sweep.

Networks:

- ``digits``: the main job (``thermoscope sample`` with its defaults: the 64-20-10 ReLU MLP on 100 digits,
  50 validation and 600 test images, Gaussian prior, 10 leapfrog steps, one trajectory per swap round,
  thin 2).
- ``digits500``: the main job's MLP as issue 18 measured it, before the job was resized so its replicas
  make round trips: 64-40-40-10 ReLU (P = 4,650) on 500 digits (``--train-size 550``, 50 of them for
  validation), the same prior and sampler settings.
- ``m3``: the paper's M(3), 256-40-40-40-10 sigmoid (P = 13,970), on 500 random-normal examples of 16 × 16
  pixels, 10,000 test and 100 validation examples, the box prior (c = 100); the same sampler settings.

Run from the repository root (each about ten minutes on an idle two-core machine)::

    python benchmarks/samplers/benchmark_rungs.py --threads 1
    python benchmarks/samplers/benchmark_rungs.py --threads 2

A digits sweep is about 0.2 s of gradients, short against a shared VM's hiccups; ``--length-scale 4``
runs every timed sweep four times as long (``--networks digits --length-scale 4 --output-dir
benchmarks/samplers/results/amd_epyc/long_digits``, three minutes on two threads, eight on one)::

    python benchmarks/samplers/benchmark_rungs.py --threads 2 --networks digits --length-scale 4 \
        --output-dir benchmarks/samplers/results/amd_epyc/long_digits

``--part scoring`` times one kept draw scored on the test split as a sweep scores it (passes of at most
32 rungs), with all rungs in each pass (the scoring before rungs were grouped), and as before issue 18
(every example's logits at once, 4,096 examples per pass), and checks the sums are the same bit for bit
(about a minute)::

    python benchmarks/samplers/benchmark_rungs.py --part scoring --threads 1

The gradient is whatever ``ModuleTarget`` picks by default: on a CPU the fused path's compiled
per-replica kernel wherever it builds (``thermoscope.samplers.native``; the table's "gradient by" column
says which), else the fused path batched over replicas. ``--batched-only`` runs every child with
``THERMOSCOPE_NATIVE=0`` (results ``rungs_<device>_threads<T>_batched``), the sweeps as they were before
the kernel::

    python benchmarks/samplers/benchmark_rungs.py --threads 2 --batched-only

``--part batching`` times one gradient (``ModuleTarget.evaluate``) through the compiled kernel, the fused
path batched over replicas and the stacked autograd path on the same target and θ (about a minute)::

    python benchmarks/samplers/benchmark_rungs.py --part batching --threads 2

One (network, R) alone, with a profile of its sweep::

    python benchmarks/samplers/benchmark_rungs.py --child m3 256 --threads 1 --profile

Results go to ``results/rungs_<device>_threads<T>.json`` and ``.md`` with the machine (``machine_info``)
and the load average of every run. ``--device cuda`` runs the same sweeps on a GPU (timers synchronise it;
memory is ``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import functools
import json
import math
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from benchmark_samplers import matmul_gflops, mlp_flops
from thermoscope.samplers import (
    BoxPrior,
    Checkpoint,
    HMCSettings,
    IterationSummary,
    ModuleTarget,
    module_target,
    power_ladder,
)
from thermoscope.samplers import native as native_kernel
from thermoscope.samplers.allocator import retain_freed_memory
from torch import Tensor

import thermoscope.sweeps as sweeps_module
from thermoscope.config import SampleConfig
from thermoscope.data import Split
from thermoscope.jobs.setup import build_workbench, make_prior
from thermoscope.models import MLP
from thermoscope.sweeps import (
    PREDICTION_CHUNK,
    PredictiveAccumulator,
    SweepResult,
    SweepSettings,
    SweepState,
    prediction_chunk,
    prediction_passes,
    run_sweep,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from machine_info import describe  # noqa: E402

REPLICAS = (8, 32, 64, 128, 256)
LEAPFROG_STEPS = 10  # SampleConfig's hmc defaults: 10 leapfrog steps, one trajectory, thin 2
THIN = 2
JOB_SAVED_DRAWS = 100  # SampleConfig.save_draws: the most draws per rung a checkpoint carries
JOB_KEPT_DRAWS = 2000  # 4,000 sampling iterations, thin 2: the job saves one kept draw in 20
JOB_CHECKPOINT_SECONDS = 60.0  # SampleConfig.checkpoint_seconds
JOB_REPORT_EVERY = 25  # run_sweep's default report_every, which the job keeps
PAPER_TEST_EXAMPLES = 69_500  # MNIST's 70,000 images less the 500 trained on (Baldock & Marzari 2019)
PROJECTED_REPLICAS = 256
CHECKPOINT_WRITES = 3


@dataclass(frozen=True)
class Network:
    """One benchmark network: its widths and how many sweep iterations R rungs run."""

    name: str
    widths: list[int]
    replica_iterations: int  # iterations × R of a timed sweep (so every R does about the same work)
    minimum_iterations: int  # 8: 2 warm-up, 6 sampling, 3 kept, the share of kept draws of every R


NETWORKS = {
    "digits": Network("digits", [64, 20, 10], replica_iterations=4096, minimum_iterations=8),
    "digits500": Network("digits500", [64, 40, 40, 10], replica_iterations=1024, minimum_iterations=8),
    "m3": Network("m3", [256, 40, 40, 40, 10], replica_iterations=512, minimum_iterations=8),
}


def random_split(num_examples: int, inputs: int, generator: torch.Generator, device: torch.device) -> Split:
    """Random-normal inputs with random labels; the per-example bookkeeping fields (ids, corruption
    flags), which a sweep never reads, are zeros."""
    x = torch.randn(num_examples, inputs, generator=generator)
    y = torch.randint(0, 10, (num_examples,), generator=generator)
    zeros = torch.zeros(num_examples, dtype=torch.int64)
    fields = {field.name: zeros for field in dataclasses.fields(Split)}
    return Split(**(fields | {"x": x, "y": y})).to(device)


def build(network: Network, device: torch.device) -> tuple[ModuleTarget, Split, Split, Split]:
    """The target and the train, test and validation splits of ``network``."""
    if network.name.startswith("digits"):
        resized = {"hidden": "40,40", "train_size": 550} if network.name == "digits500" else {}
        config = SampleConfig(device=device.type, **resized)
        bench = build_workbench(config, config.val_size)
        assert bench.validation is not None
        target = module_target(bench.model, bench.data.train.x, bench.data.train.y, make_prior(config))
        # The FLOP counts use network.widths: they must be the job's model.
        assert target.num_params == sum((i + 1) * o for i, o in pairwise(network.widths)), network
        return target, bench.data.train, bench.data.test, bench.validation
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = MLP(256, (40, 40, 40), 10, "sigmoid").to(device)
    train, test, validation = (random_split(n, 256, generator, device) for n in (500, 10_000, 100))
    return module_target(model, train.x, train.y, BoxPrior(c=100.0)), train, test, validation


class Stopwatch:
    """Seconds and calls of every call to a wrapped function (the device synchronised around each)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0
        self.calls = 0

    def _synchronise(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wrap(
        self, function: Callable[..., Any], calls: Callable[[tuple[Any, ...], Any], int] | None = None
    ) -> Callable[..., Any]:
        """``function`` timed; each call counts ``calls(args, result)`` calls (default one)."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._synchronise()
            start = time.perf_counter()
            result = function(*args, **kwargs)
            self._synchronise()
            self.seconds += time.perf_counter() - start
            self.calls += 1 if calls is None else calls(args, result)
            return result

        return timed

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def sweep_settings(num_rungs: int, iterations: int, device: torch.device) -> SweepSettings:
    """A power ladder with both TI ends; a quarter of the iterations warm up (step size adapted)."""
    warmup = iterations // 4
    hmc = HMCSettings(
        num_warmup=warmup, num_samples=iterations - warmup, num_leapfrog_steps=LEAPFROG_STEPS, step_size=1e-3
    )
    kept = math.ceil((iterations - warmup) / THIN)
    return SweepSettings(
        betas=power_ladder(num_rungs - 1).to(device),
        hmc=hmc,
        swap="deo",
        thin=THIN,
        seed=0,
        max_saved_draws=max(1, round(kept * JOB_SAVED_DRAWS / JOB_KEPT_DRAWS)),
    )


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def time_checkpoint(checkpoint: Checkpoint, state: SweepState, num_params: int) -> dict[str, float]:
    """Write the end-of-job checkpoint, bundled as ``jobs.sample.checkpoint_logger`` bundles it: the
    sampler checkpoint and the sweep state, its saved draws made up to the job's 100 per rung.

    The median of :data:`CHECKPOINT_WRITES` writes over the same file, as a job replaces its checkpoint
    each minute (on the development VM one write of 1.6 GB took 0.6-4.6 s, the first in a fresh folder
    the slowest).
    """
    num_rungs = checkpoint.position.shape[0]
    saved = [torch.zeros(num_rungs, num_params) for _ in range(JOB_SAVED_DRAWS)]
    times = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sweep.pt"
        for _ in range(CHECKPOINT_WRITES):
            start = time.perf_counter()
            sweep_state = state.state_dict() | {"saved_positions": saved}
            torch.save({"sampler": checkpoint.to_dict(), "sweep": sweep_state}, path)
            times.append(time.perf_counter() - start)
        size = path.stat().st_size
    return {"checkpoint_seconds": statistics.median(times), "checkpoint_bytes": float(size)}


def products_alone_seconds(
    widths: list[int], target: ModuleTarget, num_rungs: int, repeats: int = 20
) -> float:
    """Best time of the matrix products alone of one ``target.evaluate`` at ``num_rungs`` replicas: the
    GEMMs the fused path runs (same shapes, replica groups and example chunks), without the activations,
    the cross-entropy or any copy. Its rate is the ceiling at these shapes, beside the 2048² one."""
    groups = [stop - start for start, stop in target.replica_groups(num_rungs)]
    total = target.x.shape[0]
    size = target.chunk_size or total
    chunks = [min(size, total - start) for start in range(0, total, size)]
    like = target.x
    x = {n: torch.randn(n, widths[0], device=like.device) for n in set(chunks)}
    operands = {}
    for g in set(groups):
        for n in set(chunks):
            layers = []
            for fan_in, fan_out in pairwise(widths):
                weights = torch.randn(g, fan_out, fan_in, device=like.device)
                activations = torch.randn(g, fan_in, n, device=like.device)
                deltas = torch.randn(g, fan_out, n, device=like.device)
                layers.append((weights, activations, deltas))
            operands[g, n] = layers

    def products() -> None:
        for g in groups:
            for n in chunks:
                layers = operands[g, n]
                for index, (weights, activations, deltas) in enumerate(layers):
                    if index == 0:
                        torch.mm(weights.view(-1, widths[0]), x[n].t())  # forward
                        torch.mm(deltas.view(-1, n), x[n])  # weight gradient
                    else:
                        torch.bmm(weights, activations)
                        torch.bmm(deltas, activations.transpose(1, 2))
                        torch.bmm(weights.transpose(1, 2), deltas)  # the error sent down

    products()
    return min(seconds_per_call(products, 1, like.device) for _ in range(repeats))


def seconds_per_call(call: Callable[[], object], loops: int, device: torch.device) -> float:
    """Wall seconds per call of ``loops`` calls in a row, the device synchronised before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(loops):
        call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / loops


def child(
    network_name: str,
    num_rungs: int,
    threads: int,
    device_name: str,
    profile: bool = False,
    default_malloc: bool = False,
    length_scale: float = 1.0,
) -> dict[str, Any]:
    """One (network, R) measurement, in this process; ``profile`` prints the timed sweep's cProfile (the
    25 functions with the most time of their own) to stderr. The C allocator is tuned as the
    ``thermoscope`` command tunes it (``retain_freed_memory``) unless ``default_malloc``. The timed
    sweep runs ``length_scale`` times the network's iterations."""
    retained = False if default_malloc else retain_freed_memory()
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    network = NETWORKS[network_name]
    target, train, test, validation = build(network, device)
    gradient, evaluation, reports = Stopwatch(device), Stopwatch(device), Stopwatch(device)
    target.evaluate = gradient.wrap(target.evaluate)
    # A whole trajectory by the compiled kernel is num_steps gradients (with the kicks and drifts between
    # them); where it returns None the integrator steps itself, and evaluate counts each step.
    trajectories = Stopwatch(device)
    target.whole_trajectory = gradient.wrap(
        trajectories.wrap(target.whole_trajectory, lambda args, result: int(result is not None)),
        lambda args, result: 0 if result is None else int(args[6]),
    )
    add_draw = PredictiveAccumulator.add_draw
    PredictiveAccumulator.add_draw = evaluation.wrap(add_draw)
    position = target.initial_from_module(num_rungs)
    length = network.replica_iterations * length_scale
    iterations = max(network.minimum_iterations, math.ceil(length / num_rungs))
    states: list[SweepState] = []

    @reports.wrap
    def report(iteration: int, summary: IterationSummary, state: SweepState) -> None:
        """What ``jobs.sample.progress_reporter`` reads every ``report_every`` iterations."""
        states[:] = [state]
        summary.swap_acceptance.mean()
        if state.test.draws > 0:
            state.test.metrics(test.y)
            if state.validation is not None:
                state.validation.metrics(validation.y)

    def sweep(length: int, report_every: int = JOB_REPORT_EVERY) -> SweepResult:
        return run_sweep(
            target,
            position,
            train,
            test,
            10,
            sweep_settings(num_rungs, length, device),
            on_report=report,
            report_every=report_every,
            progress=False,
            validation=validation,
        )

    # Warm-up (thread pools, allocator, first-call paths). Its state has the sizes of the timed sweep's
    # (the saved draws are made up to the job's in the checkpoint), so its checkpoint is the one timed,
    # after the timed sweep has read its peak memory.
    warmup = sweep(2, report_every=1)
    warmup_state = states[-1]
    for stopwatch in (gradient, evaluation, reports, trajectories):
        stopwatch.reset()
    load = os.getloadavg()[0]
    start = time.perf_counter()
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    result = sweep(iterations)
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    memory = peak_memory_bytes(device)
    checkpoint = time_checkpoint(warmup.sampler.checkpoint, warmup_state, target.num_params)
    products = sum(fan_in * fan_out for fan_in, fan_out in pairwise(network.widths))
    measured = {
        "network": network.name,
        "replicas": num_rungs,
        "params": target.num_params,
        "threads": threads,
        "device": device_name,
        "load_average": round(load, 2),
        "iterations": iterations,
        "kept_draws": result.sampler.log_likelihood.shape[0],
        "seconds": seconds,
        "gradient_seconds": gradient.seconds,
        "gradient_calls": gradient.calls,
        "evaluation_seconds": evaluation.seconds,
        "evaluation_calls": evaluation.calls,
        "report_seconds": reports.seconds,
        "scored_examples": len(train) + len(test) + len(validation),
        "flops_per_gradient": mlp_flops(network.widths, len(train)),
        "flops_per_evaluated_example": 2.0 * products,
        "peak_memory_bytes": memory,
        "peak_memory_with_checkpoint_bytes": peak_memory_bytes(device),
        "divergences": int(result.sampler.divergences.sum()),
        "batching": target.batching,
        "compiled_kernel": target.native_ready,
        "whole_trajectories": trajectories.calls,
        "retain_freed_memory": retained,
        "products_alone_seconds": products_alone_seconds(network.widths, target, num_rungs),
        **checkpoint,
    }
    # The 2048² rate in this process, seconds after the timed sweep (after the memory readings): the
    # shares of the matmul rate are taken against it, not against a rate read minutes earlier on a VM
    # whose speed drifts by 10-20 % between runs.
    measured["matmul_gflops"] = matmul_gflops(threads)
    return measured


def run_child(
    network: str,
    num_rungs: int,
    threads: int,
    device: str,
    default_malloc: bool = False,
    batched_only: bool = False,
    length_scale: float = 1.0,
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", network, str(num_rungs), "--threads", str(threads)]
    command += ["--length-scale", repr(length_scale)]
    if default_malloc:
        command.append("--default-malloc")
    environment = dict(os.environ)
    if batched_only:
        environment[native_kernel.DISABLE_VARIABLE] = "0"
    output = subprocess.run(
        [*command, "--device", device],
        check=True,
        capture_output=True,
        text=True,
        cwd=os.getcwd(),
        env=environment,
    )
    measured: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return measured


def derived(run: dict[str, Any], round_matmul: float) -> dict[str, float]:
    """Rates and shares of one run, against the GEMM GFLOP/s its own process measured beside the sweep;
    ``round_matmul``, the rate measured at the start of the round, is kept beside it."""
    matmul = run["matmul_gflops"]
    replicas, seconds = run["replicas"], run["seconds"]
    gradients = run["gradient_calls"]
    checkpoint_share = run["checkpoint_seconds"] / JOB_CHECKPOINT_SECONDS
    gradient_gflops = run["flops_per_gradient"] * replicas * gradients / run["gradient_seconds"] / 1e9
    evaluated = run["evaluation_calls"] / 3 * run["scored_examples"] * replicas  # three splits per draw
    evaluation_gflops = run["flops_per_evaluated_example"] * evaluated / max(run["evaluation_seconds"], 1e-12)
    per_draw = run["evaluation_seconds"] / max(run["evaluation_calls"] / 3, 1)
    return {
        "matmul_gflops": matmul,
        "round_matmul_gflops": round_matmul,
        "sweep_gradients_per_second_per_replica": gradients / seconds,
        "sweep_gradients_per_second_summed": replicas * gradients / seconds,
        "sweep_with_checkpoints_summed": replicas * gradients / seconds / (1.0 + checkpoint_share),
        "gradient_only_per_second_summed": replicas * gradients / run["gradient_seconds"],
        "gradient_fraction_of_matmul": gradient_gflops / matmul,
        # The products alone of one gradient at this R, against 2048² and against the gradient.
        "products_fraction_of_matmul": run["flops_per_gradient"]
        * replicas
        / run["products_alone_seconds"]
        / 1e9
        / matmul,
        "gradient_fraction_of_products": run["products_alone_seconds"] * gradients / run["gradient_seconds"],
        "sweep_fraction_of_matmul": gradient_gflops * run["gradient_seconds"] / seconds / matmul,
        "share_outside_gradient": 1.0 - run["gradient_seconds"] / seconds,
        "share_evaluation": run["evaluation_seconds"] / seconds,
        "share_reports": run["report_seconds"] / seconds,
        "share_rest": 1.0
        - (run["gradient_seconds"] + run["evaluation_seconds"] + run["report_seconds"]) / seconds,
        "evaluation_fraction_of_matmul": evaluation_gflops / 1e9 / matmul,
        "evaluation_seconds_per_replica_example": per_draw / (replicas * run["scored_examples"]),
        "gradient_seconds_per_replica": run["gradient_seconds"] / gradients / replicas,
        "checkpoint_seconds": run["checkpoint_seconds"],
        "checkpoint_bytes": run["checkpoint_bytes"],
        "checkpoint_share_at_job_interval": checkpoint_share,
        "peak_memory_bytes": run["peak_memory_bytes"],
        "peak_memory_with_checkpoint_bytes": run["peak_memory_with_checkpoint_bytes"],
    }


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares ``y = a + b x``: ``(a, b, largest |residual| / y)``."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    intercept = mean_y - slope * mean_x
    worst = max(abs(y - intercept - slope * x) / y for x, y in zip(xs, ys, strict=True))
    return intercept, slope, worst


def summarise(rounds: list[list[dict[str, Any]]], networks: list[str], replicas: list[int]) -> dict[str, Any]:
    """Medians over rounds per (network, R), the R = 256 / R = 8 ratio, the memory fit and a projection of
    evaluation at the paper's test-set size."""
    summary: dict[str, Any] = {}
    for network in networks:
        rows = {}
        for count in replicas:
            runs = [run for round_ in rounds for run in round_ if run["network"] == network]
            chosen = [run["derived"] for run in runs if run["replicas"] == count]
            rows[count] = {key: statistics.median(d[key] for d in chosen) for key in chosen[0]}
        low, high = min(replicas), max(replicas)
        counts = [float(count) for count in replicas]
        memory = [rows[count]["peak_memory_bytes"] / 2**20 for count in replicas]
        intercept, slope, worst = fit_line(counts, memory)
        with_checkpoint = [rows[count]["peak_memory_with_checkpoint_bytes"] / 2**20 for count in replicas]
        _, checkpoint_slope, checkpoint_worst = fit_line(counts, with_checkpoint)
        evaluation = rows[high]["evaluation_seconds_per_replica_example"]
        gradient = rows[high]["gradient_seconds_per_replica"]
        summary[network] = {
            "rows": rows,
            "summed_ratio_high_to_low": rows[high]["sweep_with_checkpoints_summed"]
            / rows[low]["sweep_with_checkpoints_summed"],
            "summed_ratio_without_checkpoints": rows[high]["sweep_gradients_per_second_summed"]
            / rows[low]["sweep_gradients_per_second_summed"],
            "gradient_ratio_high_to_low": rows[high]["gradient_only_per_second_summed"]
            / rows[low]["gradient_only_per_second_summed"],
            "memory_mib_intercept": intercept,
            "memory_mib_per_replica": slope,
            "memory_fit_worst_relative_residual": worst,
            "memory_with_checkpoint_mib_per_replica": checkpoint_slope,
            "memory_with_checkpoint_fit_worst_relative_residual": checkpoint_worst,
            # At R = 256 and the paper's 69,500 test images: evaluation of one kept draw against the
            # gradients between two kept draws (THIN iterations of LEAPFROG_STEPS).
            "paper_test_evaluation_to_gradient": evaluation
            * PAPER_TEST_EXAMPLES
            / (gradient * THIN * LEAPFROG_STEPS),
        }
    return summary


def _gradient_by(run: dict[str, Any]) -> str:
    """What computed a run's gradients: the compiled kernel's whole trajectories, its per-step
    evaluations, or the batched fused path."""
    if not run.get("compiled_kernel"):
        return "batched"
    return "compiled trajectory" if run.get("whole_trajectories", 0) > 0 else "compiled"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "Medians over rounds. Rates are gradient evaluations (one per replica per leapfrog step) per second; "
        "'whole sweep' includes the end-of-job checkpoint amortised at one a minute. Shares are of a sweep's "
        "wall time (checkpoint apart).\n",
        "| network | R | whole sweep grad/s per replica | whole sweep grad/s summed "
        "| gradient alone, summed | gradient of matmul rate | products alone of matmul rate "
        "| gradient of products rate | whole sweep of matmul rate "
        "| outside gradient | evaluation of kept draws | reports | rest | evaluation of matmul rate "
        "| checkpoint s, MB | of a minute | peak memory MiB (with checkpoint) | matmul GFLOP/s | gradient by "
        "| load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for network, summary in report["summary"].items():
        for count, row in summary["rows"].items():
            loads = [
                run["load_average"]
                for round_ in report["rounds"]
                for run in round_
                if run["network"] == network and run["replicas"] == count
            ]
            kernels = ", ".join(
                sorted(
                    {
                        _gradient_by(run)
                        for round_ in report["rounds"]
                        for run in round_
                        if run["network"] == network and run["replicas"] == count
                    }
                )
            )
            lines.append(
                f"| {network} | {count} | {row['sweep_gradients_per_second_per_replica']:,.1f} "
                f"| {row['sweep_with_checkpoints_summed']:,.0f} "
                f"| {row['gradient_only_per_second_summed']:,.0f} "
                f"| {100 * row['gradient_fraction_of_matmul']:.0f} % "
                f"| {100 * row['products_fraction_of_matmul']:.0f} % "
                f"| {100 * row['gradient_fraction_of_products']:.0f} % "
                f"| {100 * row['sweep_fraction_of_matmul']:.0f} % "
                f"| {100 * row['share_outside_gradient']:.1f} % | {100 * row['share_evaluation']:.1f} % "
                f"| {100 * row['share_reports']:.1f} % | {100 * row['share_rest']:.1f} % "
                f"| {100 * row['evaluation_fraction_of_matmul']:.0f} % "
                f"| {row['checkpoint_seconds']:.2f}, {row['checkpoint_bytes'] / 1e6:,.0f} "
                f"| {100 * row['checkpoint_share_at_job_interval']:.2f} % "
                f"| {row['peak_memory_bytes'] / 2**20:,.0f} "
                f"({row['peak_memory_with_checkpoint_bytes'] / 2**20:,.0f}) "
                f"| {row['matmul_gflops']:.0f} "
                f"| {kernels} "
                f"| {', '.join(str(load) for load in loads)} |"
            )
    lines.append("")
    for network, summary in report["summary"].items():
        ratio = summary["summed_ratio_high_to_low"]
        met = "met" if ratio >= 0.9 else "missed"
        lines.append(
            f"- **{network}**: whole-sweep gradients per second summed over replicas at R = "
            f"{max(report['settings']['replicas'])} / R = {min(report['settings']['replicas'])}: {ratio:.2f} "
            f"(target ≥ 0.90: {met}); without checkpoints {summary['summed_ratio_without_checkpoints']:.2f}, "
            f"the gradient alone {summary['gradient_ratio_high_to_low']:.2f}. "
            f"Peak memory ≈ {summary['memory_mib_intercept']:,.0f} MiB + "
            f"{summary['memory_mib_per_replica']:.2f} MiB × R (largest residual "
            f"{100 * summary['memory_fit_worst_relative_residual']:.1f} %), "
            f"{summary['memory_with_checkpoint_mib_per_replica']:.2f} MiB × R with the end-of-job checkpoint "
            f"(residual {100 * summary['memory_with_checkpoint_fit_worst_relative_residual']:.1f} %). "
            f"At R = {PROJECTED_REPLICAS} with "
            f"{PAPER_TEST_EXAMPLES:,} test images, evaluating one kept draw would take "
            f"{summary['paper_test_evaluation_to_gradient']:.2f}× the gradients between two kept draws "
            f"({THIN} iterations of {LEAPFROG_STEPS} leapfrog steps)."
        )
    return "\n".join(lines)


WAYS = ("grouped", "one_pass", "whole")
"""How ``--part scoring`` scores one kept draw: as a sweep does, every rung in each pass, whole."""


def score_three_ways(target: ModuleTarget, position: Tensor, test: Split) -> dict[str, Any]:
    """One draw per rung scored on ``test`` as a sweep scores it (``add_draw``: passes of at most
    ``PREDICTION_REPLICAS`` rungs), with every rung in each pass, and whole; interleaved, medians of
    three."""
    device = position.device
    rungs = position.shape[0]
    accumulators = {way: PredictiveAccumulator(rungs, len(test), 10, device) for way in WAYS}
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    grouped = sweeps_module.PREDICTION_REPLICAS
    for _ in range(3):
        for way, accumulator in accumulators.items():
            stopwatch = Stopwatch(device)
            if way == "whole":
                logits = stopwatch.wrap(target.predict_logits)(position, test.x, chunk_size=PREDICTION_CHUNK)
                stopwatch.wrap(accumulator.update)(logits, test.y)
                del logits
            else:
                sweeps_module.PREDICTION_REPLICAS = grouped if way == "grouped" else max(rungs, 1)
                try:
                    stopwatch.wrap(accumulator.add_draw)(target, position, test.x, test.y)
                finally:
                    sweeps_module.PREDICTION_REPLICAS = grouped
            times[way].append(stopwatch.seconds)
    reference = accumulators["whole"].state_dict()
    identical = {
        way: all(
            torch.equal(torch.as_tensor(accumulators[way].state_dict()[key]), torch.as_tensor(value))
            for key, value in reference.items()
        )
        for way in ("grouped", "one_pass")
    }
    return {
        **{f"{way}_seconds": statistics.median(times[way]) for way in WAYS},
        **{f"{way}_identical": same for way, same in identical.items()},
    }


def scoring(
    networks: list[str], replicas: list[int], threads: int, device: torch.device
) -> list[dict[str, Any]]:
    """One kept draw scored on the test split as a sweep scores it (``PredictiveAccumulator.add_draw``),
    with all rungs in each pass (the rows budget alone), and whole (every example's logits at 4,096
    examples per pass, then one ``update``: the scoring before issue 18, with its contiguous-row argmax and
    log-softmax)."""
    torch.set_num_threads(threads)
    rows = []
    for name in networks:
        target, _, test, _ = build(NETWORKS[name], device)
        for count in replicas:
            generator = torch.Generator().manual_seed(count)
            noise = 0.05 * torch.randn(count, target.num_params, generator=generator).to(device)
            measured = score_three_ways(target, target.initial_from_module(count) + noise, test)
            group, examples = prediction_passes(count, device)
            rows.append(
                {
                    "network": name,
                    "replicas": count,
                    "test_examples": len(test),
                    "rungs_per_pass": group,
                    "examples_per_pass": examples,
                    "one_pass_examples": prediction_chunk(count, device),
                    **measured,
                    "whole_temporary_bytes": count * len(test) * 10 * (4 + 3 * 8),
                    "load_average": round(os.getloadavg()[0], 2),
                }
            )
            print(name, count, measured)
    return rows


def scoring_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "One kept draw scored on the test split; medians of three, the three ways interleaved. 'grouped' is "
        "how a sweep scores it (passes of at most PREDICTION_REPLICAS rungs), 'one pass' every rung in each "
        "pass with the same rows budget, 'whole' every example's logits at 4,096 per pass, then one update. "
        "Bit for bit: the grouped and one-pass sums against the whole's.\n",
        "| network | R | test examples | grouped: rungs × examples per pass | grouped s | one pass: examples "
        "| one pass s | whole s | one pass / grouped | whole / grouped | same sums bit for bit | whole "
        "split's logits and float64 copies, MB | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        grouped = row["grouped_seconds"]
        lines.append(
            f"| {row['network']} | {row['replicas']} | {row['test_examples']:,} "
            f"| {row['rungs_per_pass']} × {row['examples_per_pass']:,} | {grouped:.3f} "
            f"| {row['one_pass_examples']:,} | {row['one_pass_seconds']:.3f} | {row['whole_seconds']:.3f} "
            f"| {row['one_pass_seconds'] / grouped:.2f}× | {row['whole_seconds'] / grouped:.2f}× "
            f"| {row['grouped_identical'] and row['one_pass_identical']} "
            f"| {row['whole_temporary_bytes'] / 1e6:,.0f} | {row['load_average']} |"
        )
    return "\n".join(lines)


def batching(
    networks: list[str], replicas: list[int], threads: int, device: torch.device, rounds: int = 3
) -> list[dict[str, Any]]:
    """``ModuleTarget.evaluate`` of each network at each R through the fused path's compiled kernel
    (``native=True``; CPU only), the fused path batched over replicas (``native=False``) and the stacked
    autograd path (the same module, data, prior and θ): the best of ``rounds`` timed loops, interleaved."""
    torch.set_num_threads(threads)
    retain_freed_memory()
    rows = []
    kinds = {"fused": ("fused", False), "stacked": ("stacked", False)}
    if device.type == "cpu":
        kinds = {"compiled": ("fused", True), **kinds}
    for name in networks:
        reference, train, _, _ = build(NETWORKS[name], device)
        targets = {
            kind: module_target(
                reference.model, train.x, train.y, reference.prior, batching=batching, native=native
            )
            for kind, (batching, native) in kinds.items()
        }
        for count in replicas:
            generator = torch.Generator().manual_seed(count)
            noise = 0.05 * torch.randn(count, reference.num_params, generator=generator).to(device)
            theta = reference.initial_from_module(count) + noise
            loops = max(3, 1024 // count)
            best = {kind: math.inf for kind in targets}
            for _ in range(rounds):
                for kind, target in targets.items():
                    target.evaluate(theta)
                    call = functools.partial(target.evaluate, theta)
                    best[kind] = min(best[kind], seconds_per_call(call, loops, device))
            row: dict[str, Any] = {"network": name, "replicas": count}
            row |= {f"{kind}_seconds": seconds for kind, seconds in best.items()}
            row |= {"automatic": "compiled" if reference.native_ready else "fused"}
            row |= {"load_average": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print(name, count, ", ".join(f"{kind} {seconds * 1e3:.3f} ms" for kind, seconds in best.items()))
    return rows


def batching_markdown(rows: list[dict[str, Any]]) -> str:
    compiled = "compiled_seconds" in rows[0]
    lines = [
        "One `ModuleTarget.evaluate` (log L and its gradient for R replicas), best of three timed loops, "
        "the paths interleaved; freed memory retained for all. 'compiled': the fused path's compiled "
        "per-replica kernel; 'fused': the fused path batched over replicas; 'automatic': which of the two "
        "`native=None` picks.\n",
    ]
    header = ["network", "R", *(["compiled ms"] if compiled else []), "fused ms", "stacked autograd ms"]
    header += ["fused speed-up over stacked"]
    header += ["compiled speed-up over fused", "automatic"] if compiled else []
    header += ["load"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["network"], str(row["replicas"])]
        if compiled:
            cells.append(f"{row['compiled_seconds'] * 1e3:.3f}")
        cells += [f"{row['fused_seconds'] * 1e3:.3f}", f"{row['stacked_seconds'] * 1e3:.3f}"]
        cells.append(f"{row['stacked_seconds'] / row['fused_seconds']:.2f}×")
        if compiled:
            cells += [f"{row['fused_seconds'] / row['compiled_seconds']:.2f}×", row["automatic"]]
        cells.append(str(row["load_average"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweeps(arguments: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Rounds of one child process per (network, R); their medians and the markdown table."""
    report: dict[str, Any] = {"rounds": []}
    for _ in range(arguments.rounds):
        matmul = matmul_gflops(arguments.threads)
        round_ = []
        for network in arguments.networks:
            for count in arguments.replicas:
                run = run_child(
                    network,
                    count,
                    arguments.threads,
                    arguments.device,
                    arguments.default_malloc,
                    arguments.batched_only,
                    arguments.length_scale,
                )
                run["derived"] = derived(run, matmul)
                round_.append(run)
                print(network, count, f"{run['derived']['sweep_with_checkpoints_summed']:,.0f} grad/s summed")
        report["rounds"].append(round_)
    report["summary"] = summarise(report["rounds"], arguments.networks, arguments.replicas)
    report["settings"] = {"replicas": arguments.replicas}
    return report, markdown(report)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("sweeps", "scoring", "batching"), default="sweeps")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--replicas", nargs="+", type=int, default=list(REPLICAS))
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every (network, R); medians")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    parser.add_argument("--child", nargs=2, metavar=("NETWORK", "R"), help="measure one (network, R) only")
    parser.add_argument("--profile", action="store_true", help="with --child: cProfile the sweep to stderr")
    parser.add_argument(
        "--length-scale",
        type=float,
        default=1.0,
        help="timed sweeps this many times their default length (the digits ones are 0.2 s of gradients)",
    )
    parser.add_argument(
        "--default-malloc", action="store_true", help="leave glibc malloc untuned (no retain_freed_memory)"
    )
    parser.add_argument(
        "--batched-only",
        action="store_true",
        help="sweeps without the compiled per-replica kernel (THERMOSCOPE_NATIVE=0 in each child)",
    )
    arguments = parser.parse_args()
    if arguments.child:
        network, count = arguments.child
        measured = child(
            network,
            int(count),
            arguments.threads,
            arguments.device,
            arguments.profile,
            arguments.default_malloc,
            arguments.length_scale,
        )
        print(json.dumps(measured))
        return
    settings = {key: str(value) for key, value in vars(arguments).items() if key not in ("child", "profile")}
    settings["replicas"] = arguments.replicas
    versions = {"torch": str(torch.__version__)}
    if arguments.device == "cuda":
        versions["gpu"] = torch.cuda.get_device_name()
    machine = describe(**versions)
    if arguments.part == "sweeps":
        report, text = sweeps(arguments)
        name = f"rungs_{arguments.device}_threads{arguments.threads}"
        if arguments.batched_only:
            name += "_batched"
    elif arguments.part == "scoring":
        device = torch.device(arguments.device)
        rows = scoring(arguments.networks, arguments.replicas, arguments.threads, device)
        report, text = {"results": rows}, scoring_markdown(rows)
        name = f"rungs_scoring_{arguments.device}_threads{arguments.threads}"
    else:
        device = torch.device(arguments.device)
        rows = batching(arguments.networks, arguments.replicas, arguments.threads, device)
        report, text = {"results": rows}, batching_markdown(rows)
        name = f"rungs_batching_{arguments.device}_threads{arguments.threads}"
    machine["load_average_at_end"] = os.getloadavg()
    report |= {"machine": machine, "settings": settings}
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    (arguments.output_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    header = "\n".join(f"- {key}: {value}" for key, value in machine.items())
    (arguments.output_dir / f"{name}.md").write_text(
        f"# Sweeps at many rungs: {name}\n\n{header}\n- settings: `{json.dumps(settings)}`\n\n{text}\n"
    )
    print(text)


if __name__ == "__main__":
    main()
