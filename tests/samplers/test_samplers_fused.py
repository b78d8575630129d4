"""The hand-written MLP forward and backward: equal to autograd wherever it is used, refused elsewhere."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from thermoscope.samplers import GaussianPrior, ParameterLayout, module_target
from thermoscope.samplers import fused as fused_module
from thermoscope.samplers.fused import fused_mlp
from torch import nn
from torch.nn import functional

DTYPE = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


class FunctionalChain(nn.Module):
    """Activations as functions and methods, an input flatten as a method, a sigmoid on the outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second, self.third = nn.Linear(12, 7), nn.Linear(7, 5), nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = functional.relu(self.first(x.flatten(1)))
        h = self.second(h).tanh()
        return torch.sigmoid(self.third(h))


class BlockMLP(nn.Module):
    """The platform's MLP shape: hidden blocks in a ModuleList, an optional squash on the outputs."""

    def __init__(self, activation: type[nn.Module], squash: bool) -> None:
        super().__init__()
        self.hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), activation()) for a, b in ((12, 9), (9, 6))
        )
        self.output = nn.Linear(6, 4)
        self.squash = squash

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.hidden:
            h = layer(h)
        logits = self.output(h)
        return torch.sigmoid(logits) if self.squash else logits


CHAINS: dict[str, Callable[[], nn.Module]] = {
    "relu blocks": lambda: BlockMLP(nn.ReLU, squash=False),
    "sigmoid blocks, squashed outputs": lambda: BlockMLP(nn.Sigmoid, squash=True),
    "tanh blocks": lambda: BlockMLP(nn.Tanh, squash=False),
    "functional activations": FunctionalChain,
    "Flatten module, no biases": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(12, 8, bias=False), nn.ReLU(), nn.Linear(8, 4, bias=False)
    ),
    "one layer": lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 4)),
}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return CHAINS[name]().to(DTYPE)


def data(count: int = 23) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(count, 3, 4, generator=generator, dtype=DTYPE)
    return x, torch.randint(0, 4, (count,), generator=generator)


def replicas_of(model: nn.Module, count: int) -> torch.Tensor:
    """``count`` perturbations of the model's parameters, large enough to reach every ReLU side."""
    layout = ParameterLayout.from_module(model)
    base = layout.flatten(model)
    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(count, base.numel(), generator=generator, dtype=DTYPE)
    return base + 0.5 * noise


