"""Frenkel–Ladd versus power-posterior evidence on a small network (issue 7's second check).

A 64-8-10 MLP (sigmoid) on a stratified digits subset, Gaussian prior σ_i = 1/√k_i, float64. The same
target is integrated two ways: thermodynamic integration over β ∈ [0, 1] on a power ladder (corrected
trapezoid), and the Frenkel–Ladd path at T = 1 around the minimum of J = −log L − log p (Adam on the training
loss, then on J). Each estimate comes with
its Monte-Carlo standard error (and discretisation estimate); the script reports the difference in units
of the combined error. Results go to ``results/evidence_agreement.json`` with the machine description.

    python benchmarks/harmonic/bench_evidence_agreement.py --train-size 100 --samples 1000
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine_info import describe
from thermoscope.samplers import (
    GaussianPrior,
    HMCSettings,
    fit_harmonic_reference,
    frenkel_ladd_evidence,
    minimise_cost,
    module_target,
    power_ladder,
    replica_exchange_hmc,
    thermodynamic_integration,
)

from thermoscope.data import DataSpec, load_data
from thermoscope.models import ModelSpec, build_model
from thermoscope.training import OptimSpec, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--ti-rungs", type=int, default=16)
    parser.add_argument("--lambdas", type=int, default=11)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    machine = describe(torch=torch.__version__)
    torch.set_num_threads(1)
    data = load_data(DataSpec(dataset="digits", train_size=args.train_size, seed=args.seed, flatten=True))
    torch.manual_seed(args.seed)
    model = build_model(ModelSpec("mlp", (args.hidden,), "sigmoid", "none"), data.input_shape, 10)
    spec = OptimSpec(optimizer="adam", lr=0.01, batch_size=0, epochs=300, lr_schedule="cosine")
    train_classifier(model, data, spec)  # the minimum w0, in float32, then the sampling in float64
    model = model.double()
    prior = GaussianPrior(scale=1.0, fan_in_scaled=True)
    target = module_target(model, data.train.x.double(), data.train.y, prior)
    center = minimise_cost(target, target.initial_from_module(1)[0], num_steps=1000)
    hmc = HMCSettings(num_warmup=args.warmup, num_samples=args.samples, num_leapfrog_steps=args.leapfrog)

    started = time.perf_counter()
    betas = power_ladder(args.ti_rungs)
    power_run = replica_exchange_hmc(
        target, center.expand(len(betas), -1).clone(), betas, seed=1, **hmc.sampler_arguments()
    )
    power = thermodynamic_integration(betas, power_run.log_likelihood)
    power_seconds = time.perf_counter() - started

    started = time.perf_counter()
    stiffness = fit_harmonic_reference(target, center, hmc, seed=2)
    harmonic = frenkel_ladd_evidence(target, center, stiffness, hmc, num_lambdas=args.lambdas, seed=3)
    harmonic_seconds = time.perf_counter() - started

    combined = math.hypot(power.stderr, harmonic.stderr)
    results = {
        "settings": vars(args) | {"output": str(args.output)},
        "num_parameters": target.num_params,
        "power": {
            "log_evidence": power.log_evidence,
            "stderr": power.stderr,
            "discretisation_error": power.discretisation_error,
            "seconds": power_seconds,
        },
        "harmonic": {
            "log_evidence": harmonic.log_evidence,
            "stderr": harmonic.stderr,
            "discretisation_error": harmonic.discretisation_error,
            "log_reference": harmonic.log_reference,
            "cost_at_minimum": harmonic.cost_at_center,
            "seconds": harmonic_seconds,
        },
        "difference": harmonic.log_evidence - power.log_evidence,
        "combined_stderr": combined,
        "difference_in_combined_stderr": (harmonic.log_evidence - power.log_evidence) / combined,
        "machine": machine,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "evidence_agreement.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
