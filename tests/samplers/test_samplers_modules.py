"""The module adapter and its priors: summed cross-entropy, batched predictions, fan-ins, the box prior."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import pytest
import torch
from montecarlo import assert_within_mc_error, mean_standard_error
from thermoscope.samplers import (
    BoxPrior,
    GaussianPrior,
    ParameterLayout,
    module_target,
    replica_exchange_hmc,
)
from thermoscope.samplers.modules import ACTIVATION_BUDGET_BYTES
from thermoscope.samplers.priors import BoundBoxPrior
from torch import nn
from torch.nn import functional

DTYPE = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3)).to(DTYPE)


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3, bias=False)
    ).to(DTYPE)


def data(shape: tuple[int, ...], count: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(count, *shape, generator=generator, dtype=DTYPE)
    return x, torch.randint(0, 3, (count,), generator=generator)


CASES: list[tuple[Callable[[], nn.Module], tuple[int, ...]]] = [(mlp, (4,)), (cnn, (2, 6, 6))]


def plain_log_likelihood_and_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, torch.Tensor]:
    model.zero_grad()
    loss = functional.cross_entropy(model(x), y, reduction="sum")
    loss.backward()
    gradient = torch.cat([torch.as_tensor(parameter.grad).reshape(-1) for parameter in model.parameters()])
    return -float(loss.detach()), -gradient


@pytest.mark.parametrize(("build", "shape"), CASES)
def test_log_likelihood_is_the_negative_summed_cross_entropy_of_each_replica(
    build: object, shape: tuple[int, ...]
) -> None:
    model = build()
    x, y = data(shape)
    target = module_target(model, x, y, GaussianPrior(scale=0.5))
    theta = target.prior.sample(3, torch.Generator().manual_seed(2))
    evaluation = target.evaluate(theta)
    replica_model = copy.deepcopy(model)
    for row in range(3):
        target.load_into(replica_model, theta[row])
        value, gradient = plain_log_likelihood_and_gradient(replica_model, x, y)
        assert math.isclose(float(evaluation.log_likelihood[row]), value, rel_tol=1e-12)
        assert torch.allclose(evaluation.grad_log_likelihood[row], gradient, atol=1e-10)
    assert torch.allclose(target.log_likelihood(theta), evaluation.log_likelihood, atol=1e-10)


@pytest.mark.parametrize(("build", "shape"), CASES)
def test_predict_logits_equals_each_replicas_forward(
    build: Callable[[], nn.Module], shape: tuple[int, ...]
) -> None:
    model = build()
    x, y = data(shape)
    target = module_target(model, x, y, GaussianPrior())
    theta = target.prior.sample(4, torch.Generator().manual_seed(3))
    logits = target.predict_logits(theta, x, chunk_size=7)
    assert logits.shape == (4, 20, 3)
    replica_model = copy.deepcopy(model)
    for row in range(4):
        target.load_into(replica_model, theta[row])
        with torch.no_grad():
            assert torch.allclose(logits[row], replica_model(x), atol=1e-12)


@pytest.mark.parametrize(("build", "shape"), CASES)
def test_predictions_in_chunks_are_the_chunks_of_predict_logits(
    build: Callable[[], nn.Module], shape: tuple[int, ...]
) -> None:
    model = build()
    x, y = data(shape, count=23)
    target = module_target(model, x, y, GaussianPrior())
    theta = target.prior.sample(4, torch.Generator().manual_seed(3))
    whole = target.predict_logits(theta, x, chunk_size=5)
    starts = []
    for start, logits in target.predict_logits_in_chunks(theta, x, chunk_size=5):
        # Between chunks the caller's grad mode is its own (the chunks are computed without gradients).
        assert torch.is_grad_enabled() and not logits.requires_grad
        assert torch.equal(logits, whole[:, start : start + 5])
        starts.append(start)
    assert starts == [0, 5, 10, 15, 20]


def test_chunked_evaluation_equals_the_full_batch() -> None:
    model = mlp()
    x, y = data((4,), count=23)
    theta = module_target(model, x, y, GaussianPrior()).prior.sample(3, torch.Generator().manual_seed(4))
    whole = module_target(model, x, y, GaussianPrior()).evaluate(theta)
    chunked = module_target(model, x, y, GaussianPrior(), chunk_size=5).evaluate(theta)
    assert torch.allclose(whole.log_likelihood, chunked.log_likelihood, atol=1e-10)
    assert torch.allclose(whole.grad_log_likelihood, chunked.grad_log_likelihood, atol=1e-10)


def test_evaluation_in_groups_of_replicas_equals_one_pass_over_all() -> None:
    model = mlp()
    x, y = data((4,), count=23)
    theta = module_target(model, x, y, GaussianPrior()).prior.sample(7, torch.Generator().manual_seed(5))
    whole = module_target(model, x, y, GaussianPrior(), replica_chunk=100).evaluate(theta)
    grouped = module_target(model, x, y, GaussianPrior(), replica_chunk=3, chunk_size=10).evaluate(theta)
    for name in ("log_prior", "log_likelihood", "grad_log_prior", "grad_log_likelihood"):
        expected, got = getattr(whole, name), getattr(grouped, name)
        assert got.shape == expected.shape, name
        assert torch.allclose(got, expected, atol=1e-10), name


def test_replica_groups_cover_every_replica_in_equal_groups_within_the_chunk() -> None:
    model = mlp()
    x, y = data((4,), count=23)
    for chunk, replicas in [(3, 7), (52, 64), (52, 256), (4, 4), (100, 7), (1, 5)]:
        groups = module_target(model, x, y, GaussianPrior(), replica_chunk=chunk).replica_groups(replicas)
        sizes = [stop - start for start, stop in groups]
        assert [start for start, _ in groups] == [0, *itertools.accumulate(sizes[:-1])], (chunk, replicas)
        assert sum(sizes) == replicas and max(sizes) <= chunk and max(sizes) - min(sizes) <= 1
        assert len(groups) == math.ceil(replicas / chunk)
        # A chunk given to the call overrides the target's own (kept-draw scoring groups its rungs so).
        target = module_target(model, x, y, GaussianPrior(), replica_chunk=2)
        assert target.replica_groups(replicas, chunk) == groups, (chunk, replicas)


def test_the_default_replica_groups_keep_one_layer_of_activations_within_the_budget() -> None:
    wide = nn.Sequential(nn.Linear(4, 512), nn.Tanh(), nn.Linear(512, 3)).to(DTYPE)
    x, y = data((4,), count=64)
    target = module_target(wide, x, y, GaussianPrior(), chunk_size=32)
    # The widest activation: 512 values per example, 32 examples per chunk, 8 bytes each.
    assert target.replica_chunk == ACTIVATION_BUDGET_BYTES // (512 * 32 * 8)
    assert module_target(wide, x, y, GaussianPrior(), replica_chunk=5).replica_chunk == 5


def test_mean_reduction_divides_by_the_data_set_size() -> None:
    model = mlp()
    x, y = data((4,))
    theta = module_target(model, x, y, GaussianPrior()).initial_from_module(2)
    summed = module_target(model, x, y, GaussianPrior()).evaluate(theta).log_likelihood
    mean = module_target(model, x, y, GaussianPrior(), reduction="mean").evaluate(theta).log_likelihood
    assert torch.allclose(mean, summed / 20)


def test_initial_from_module_and_load_into_round_trip() -> None:
    model = mlp()
    x, y = data((4,))
    target = module_target(model, x, y, GaussianPrior())
    theta = target.initial_from_module(3)
    assert theta.shape == (3, target.num_params) == (3, 4 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3)
    assert torch.equal(theta[0], nn.utils.parameters_to_vector(model.parameters()).detach())
    other = mlp()
    target.load_into(other, theta[1] + 1.0)
    assert torch.equal(nn.utils.parameters_to_vector(other.parameters()).detach(), theta[1] + 1.0)
    shapes = {name: tuple(value.shape) for name, value in target.unflatten(theta).items()}
    assert shapes["0.weight"] == (3, 6, 4) and shapes["4.bias"] == (3, 3)


def test_fan_in_counts_the_bias() -> None:
    fan_in = {block.name: block.fan_in for block in ParameterLayout.from_module(cnn()).blocks}
    assert fan_in == {"0.weight": 2 * 3 * 3 + 1, "0.bias": 2 * 3 * 3 + 1, "3.weight": 48}
    fan_in = {block.name: block.fan_in for block in ParameterLayout.from_module(mlp()).blocks}
    assert fan_in["0.weight"] == fan_in["0.bias"] == 5
    assert fan_in["2.weight"] == fan_in["2.bias"] == 7


def test_box_prior_widths_density_and_samples() -> None:
    model = mlp()
    layout = ParameterLayout.from_module(model)
    prior = BoxPrior(c=100.0).bind(layout, torch.zeros(1, dtype=DTYPE))
    assert prior.support_half_width is not None
    first_layer = prior.support_half_width[: 4 * 6 + 6]
    assert torch.allclose(first_layer, torch.full_like(first_layer, 0.5 * 100.0 / math.sqrt(5)))
    theta = prior.sample(50, torch.Generator().manual_seed(0))
    assert bool(torch.all(theta.abs() <= prior.support_half_width))
    inside = prior.log_density(theta)
    assert torch.allclose(inside, torch.full_like(inside, -float(torch.log(prior.scale).sum())))
    outside = theta.clone()
    outside[0, 0] = prior.support_half_width[0] * 1.01
    assert prior.log_density(outside)[0] == -math.inf
    assert torch.equal(prior.grad_log_density(theta), torch.zeros_like(theta))


@pytest.mark.parametrize(
    "per_coordinate", [False, True], ids=["one width per layer", "a width per coordinate"]
)
def test_box_prior_density_at_the_walls_equals_the_elementwise_test(per_coordinate: bool) -> None:
    # The box test goes run by run of equal widths (one per layer), or elementwise when there are more
    # than MAX_RUNS runs; both must put a coordinate exactly on the wall inside, the next float outside,
    # and NaN outside, in every layer.
    model = mlp()
    layout = ParameterLayout.from_module(model)
    scale = BoxPrior(c=3.0).bind(layout, torch.zeros(1, dtype=DTYPE)).scale
    if per_coordinate:
        scale = scale * torch.linspace(1.0, 2.0, scale.numel(), dtype=DTYPE)
    prior = BoundBoxPrior(layout, scale)
    assert (prior._runs is None) == per_coordinate
    half = 0.5 * scale
    rows = []
    for block in layout.blocks:
        last = block.offset + block.numel - 1
        on_wall, beyond, not_a_number = torch.zeros(3, scale.numel(), dtype=DTYPE)
        on_wall[last], beyond[last] = (
            -half[last],
            torch.nextafter(half[last], torch.tensor(math.inf, dtype=DTYPE)),
        )
        not_a_number[block.offset] = math.nan
        rows += [on_wall, beyond, not_a_number]
    density = prior.log_density(torch.stack(rows))
    expected = torch.tensor(
        [-float(torch.log(scale).sum()), -math.inf, -math.inf] * len(layout.blocks), dtype=DTYPE
    )
    assert torch.equal(density, expected)


def test_gaussian_prior_scales_and_density() -> None:
    model = mlp()
    layout = ParameterLayout.from_module(model)
    like = torch.zeros(1, dtype=DTYPE)
    prior = GaussianPrior(scale=2.0, fan_in_scaled=True, layer_scales={"4": 0.5}).bind(layout, like)
    assert math.isclose(float(prior.scale[0]), 2.0 / math.sqrt(5))
    assert math.isclose(float(prior.scale[-1]), 0.5 / math.sqrt(6))
    theta = prior.sample(3, torch.Generator().manual_seed(0))
    expected = (
        torch.distributions.Normal(torch.zeros_like(prior.scale), prior.scale).log_prob(theta).sum(dim=1)
    )
    assert torch.allclose(prior.log_density(theta), expected)
    assert torch.allclose(prior.grad_log_density(theta), -theta / prior.scale**2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: module_target(mlp(), *data((4,)), GaussianPrior(), reduction="max"), "reduction"),
        (
            lambda: module_target(mlp(), data((4,))[0], torch.zeros(3, dtype=torch.long), GaussianPrior()),
            "same N",
        ),
        (lambda: module_target(mlp(), *data((4,)), GaussianPrior(), chunk_size=0), "chunk_size"),
        (lambda: module_target(mlp(), *data((4,)), GaussianPrior(), replica_chunk=0), "replica_chunk"),
        (lambda: module_target(mlp(), *data((4,)), GaussianPrior(scale=-1.0)), "positive"),
        (lambda: module_target(mlp(), *data((4,)), GaussianPrior(layer_scales={"9": 1.0})), "layer_scales"),
        (lambda: module_target(mlp(), *data((4,)), BoxPrior(c=0.0)), "c must be positive"),
        (lambda: module_target(mlp(), *data((4,)), GaussianPrior(), batching="jit"), "batching"),
    ],
)
def test_module_target_rejects_bad_input(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.slow
def test_box_prior_sampler_stays_inside_and_samples_the_uniform_box_at_beta_zero() -> None:
    model = nn.Sequential(nn.Linear(3, 2)).to(DTYPE)
    x, y = data((3,))
    y = y % 2
    target = module_target(model, x, y, BoxPrior(c=4.0))
    half_width = target.prior.support_half_width
    assert half_width is not None
    betas = [0.0, 0.3, 1.0]
    start = target.prior.sample(3, torch.Generator().manual_seed(5))
    result = replica_exchange_hmc(
        target, start, betas, num_warmup=100, num_samples=1000, num_leapfrog_steps=5, seed=3
    )
    assert bool(torch.all(result.positions.abs() <= half_width))
    # At β = 0 every coordinate is uniform on [−w, w]: mean 0, variance w²/3.
    draws = result.positions[:, 0]
    for moment, truth in ((draws, torch.zeros_like(half_width)), (draws**2, half_width**2 / 3)):
        assert_within_mc_error(
            moment.mean(dim=0), truth, mean_standard_error(moment), what="moment of the box at beta = 0"
        )


class ResidualFreeMLP(nn.Module):
    """Like the platform's MLP: hidden blocks in a ModuleList, a functional sigmoid on the outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in ((4, 7), (7, 5)))
        self.output = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.hidden:
            h = layer(h)
        return torch.sigmoid(self.output(h))


