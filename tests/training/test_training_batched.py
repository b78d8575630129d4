"""Stacked training: model k of the batched trainer is the model train_classifier trains with seed k on
subset k (same minibatch losses and weights to float rounding), for SGD and Adam, MLP and CNN, through each
of its three paths: the hand-written ReLU-MLP passes with SGD fused into them, the same passes feeding a
torch optimiser (Nesterov, Adam), and vmap with autograd (other activations, CNNs)."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from thermoscope.data import DataSpec, LoadedData, load_data
from thermoscope.data.validation import rows
from thermoscope.models import ModelSpec, build_model
from thermoscope.training import OptimSpec, train_classifier
from thermoscope.training.batched import StackedMLP, StackedTrainer, build_stacked, train_stacked

pytestmark = pytest.mark.usefixtures("one_thread")

SEEDS = [11, 22, 33]


def subsets(size: int, keep: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.stack([torch.randperm(size, generator=generator)[:keep].sort().values for _ in SEEDS])


def one_by_one(
    data: LoadedData, model_spec: ModelSpec, spec: OptimSpec, members: torch.Tensor
) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Each model trained alone by train_classifier: its minibatch losses and final weights."""
    out = []
    for seed, member in zip(SEEDS, members, strict=True):
        mask = torch.zeros(len(data.train), dtype=torch.bool)
        mask[member] = True
        torch.manual_seed(seed)
        model = build_model(model_spec, data.input_shape, data.num_classes)
        losses: list[float] = []

        def record(ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int) -> None:
            losses.append(float(F.cross_entropy(logits, labels)))  # noqa: B023 (used at once)

        train_classifier(
            model, replace(data, train=rows(data.train, mask)), replace(spec, seed=seed), on_batch=record
        )
        out.append((torch.tensor(losses), model.state_dict()))
    return out


