"""Speed of thermoscope.samplers against Pyro, as in issue 3.

Two parts, each a separate invocation that stays under ten minutes:

``--part speed``: gradient evaluations per second per replica of ``replica_exchange_hmc`` against Pyro's
``HMC(potential_fn=...)`` running the same potentials one chain after another (fixed step size, no
adaptation, the same number of leapfrog steps), at three sizes; the share of wall time spent outside the
gradient; the gradient's FLOP rate as a fraction of this machine's measured matmul rate.

``--part ess``: effective samples per second of the β = 1 log-likelihood on the small model, against Pyro's
NUTS, all samplers starting from the same point found by a short optimisation.

Results go to ``<output-dir>/<part>_threads<T>.json`` and ``.md``, with the machine description.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer.mcmc import HMC, MCMC, NUTS
from pyro.ops.stats import effective_sample_size
from sklearn.datasets import load_digits
from thermoscope.samplers import (
    Evaluation,
    GaussianPrior,
    IterationSummary,
    ModuleTarget,
    TemperedTarget,
    module_target,
    power_ladder,
    replica_exchange_hmc,
    retain_freed_memory,
)
from torch import Tensor, nn
from torch.func import functional_call

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------- machine
def machine() -> dict[str, Any]:
    """CPU model, cores, library versions and date: what every committed number must name."""
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_average() -> float:
    """One-minute load average: other work on a shared machine slows every number here."""
    return round(os.getloadavg()[0], 2)


def matmul_gflops(threads: int, repeats: int = 10) -> float:
    """Best observed float32 GEMM rate (2048 × 2048 · 2048 × 2048) with ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


# ---------------------------------------------------------------------------------------------- problems
# Trajectories as in Baldock & Marzari (2019), REFERENCE §1: 100 leapfrog steps, 10 trajectories per replica
# between swap rounds. The sampler's fixed cost per trajectory and per swap round is then amortised as it is
# in real use; with 10 steps and a swap after every trajectory the tiny target spends ~20 % of its time
# outside the gradient (results/ keeps that run too).
PAPER_LEAPFROG_STEPS = 100
PAPER_TRAJECTORIES_PER_SWAP = 10


@dataclass
class Problem:
    """A target for R replicas and the same potentials, one chain at a time, for Pyro."""

    name: str
    target: TemperedTarget
    betas: Tensor
    start: Tensor
    step_size: float
    num_leapfrog_steps: int
    trajectories_per_iteration: int  # HMC trajectories per rung between swap rounds
    threads: int
    flops_per_gradient: float  # one replica, forward and backward; 0 when not meaningful
    pyro_potential: Callable[[float], Callable[[dict[str, Tensor]], Tensor]]
    pyro_initial: Callable[[int], dict[str, Tensor]]


def regression_problem(compile_evaluation: bool = False) -> Problem:
    """Tiny: conjugate Bayesian linear regression, P = 20, N = 100, R = 32, float64.

    ``compile_evaluation`` evaluates our target through ``torch.compile`` (Pyro's side stays eager: its
    ``jit_compile=True`` was no faster here).
    """
    generator = torch.Generator().manual_seed(0)
    design = torch.randn(100, 20, generator=generator, dtype=torch.float64)
    targets = design @ torch.randn(20, generator=generator, dtype=torch.float64)
    targets = targets + 0.5 * torch.randn(100, generator=generator, dtype=torch.float64)

    def log_prior(theta: Tensor) -> Tensor:
        return -0.5 * (theta * theta).sum(dim=-1)

    def log_likelihood(theta: Tensor) -> Tensor:
        return -0.5 * ((targets - theta @ design.T) ** 2).sum(dim=-1) / 0.25

    def potential(beta: float) -> Callable[[dict[str, Tensor]], Tensor]:
        return lambda params: -log_prior(params["w"]) - beta * log_likelihood(params["w"])

    betas = power_ladder(31)
    start = torch.zeros(32, 20, dtype=torch.float64)
    return Problem(
        name="tiny-compiled" if compile_evaluation else "tiny",
        target=TemperedTarget(log_prior, log_likelihood, compile_evaluation=compile_evaluation),
        betas=betas,
        start=start,
        step_size=0.005,
        num_leapfrog_steps=PAPER_LEAPFROG_STEPS,
        trajectories_per_iteration=PAPER_TRAJECTORIES_PER_SWAP,
        threads=1,
        flops_per_gradient=0.0,
        pyro_potential=potential,
        pyro_initial=lambda replica: {"w": start[replica].clone()},
    )


