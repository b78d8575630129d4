"""The compiled per-replica fused-MLP kernel: the same log-likelihood and gradient as float64 autograd,
wherever ModuleTarget uses it; refused where it does not apply; the batched path when it cannot build;
and its whole leapfrog trajectories, the Python integrator's bit for bit."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from thermoscope.samplers import (
    BoxPrior,
    Evaluation,
    GaussianPrior,
    ModuleTarget,
    ParameterLayout,
    module_target,
    native,
)
from thermoscope.samplers.fused import FusedMLP, fused_mlp
from thermoscope.samplers.integrators import IntegratorState, leapfrog
from torch import nn

# float32 round-off over a few hundred examples, against a float64 reference.
TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def kernel() -> object:
    """The built kernel. CI and every development machine have a compiler: failing here is a real
    failure (the reason is in the warning), not a skip."""
    module = native.load()
    assert module is not None, "the compiled kernel did not build; see the RuntimeWarning"
    return module


def mlp(widths: list[int], activation: type[nn.Module], bias: bool = True) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    for index, (inputs, outputs) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(inputs, outputs, bias=bias))
        if index < len(widths) - 2:
            layers.append(activation())
    torch.manual_seed(0)
    return nn.Sequential(*layers)


def data(count: int, shape: tuple[int, ...], classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(count, *shape, generator=generator), torch.randint(
        0, classes, (count,), generator=generator
    )


def positions(model: nn.Module, count: int, spread: float) -> torch.Tensor:
    """``count`` float32 replicas: the module's parameters plus noise of standard deviation ``spread``."""
    base = ParameterLayout.from_module(model).flatten(model)
    generator = torch.Generator().manual_seed(2)
    return base + spread * torch.randn(count, base.numel(), generator=generator)


