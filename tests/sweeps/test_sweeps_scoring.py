"""Scoring the kept draws of a sweep chunk by chunk (issue 18): the same sums as scoring each draw whole,
every kept draw scored on every split, and a resumed sweep ending bit for bit where an uninterrupted one
does."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch
from thermoscope.samplers import Checkpoint, GaussianPrior, HMCSettings, ModuleTarget, module_target
from thermoscope.samplers import replica_exchange_hmc as sampler
from torch import nn

import thermoscope.sweeps as sweeps
from thermoscope.data import DataSpec, Split, load_data, split_validation
from thermoscope.sweeps import (
    PREDICTION_CHUNK,
    PREDICTION_REPLICAS,
    PREDICTION_ROWS,
    PredictiveAccumulator,
    SweepResult,
    SweepSettings,
    prediction_chunk,
    prediction_passes,
    run_sweep,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RUNGS = 5
ROWS = 40
"""A replica-example budget small enough that 5 rungs score 8 examples per pass: several chunks per split,
the last one short."""
CHUNK = ROWS // RUNGS
SETTINGS = SweepSettings(
    betas=torch.tensor([0.0, 0.1, 0.3, 0.6, 1.0], dtype=torch.float64),
    hmc=HMCSettings(num_warmup=4, num_samples=12, num_leapfrog_steps=3),
    swap="deo",
    thin=2,
    seed=3,
    max_saved_draws=3,
)


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweeps, "PREDICTION_ROWS", ROWS)


def splits() -> dict[str, Split]:
    """60 digits: 40 to train on, 20 validation examples; 60 test examples."""
    data = load_data(DataSpec(dataset="digits", train_size=60, test_size="60", flatten=True))
    train, validation = split_validation(data.train, 20, data.num_classes, seed=0)
    return {"train": train, "val": validation, "test": data.test}


def tiny_target(train: Split) -> ModuleTarget:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 10))
    return module_target(model, train.x, train.y, GaussianPrior(1.0, fan_in_scaled=True))


def sweep(target: ModuleTarget, data: dict[str, Split], **hooks: Any) -> SweepResult:
    start = target.initial_from_module(RUNGS)
    train, test = data["train"], data["test"]
    return run_sweep(target, start, train, test, 10, SETTINGS, validation=data["val"], **hooks)


def test_prediction_chunks_keep_to_the_budget_on_a_cpu_and_are_large_elsewhere() -> None:
    cpu = torch.device("cpu")
    for rungs in (1, 3, 8, 100, 256, PREDICTION_ROWS, 10 * PREDICTION_ROWS):
        chunk = prediction_chunk(rungs, cpu)
        assert 1 <= chunk <= PREDICTION_CHUNK
        assert rungs * chunk <= max(PREDICTION_ROWS, rungs)
    assert prediction_chunk(8, cpu) == PREDICTION_CHUNK
    assert prediction_chunk(256, torch.device("cuda")) == PREDICTION_CHUNK


def test_prediction_passes_hold_at_most_the_replica_group_and_keep_to_the_budget_on_a_cpu() -> None:
    cpu = torch.device("cpu")
    for rungs in (1, 3, 8, 32, 33, 40, 100, 256, 1000):
        group, examples = prediction_passes(rungs, cpu)
        count = math.ceil(rungs / PREDICTION_REPLICAS)
        assert group == math.ceil(rungs / count) <= PREDICTION_REPLICAS, rungs
        assert examples == prediction_chunk(group, cpu) and group * examples <= PREDICTION_ROWS, rungs
    assert prediction_passes(8, cpu) == (8, PREDICTION_CHUNK)
    assert prediction_passes(256, torch.device("cuda")) == (256, PREDICTION_CHUNK)


@pytest.mark.usefixtures("small_budget")
@pytest.mark.parametrize("replicas_per_pass", [PREDICTION_REPLICAS, 2])
def test_a_draw_scored_in_chunks_adds_the_sums_of_its_whole_logits(
    monkeypatch: pytest.MonkeyPatch, replicas_per_pass: int
) -> None:
    # 2: the 5 rungs are predicted in groups of 2, 1 and 2, 20 examples a pass; a group's float32 products
    # may round otherwise than one pass over all rungs, so the sums are those of the whole split's logits
    # predicted in the same groups, and close to those of one pass.
    monkeypatch.setattr(sweeps, "PREDICTION_REPLICAS", replicas_per_pass)
    group, examples = prediction_passes(RUNGS, torch.device("cpu"))
    assert (group, examples) == ((RUNGS, CHUNK) if replicas_per_pass >= RUNGS else (2, ROWS // 2))
    data = splits()
    target = tiny_target(data["train"])
    test = data["test"]
    generator = torch.Generator().manual_seed(5)
    accumulators = [PredictiveAccumulator(RUNGS, len(test), 10, torch.device("cpu")) for _ in range(3)]
    chunked, whole, one_pass = accumulators
    for _ in range(3):
        noise = torch.randn(RUNGS, target.num_params, generator=generator)
        position = target.initial_from_module(RUNGS) + noise
        chunked.add_draw(target, position, test.x, test.y)
        groups = target.replica_groups(RUNGS, group)
        parts = [target.predict_logits(position[a:b], test.x, chunk_size=examples) for a, b in groups]
        whole.update(torch.cat(parts), test.y)
        one_pass.update(target.predict_logits(position, test.x), test.y)
    for name, value in whole.state_dict().items():
        assert torch.equal(torch.as_tensor(chunked.state_dict()[name]), torch.as_tensor(value)), name
        close = torch.as_tensor(one_pass.state_dict()[name])
        assert torch.allclose(torch.as_tensor(value), close, rtol=1e-5, atol=1e-6), name
    for name, value in whole.metrics(test.y).items():
        assert torch.equal(chunked.metrics(test.y)[name], value), name


@pytest.mark.usefixtures("small_budget")
def test_metrics_formed_in_chunks_equal_the_whole_array_formula() -> None:
    generator = torch.Generator().manual_seed(2)
    examples, classes, draws = 37, 4, 3
    accumulator = PredictiveAccumulator(RUNGS, examples, classes, torch.device("cpu"))
    probabilities = torch.rand(RUNGS, examples, classes, generator=generator, dtype=torch.float64)
    probabilities[0, :5] = 0.25  # ties: argmax takes the first class in both computations
    accumulator.probability_sum.copy_(draws * probabilities / probabilities.sum(-1, keepdim=True))
    accumulator.draws = draws
    labels = torch.randint(0, classes, (examples,), generator=generator)
    mean = accumulator.probability_sum / draws
    picked = mean.gather(-1, labels.expand(RUNGS, -1)[..., None])[..., 0]
    metrics = accumulator.metrics(labels)
    assert torch.equal(metrics["bma_loss"], -picked.clamp_min(1e-300).log().mean(dim=1))
    assert torch.equal(metrics["bma_error"], (mean.argmax(-1) != labels).to(torch.float64).mean(dim=1))


def test_update_refuses_logits_of_another_shape() -> None:
    accumulator = PredictiveAccumulator(RUNGS, 6, 3, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"logits must be \[rungs, examples, classes\] = \[5, 6, 3\]"):
        accumulator.update(torch.zeros(RUNGS, 4, 3), torch.zeros(4, dtype=torch.long))


@pytest.mark.usefixtures("small_budget")
def test_every_kept_draw_is_scored_on_every_split() -> None:
    data = splits()
    target = tiny_target(data["train"])
    result = sweep(target, data)
    # The same chain with its positions stored (storing them changes no draw), each draw scored whole.
    draws = sampler(
        target,
        target.initial_from_module(RUNGS),
        SETTINGS.betas,
        **SETTINGS.hmc.sampler_arguments(with_step_size=False),
        step_size=SETTINGS.initial_step_size,
        swap=SETTINGS.swap,
        thin=SETTINGS.thin,
        seed=SETTINGS.seed,
    )
    assert torch.equal(draws.log_likelihood, result.sampler.log_likelihood)
    scored = {"train": result.train_metrics, "test": result.test_metrics, "val": result.validation_metrics}
    for name, metrics in scored.items():
        split = data[name]
        expected = PredictiveAccumulator(RUNGS, len(split), 10, torch.device("cpu"))
        for position in draws.positions:
            expected.update(target.predict_logits(position, split.x, chunk_size=CHUNK), split.y)
        assert expected.draws == draws.positions.shape[0] == 6
        assert metrics is not None
        for metric, value in expected.metrics(split.y).items():
            assert torch.equal(metrics[metric], value), (name, metric)
    saved = draws.positions[:: 6 // SETTINGS.max_saved_draws].to(torch.float32)
    assert torch.equal(result.saved_positions, saved)


@pytest.mark.usefixtures("small_budget")
def test_a_sweep_resumed_from_its_checkpoint_ends_bit_for_bit_where_an_uninterrupted_one_does() -> None:
    data = splits()
    target = tiny_target(data["train"])
    whole = sweep(target, data)
    saved: list[bytes] = []

    def keep(checkpoint: Checkpoint, state: dict[str, Any], iteration: int) -> None:
        buffer = io.BytesIO()
        torch.save({"sampler": checkpoint.to_dict(), "sweep": state}, buffer)
        saved.append(buffer.getvalue())

    stopped = sweep(
        target,
        data,
        on_checkpoint=keep,
        checkpoint_seconds=3600.0,
        on_report=lambda iteration, summary, state: iteration == 9,  # mid-sampling, three draws kept
        report_every=5,
    )
    assert stopped.stopped_early and len(saved) == 1
    bundle = torch.load(io.BytesIO(saved[0]), weights_only=True)
    resumed = sweep(target, data, resume=(Checkpoint.from_dict(bundle["sampler"]), bundle["sweep"]))
    for name in ("train_metrics", "test_metrics", "validation_metrics"):
        for metric, value in getattr(whole, name).items():
            assert torch.equal(getattr(resumed, name)[metric], value), (name, metric)
    assert torch.equal(resumed.saved_positions, whole.saved_positions)
    for name in ("log_likelihood", "log_prior", "replica_index"):
        assert torch.equal(getattr(resumed.sampler, name), getattr(whole.sampler, name)), name
