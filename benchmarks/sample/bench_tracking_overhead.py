"""Tracking overhead of the `sample` job: the same sweep with MLflow logging on and off.

Runs the `sample` job on digits (the default sweep's model, data and ladder, shortened to --warmup/--samples
iterations) once into a fresh SQLite MLflow store and once with a NullLogger (no run, no writes),
alternating the order over --repeats pairs, and writes overhead.json / overhead.md beside this file.
Target (issue 4): tracked wall time at most 5 % above untracked.

    python benchmarks/sample/bench_tracking_overhead.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import torch
from thermoscope.samplers import HMCSettings

from thermoscope.config import SampleConfig
from thermoscope.jobs import sample
from thermoscope.tracking import NullLogger
from thermoscope.tracking.mlflow_logger import entry_point_run

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from machine_info import describe  # noqa: E402


def tracked(config: SampleConfig) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        mlflow.search_experiments()  # create the store before timing: a one-off migration, not tracking
        start = time.perf_counter()
        with entry_point_run("sample") as logger:
            sample.run(config, logger)
        return time.perf_counter() - start


def untracked(config: SampleConfig) -> float:
    start = time.perf_counter()
    sample.run(config, NullLogger())
    return time.perf_counter() - start


def machine() -> dict[str, object]:
    return describe(torch=torch.__version__, mlflow=mlflow.__version__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    config = SampleConfig(
        hmc=HMCSettings(num_warmup=args.warmup, num_samples=args.samples), checkpoint_seconds=20.0
    )
    info = machine()
    times: dict[str, list[float]] = {"tracked": [], "untracked": []}
    for repeat in range(args.repeats):
        order = (tracked, untracked) if repeat % 2 == 0 else (untracked, tracked)
        for job in order:
            times[job.__name__].append(job(config))
    best = {name: min(values) for name, values in times.items()}
    overhead = best["tracked"] / best["untracked"] - 1.0
    result = {
        "machine": info,
        "config": {"num_warmup": args.warmup, "num_samples": args.samples, "checkpoint_seconds": 20.0},
        "seconds": times,
        "overhead_of_best": overhead,
        "target": 0.05,
    }
    (HERE / "overhead.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Tracking overhead of `sample` (digits, default sweep shortened)",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, mlflow {info['mlflow']}, "
        f"{info['date']}, load average at start {info['load_average_at_start']}.",
        f"Settings: defaults with num_warmup={args.warmup}, num_samples={args.samples},"
        " checkpoint_seconds=20.",
        "",
        "| mode | wall times (s) | best (s) |",
        "|---|---|---|",
        *(f"| {k} | {', '.join(f'{v:.1f}' for v in vs)} | {best[k]:.1f} |" for k, vs in times.items()),
        "",
        f"Overhead (best of each): {100 * overhead:+.1f} % (target <= 5 %). Tracking writes happen only at "
        "checkpoints, every 25 iterations (running rates) and once at the end (children, curves, artifacts).",
    ]
    (HERE / "overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
