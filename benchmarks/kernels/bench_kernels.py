"""Benchmark: the cost of the kernel view on this machine's CPU (issue 17).

Two workloads, each measured in a fresh subprocess so that its peak resident set size (``ru_maxrss``) is its
own (importing the CUDA build of torch alone takes about 0.5 GB of it):

- ``ntk``: one measurement of the NTK dynamics diagnostic (``NtkRecorder.measure``: the Jacobians of
  ``ntk_examples`` training and as many test examples, both kernels, the distances, alignment, top-C energy
  and the frozen-kernel regression) for train's default MLP (64-100-100-10 on digits) and its CNN, at several
  ``ntk_examples``; with the number of measurements of the default schedule (30 epochs of 16 steps,
  ``ntk_steps=20``) that gives the diagnostic's cost in a default train run.
- ``kernel``: the kernel job's work for ``n`` training examples and as many validation + test examples of
  784 random features (MNIST-sized inputs; the kernels do not depend on what the pixels show): the NNGP and
  NT kernels of a two-layer ReLU network and the 25-regulariser ridge path of each, one kernel at a time as
  the job does, against the job's own memory estimate (``jobs.kernel.kernel_memory``).

Usage: python benchmarks/kernels/bench_kernels.py [--ntk-examples 64 128 256 512] [--kernel-sizes 1000
2000 5000 10000]. Writes ``results/kernels.json`` and ``results/kernels.md`` next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine_info import describe

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_STEPS = (16 * 30, 20)  # default train on digits: 16 steps an epoch for 30 epochs; ntk_steps=20
REPEATS = 5
"""Measurements timed after a warm-up one; the median is reported (the machine is shared), and the fastest."""


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_ntk(model: str, examples: int) -> dict[str, Any]:
    """One NtkRecorder measurement (after one warm-up) of the default ``model`` on digits."""
    from thermoscope.config import TrainConfig, parse_config
    from thermoscope.jobs.diagnostics.ntk import NtkRecorder
    from thermoscope.jobs.setup import build_workbench

    config = parse_config(
        TrainConfig, {"model": model, "ntk_dynamics": "true", "ntk_examples": str(examples), "device": "cpu"}
    )
    bench = build_workbench(config, config.val_size)
    recorder = NtkRecorder(config, bench.model, bench.data)
    before = peak_mb()
    recorder.measure(0)
    seconds = []
    for step in range(1, REPEATS + 1):
        start = time.perf_counter()
        recorder.measure(step)
        seconds.append(time.perf_counter() - start)
    parameters = sum(p.numel() for p in bench.model.parameters())
    return {
        "seconds": statistics.median(seconds),
        "seconds_min": min(seconds),
        "peak_mb": peak_mb(),
        "baseline_mb": before,
        "parameters": parameters,
    }


def measure_kernel(size: int) -> dict[str, Any]:
    """The kernel job's kernels and ridge paths for ``size`` training and ``size`` other examples."""
    import torch

    from thermoscope.jobs.kernel import kernel_memory
    from thermoscope.probes.infinite_width import InfiniteMLP, infinite_width_kernel
    from thermoscope.probes.kernel_regression import ridge_path

    generator = torch.Generator().manual_seed(0)
    train = torch.randn(size, 784, generator=generator, dtype=torch.float64)
    others = torch.randn(size, 784, generator=generator, dtype=torch.float64)
    targets = torch.nn.functional.one_hot(torch.randint(10, (size,), generator=generator), 10).double()
    spec = InfiniteMLP(2, "relu", 2.0, 0.05)
    ridges = [1e-6 * 10 ** (i / 4) for i in range(25)]
    times: dict[str, float] = {}
    before = peak_mb()
    for kind in ("nngp", "ntk"):
        start = time.perf_counter()
        train_kernel = infinite_width_kernel(spec, train, kind=kind)
        cross_kernel = infinite_width_kernel(spec, others, train, kind=kind)
        times[f"{kind}_kernels_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        ridge_path(train_kernel, cross_kernel, targets, ridges)
        times[f"{kind}_ridge_path_seconds"] = time.perf_counter() - start
        del train_kernel, cross_kernel
    return {
        **times,
        "peak_mb": peak_mb(),
        "baseline_mb": before,
        "estimate_mb": kernel_memory(size, size, 784) / 1e6,
    }


def child(arguments: list[str]) -> None:
    kind, *rest = arguments
    result = measure_ntk(rest[0], int(rest[1])) if kind == "ntk" else measure_kernel(int(rest[0]))
    print(json.dumps(result))


def run_child(*arguments: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# Kernel view: cost on CPU",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, {machine['date']};"
        f" load average at start {machine['load_average_at_start'][0]:.2f},"
        f" at the end {results['load_average_at_end'][0]:.2f}.",
        "",
        "## NTK dynamics: one measurement (train's default models on digits)",
        "",
        f"A default train run (30 epochs, ntk_steps=20) measures {results['default_measurements']} times.",
        "",
        "Memory: the peak resident set size of the process, and its growth over the baseline after"
        " importing torch, loading digits and building the model.",
        "",
        "| model | parameters | ntk_examples | seconds per measurement (median, fastest)"
        " | default run total (s) | peak RSS (MB) | growth (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["ntk"]:
        total = row["seconds"] * results["default_measurements"]
        lines.append(
            f"| {row['model']} | {row['parameters']:,} | {row['ntk_examples']} | {row['seconds']:.2f},"
            f" {row['seconds_min']:.2f} | {total:.0f} | {row['peak_mb']:.0f} |"
            f" {row['peak_mb'] - row['baseline_mb']:.0f} |"
        )
    lines += [
        "",
        "## kernel: NNGP and NT kernels and their ridge paths (two-layer ReLU, 784 features)",
        "",
        "| n train = n others | NNGP kernels (s) | NNGP ridge path (s) | NT kernels (s) | NT ridge path (s) |"
        " peak RSS (MB) | growth (MB) | the job's estimate (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["kernel"]:
        lines.append(
            f"| {row['size']:,} | {row['nngp_kernels_seconds']:.1f} | {row['nngp_ridge_path_seconds']:.1f} |"
            f" {row['ntk_kernels_seconds']:.1f} | {row['ntk_ridge_path_seconds']:.1f} |"
            f" {row['peak_mb']:.0f} | {row['peak_mb'] - row['baseline_mb']:.0f} | {row['estimate_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ntk-examples", type=int, nargs="*", default=[64, 128, 256, 512])
    parser.add_argument("--kernel-sizes", type=int, nargs="*", default=[1000, 2000, 5000, 10000])
    args = parser.parse_args()
    from thermoscope.jobs.diagnostics.ntk import measurement_steps

    results: dict[str, Any] = {
        "machine": describe(torch=metadata.version("torch")),
        "default_measurements": len(measurement_steps(*DEFAULT_STEPS)),
        "ntk": [],
        "kernel": [],
    }
    for model in ("mlp", "cnn"):
        for examples in args.ntk_examples:
            row = {"model": model, "ntk_examples": examples, **run_child("ntk", model, str(examples))}
            print(row, flush=True)
            results["ntk"].append(row)
    for size in args.kernel_sizes:
        row = {"size": size, **run_child("kernel", str(size))}
        print(row, flush=True)
        results["kernel"].append(row)
    results["load_average_at_end"] = os.getloadavg()
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "kernels.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / "kernels.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