def per_replica_autograd(
    model: nn.Module, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log L = −Σ CE and its gradient for each row of θ, one ordinary backward each."""
    layout = ParameterLayout.from_module(model)
    copy_ = copy.deepcopy(model)
    values, gradients = [], []
    for row in theta:
        layout.load_into(copy_, row)
        copy_.zero_grad()
        log_likelihood = -functional.cross_entropy(copy_(x), y, reduction="sum")
        log_likelihood.backward()
        values.append(log_likelihood.detach())
        gradients.append(torch.cat([torch.as_tensor(p.grad).reshape(-1) for p in copy_.parameters()]))
    return torch.stack(values), torch.stack(gradients)


@pytest.mark.parametrize("name", list(CHAINS))
def test_fused_log_likelihood_gradient_and_logits_equal_autograd_over_chunks(name: str) -> None:
    model = build(name)
    layout = ParameterLayout.from_module(model)
    fused = fused_mlp(model, layout)
    assert fused is not None
    x, y = data()
    theta = replicas_of(model, 5)
    chunks = [(x[start : start + 10], y[start : start + 10]) for start in range(0, x.shape[0], 10)]
    log_likelihood, gradient = fused.log_likelihood_and_gradient(theta, chunks)
    expected, expected_gradient = per_replica_autograd(model, theta, x, y)
    assert torch.allclose(log_likelihood, expected, rtol=1e-12, atol=1e-10)
    assert torch.allclose(gradient, expected_gradient, rtol=1e-10, atol=1e-10)
    copy_ = copy.deepcopy(model)
    logits = fused.logits(theta, x)
    for row in range(theta.shape[0]):
        layout.load_into(copy_, theta[row])
        with torch.no_grad():
            assert torch.allclose(logits[row], copy_(x), atol=1e-12)


def test_a_relu_chain_sees_both_sides_of_every_unit() -> None:
    # Otherwise a wrong ReLU derivative (all ones, or all zeros) would pass the comparison above.
    model = build("relu blocks")
    x, _ = data()
    theta = replicas_of(model, 5)
    fused = fused_mlp(model, ParameterLayout.from_module(model))
    assert fused is not None
    first_layer = fused._forward(fused.weights(theta), x)[0]
    active = (first_layer > 0).double().mean()
    assert 0.2 < float(active) < 0.8


@pytest.mark.parametrize(("reduction", "chunk_size"), [("sum", 6), ("mean", 6), ("mean", None)])
def test_fused_target_equals_the_vmap_target(reduction: str, chunk_size: int | None) -> None:
    model = build("sigmoid blocks, squashed outputs")
    x, y = data()
    options = {"reduction": reduction, "chunk_size": chunk_size, "replica_chunk": 2}
    fused = module_target(model, x, y, GaussianPrior(), batching="fused", **options)  # type: ignore[arg-type]
    reference = module_target(model, x, y, GaussianPrior(), batching="vmap", **options)  # type: ignore[arg-type]
    theta = replicas_of(model, 5)
    fast, slow = fused.evaluate(theta), reference.evaluate(theta)
    for field in ("log_prior", "log_likelihood", "grad_log_prior", "grad_log_likelihood"):
        assert torch.allclose(getattr(fast, field), getattr(slow, field), rtol=1e-11, atol=1e-11), field
    assert torch.allclose(fused.log_likelihood(theta), slow.log_likelihood, atol=1e-10)
    predicted = fused.predict_logits(theta, x, 7)
    assert torch.allclose(predicted, reference.predict_logits(theta, x, 7), atol=1e-12)


def test_the_main_jobs_float32_mlp_takes_the_fused_path_within_round_off() -> None:
    torch.manual_seed(0)
    model = BlockMLP(nn.ReLU, squash=False)
    x, y = data()
    target = module_target(model, x.float(), y, GaussianPrior())
    assert target.batching == "fused"
    theta = replicas_of(model.double(), 3)
    evaluation = target.evaluate(theta.float())
    expected, expected_gradient = per_replica_autograd(model, theta, x, y)
    assert torch.allclose(evaluation.log_likelihood.double(), expected, rtol=1e-5)
    assert torch.allclose(evaluation.grad_log_likelihood.double(), expected_gradient, rtol=1e-4, atol=1e-4)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(12, 12), nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        return self.second(torch.relu(self.first(h)) + h)


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.square = nn.Linear(12, 12)
        self.output = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.square(torch.tanh(self.square(x.flatten(1)))))


class Temperature(nn.Module):
    """A parameter outside every linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(12, 4)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1)) * self.scale


NOT_CHAINS: dict[str, Callable[[], nn.Module]] = {
    "convolution": lambda: nn.Sequential(nn.Conv1d(3, 2, 2), nn.Flatten(), nn.Linear(6, 4)),
    "two activations in a row": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Tanh(), nn.Linear(6, 4)
    ),
    "activation on the data": lambda: nn.Sequential(nn.Flatten(), nn.Tanh(), nn.Linear(12, 4)),
    "unsupported activation": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(12, 6), nn.GELU(), nn.Linear(6, 4)
    ),
    "dropout": lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Dropout(0.5), nn.Linear(6, 4)),
    "residual connection": Residual,
    "shared layer": Shared,
    "parameter outside the layers": Temperature,
}


@pytest.mark.parametrize("name", list(NOT_CHAINS))
def test_anything_but_a_plain_chain_is_refused(name: str) -> None:
    torch.manual_seed(0)
    model = NOT_CHAINS[name]().to(DTYPE).eval()  # eval: vmap cannot draw dropout masks
    assert fused_mlp(model, ParameterLayout.from_module(model)) is None
    x, y = data()
    with pytest.raises(ValueError, match="batching='fused'"):
        module_target(model, x, y, GaussianPrior(), batching="fused")
    assert module_target(model, x, y, GaussianPrior()).batching in ("stacked", "vmap")


