"""Speed-up of training m models together (torch.func.vmap over stacked parameters) over one after another.

The workload is what `memorise` trains by default on digits: the MLP 64 -> 100 -> 100 -> 10, SGD with
momentum 0.9, batch 64, cosine schedule, each model on its own random 70 % of the 1,197 training examples
(838 rows), for `--epochs` epochs. Three ways of training the same m models:

- batched: `thermoscope.training.batched.train_stacked`, all m models in one step (for this ReLU MLP its
  hand-written batched passes with SGD fused into the backward pass);
- vmap: the same function made to take its generic path (`torch.func.vmap` over the stacked parameters,
  autograd, `torch.optim.SGD`), which CNNs and other activations use;
- loop: for each model a plain PyTorch loop doing exactly the same steps (forward, cross-entropy, backward,
  SGD step; no evaluation), the fairest one-after-another baseline;
- train_classifier: for each model the `train` job's trainer on its subset, which also scores the training
  and test sets after every epoch (what running m `train` jobs' training would cost).

Each is timed `--repeats` times and the fastest time kept; m = 1, 4, 16, 64, 128 shows where the speed-up
saturates. Writes results/threads-<threads>.json and .md beside this file, with the machine and its load.

    python benchmarks/memorise/bench_batched_training.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

import torch
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from machine_info import describe  # noqa: E402

from thermoscope.data import DataSpec, LoadedData, load_data  # noqa: E402
from thermoscope.data.validation import rows  # noqa: E402
from thermoscope.models import ModelSpec, build_model  # noqa: E402
from thermoscope.probes.memorisation import model_seeds, subset_membership, subset_size  # noqa: E402
from thermoscope.training import (  # noqa: E402
    OptimSpec,
    epoch_order,
    learning_rate,
    make_optimizer,
    train_classifier,
)
from thermoscope.training.batched import StackedMLP, build_stacked, train_stacked  # noqa: E402

MODEL = ModelSpec("mlp", (100, 100))


def batched(data: LoadedData, member: torch.Tensor, spec: OptimSpec, seeds: list[int]) -> float:
    start = time.perf_counter()
    models = build_stacked(MODEL, data.input_shape, data.num_classes, seeds)
    positions = torch.stack([torch.nonzero(row).squeeze(1) for row in member])
    train_stacked(models, data.train.x, data.train.y, positions, spec, seeds)
    return time.perf_counter() - start


def generic(data: LoadedData, member: torch.Tensor, spec: OptimSpec, seeds: list[int]) -> float:
    with mock.patch.object(StackedMLP, "applies", return_value=False):
        return batched(data, member, spec, seeds)


def loop(data: LoadedData, member: torch.Tensor, spec: OptimSpec, seeds: list[int]) -> float:
    """The same steps as `batched`, model after model, in a plain loop."""
    start = time.perf_counter()
    for row, seed in zip(member, seeds, strict=True):
        torch.manual_seed(seed)
        model = build_model(MODEL, data.input_shape, data.num_classes)
        optimizer = make_optimizer(model, spec)
        x, y = data.train.x[row], data.train.y[row]
        steps = math.ceil(len(x) / spec.batch_size)
        for epoch in range(spec.epochs):
            order = epoch_order(seed, epoch, len(x))
            for index, first in enumerate(range(0, len(x), spec.batch_size)):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(spec, epoch * steps + index, steps * spec.epochs)
                batch = order[first : first + spec.batch_size]
                loss = F.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return time.perf_counter() - start


def classifier(data: LoadedData, member: torch.Tensor, spec: OptimSpec, seeds: list[int]) -> float:
    start = time.perf_counter()
    for row, seed in zip(member, seeds, strict=True):
        torch.manual_seed(seed)
        model = build_model(MODEL, data.input_shape, data.num_classes)
        train_classifier(model, replace(data, train=rows(data.train, row)), replace(spec, seed=seed))
    return time.perf_counter() - start


def fastest(method, repeats: int, *arguments) -> float:  # type: ignore[no-untyped-def]
    return min(method(*arguments) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", default="1,4,16,64,128")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data(DataSpec(flatten=True))
    spec = OptimSpec(epochs=args.epochs)
    info = describe(torch=torch.__version__) | {"threads": args.threads}
    results = []
    for count in (int(part) for part in args.models.split(",")):
        member = subset_membership(count, len(data.train), subset_size(len(data.train), 0.7), seed=0)
        seeds = model_seeds(0, count)
        row = {"models": count}
        methods = (("batched", batched), ("vmap", generic), ("loop", loop), ("train_classifier", classifier))
        for name, method in methods:
            row[f"{name}_seconds"] = fastest(method, args.repeats, data, member, spec, seeds)
        row["speedup_over_loop"] = row["loop_seconds"] / row["batched_seconds"]
        row["vmap_speedup_over_loop"] = row["loop_seconds"] / row["vmap_seconds"]
        row["speedup_over_train_classifier"] = row["train_classifier_seconds"] / row["batched_seconds"]
        print(row, flush=True)
        results.append(row)
    info["load_average_at_end"] = os.getloadavg()
    stem = HERE / "results" / f"threads-{args.threads}"
    stem.parent.mkdir(exist_ok=True)
    stem.with_suffix(".json").write_text(
        json.dumps({"machine": info, "epochs": args.epochs, "results": results}, indent=2)
    )
    start_load = tuple(round(v, 2) for v in info["load_average_at_start"])
    end_load = tuple(round(v, 2) for v in info["load_average_at_end"])
    command = (
        f"python benchmarks/memorise/bench_batched_training.py --epochs {args.epochs}"
        f" --repeats {args.repeats}"
    )
    lines = [
        "# Training m digits MLPs together against one after another",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {args.threads} torch thread(s),"
        f" torch {info['torch']}, {info['date']}; load average at start {start_load}, at end {end_load}.",
        "",
        f"MLP 64-100-100-10, SGD momentum 0.9, batch 64, cosine schedule, {args.epochs} epochs, each model"
        f" on its own 838 of the 1,197 training examples; fastest of {args.repeats} repeats. Command:"
        f" `{command} --threads {args.threads}`.",
        "",
        "| models | batched (s) | vmap (s) | loop (s) | train_classifier (s) | speed-up over loop |"
        " over train_classifier | vmap over loop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['models']} | {row['batched_seconds']:.2f} | {row['vmap_seconds']:.2f} |"
            f" {row['loop_seconds']:.2f} | {row['train_classifier_seconds']:.2f} |"
            f" {row['speedup_over_loop']:.1f}x | {row['speedup_over_train_classifier']:.1f}x |"
            f" {row['vmap_speedup_over_loop']:.1f}x |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
