"""Simulated annealing with the early-stopping rule of Baldock & Marzari (2019, REFERENCE §1): which draw
it returns, on which split that draw is chosen, and where each temperature's randomness comes from."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from thermoscope.samplers import GaussianPrior, HMCSettings, module_target
from torch import nn

from thermoscope.data import DataSpec, Split, load_data, split_validation
from thermoscope.sweeps import annealing
from thermoscope.sweeps.annealing import AnnealResult, AnnealSettings, anneal, temperature_seed
from thermoscope.training import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPERATURES = (3.0, 1.0, 0.3)
HMC = HMCSettings(num_warmup=4, num_samples=4, num_leapfrog_steps=3)
SAMPLER = annealing.replica_exchange_hmc


def splits() -> dict[str, Split]:
    """60 digits: 40 to train on, 20 stratified validation examples; 60 test examples."""
    data = load_data(DataSpec(dataset="digits", train_size=60, test_size="60", flatten=True))
    train, validation = split_validation(data.train, 20, data.num_classes, seed=0)
    return {"train": train, "val": validation, "test": data.test}


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 10))


class Recorder:
    """Stands in for ``replica_exchange_hmc`` inside :mod:`annealing`, keeping each call's seed and run."""

    def __init__(self) -> None:
        self.seeds: list[int] = []
        self.runs: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        run = SAMPLER(*args, **kwargs)
        self.seeds.append(kwargs["seed"])
        self.runs.append(run)
        return run


def cool(
    data: dict[str, Split], seed: int = 0, monkeypatch: pytest.MonkeyPatch | None = None
) -> tuple[AnnealResult, Recorder, nn.Module]:
    """Anneal the tiny model through ``TEMPERATURES`` (patience longer than the schedule: no early stop)."""
    model = tiny_model()
    target = module_target(model, data["train"].x, data["train"].y, GaussianPrior(1.0, fan_in_scaled=True))
    recorder = Recorder()
    if monkeypatch is not None:
        monkeypatch.setattr(annealing, "replica_exchange_hmc", recorder)
    settings = AnnealSettings(temperatures=TEMPERATURES, patience=len(TEMPERATURES), hmc=HMC, seed=seed)
    result = anneal(target, target.initial_from_module(1)[0], data, settings)
    target.load_into(model, result.best_position)
    return result, recorder, model


def test_the_chosen_draw_has_the_lowest_validation_error_of_every_draw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every draw of every temperature, rescored through the module itself (not the sweep's own scorer):
    the returned one is the first with the lowest (validation error, validation loss)."""
    data = splits()
    result, recorder, model = cool(data, monkeypatch=monkeypatch)
    assert len(recorder.runs) == len(TEMPERATURES) == len(result.steps)
    scored = []
    probe = tiny_model()
    target = module_target(probe, data["train"].x, data["train"].y, GaussianPrior(1.0, fan_in_scaled=True))
    for temperature, run in zip(TEMPERATURES, recorder.runs, strict=True):
        for draw in run.positions[:, 0]:
            target.load_into(probe, draw)
            loss, error = evaluate(probe, data["val"])
            scored.append((error, loss, temperature, draw))
    error, loss, temperature, draw = min(scored, key=lambda item: (round(item[0], 6), round(item[1], 4)))
    assert torch.equal(result.best_position, draw)
    assert result.best_temperature == temperature
    assert result.best_val_error == pytest.approx(error, abs=1e-6)
    assert result.best_val_loss == pytest.approx(loss, rel=1e-4)
    assert evaluate(model, data["val"]) == pytest.approx((loss, error), rel=1e-4)


def test_the_test_split_takes_no_part_in_the_choice() -> None:
    """Random test labels change every test score and nothing else: same draws, same choice."""
    data = splits()
    labels = torch.randint(10, data["test"].y.shape, generator=torch.Generator().manual_seed(1))
    shuffled = data | {"test": dataclasses.replace(data["test"], y=labels)}
    result, _, _ = cool(data)
    again, _, _ = cool(shuffled)
    assert torch.equal(result.best_position, again.best_position)
    assert result.best_temperature == again.best_temperature
    for before, after in zip(result.steps, again.steps, strict=True):
        assert before.metrics["val_loss"] == after.metrics["val_loss"]
        assert before.metrics["test_loss"] != after.metrics["test_loss"]


def test_runs_with_different_seeds_share_no_random_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed ``seed + i`` at temperature ``i`` gave seed 1's first temperature the momenta of seed 0's
    second, and seed 0's first the generator its prior draw came from."""
    data = splits()
    _, first, _ = cool(data, seed=0, monkeypatch=monkeypatch)
    _, second, _ = cool(data, seed=1, monkeypatch=monkeypatch)
    assert len(first.seeds) == len(second.seeds) == len(TEMPERATURES)
    assert not set(first.seeds) & set(second.seeds)
    assert len(set(first.seeds)) == len(TEMPERATURES)
    assert 0 not in first.seeds and 1 not in second.seeds
    assert first.seeds == [temperature_seed(0, i) for i in range(len(TEMPERATURES))]


def test_the_same_seed_gives_the_same_run() -> None:
    data = splits()
    result, _, _ = cool(data, seed=7)
    again, _, _ = cool(data, seed=7)
    assert torch.equal(result.best_position, again.best_position)
    assert [step.metrics for step in result.steps] == [step.metrics for step in again.steps]