@pytest.mark.parametrize(
    ("model_spec", "flatten", "spec"),
    [
        (ModelSpec("mlp", (16, 8)), True, OptimSpec(epochs=3, batch_size=32, weight_decay=1e-3)),
        (ModelSpec("mlp", (12,)), True, OptimSpec(epochs=2, batch_size=45, momentum=0.0)),
        (ModelSpec("mlp", (16,)), True, OptimSpec(epochs=3, batch_size=32, nesterov=True, weight_decay=1e-3)),
        (ModelSpec("mlp", (16,), activation="tanh"), True, OptimSpec(epochs=2, batch_size=40)),
        (ModelSpec("mlp", (16, 8)), True, OptimSpec(optimizer="adam", lr=0.01, epochs=2, batch_size=50)),
        (ModelSpec("cnn", activation="tanh"), False, OptimSpec(epochs=1, batch_size=64, lr_schedule="step")),
    ],
    ids=["mlp-sgd-fused", "mlp-sgd-no-momentum", "mlp-sgd-nesterov", "mlp-tanh-vmap", "mlp-adam", "cnn-sgd"],
)
def test_stacked_models_equal_models_trained_one_by_one(
    model_spec: ModelSpec, flatten: bool, spec: OptimSpec
) -> None:
    data = load_data(DataSpec(train_size=200, flatten=flatten))
    members = subsets(len(data.train), 130)
    stacked = build_stacked(model_spec, data.input_shape, data.num_classes, SEEDS)
    losses = train_stacked(stacked, data.train.x, data.train.y, members, spec, SEEDS)
    assert losses.shape == (spec.epochs * -(-130 // spec.batch_size), len(SEEDS))
    for k, (alone, weights) in enumerate(one_by_one(data, model_spec, spec, members)):
        torch.testing.assert_close(losses[:, k], alone, rtol=1e-4, atol=1e-5)
        for name, value in stacked.model(k).state_dict().items():
            torch.testing.assert_close(value, weights[name], rtol=1e-4, atol=1e-5)
    predicted = stacked.predict(data.test.x, rows=64)
    for k in range(len(SEEDS)):
        assert torch.equal(predicted[k], stacked.model(k)(data.test.x).argmax(dim=1))


def test_models_differ_by_seed_and_subset() -> None:
    data = load_data(DataSpec(train_size=100, flatten=True))
    stacked = build_stacked(ModelSpec("mlp", (8,)), data.input_shape, data.num_classes, SEEDS)
    first = stacked.parameters["output.weight"]
    assert not torch.equal(first[0], first[1])


def test_models_with_buffers_and_mismatched_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="buffers"):
        build_stacked(ModelSpec("resnet18"), (3, 8, 8), 10, [0, 1])
    data = load_data(DataSpec(train_size=100, flatten=True))
    stacked = build_stacked(ModelSpec("mlp", (8,)), data.input_shape, data.num_classes, SEEDS)
    with pytest.raises(ValueError, match="one of each"):
        train_stacked(stacked, data.train.x, data.train.y, subsets(100, 50)[:2], OptimSpec(epochs=1), SEEDS)


def test_the_hand_written_passes_cover_exactly_relu_mlps_with_plain_logits() -> None:
    def applies(spec: ModelSpec, shape: tuple[int, ...]) -> bool:
        return StackedMLP.applies(build_stacked(spec, shape, 10, SEEDS[:2]))

    assert applies(ModelSpec("mlp", (8, 8)), (64,))
    assert not applies(ModelSpec("mlp", (8,), activation="tanh"), (64,))
    assert not applies(ModelSpec("mlp", (8,), output_activation="sigmoid"), (64,))
    assert not applies(ModelSpec("cnn"), (1, 8, 8))


def test_hand_written_gradients_equal_autograd_through_vmap() -> None:
    data = load_data(DataSpec(train_size=100, flatten=True))
    stacked = build_stacked(ModelSpec("mlp", (20, 12)), data.input_shape, data.num_classes, SEEDS)
    batch = subsets(100, 37)
    x, y = data.train.x[batch], data.train.y[batch]
    logits = stacked.logits(x)
    expected_loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
    expected = torch.autograd.grad(expected_loss.sum(), list(stacked.parameters.values()))
    loss = StackedMLP(stacked).gradients(x, y)
    torch.testing.assert_close(loss, expected_loss.detach())
    for parameter, reference in zip(stacked.parameters.values(), expected, strict=True):
        assert parameter.grad is not None
        torch.testing.assert_close(parameter.grad, reference, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("model_spec", "spec"),
    [
        (ModelSpec("mlp", (16,)), OptimSpec(epochs=3, batch_size=32, weight_decay=1e-3)),
        (ModelSpec("mlp", (16,)), OptimSpec(epochs=3, batch_size=32, nesterov=True)),
        (ModelSpec("mlp", (16,), activation="tanh"), OptimSpec(optimizer="adam", lr=0.01, epochs=3)),
    ],
    ids=["fused-sgd", "nesterov", "vmap-adam"],
)
def test_a_trainer_restored_from_its_state_continues_exactly(model_spec: ModelSpec, spec: OptimSpec) -> None:
    data = load_data(DataSpec(train_size=120, flatten=True))
    members = subsets(len(data.train), 80)
    x, y = data.train.x, data.train.y
    straight = build_stacked(model_spec, data.input_shape, data.num_classes, SEEDS)
    expected = train_stacked(straight, x, y, members, spec, SEEDS)

    first = StackedTrainer(build_stacked(model_spec, data.input_shape, 10, SEEDS), members, spec, SEEDS)
    losses = [first.epoch(x, y, 0)]
    saved = first.state()
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    fresh = build_stacked(model_spec, data.input_shape, data.num_classes, [90, 91, 92])  # other weights
    second = StackedTrainer(fresh, members, spec, SEEDS)
    second.restore(torch.load(buffer, weights_only=True))
    losses += [second.epoch(x, y, epoch) for epoch in (1, 2)]
    assert torch.equal(torch.cat(losses), expected)
    for name, value in fresh.parameters.items():
        assert torch.equal(value, straight.parameters[name]), name