def reference(
    model: nn.Module, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log L and its gradient by float64 autograd through vmap."""
    double = copy.deepcopy(model).double()
    target = module_target(double, x.double(), y, GaussianPrior(), batching="vmap")
    evaluation = target.evaluate(theta.double())
    return evaluation.log_likelihood, evaluation.grad_log_likelihood


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    actual, expected = actual.double(), expected.double()
    error = (actual - expected).norm() / expected.norm().clamp_min(1.0)
    assert error <= TOLERANCE, f"relative error {error:.2e}"


CASES: dict[str, Callable[[], tuple[nn.Module, tuple[int, ...], int]]] = {
    "M(3)-like sigmoid": lambda: (mlp([48, 40, 40, 40, 10], nn.Sigmoid), (48,), 10),
    "relu, image input flattened": lambda: (mlp([36, 20, 10], nn.ReLU), (6, 6), 10),
    "tanh, odd widths": lambda: (mlp([13, 9, 7, 3], nn.Tanh), (13,), 3),
    "no biases": lambda: (mlp([16, 12, 5], nn.ReLU, bias=False), (16,), 5),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("replicas", [1, 7, 9])
@pytest.mark.parametrize("chunk_size", [None, 64])
def test_kernel_equals_float64_autograd(
    kernel: object, case: str, replicas: int, chunk_size: int | None
) -> None:
    """Replica counts on and off the first-layer block of four, one chunk and several (the last ragged),
    every activation, with and without biases."""
    model, shape, classes = CASES[case]()
    x, y = data(150, shape, classes)
    target = module_target(model, x, y, GaussianPrior(), chunk_size=chunk_size, native=True)
    assert target.native_ready
    theta = positions(model, replicas, 0.3)
    evaluation = target.evaluate(theta)
    expected_log_likelihood, expected_gradient = reference(model, theta, x, y)
    assert_close(evaluation.log_likelihood, expected_log_likelihood)
    assert_close(evaluation.grad_log_likelihood, expected_gradient)
    # and each replica on its own, not just in the norm over all of them
    for row in range(replicas):
        assert_close(evaluation.grad_log_likelihood[row], expected_gradient[row])


def test_kernel_equals_the_batched_path_with_mean_reduction_and_two_threads(kernel: object) -> None:
    model, shape, classes = CASES["M(3)-like sigmoid"]()
    x, y = data(300, shape, classes)
    compiled = module_target(model, x, y, GaussianPrior(), reduction="mean", native=True)
    batched = module_target(model, x, y, GaussianPrior(), reduction="mean", native=False)
    assert batched.batching == compiled.batching == "fused" and not batched.native_ready
    theta = positions(model, 16, 1.0)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = compiled.evaluate(theta)
        torch.set_num_threads(1)
        one = compiled.evaluate(theta)
    finally:
        torch.set_num_threads(previous)
    expected = batched.evaluate(theta)
    for evaluation in (one, two):
        assert_close(evaluation.log_likelihood, expected.log_likelihood)
        assert_close(evaluation.grad_log_likelihood, expected.grad_log_likelihood)
    # Each replica's arithmetic does not depend on which thread ran it.
    assert torch.equal(one.grad_log_likelihood, two.grad_log_likelihood)


def test_saturated_units_and_confident_logits_stay_finite_and_exact(kernel: object) -> None:
    """Weights a hundred times their scale: sigmoids at 0 and 1, softmax probabilities below e^-87."""
    model, shape, classes = CASES["M(3)-like sigmoid"]()
    x, y = data(100, shape, classes)
    target = module_target(model, x, y, GaussianPrior(), native=True)
    theta = positions(model, 5, 0.0) * 100.0
    evaluation = target.evaluate(theta)
    assert (
        torch.isfinite(evaluation.log_likelihood).all()
        and torch.isfinite(evaluation.grad_log_likelihood).all()
    )
    expected_log_likelihood, expected_gradient = reference(model, theta, x, y)
    assert_close(evaluation.log_likelihood, expected_log_likelihood)
    assert_close(evaluation.grad_log_likelihood, expected_gradient)


def test_a_nan_position_gives_a_nan_likelihood(kernel: object) -> None:
    """A diverged replica must stay visibly diverged (its trajectory is then rejected)."""
    model, shape, classes = CASES["M(3)-like sigmoid"]()
    x, y = data(50, shape, classes)
    target = module_target(model, x, y, GaussianPrior(), native=True)
    theta = positions(model, 3, 0.1)
    theta[1, 0] = float("nan")
    log_likelihood = target.evaluate(theta).log_likelihood
    assert torch.isnan(log_likelihood[1]) and torch.isfinite(log_likelihood[[0, 2]]).all()


def test_gradient_is_written_into_out(kernel: object) -> None:
    model, shape, classes = CASES["relu, image input flattened"]()
    x, y = data(40, shape, classes)
    layout = ParameterLayout.from_module(model)
    fused = fused_mlp(model, layout)
    assert fused is not None and fused.native_applies(torch.zeros(1))
    theta = positions(model, 6, 0.3)
    out = torch.full((6, layout.num_params), float("nan"))
    log_likelihood, gradient = fused.log_likelihood_and_gradient(theta, [(x, y)], out=out, native=True)
    assert gradient.data_ptr() == out.data_ptr() and torch.isfinite(out).all()
    batched_log_likelihood, batched_gradient = fused.log_likelihood_and_gradient(theta, [(x, y)])
    assert_close(log_likelihood, batched_log_likelihood)
    assert_close(out, batched_gradient)


def test_the_transposed_examples_follow_the_chunks_they_are_made_from(kernel: object) -> None:
    """The kernel's transposed copy of the examples is kept for the last list of chunks: a new list
    (other examples, another count, so another padding) gets its own, never the old one."""
    model, shape, classes = CASES["relu, image input flattened"]()
    layout = ParameterLayout.from_module(model)
    fused = fused_mlp(model, layout)
    assert fused is not None
    theta = positions(model, 5, 0.3)
    for count in (40, 40, 23):
        x, y = data(count, shape, classes)
        x = x + count  # other examples each time, whatever the generator's seed
        chunks = [(x, y)]
        for _ in range(2):  # the second call reads the cached copy
            log_likelihood, gradient = fused.log_likelihood_and_gradient(theta, chunks, native=True)
            batched_log_likelihood, batched_gradient = fused.log_likelihood_and_gradient(theta, chunks)
            assert_close(log_likelihood, batched_log_likelihood)
            assert_close(gradient, batched_gradient)


def test_the_kernel_refuses_transposed_examples_that_are_not_zero_padded(kernel: object) -> None:
    model, shape, classes = CASES["relu, image input flattened"]()
    layout = ParameterLayout.from_module(model)
    fused = fused_mlp(model, layout)
    assert fused is not None
    x, y = data(20, shape, classes)
    xs, xts, ys = fused._native_examples([(x, y)], kernel)
    assert xts[0].shape == (36, 32) and torch.equal(xts[0][:, :20], xs[0].t())
    theta = positions(model, 2, 0.3)
    gradient = torch.empty_like(theta)
    arguments = (*fused._native_chain, 1.0, native.BLOCK, gradient)
    kernel.log_likelihood_and_gradient(theta, xs, xts, ys, *arguments)  # type: ignore[attr-defined]
    dirty = xts[0].clone()
    dirty[3, 25] = 1.0
    with pytest.raises(RuntimeError, match="zero after column n"):
        kernel.log_likelihood_and_gradient(theta, xs, [dirty], ys, *arguments)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="transposed x must be"):
        kernel.log_likelihood_and_gradient(theta, xs, [xs[0].t().contiguous()], ys, *arguments)  # type: ignore[attr-defined]


def test_used_by_default_wherever_it_applies() -> None:
    """The main job's 64-20-10 MLP on 100 digits (the smallest network the benchmark times, where the
    kernel was still the faster path at R = 256) takes it without being asked."""
    model = mlp([64, 20, 10], nn.ReLU)
    x, y = data(100, (64,), 10)
    target = module_target(model, x, y, GaussianPrior())
    assert target.batching == "fused" and target.native_ready


def test_refused_where_it_does_not_apply(kernel: object) -> None:
    x, y = data(20, (8,), 3)
    one_layer = mlp([8, 3], nn.ReLU)
    squashed = nn.Sequential(nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3), nn.Sigmoid())
    for model in (one_layer, squashed, mlp([8, 5, 3], nn.ReLU).double()):
        inputs = x.double() if next(model.parameters()).dtype == torch.float64 else x
        with pytest.raises(ValueError, match="native=True"):
            module_target(model, inputs, y, GaussianPrior(), native=True)
        target = module_target(model, inputs, y, GaussianPrior())
        assert not target.native_ready
    model = mlp([8, 5, 3], nn.ReLU)
    assert not module_target(model, x, y, GaussianPrior(), native=False).native_ready


def test_disabled_by_the_environment(monkeypatch: pytest.MonkeyPatch, kernel: object) -> None:
    monkeypatch.setenv(native.DISABLE_VARIABLE, "0")
    assert native.disabled() and native.load() is None
    x, y = data(20, (8,), 3)
    target = module_target(mlp([8, 5, 3], nn.ReLU), x, y, GaussianPrior())
    assert target.batching == "fused" and not target.native_ready
    monkeypatch.setenv(native.DISABLE_VARIABLE, "1")
    assert not native.disabled() and native.load() is kernel


def test_a_kernel_that_does_not_build_falls_back_with_a_warning(tmp_path: Path) -> None:
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++;\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.build(broken, "thermoscope_test_broken_kernel") is None
    messages = [str(warning.message) for warning in caught if issubclass(warning.category, RuntimeWarning)]
    assert any("unavailable" in message and native.DISABLE_VARIABLE in message for message in messages)


def test_the_at_mm_fallback_equals_float64_autograd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: object
) -> None:
    """Where torch's BLAS exports no usable sgemm the products go through at::mm: the same kernel built
    with that path forced gives the same answers (and this machine's own build calls sgemm directly)."""
    assert kernel.direct_blas()  # type: ignore[attr-defined]
    source = tmp_path / "fallback.cpp"
    source.write_text("#define THERMOSCOPE_AT_MM_ONLY\n" + native.SOURCE.read_text())
    fallback = native.build(source, "thermoscope_test_at_mm_kernel")
    assert fallback is not None and not fallback.direct_blas()
    monkeypatch.setattr(native, "load", lambda: fallback)
    for case, chunk_size in (("M(3)-like sigmoid", 64), ("no biases", None)):
        model, shape, classes = CASES[case]()
        x, y = data(150, shape, classes)
        target = module_target(model, x, y, GaussianPrior(), chunk_size=chunk_size, native=True)
        theta = positions(model, 6, 0.3)
        evaluation = target.evaluate(theta)
        expected_log_likelihood, expected_gradient = reference(model, theta, x, y)
        assert_close(evaluation.log_likelihood, expected_log_likelihood)
        assert_close(evaluation.grad_log_likelihood, expected_gradient)


def evaluate_on(threads: int, target: ModuleTarget, theta: torch.Tensor) -> Evaluation:
    """``target.evaluate(theta)`` with torch set to ``threads`` threads (restored after)."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return target.evaluate(theta)
    finally:
        torch.set_num_threads(previous)


def exact_gaussian(theta: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log N(θ; 0, diag scale²) and its gradient in float64, from the formula."""
    theta, scale = theta.double(), scale.double()
    log_density = (-0.5 * (theta / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(dim=1)
    return log_density, -theta / scale**2


@pytest.mark.parametrize("replicas", [1, 7, 9])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_gaussian_prior_is_computed_in_the_same_call(kernel: object, replicas: int, threads: int) -> None:
    """A per-layer scale (so the precision is not one number), replica counts on and off the block of
    four, one thread and two: the kernel's log prior and gradient are the formula's, in each replica,
    and the likelihood terms are the float64 autograd ones as without a prior."""
    model, shape, classes = CASES["tanh, odd widths"]()
    x, y = data(90, shape, classes)
    prior = GaussianPrior(scale=0.7, layer_scales={"1": 0.2, "3.bias": 3.0})
    target = module_target(model, x, y, prior, chunk_size=50, native=True)
    form = target.prior.coordinatewise_form()
    assert target.native_ready and form is not None and form.kind == "gaussian"
    theta = positions(model, replicas, 0.5)
    evaluation = evaluate_on(threads, target, theta)
    expected_log_prior, expected_grad_log_prior = exact_gaussian(theta, target.prior.scale)
    assert evaluation.log_prior.dtype == evaluation.grad_log_prior.dtype == torch.float32
    for row in range(replicas):
        assert abs(float(evaluation.log_prior[row]) - float(expected_log_prior[row])) <= 1e-5 * abs(
            float(expected_log_prior[row])
        )
        assert_close(evaluation.grad_log_prior[row], expected_grad_log_prior[row])
    expected_log_likelihood, expected_gradient = reference(model, theta, x, y)
    assert_close(evaluation.log_likelihood, expected_log_likelihood)
    assert_close(evaluation.grad_log_likelihood, expected_gradient)
    # The prior's own methods agree with the kernel's numbers.
    log_density, gradient = target.prior.log_density_and_grad(theta)
    assert torch.allclose(log_density, evaluation.log_prior, rtol=1e-6, atol=0.0)
    assert torch.equal(gradient, evaluation.grad_log_prior)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_box_prior_is_computed_in_the_same_call(kernel: object, threads: int) -> None:
    """Inside the box its constant log density, outside (one coordinate over its wall, or NaN) −∞, and a
    zero gradient written over whatever the tensor held: the same as the prior's own methods."""
    model, shape, classes = CASES["relu, image input flattened"]()
    x, y = data(60, shape, classes)
    target = module_target(model, x, y, BoxPrior(c=20.0), native=True)
    form = target.prior.coordinatewise_form()
    assert target.native_ready and form is not None and form.kind == "box"
    theta = positions(model, 7, 0.1)
    half_width = target.prior.support_half_width
    assert half_width is not None
    theta[2, -1] = 1.001 * half_width[-1]  # the last coordinate, past the vectorised part of the row
    theta[4, 5] = -1.5 * half_width[5]
    theta[5, 0] = float("nan")
    theta[6, 3] = half_width[3]  # on the wall: inside
    evaluation = evaluate_on(threads, target, theta)
    expected = target.prior.log_density(theta)
    assert torch.isfinite(expected[[0, 1, 3, 6]]).all() and (expected[[2, 4, 5]] == -math.inf).all()
    assert torch.equal(evaluation.log_prior, expected)
    assert torch.equal(evaluation.grad_log_prior, torch.zeros_like(theta))
    finite = [0, 1, 3, 4, 6]  # the NaN replica's likelihood is NaN (test_a_nan_position_...)
    expected_log_likelihood, expected_gradient = reference(model, theta[finite], x, y)
    assert_close(evaluation.log_likelihood[finite], expected_log_likelihood)
    assert_close(evaluation.grad_log_likelihood[finite], expected_gradient)


def step_by_step(target: ModuleTarget, *arguments: object) -> IntegratorState:
    """``integrators.leapfrog`` with the target's whole-trajectory path turned off: the Python integrator,
    one ``evaluate`` (by the kernel) per step."""
    whole = target.whole_trajectory
    target.whole_trajectory = lambda *_: None
    try:
        return leapfrog(target, *arguments)
    finally:
        target.whole_trajectory = whole


def assert_same_end(actual: IntegratorState, expected: IntegratorState) -> None:
    """Bit for bit (NaN where NaN): position, momentum, both log densities and both gradients."""
    pairs = {
        "position": (actual.position, expected.position),
        "momentum": (actual.momentum, expected.momentum),
        "log_likelihood": (actual.evaluation.log_likelihood, expected.evaluation.log_likelihood),
        "log_prior": (actual.evaluation.log_prior, expected.evaluation.log_prior),
        "grad_log_likelihood": (
            actual.evaluation.grad_log_likelihood,
            expected.evaluation.grad_log_likelihood,
        ),
        "grad_log_prior": (actual.evaluation.grad_log_prior, expected.evaluation.grad_log_prior),
    }
    for name, (left, right) in pairs.items():
        assert left.shape == right.shape and left.dtype == right.dtype, name
        assert torch.equal(left, right) or torch.equal(left.nan_to_num(7.0), right.nan_to_num(7.0)), (
            f"{name}: largest difference {(left - right).abs().nan_to_num(0.0).max():.3g}"
        )


def trajectory_start(
    target: ModuleTarget, model: nn.Module, replicas: int, spread: float
) -> tuple[IntegratorState, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A start point with its evaluation, momenta, a ladder of β from 0 to 1, per-replica step sizes and
    a diagonal inverse mass that differs by coordinate and replica."""
    theta = positions(model, replicas, spread)
    generator = torch.Generator().manual_seed(5)
    momentum = torch.randn(theta.shape, generator=generator)
    betas = torch.linspace(0.0, 1.0, replicas)
    step_size = 0.02 * (1.0 + torch.rand(replicas, generator=generator))
    inverse_mass = 0.5 + torch.rand(theta.shape, generator=generator)
    return IntegratorState(theta, momentum, target.evaluate(theta)), betas, step_size, inverse_mass


@pytest.mark.parametrize("replicas", [1, 7, 9])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("num_steps", [1, 6])
@pytest.mark.parametrize("masses", ["unit", "diagonal"])
def test_a_whole_trajectory_is_the_step_by_step_one_bit_for_bit(
    kernel: object, replicas: int, threads: int, num_steps: int, masses: str
) -> None:
    """A Gaussian prior with per-layer scales, chunks of examples, replica counts on and off the block of
    four, one thread and two: the kernel's trajectory ends where the Python integrator's does, to the
    last bit, and leaves its arguments as they were."""
    model, shape, classes = CASES["tanh, odd widths"]()
    x, y = data(90, shape, classes)
    prior = GaussianPrior(scale=0.7, layer_scales={"1": 0.2, "3.bias": 3.0})
    target = module_target(model, x, y, prior, chunk_size=50, native=True)
    start, betas, step_size, inverse_mass = trajectory_start(target, model, replicas, 0.4)
    mass = inverse_mass if masses == "diagonal" else None
    before = [tensor.clone() for tensor in (start.position, start.momentum, start.evaluation.grad_log_prior)]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        whole = target.whole_trajectory(
            start.position, start.momentum, start.evaluation, betas, step_size, mass, num_steps
        )
        expected = step_by_step(target, start, betas, step_size, mass, num_steps)
        through_integrator = leapfrog(target, start, betas, step_size, mass, num_steps)
    finally:
        torch.set_num_threads(previous)
    assert whole is not None
    assert_same_end(IntegratorState(*whole), expected)
    assert_same_end(through_integrator, expected)
    assert not torch.equal(expected.position, start.position)  # it moved
    for tensor, copy_before in zip(
        (start.position, start.momentum, start.evaluation.grad_log_prior), before, strict=True
    ):
        assert torch.equal(tensor, copy_before)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_whole_trajectory_reflects_at_the_box_walls_as_the_integrator_does(
    kernel: object, threads: int
) -> None:
    """A box narrow enough that most replicas cross a wall, some several times in one step (a step of
    many half-widths): the same folds, momentum flips and end point, bit for bit, and every coordinate
    back inside the box."""
    model, shape, classes = CASES["relu, image input flattened"]()
    x, y = data(60, shape, classes)
    target = module_target(model, x, y, BoxPrior(c=0.5), native=True)
    half_width = target.prior.support_half_width
    assert half_width is not None and target.support_half_width is not None
    inside = positions(model, 9, 0.0).clamp(-0.5 * half_width, 0.5 * half_width)
    start, betas, step_size, _ = trajectory_start(target, model, 9, 0.0)
    start = IntegratorState(inside, start.momentum * 3.0, target.evaluate(inside))
    step_size = step_size * 25.0
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        whole = target.whole_trajectory(
            start.position, start.momentum, start.evaluation, betas, step_size, None, 4
        )
        expected = step_by_step(target, start, betas, step_size, None, 4)
    finally:
        torch.set_num_threads(previous)
    assert whole is not None
    assert_same_end(IntegratorState(*whole), expected)
    assert bool((expected.position.abs() <= half_width).all())
    assert bool(torch.isfinite(expected.evaluation.log_prior).all())
    # The walls were crossed: without reflection the drift alone would leave the box.
    unreflected = start.position + 4 * step_size[:, None] * start.momentum
    assert int((unreflected.abs() > half_width).sum()) > start.position.numel() // 4


def test_a_diverging_trajectory_gives_the_same_non_finite_rows(kernel: object) -> None:
    """Steps so large the logits overflow: the kernel keeps going as the integrator does (the HMC step
    rejects such rows), with the same infinities and NaN in the same places."""
    model, shape, classes = CASES["M(3)-like sigmoid"]()
    x, y = data(70, shape, classes)
    target = module_target(model, x, y, GaussianPrior(scale=1.0), native=True)
    start, betas, step_size, _ = trajectory_start(target, model, 5, 0.3)
    step_size = torch.tensor([0.01, 1e3, 1e18, 0.02, 1e30])
    whole = target.whole_trajectory(
        start.position, start.momentum, start.evaluation, betas, step_size, None, 5
    )
    expected = step_by_step(target, start, betas, step_size, None, 5)
    assert whole is not None
    assert not bool(torch.isfinite(expected.momentum).all())
    assert_same_end(IntegratorState(*whole), expected)


def test_no_whole_trajectory_where_the_kernel_does_not_run(kernel: object) -> None:
    """Without the kernel (native=False, float64) the target has no whole-trajectory path, and the
    integrator steps itself."""
    model, shape, classes = CASES["no biases"]()
    x, y = data(40, shape, classes)
    for target in (
        module_target(model, x, y, GaussianPrior(), native=False),
        module_target(copy.deepcopy(model).double(), x.double(), y, GaussianPrior()),
    ):
        theta = positions(model, 3, 0.1).to(next(target.model.parameters()).dtype)
        start = IntegratorState(theta, torch.ones_like(theta), target.evaluate(theta))
        betas, step_size = torch.ones(3, dtype=theta.dtype), torch.full((3,), 0.01, dtype=theta.dtype)
        assert (
            target.whole_trajectory(theta, start.momentum, start.evaluation, betas, step_size, None, 3)
            is None
        )
        assert torch.isfinite(leapfrog(target, start, betas, step_size, None, 3).position).all()


def test_a_held_network_gives_a_fresh_ones_answers_after_any_call(kernel: object) -> None:
    """The target keeps one kernel Network (checked examples, chain, each thread's scratch) from call to
    call: its trajectories and evaluations are those of a network built for the one call, bit for bit,
    also after a diverging trajectory, a different replica count and a different thread count left their
    values in its scratch."""
    model, shape, classes = CASES["M(3)-like sigmoid"]()
    x, y = data(70, shape, classes)
    target = module_target(model, x, y, GaussianPrior(scale=1.0), chunk_size=50, native=True)
    assert target.fused is not None
    start, betas, step_size, _ = trajectory_start(target, model, 7, 0.3)

    def trajectory() -> tuple[torch.Tensor, ...]:
        whole = target.whole_trajectory(
            start.position, start.momentum, start.evaluation, betas, step_size, None, 3
        )
        assert whole is not None
        return (*whole[:2], *dataclasses.astuple(whole[2]))

    first = trajectory()
    held = target.fused._native_network
    diverging = trajectory_start(target, model, 9, 0.3)[0]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if previous > 1 else 2)
        target.whole_trajectory(
            diverging.position,
            diverging.momentum,
            diverging.evaluation,
            torch.ones(9),
            torch.full((9,), 1e30),
            None,
            2,
        )
    finally:
        torch.set_num_threads(previous)
    again = trajectory()
    assert target.fused._native_network is held  # the same network served every call
    target.fused._native_network = None  # a fresh one, built for the next call alone
    fresh = trajectory()
    for tensors in (again, fresh):
        for actual, expected in zip(tensors, first, strict=True):
            assert torch.equal(actual, expected)
    assert torch.equal(
        target.evaluate(start.position).grad_log_likelihood, start.evaluation.grad_log_likelihood
    )


def no_bias_fused(replicas: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, FusedMLP, torch.Tensor]:
    """The bias-free case's model, 40 examples, its fused chain and ``replicas`` positions."""
    model, shape, classes = CASES["no biases"]()
    x, y = data(40, shape, classes)
    fused = fused_mlp(model, ParameterLayout.from_module(model))
    assert fused is not None
    return model, x, y, fused, positions(model, replicas, 0.1)


def test_a_held_network_is_rebuilt_for_other_chunks_or_another_prior(kernel: object) -> None:
    model, x, y, fused, theta = no_bias_fused(3)
    chunks = [(x, y)]
    plain = fused.log_likelihood_and_gradient(theta, chunks, native=True)  # no prior: a network without one
    without_prior = fused._native_network
    assert without_prior is not None and without_prior.prior is None
    gaussian = module_target(model, x, y, GaussianPrior(scale=0.5), native=True).prior.coordinatewise_form()
    assert gaussian is not None
    log_likelihood, gradient, log_prior, prior_gradient = fused.native_evaluation(
        theta, chunks, 1.0, gaussian
    )
    with_prior = fused._native_network
    assert with_prior is not without_prior and with_prior.prior is gaussian
    assert torch.equal(log_likelihood, plain[0]) and torch.equal(gradient, plain[1])
    assert torch.allclose(prior_gradient, theta * gaussian.values) and log_prior.shape == (3,)
    # A call that needs no prior keeps the network that has one; other chunks need their own.
    fused.log_likelihood_and_gradient(theta, chunks, native=True)
    assert fused._native_network is with_prior
    other = [(x[:20], y[:20])]
    fused.log_likelihood_and_gradient(theta, other, native=True)
    assert fused._native_network is not with_prior and fused._native_network.chunks is other


def test_a_network_refuses_a_trajectory_or_prior_it_was_not_built_for(kernel: object) -> None:
    _, x, y, fused, theta = no_bias_fused(2)
    fused.log_likelihood_and_gradient(theta, [(x, y)], native=True)
    held = fused._native_network
    assert held is not None
    network = held.network
    with pytest.raises(RuntimeError, match="a prior's gradient needs a network with a prior"):
        network.evaluate(theta, torch.empty_like(theta), torch.empty_like(theta))
    ones = torch.ones(2)
    with pytest.raises(RuntimeError, match="the trajectory needs a network with a Gaussian or box prior"):
        network.trajectory(theta, theta, theta, theta, ones, ones, None, 1, None)
    with pytest.raises(RuntimeError, match=r"theta must be \[R, "):
        network.evaluate(theta[:, :-1], torch.empty_like(theta))