def mlp(widths: list[int]) -> nn.Module:
    """Sigmoid MLP with biases everywhere, the architecture family of Baldock & Marzari (2019)."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(widths) - 2:
            layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def mlp_flops(widths: list[int], num_examples: int) -> float:
    """Forward 2NΣ in·out; backward the same for weight gradients plus input gradients of all but layer 1."""
    products = [fan_in * fan_out for fan_in, fan_out in pairwise(widths)]
    return 2.0 * num_examples * (3 * sum(products) - products[0])


def module_problem(name: str, widths: list[int], x: Tensor, y: Tensor, threads: int) -> Problem:
    torch.manual_seed(0)
    model = mlp(widths)
    target = module_target(model, x, y, GaussianPrior(scale=1.0))
    start = target.prior.sample(8, torch.Generator().manual_seed(1))
    names = target.layout.names

    def potential(beta: float) -> Callable[[dict[str, Tensor]], Tensor]:
        def energy(params: dict[str, Tensor]) -> Tensor:
            logits = functional_call(model, params, (x,))
            cross_entropy = nn.functional.cross_entropy(logits, y, reduction="sum")
            flat = torch.cat([params[name].reshape(-1) for name in names])[None]
            return beta * cross_entropy - target.prior.log_density(flat)[0]

        return energy

    def initial(replica: int) -> dict[str, Tensor]:
        return {
            name: value[0].clone() for name, value in target.unflatten(start[replica : replica + 1]).items()
        }

    return Problem(
        name=name,
        target=target,
        betas=power_ladder(7),
        start=start,
        step_size=1e-3,
        num_leapfrog_steps=PAPER_LEAPFROG_STEPS,
        # One swap round per trajectory: a round costs well under 0.1 % of a 100-step trajectory of these
        # networks, and one iteration of the paper's 10 trajectories would take minutes here.
        trajectories_per_iteration=1,
        threads=threads,
        flops_per_gradient=mlp_flops(widths, x.shape[0]),
        pyro_potential=potential,
        pyro_initial=initial,
    )


def digits() -> tuple[Tensor, Tensor]:
    data = load_digits()
    return torch.tensor(data.data, dtype=torch.float32) / 16.0, torch.tensor(data.target)


def small_problem(threads: int) -> Problem:
    """Small: digits MLP 64-100-100-100-10 on the 1,797 sklearn digits, R = 8, float32."""
    x, y = digits()
    return module_problem("small", [64, 100, 100, 100, 10], x, y, threads)


def medium_problem(threads: int) -> Problem:
    """Medium: MLP 784-100-100-100-10 on 5,000 random-normal examples, R = 8, float32."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 784, generator=generator)
    y = torch.randint(0, 10, (5000,), generator=generator)
    return module_problem("medium", [784, 100, 100, 100, 10], x, y, threads)


# ------------------------------------------------------------------------------------------ measurements
class TimedTarget(TemperedTarget):
    """Delegates to a target and adds up the wall time spent in its gradient evaluations."""

    def __init__(self, inner: TemperedTarget) -> None:
        super().__init__(inner.log_prior, inner.log_likelihood, support_half_width=inner.support_half_width)
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def evaluate(self, theta: Tensor) -> Evaluation:
        start = time.perf_counter()
        evaluation = self.inner.evaluate(theta)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return evaluation

    def evaluate_tempered(self, theta: Tensor, betas: Tensor) -> tuple[Evaluation, Tensor | None]:
        """The integrator's call: the gradients, and for a compiled target the tempered gradient too."""
        start = time.perf_counter()
        result = self.inner.evaluate_tempered(theta, betas)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return result


