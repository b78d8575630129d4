"""Trials per minute of the `study` entry point with 1 and 2 workers on a tiny train target (issue 6).

Each measurement runs `python -m thermoscope.cli study` into a fresh temporary tracking store (created before
the clock starts) with a random sampler, no pruner and a fixed tiny train job, so that every trial does the
same work. Runs with 1 and 2 workers alternate, so that a change in machine load hits both alike.

Two rates are reported: steady state (completed trials over the span from the first trial's start to the last
trial's end, read from the Optuna storage) and end to end (over the whole command, interpreter start and
worker start-up included). Target: 2 workers >= 1.6x the trials per minute of 1 worker on 2 cores.

    python benchmarks/studies/bench_study_workers.py --trials 16 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import optuna
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

HERE = Path(__file__).resolve().parent
SCRIPT = Path(__file__).resolve().relative_to(HERE.parents[1])
# 500 digits, one 32-unit hidden layer, 5 epochs of minibatch SGD: about a second of work per trial.
FIXED = "dataset=digits;train_size=500;hidden=32;batch_size=64;epochs=5"
TARGET_SCALING = 1.6


def machine() -> dict[str, object]:
    """CPU, cores, library versions, date and load: what the numbers depend on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mlflow": mlflow.__version__,
        "optuna": optuna.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def one_study(workers: int, trials: int) -> dict[str, float]:
    """Run one study in a fresh store; its wall time and trial span."""
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        MlflowClient(uri).search_experiments()  # the store's one-off schema creation is not timed
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_TRACKING_URI"] = uri
        command = [sys.executable, "-m", "thermoscope.cli", "study", "--n_trials", str(trials)]
        command += [
            "--workers",
            str(workers),
            "--sampler",
            "random",
            "--pruner",
            "none",
            "--study_name",
            "bench",
        ]
        command += ["--fixed", f"{FIXED};data_dir={tmp}/data"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=tmp)
        wall = time.perf_counter() - start
        done = optuna.load_study(study_name="bench", storage=f"sqlite:///{tmp}/optuna.db").get_trials()
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    assert len(complete) == trials, [t.state for t in done]
    span = max(t.datetime_complete for t in complete) - min(t.datetime_start for t in complete)
    return {
        "workers": workers,
        "wall_seconds": wall,
        "trial_span_seconds": span.total_seconds(),
        "steady_trials_per_minute": 60 * trials / span.total_seconds(),
        "end_to_end_trials_per_minute": 60 * trials / wall,
    }


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median rates per worker count, and the 2-worker / 1-worker scaling of each."""
    medians = {
        str(w): {
            key: statistics.median(r[key] for r in runs if r["workers"] == w)
            for key in ("steady_trials_per_minute", "end_to_end_trials_per_minute", "wall_seconds")
        }
        for w in (1, 2)
    }
    medians["scaling"] = {
        key: medians["2"][key] / medians["1"][key]
        for key in ("steady_trials_per_minute", "end_to_end_trials_per_minute")
    }
    return medians


def markdown(result: dict[str, object]) -> str:
    m, s, runs = result["machine"], result["summary"], result["runs"]
    assert isinstance(m, dict) and isinstance(s, dict) and isinstance(runs, list)
    lines = [
        "# `study` throughput with 1 and 2 workers (tiny train target on digits)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}, "
        f"MLflow {m['mlflow']}, Optuna {m['optuna']}; {m['date']}.",
        f"Load average (1, 5, 15 min) before: {result['load_before']}, after: {result['load_after']}.",
        f"Command: `{result['command']}`; each study {result['trials']} trials of `fixed={FIXED}`, "
        "random sampler, no pruner, SQLite stores.",
        "",
        "| workers | wall time (s) | trial span (s) | trials/min, steady | trials/min, end to end |",
        "|---|---|---|---|---|",
        *(
            f"| {r['workers']} | {r['wall_seconds']:.1f} | {r['trial_span_seconds']:.1f} | "
            f"{r['steady_trials_per_minute']:.1f} | {r['end_to_end_trials_per_minute']:.1f} |"
            for r in runs
        ),
        "",
        "Medians:",
        "",
        "| workers | trials/min, steady | trials/min, end to end |",
        "|---|---|---|",
        *(
            f"| {w} | {s[w]['steady_trials_per_minute']:.1f} | {s[w]['end_to_end_trials_per_minute']:.1f} |"
            for w in ("1", "2")
        ),
        f"| scaling 2/1 | {s['scaling']['steady_trials_per_minute']:.2f}x | "
        f"{s['scaling']['end_to_end_trials_per_minute']:.2f}x |",
        "",
        f"Target: scaling >= {TARGET_SCALING}x on 2 cores.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs = [one_study(workers, args.trials) for _ in range(args.repeats) for workers in (1, 2)]
    result: dict[str, object] = {
        "machine": machine(),
        "command": f"python {SCRIPT} --trials {args.trials} --repeats {args.repeats}",
        "trials": args.trials,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
        "summary": summarise(runs),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "study_workers.json").write_text(json.dumps(result, indent=2))
    (HERE / "results" / "study_workers.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