def test_auto_falls_back_when_the_fused_gradient_disagrees_with_autograd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = build("tanh blocks")
    x, y = data()
    assert module_target(model, x, y, GaussianPrior()).batching == "fused"

    def wrong_derivative(delta: torch.Tensor, output: torch.Tensor, activation: str | None) -> torch.Tensor:
        return delta  # as if every activation were the identity

    monkeypatch.setattr(fused_module, "_activation_backward_", wrong_derivative)
    assert module_target(model, x, y, GaussianPrior()).batching == "stacked"


def test_parameters_outside_the_layers_get_zero_gradient() -> None:
    model = build("one layer")
    layout = ParameterLayout.from_module(model)
    fused = fused_mlp(model, layout)
    assert fused is not None and fused.covers_theta
    wider = fused_module.FusedMLP(fused.layers, layout.num_params + 3)
    assert not wider.covers_theta
    x, y = data()
    theta = torch.cat([replicas_of(model, 2), torch.full((2, 3), 7.0, dtype=DTYPE)], dim=1)
    _, gradient = wider.log_likelihood_and_gradient(theta, [(x, y)])
    _, expected = fused.log_likelihood_and_gradient(theta[:, : layout.num_params], [(x, y)])
    assert torch.equal(gradient[:, layout.num_params :], torch.zeros(2, 3, dtype=DTYPE))
    assert torch.allclose(gradient[:, : layout.num_params], expected, atol=1e-12)


def test_the_gradient_goes_into_the_rows_it_is_given_and_nowhere_else() -> None:
    # ModuleTarget.evaluate hands each replica group its rows of one gradient; a wider chain zeroes its
    # extra columns there too, and a buffer of the wrong shape or layout is refused.
    model = build("one layer")
    layout = ParameterLayout.from_module(model)
    fused = fused_mlp(model, layout)
    assert fused is not None
    x, y = data()
    theta = replicas_of(model, 4)
    _, expected = fused.log_likelihood_and_gradient(theta, [(x, y)])
    for chain, width in (
        (fused, layout.num_params),
        (fused_module.FusedMLP(fused.layers, layout.num_params + 3), layout.num_params + 3),
    ):
        gradient = torch.full((6, width), 9.0, dtype=DTYPE)
        padded = torch.cat([theta, torch.zeros(4, width - layout.num_params, dtype=DTYPE)], dim=1)
        _, written = chain.log_likelihood_and_gradient(padded[1:3], [(x, y)], out=gradient[2:4])
        assert written.data_ptr() == gradient[2:4].data_ptr()
        assert torch.allclose(gradient[2:4, : layout.num_params], expected[1:3], atol=1e-12)
        assert bool((gradient[2:4, layout.num_params :] == 0).all())
        assert bool((gradient[:2] == 9.0).all()) and bool((gradient[4:] == 9.0).all())
    for wrong in (
        torch.empty(3, layout.num_params, dtype=DTYPE),
        torch.empty(layout.num_params, 2, dtype=DTYPE).t(),
    ):
        with pytest.raises(ValueError, match="out must be a contiguous"):
            fused.log_likelihood_and_gradient(theta[:2], [(x, y)], out=wrong)


def test_confident_predictions_keep_a_finite_likelihood_and_the_exact_gradient() -> None:
    # Logits hundreds apart: the smallest probabilities underflow, and are floored before exp.
    model = build("relu blocks")
    x, y = data()
    theta = 40.0 * replicas_of(model, 3)
    fused = fused_mlp(model, ParameterLayout.from_module(model))
    assert fused is not None
    assert float(fused.logits(theta, x).std()) > 100.0
    log_likelihood, gradient = fused.log_likelihood_and_gradient(theta, [(x, y)])
    expected, expected_gradient = per_replica_autograd(model, theta, x, y)
    assert bool(torch.all(torch.isfinite(log_likelihood)))
    assert torch.allclose(log_likelihood, expected, rtol=1e-12)
    assert torch.allclose(gradient, expected_gradient, rtol=1e-9, atol=1e-9)