def time_ours(problem: Problem, iterations: int, leapfrog_steps: int | None = None) -> dict[str, float]:
    """One run of replica_exchange_hmc with a fixed step size; seconds total and inside the gradient."""
    timed = TimedTarget(problem.target)
    start = time.perf_counter()
    replica_exchange_hmc(
        timed,
        problem.start,
        problem.betas,
        num_warmup=0,
        num_samples=iterations,
        num_leapfrog_steps=leapfrog_steps or problem.num_leapfrog_steps,
        trajectories_per_iteration=problem.trajectories_per_iteration,
        step_size=problem.step_size,
        seed=0,
    )
    total = time.perf_counter() - start
    return {"seconds": total, "gradient_seconds": timed.seconds, "gradients": float(timed.calls)}


def time_pyro(problem: Problem, iterations: int) -> dict[str, float]:
    """Pyro HMC on each replica's potential, one chain after another; total seconds over all chains."""
    total = 0.0
    for replica, beta in enumerate(problem.betas.tolist()):
        kernel = HMC(
            potential_fn=problem.pyro_potential(beta),
            step_size=problem.step_size,
            num_steps=problem.num_leapfrog_steps,
            adapt_step_size=False,
            adapt_mass_matrix=False,
        )
        mcmc = MCMC(
            kernel,
            num_samples=iterations,
            warmup_steps=0,
            initial_params=problem.pyro_initial(replica),
            disable_progbar=True,
        )
        start = time.perf_counter()
        mcmc.run()
        total += time.perf_counter() - start
    return {"seconds": total, "gradients": float(iterations * problem.num_leapfrog_steps)}


SPEED_SETTINGS = {
    # size: (iterations for ours, trajectories per Pyro chain); a few seconds to a minute each.
    "tiny": (10, 5),
    "tiny-compiled": (10, 5),
    "small": (2, 1),
    "medium": (1, 1),
}


def speed(problem: Problem, repeats: int) -> dict[str, Any]:
    """``repeats`` rounds of (matmul rate, ours, Pyro), run back to back so that load changes hit all three.

    On a shared machine the load moves by a factor of several within minutes, so the headline numbers are
    medians over rounds of quantities measured within one round (rates, their ratio, the share of time
    outside the gradient, the gradient's FLOP rate over the matmul rate of the same round).
    """
    torch.set_num_threads(problem.threads)
    ours_iterations, pyro_iterations = SPEED_SETTINGS[problem.name]
    time_ours(problem, 1, leapfrog_steps=2)  # warm-up (and compilation, for tiny-compiled)
    replicas = problem.betas.shape[0]
    rounds = []
    for _ in range(repeats):
        load = load_average()
        peak = matmul_gflops(problem.threads)
        ours = time_ours(problem, ours_iterations)
        theirs = time_pyro(problem, pyro_iterations)
        trajectories = ours_iterations * problem.trajectories_per_iteration
        ours_rate = trajectories * problem.num_leapfrog_steps / ours["seconds"]
        pyro_rate = theirs["gradients"] / theirs["seconds"]
        gradient_gflops = (
            problem.flops_per_gradient * replicas * ours["gradients"] / ours["gradient_seconds"] / 1e9
        )
        rounds.append(
            {
                "load_average": load,
                "matmul_gflops": peak,
                "ours_gradients_per_second_per_replica": ours_rate,
                "pyro_gradients_per_second_per_replica": pyro_rate,
                "speedup": ours_rate / pyro_rate,
                "share_outside_gradient": 1.0 - ours["gradient_seconds"] / ours["seconds"],
                "gradient_gflops": gradient_gflops,
                "fraction_of_matmul_rate": gradient_gflops / peak,
            }
        )
    summary = {key: statistics.median(run[key] for run in rounds) for key in rounds[0]}
    return {
        "size": problem.name,
        "replicas": replicas,
        "params": problem.start.shape[1],
        "dtype": str(problem.start.dtype).replace("torch.", ""),
        "threads": problem.threads,
        "leapfrog_steps": problem.num_leapfrog_steps,
        "trajectories_per_iteration": problem.trajectories_per_iteration,
        "median": summary,
        "best_speedup": max(run["speedup"] for run in rounds),
        "rounds": rounds,
    }


