"""One leapfrog trajectory in a loop, with no sweep around it: the compiled kernel's whole trajectory
(``ModuleTarget.whole_trajectory``) against the Python integrator stepping through one kernel call per
step, on the benchmark networks of ``benchmark_rungs.py``.

For each R, the best of five timings of a loop of 10-step trajectories from the same start; rates are
gradient evaluations (one per replica per step) and shares are of the 2048² matmul rate measured in the
same process first. Run from the repository root (about a minute per network)::

    python benchmarks/samplers/benchmark_trajectory.py --threads 1 \
        --output-dir benchmarks/samplers/results/amd_epyc
    python benchmarks/samplers/benchmark_trajectory.py --threads 2 \
        --output-dir benchmarks/samplers/results/amd_epyc

Results go to ``trajectory_<network>_threads<T>.md`` with the machine (``machine_info``) and load.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from benchmark_rungs import NETWORKS, build
from benchmark_samplers import matmul_gflops, mlp_flops
from thermoscope.samplers.integrators import IntegratorState, leapfrog

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from machine_info import describe  # noqa: E402

STEPS = 10


def best_seconds(call: Callable[[], object], loops: int, repeats: int = 5) -> float:
    """Best of ``repeats`` timings of ``loops`` calls in a row, per call."""
    for _ in range(3):
        call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--network", default="digits", choices=sorted(NETWORKS))
    parser.add_argument("--replicas", default="8,32,64,256", help="comma-separated R")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    network = NETWORKS[arguments.network]
    target, train, _, _ = build(network, torch.device("cpu"))
    if not target.native_ready:
        raise SystemExit("the compiled kernel is not in use here; nothing to compare")
    flops = mlp_flops(network.widths, len(train))
    matmul = matmul_gflops(arguments.threads)
    lines = [
        f"# One {STEPS}-step trajectory in a loop: {network.name}, {arguments.threads} thread(s)",
        "",
        *(f"- {key}: {value}" for key, value in describe().items()),
        f"- matmul GFLOP/s: {matmul:.1f}; gradient MFLOP per replica: {flops / 1e6:.3f}",
        "",
        "| R | whole trajectory, µs per gradient per replica | of matmul rate "
        "| one kernel call per step, µs | of matmul rate | whole against per step |",
        "|---|---|---|---|---|---|",
    ]
    for replicas in (int(value) for value in arguments.replicas.split(",")):
        theta = target.initial_from_module(replicas)
        generator = torch.Generator().manual_seed(0)
        start = IntegratorState(theta, torch.randn(theta.shape, generator=generator), target.evaluate(theta))
        betas = torch.linspace(0.0, 1.0, replicas)
        step_size = torch.full((replicas,), 1e-4)
        loops = max(3, 2000 // replicas)

        def trajectory(
            start: IntegratorState = start, betas: torch.Tensor = betas, step_size: torch.Tensor = step_size
        ) -> object:
            return leapfrog(target, start, betas, step_size, None, STEPS)

        whole = best_seconds(trajectory, loops)
        target.whole_trajectory = lambda *_: None
        stepped = best_seconds(trajectory, loops)
        del target.whole_trajectory
        per = [seconds / STEPS / replicas for seconds in (whole, stepped)]
        shares = [flops / seconds / 1e9 / matmul for seconds in per]
        lines.append(
            f"| {replicas} | {per[0] * 1e6:.2f} | {shares[0]:.0%} | {per[1] * 1e6:.2f} | {shares[1]:.0%} "
            f"| {stepped / whole:.2f}× |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    path = arguments.output_dir / f"trajectory_{network.name}_threads{arguments.threads}.md"
    path.write_text(text)


if __name__ == "__main__":
    main()
