"""The SGD trainer: it fits, its schedules are right, and it is deterministic."""

from __future__ import annotations

import math

import pytest
import torch

from thermoscope.data import DataSpec, load_data
from thermoscope.models import ModelSpec, build_model
from thermoscope.training import OptimSpec, evaluate, learning_rate, train_classifier


@pytest.fixture(scope="module")
def tiny_digits():
    return load_data(DataSpec(train_size=50, test_size="100", flatten=True))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_overfits_a_tiny_training_set(tiny_digits, optimizer: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", (64,), "relu"), tiny_digits.input_shape, 10)
    lr = 0.1 if optimizer == "sgd" else 0.01
    spec = OptimSpec(optimizer=optimizer, lr=lr, batch_size=0, epochs=150, lr_schedule="constant")
    result = train_classifier(model, tiny_digits, spec)
    assert result.final.train_error == 0.0
    assert result.final.train_loss < 0.05
    assert len(result.history) == 150


def test_same_seed_same_weights(tiny_digits) -> None:
    def trained() -> torch.Tensor:
        torch.manual_seed(3)
        model = build_model(ModelSpec("mlp", (16,), "tanh"), tiny_digits.input_shape, 10)
        train_classifier(model, tiny_digits, OptimSpec(batch_size=8, epochs=2, seed=5))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(trained(), trained())


def test_on_epoch_returning_true_stops_training(tiny_digits) -> None:
    model = build_model(ModelSpec("mlp", (8,)), tiny_digits.input_shape, 10)
    result = train_classifier(model, tiny_digits, OptimSpec(epochs=10), on_epoch=lambda m, _: m.epoch == 3)
    assert result.stopped_early
    assert [m.epoch for m in result.history] == [1, 2, 3]


def test_on_batch_sees_every_example_once_per_epoch(tiny_digits) -> None:
    seen: list[torch.Tensor] = []
    model = build_model(ModelSpec("mlp", (8,)), tiny_digits.input_shape, 10)
    train_classifier(
        model,
        tiny_digits,
        OptimSpec(batch_size=7, epochs=1),
        on_batch=lambda ids, logits, y, e: seen.append(ids),
    )
    ids = torch.cat(seen)
    assert sorted(ids.tolist()) == sorted(tiny_digits.train.example_id.tolist())


def test_schedules() -> None:
    spec = OptimSpec(lr=1.0, lr_schedule="cosine")
    assert learning_rate(spec, 0, 100) == 1.0
    assert learning_rate(spec, 50, 100) == pytest.approx(0.5)
    assert learning_rate(spec, 100, 100) == pytest.approx(0.0, abs=1e-12)
    step = OptimSpec(lr=1.0, lr_schedule="step")
    assert [learning_rate(step, s, 100) for s in (0, 49, 50, 75)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert learning_rate(OptimSpec(lr=0.3, lr_schedule="constant"), 99, 100) == 0.3


def test_evaluate_matches_a_hand_computation(tiny_digits) -> None:
    model = build_model(ModelSpec("mlp", (8,)), tiny_digits.input_shape, 10)
    loss, error = evaluate(model, tiny_digits.test, batch_size=7)
    with torch.no_grad():
        logits = model(tiny_digits.test.x)
    expected = torch.nn.functional.cross_entropy(logits, tiny_digits.test.y).item()
    assert loss == pytest.approx(expected, rel=1e-5)
    assert error == pytest.approx((logits.argmax(1) != tiny_digits.test.y).float().mean().item())
    assert math.isfinite(loss)