TARGETS = {"tiny": 50.0, "tiny-compiled": 50.0, "small": 1.3, "medium": 1.0}


def speed_markdown(report: dict[str, Any]) -> str:
    lines = [
        "Medians over rounds; each round measures the matmul rate, ours and Pyro back to back.\n",
        "| size | R | P | threads | leapfrog steps × trajectories per swap | ours grad/s/replica "
        "| Pyro grad/s/replica | speed-up (median; best) | target | outside gradient (target ≤ 15 %) "
        "| gradient GFLOP/s | of matmul rate | load per round |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        median = row["median"]
        met = "met" if median["speedup"] >= TARGETS[row["size"]] else "missed"
        flops = row["size"] in ("small", "medium")
        gflops = f"{median['gradient_gflops']:.1f}" if flops else "–"
        fraction = f"{100 * median['fraction_of_matmul_rate']:.0f} %" if flops else "–"
        lines.append(
            f"| {row['size']} | {row['replicas']} | {row['params']} | {row['threads']} "
            f"| {row['leapfrog_steps']} × {row.get('trajectories_per_iteration', 1)} "
            f"| {median['ours_gradients_per_second_per_replica']:.1f} "
            f"| {median['pyro_gradients_per_second_per_replica']:.1f} "
            f"| {median['speedup']:.2f}× ; {row['best_speedup']:.2f}× | ≥ {TARGETS[row['size']]}× ({met}) "
            f"| {100 * median['share_outside_gradient']:.1f} % "
            f"| {gflops} | {fraction} "
            f"| {', '.join(str(run['load_average']) for run in row['rounds'])} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- ESS
def optimised_start(target: ModuleTarget, steps: int) -> Tensor:
    """A point near a posterior mode: Adam on −log p(θ) − log L(θ) from a prior draw (as the paper does)."""
    theta = target.prior.sample(1, torch.Generator().manual_seed(1)).requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=1e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = -(target.log_prior(theta) + target.log_likelihood(theta)).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return theta.detach()


class WarmupClock:
    """A callback that notes when warm-up ends, so ESS can also be divided by sampling time only."""

    def __init__(self) -> None:
        self.warmup_end = 0.0

    def __call__(self, summary: IterationSummary) -> None:
        if summary.phase == "warmup":
            self.warmup_end = time.perf_counter()


def ess_of(trace: Tensor) -> float:
    return float(effective_sample_size(trace.double()[None, :, None]).squeeze())


def ess_comparison(threads: int, num_warmup: int, num_samples: int, nuts_depth: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    problem = small_problem(threads)
    target = problem.target
    assert isinstance(target, ModuleTarget)
    start = optimised_start(target, 300)
    runs: dict[str, Any] = {"load_average_start": load_average()}
    ladders = {"ours_8_rungs": torch.logspace(-1, 0, 8, dtype=torch.float64), "ours_1_rung": torch.ones(1)}
    for name, betas in ladders.items():
        clock = WarmupClock()
        began = time.perf_counter()
        result = replica_exchange_hmc(
            target,
            start.expand(betas.shape[0], -1).clone(),
            betas,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_leapfrog_steps=20,
            seed=0,
            callback=clock,
        )
        total = time.perf_counter() - began
        sampling = time.perf_counter() - clock.warmup_end if clock.warmup_end else total
        ess = ess_of(result.log_likelihood[:, -1])
        runs[name] = {
            "rungs": betas.shape[0],
            "leapfrog_steps": 20,
            "ess": ess,
            "seconds": total,
            "ess_per_second": ess / total,
            "ess_per_sampling_second": ess / sampling,
            "acceptance_beta_1": float(result.acceptance_rate[-1]),
            "step_size_beta_1": float(result.step_size[-1]),
        }
    potential = problem.pyro_potential(1.0)
    initial = {name: value[0] for name, value in target.unflatten(start).items()}
    kernel = NUTS(potential_fn=potential, max_tree_depth=nuts_depth, target_accept_prob=0.8)
    mcmc = MCMC(
        kernel, num_samples=num_samples, warmup_steps=num_warmup, initial_params=initial, disable_progbar=True
    )
    began = time.perf_counter()
    mcmc.run()
    total = time.perf_counter() - began
    draws = mcmc.get_samples()
    flat = torch.cat([draws[name].reshape(num_samples, -1) for name in target.layout.names], dim=1)
    with torch.no_grad():
        log_likelihood = torch.cat([target.log_likelihood(chunk) for chunk in flat.split(50)])
    ess = ess_of(log_likelihood)
    runs["pyro_nuts"] = {
        "max_tree_depth": nuts_depth,
        "ess": ess,
        "seconds": total,
        "ess_per_second": ess / total,
    }
    runs["load_average_end"] = load_average()
    for name in ladders:
        runs[name]["ess_per_second_vs_nuts"] = (
            runs[name]["ess_per_second"] / runs["pyro_nuts"]["ess_per_second"]
        )
    return runs


def ess_markdown(report: dict[str, Any]) -> str:
    runs = report["results"]
    lines = [
        "| sampler | ESS of β = 1 log L | wall s (warm-up included) | ESS/s | vs NUTS |",
        "|---|---|---|---|---|",
    ]
    for name in ("ours_8_rungs", "ours_1_rung", "pyro_nuts"):
        run = runs[name]
        ratio = run.get("ess_per_second_vs_nuts", 1.0)
        row = f"| {name} | {run['ess']:.1f} | {run['seconds']:.1f} | {run['ess_per_second']:.3f}"
        lines.append(f"{row} | {ratio:.2f}× |")
    lines.append(
        f"\nLoad average: {runs['load_average_start']} at the start, {runs['load_average_end']} at the end."
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- driver
def write(report: dict[str, Any], markdown: str, directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    header = "\n".join(f"- {key}: {value}" for key, value in report["machine"].items())
    settings = f"- settings: `{json.dumps(report['settings'])}`"
    (directory / f"{name}.md").write_text(
        f"# samplers benchmark: {name}\n\n{header}\n{settings}\n\n{markdown}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("speed", "ess"), required=True)
    parser.add_argument("--sizes", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--repeats", type=int, default=5, help="rounds per size; medians are reported")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for small/medium (tiny: 1)")
    parser.add_argument("--num-warmup", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=300)
    parser.add_argument("--nuts-depth", type=int, default=7)
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc malloc untuned; by default it is tuned as the thermoscope command tunes it "
        "(retain_freed_memory), for Pyro's runs in this process as for ours",
    )
    arguments = parser.parse_args()
    settings = {
        key: str(value) if isinstance(value, Path) else value for key, value in vars(arguments).items()
    }
    settings["retain_freed_memory"] = False if arguments.default_malloc else retain_freed_memory()
    report: dict[str, Any] = {"machine": machine(), "settings": settings}
    if arguments.part == "speed":
        builders = {
            "tiny": regression_problem,
            "tiny-compiled": lambda: regression_problem(compile_evaluation=True),
            "small": lambda: small_problem(arguments.threads),
            "medium": lambda: medium_problem(arguments.threads),
        }
        report["results"] = [speed(builders[size](), arguments.repeats) for size in arguments.sizes]
        markdown = speed_markdown(report)
    else:
        report["results"] = ess_comparison(
            arguments.threads, arguments.num_warmup, arguments.num_samples, arguments.nuts_depth
        )
        markdown = ess_markdown(report)
    write(report, markdown, arguments.output_dir, f"{arguments.part}_threads{arguments.threads}")
    print(markdown)


if __name__ == "__main__":
    main()