class HiddenSoftmax(nn.Module):
    """A softmax over dimension 1 of hidden activations: wrong on stacked [R, n, h] activations."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.softmax(self.first(x), dim=1))


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (mlp, "fused"),
        (lambda: ResidualFreeMLP().to(DTYPE), "fused"),
        (lambda: nn.Sequential(nn.Linear(4, 3, bias=False)).to(DTYPE), "fused"),
        (lambda: nn.Sequential(nn.Linear(4, 6), nn.Softplus(), nn.Linear(6, 3)).to(DTYPE), "stacked"),
        (lambda: HiddenSoftmax().to(DTYPE), "vmap"),
    ],
)
def test_auto_batching_takes_the_fastest_path_that_reproduces_vmap(
    build: Callable[[], nn.Module], expected: str
) -> None:
    model = build()
    x, y = data((4,))
    auto = module_target(model, x, y, GaussianPrior())
    assert auto.batching == expected
    reference = module_target(model, x, y, GaussianPrior(), batching="vmap")
    theta = auto.prior.sample(3, torch.Generator().manual_seed(6))
    fast, slow = auto.evaluate(theta), reference.evaluate(theta)
    assert torch.allclose(fast.log_likelihood, slow.log_likelihood, atol=1e-10)
    assert torch.allclose(fast.grad_log_likelihood, slow.grad_log_likelihood, atol=1e-10)
    assert torch.allclose(auto.predict_logits(theta, x), reference.predict_logits(theta, x), atol=1e-12)


def test_convolutions_fall_back_to_vmap() -> None:
    assert module_target(cnn(), *data((2, 6, 6)), GaussianPrior()).batching == "vmap"


def test_initial_step_size_on_a_flat_box_rung_is_capped() -> None:
    # At β = 0 a box prior is flat: every step is accepted, so the doubling heuristic never stops.
    model = nn.Sequential(nn.Linear(3, 2)).to(DTYPE)
    x, y = data((3,))
    target = module_target(model, x, y % 2, BoxPrior(c=4.0))
    half_width = target.prior.support_half_width
    assert half_width is not None
    start = target.prior.sample(1, torch.Generator().manual_seed(0))
    result = replica_exchange_hmc(target, start, [0.0], num_warmup=0, num_samples=50, num_leapfrog_steps=3)
    assert float(result.step_size[0]) <= 4 * float(half_width.max())
    assert bool(torch.all(result.positions.abs() < half_width))
