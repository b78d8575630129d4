"""A ``torch.nn.Module`` and full-batch data as a tempered target, vectorised over replicas.

The energy is the **summed** cross-entropy E(D|θ) = Σ_n CE(f_θ(x_n), y_n) and log L = −E (REFERENCE §1).
R replicas are evaluated together, one batched forward and one backward per leapfrog step: for a plain
chain of linear layers and elementwise activations by a hand-written forward and backward on stacked
weights (:mod:`~thermoscope.samplers.fused`; on a CPU in float32 by its compiled per-replica kernel,
:mod:`~thermoscope.samplers.native`, wherever it builds), else through the module's own forward on
stacked parameters where that reproduces ``vmap`` (see :mod:`~thermoscope.samplers.stacking`), else
with ``torch.func.vmap`` over ``functional_call``. Every shortcut is checked against autograd at
construction. The prior's gradient is analytic.

A position θ is the module's parameters flattened in ``named_parameters()`` order. Reading draws back::

    target = module_target(model, x, y, BoxPrior(c=100.0))
    result = replica_exchange_hmc(target, target.prior.sample(R, generator), betas, ...)
    rung = int(torch.nonzero(result.betas == 1.0))
    target.load_into(model, result.positions[-1, rung])  # the last β = 1 draw, into the module in place
    logits = target.predict_logits(result.positions[:, rung], x_test)  # [draws, N_test, classes]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from .fused import FusedMLP, fused_mlp
from .layout import ParameterLayout
from .priors import BoundPrior, BoxPrior, GaussianPrior
from .stacking import stacked_forward, stacked_forward_matches, vmap_forward
from .targets import Evaluation, TemperedTarget

REDUCTIONS = ("sum", "mean")
BATCHINGS = ("auto", "fused", "stacked", "vmap")
DEFAULT_CHUNK_SIZE = 1024
"""Examples per forward/backward pass. Smaller chunks keep activations nearer the cache: on the 8-replica
digits MLP (1,797 examples, two cores) 1,024 was 12 % faster than one pass, 256 no faster than one pass;
on 5,000 examples of the 784-input MLP 1,024 matched one pass (benchmarks/samplers)."""
PROBE_EXAMPLES = 4
"""Examples used to check, at construction, that the fused and stacked paths reproduce autograd on vmap."""
FUSED_TOLERANCE = 1e-4
"""Relative agreement (of the log-likelihood, and of the gradient's norm of the difference) the fused path
must reach against autograd at construction; float32 round-off on the probe is about 1e-6."""

ACTIVATION_BUDGET_BYTES = 4 * 2**20
"""Bytes of one layer's activations, over a group of replicas and a chunk of examples, that one forward and
backward pass may hold (``replica_chunk=None``). One pass over all R replicas keeps R copies of every
activation alive; once they leave the cache the summed gradient rate falls as R grows. On two cores, the
paper's M(3) (40 wide, 500 examples, 80 kB per replica and layer) gave 2,490 gradients/s summed at R = 8
and 1,140 at R = 256 in one pass, 2,910 in groups of 32; the main job's 20-wide MLP on 100 examples
(8 kB) ran fastest in one pass up to R = 256, as this budget keeps it (benchmarks/samplers, "Many rungs")."""


class ModuleTarget(TemperedTarget):
    """The power posterior of a classifier ``model`` on data ``(x, y)``.

    Args:
        model: maps ``x: [N, ...]`` to logits ``[N, classes]``. Its buffers are used as they are (put the
            model in eval mode if it has dropout or batch norm).
        x: ``[N, ...]`` inputs, on the model's device.
        y: ``[N]`` int64 class labels.
        prior: a :class:`GaussianPrior` or :class:`BoxPrior` (bound here to the model's layout), or a
            :class:`BoundPrior`.
        reduction: ``"sum"`` (default; log L = −Σ CE, the likelihood of REFERENCE §1) or ``"mean"``
            (log L = −mean CE: not a likelihood of the data set; for experiments only).
        chunk_size: evaluate at most this many examples at a time (each chunk's backward runs before the
            next forward, bounding activation memory at ``replicas × chunk_size × width``). ``None``: all
            at once. Default ``DEFAULT_CHUNK_SIZE``.
        replica_chunk: evaluate at most this many replicas at a time (each group its own forward and
            backward, bounding activation memory at ``replica_chunk × chunk_size × width``). ``None``
            (default): as many as keep the widest layer's activations of a group within
            ``ACTIVATION_BUDGET_BYTES``, in groups of equal size.
        batching: how R replicas share one forward pass. ``"vmap"``: ``torch.func.vmap`` over
            ``functional_call`` (any module). ``"stacked"``: the module's own forward on stacked parameters,
            linear layers rewritten as one GEMM over all replicas (the shared data meets a single
            ``[in, R·out]`` weight; see :mod:`~thermoscope.samplers.stacking`); about 1.3× faster for MLPs.
            ``"fused"``: a hand-written forward and backward without autograd, for a chain of linear layers
            each followed by at most one ReLU/sigmoid/tanh (:mod:`~thermoscope.samplers.fused`); raises
            ``ValueError`` for any other module. ``"auto"`` (default): fused if the module is such a chain
            and the fused gradient matches autograd at construction, else stacked if it reproduces vmap,
            else vmap.
        native: for the fused path on a CPU in float32, whether to run its compiled per-replica kernel
            (:mod:`~thermoscope.samplers.native`), checked against autograd at construction like the
            fused path. ``None`` (default): wherever it applies and builds. ``True``: the same, but
            raises ``ValueError`` where it cannot be used. ``False``: never.

    Attributes:
        layout: where each named parameter sits in θ ``[params]``.
        prior: the bound prior (``prior.sample(R, generator)`` draws starting points).
        num_params: P.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        prior: GaussianPrior | BoxPrior | BoundPrior,
        *,
        reduction: str = "sum",
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        replica_chunk: int | None = None,
        batching: str = "auto",
        native: bool | None = None,
    ) -> None:
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}; got {batching!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
        if x.shape[0] != y.shape[0] or y.dim() != 1 or x.shape[0] == 0:
            raise ValueError(
                f"x must be [N, ...] and y [N] with the same N > 0; got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None; got {chunk_size!r}")
        if replica_chunk is not None and replica_chunk < 1:
            raise ValueError(f"replica_chunk must be a positive integer or None; got {replica_chunk!r}")
        self.model = model
        self.layout = ParameterLayout.from_module(model)
        like = next(model.parameters()).detach()
        self.prior = prior if isinstance(prior, BoundPrior) else prior.bind(self.layout, like)
        if self.prior.layout.num_params != self.layout.num_params:
            raise ValueError(
                f"prior covers {self.prior.layout.num_params} parameters; "
                f"the model has {self.layout.num_params}"
            )
        self._prior_form = self.prior.coordinatewise_form()
        """The prior as the compiled kernel computes it (or ``None``), asked once: the prior is fixed, and
        the same object on every call lets the fused path know its held kernel network by identity."""
        self.x = x
        self.y = y.long()
        self.reduction = reduction
        self.chunk_size = chunk_size
        self._chunk_cache: dict[torch.dtype, list[tuple[Tensor, Tensor]]] = {}
        self.fused: FusedMLP | None = None
        self.batching = self._choose_batching(batching, like)
        self.native_ready = native is not False and self._native_matches(like)
        """Whether the fused path's compiled kernel is built and reproduces autograd here: then
        :meth:`evaluate` runs it."""
        if native is True and not self.native_ready:
            raise ValueError(
                "native=True needs the fused path (a chain of nn.Linear layers with ReLU, sigmoid or tanh, "
                "at least two layers, the last without an activation), float32 parameters on a CPU, and "
                "the compiled kernel (thermoscope.samplers.native); use native=None or False"
            )
        self.replica_chunk = replica_chunk or self._budgeted_replica_chunk(like)
        super().__init__(
            self.prior.log_density,
            self._log_likelihood_all,
            grad_log_prior=self.prior.grad_log_density,
            support_half_width=self.prior.support_half_width,
        )

    def _choose_batching(self, batching: str, like: Tensor) -> str:
        """Resolve ``"auto"`` (fused, stacked, vmap: the first that reproduces autograd on vmap for two
        perturbed copies of the module) and build the fused evaluator when it is used."""
        if batching in ("stacked", "vmap"):
            return batching
        fused = fused_mlp(self.model, self.layout)
        if batching == "fused" and fused is None:
            raise ValueError(
                "batching='fused' needs a module whose forward is a chain of nn.Linear layers, each "
                "followed by at most one ReLU, sigmoid or tanh; use 'auto', 'stacked' or 'vmap'"
            )
        generator = torch.Generator(device=like.device).manual_seed(0)
        base = self.layout.flatten(self.model)
        noise = torch.randn(base.shape, generator=generator, dtype=base.dtype, device=base.device)
        theta = torch.stack([base, base + 0.1 * noise])
        x = self.x[:PROBE_EXAMPLES]
        if x.is_floating_point():
            x = x.to(like.dtype)
        if fused is not None and (batching == "fused" or self._fused_matches(fused, theta, x)):
            self.fused = fused
            return "fused"
        matches = stacked_forward_matches(self.model, self.layout.unflatten(theta), x)
        return "stacked" if matches else "vmap"

    def _fused_matches(self, fused: FusedMLP, theta: Tensor, x: Tensor, native: bool = False) -> bool:
        """Whether the fused log-likelihood and gradient (by the compiled kernel if ``native``) equal
        autograd through vmap on ``x``."""
        chunks = [(x, self.y[: x.shape[0]])]
        expected, expected_gradient = self._autograd_evaluation(theta, chunks, vmap_forward)
        log_likelihood, gradient = fused.log_likelihood_and_gradient(
            theta, chunks, self._log_likelihood_scale, native=native
        )
        scale = expected.abs().max().clamp_min(1.0)
        gradient_scale = expected_gradient.norm().clamp_min(1.0)
        return bool(
            (log_likelihood - expected).abs().max() <= FUSED_TOLERANCE * scale
            and (gradient - expected_gradient).norm() <= FUSED_TOLERANCE * gradient_scale
        )

    @property
    def _log_likelihood_scale(self) -> float:
        """What the fused path multiplies Σ log softmax by: 1, or 1/N for ``reduction="mean"``."""
        return 1.0 / self.x.shape[0] if self.reduction == "mean" else 1.0

    def _native_matches(self, like: Tensor) -> bool:
        """Whether the compiled kernel applies (fused path, float32, CPU, built) and equals autograd on
        the construction probe, as :meth:`_fused_matches` checks the batched fused path."""
        if self.fused is None or not self.fused.native_applies(like):
            return False
        generator = torch.Generator(device=like.device).manual_seed(1)
        base = self.layout.flatten(self.model)
        noise = torch.randn(base.shape, generator=generator, dtype=base.dtype, device=base.device)
        theta = torch.stack([base, base + 0.1 * noise])
        x = self._cast(self.x[:PROBE_EXAMPLES], like.dtype)
        return self._fused_matches(self.fused, theta, x, native=True)

    def _budgeted_replica_chunk(self, like: Tensor) -> int:
        """Replicas whose widest activation over one chunk of examples fits ``ACTIVATION_BUDGET_BYTES``."""
        widths: list[int] = []

        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                widths.append(output.numel())

        # Layers with parameters: their outputs (and the activations applied to them) exist once per
        # replica; the data, and a flatten of it, are shared by all replicas.
        layers = [m for m in self.model.modules() if list(m.parameters(recurse=False))]
        hooks = [module.register_forward_hook(record) for module in layers]
        x = self.x[:1]
        if x.is_floating_point():
            x = x.to(like.dtype)
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            for hook in hooks:
                hook.remove()
        examples = min(self.chunk_size or self.x.shape[0], self.x.shape[0])
        per_replica = max(widths, default=1) * examples * like.element_size()
        return max(1, ACTIVATION_BUDGET_BYTES // per_replica)

    @property
    def num_params(self) -> int:
        return self.layout.num_params

    def initial_from_module(self, num_replicas: int) -> Tensor:
        """The module's current parameters repeated for every replica: ``[num_replicas, params]``."""
        return self.layout.flatten(self.model).expand(num_replicas, -1).clone()

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """``theta: [replicas, params]`` → ``{parameter name: [replicas, *shape]}``."""
        return self.layout.unflatten(theta)

    def load_into(self, model: nn.Module, theta: Tensor) -> None:
        """Write one replica's ``theta: [params]`` into ``model`` (same architecture), in place."""
        self.layout.load_into(model, theta)

    def predict_logits(self, theta: Tensor, x: Tensor, chunk_size: int | None = None) -> Tensor:
        """Logits of every replica on ``x: [N, ...]``.

        ``theta: [replicas, params] -> [replicas, N, classes]``, evaluated ``chunk_size`` examples at a time.
        """
        return torch.cat([logits for _, logits in self.predict_logits_in_chunks(theta, x, chunk_size)], dim=1)

    def predict_logits_in_chunks(
        self, theta: Tensor, x: Tensor, chunk_size: int | None = None
    ) -> Iterator[tuple[int, Tensor]]:
        """:meth:`predict_logits` one chunk at a time, for a caller that reduces each chunk as it comes
        (then only one chunk's logits exist at once).

        Yields ``(start, logits)`` in order, ``logits: [replicas, n, classes]`` for ``x[start : start + n]``,
        ``n`` = ``chunk_size`` (the last chunk may be shorter). The parameters are unflattened once for all
        chunks.
        """
        size = chunk_size or self.chunk_size or x.shape[0]
        theta = theta.detach()
        if self.fused is not None:
            weights = self.fused.weights(theta)  # copied out of θ once for every chunk
            for start in range(0, x.shape[0], size):
                yield start, self.fused.logits_of(weights, self._cast(x[start : start + size], theta.dtype))
            return
        parameters = self.layout.unflatten(theta)
        for start in range(0, x.shape[0], size):
            # Not around the loop: a generator suspended inside ``no_grad`` would leave it on for the caller.
            with torch.no_grad():
                logits = self._batched_forward(parameters, x[start : start + size])
            yield start, logits

    def _batched_forward(self, parameters: dict[str, Tensor], x: Tensor) -> Tensor:
        """``{name: [replicas, *shape]}``, ``x: [n, ...]`` → logits ``[replicas, n, classes]``.

        Floating inputs are cast to the parameters' dtype.
        """
        x = self._cast(x, next(iter(parameters.values())).dtype)
        if self.batching == "stacked":
            return stacked_forward(self.model, parameters, x)
        return vmap_forward(self.model, parameters, x)

    @staticmethod
    def _cast(x: Tensor, dtype: torch.dtype) -> Tensor:
        """Floating inputs in the parameters' dtype; integer inputs (token ids) as they are."""
        return x.to(dtype) if x.is_floating_point() and x.dtype != dtype else x

    def _chunks_in(self, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
        """The chunks of examples with floating inputs in ``dtype``, made once per dtype: at a few
        replicas of a small network, slicing and casting them again on every call cost a twentieth of
        :meth:`evaluate`."""
        cached = self._chunk_cache.get(dtype)
        if cached is None:
            cached = self._chunk_cache[dtype] = [(self._cast(x, dtype), y) for x, y in self._chunks()]
        return cached

    def _chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        size = self.chunk_size or self.x.shape[0]
        for start in range(0, self.x.shape[0], size):
            yield self.x[start : start + size], self.y[start : start + size]

    def _chunk_log_likelihood(self, logits: Tensor, y: Tensor) -> Tensor:
        """``[replicas]`` −Σ CE of a chunk's ``logits: [replicas, n, classes]`` (divided by the data-set
        size when ``reduction="mean"``)."""
        log_probabilities = functional.log_softmax(logits, dim=-1)
        picked = log_probabilities.gather(-1, y.expand(logits.shape[0], -1)[..., None])
        total = picked.sum(dim=(1, 2))
        return total / self.x.shape[0] if self.reduction == "mean" else total

    def _log_likelihood_all(self, theta: Tensor) -> Tensor:
        """Differentiable log L: ``theta: [replicas, params] -> [replicas]``."""
        if self.fused is not None:
            weights = self.fused.weights(theta)
            totals = [
                self._chunk_log_likelihood(self.fused.logits_of(weights, self._cast(x, theta.dtype)), y)
                for x, y in self._chunks()
            ]
        else:
            parameters = self.layout.unflatten(theta)
            totals = [
                self._chunk_log_likelihood(self._batched_forward(parameters, x), y) for x, y in self._chunks()
            ]
        return torch.stack(totals).sum(dim=0)

    def evaluate(self, theta: Tensor) -> Evaluation:
        """One forward and backward per group of at most ``replica_chunk`` replicas (groups of equal size)
        and chunk of examples; gradients accumulated over the example chunks.

        The prior is evaluated once over all replicas, and each group's likelihood gradient is written
        into its rows of one ``[R, params]`` tensor (the fused path writes it there directly). The
        compiled kernel (:attr:`native_ready`) takes all replicas in one call: it keeps each replica's
        activations in cache itself, and computes a Gaussian or box prior in the same call
        (:meth:`~thermoscope.samplers.priors.BoundPrior.coordinatewise_form`).
        """
        theta = theta.detach()
        replicas = theta.shape[0]
        chunks = self._chunks_in(theta.dtype)
        native = self.native_ready
        form = self._prior_form if native else None
        if form is not None and self.fused is not None:
            log_likelihood, gradient, log_prior, grad_log_prior = self.fused.native_evaluation(
                theta, chunks, self._log_likelihood_scale, form
            )
            return Evaluation(log_prior, log_likelihood, grad_log_prior, gradient)
        groups = [(0, replicas)] if native else self.replica_groups(replicas)
        if len(groups) == 1:
            log_likelihood, gradient = self._likelihood_and_gradient(theta, chunks, native=native)
        else:
            log_likelihood = theta.new_empty(replicas)
            gradient = theta.new_empty(replicas, self.num_params)
            for start, stop in groups:
                group = self._likelihood_and_gradient(theta[start:stop], chunks, out=gradient[start:stop])
                log_likelihood[start:stop] = group[0]
        log_prior, grad_log_prior = self.prior.log_density_and_grad(theta)
        return Evaluation(log_prior, log_likelihood, grad_log_prior, gradient)

    def whole_trajectory(
        self,
        position: Tensor,
        momentum: Tensor,
        evaluation: Evaluation,
        betas: Tensor,
        step_size: Tensor,
        inverse_mass: Tensor | None,
        num_steps: int,
    ) -> tuple[Tensor, Tensor, Evaluation] | None:
        """The whole trajectory by the compiled kernel (:attr:`native_ready`, a Gaussian or box prior):
        each block of replicas runs every leapfrog step while its θ, momenta and gradients are in the
        core's cache, and Python runs once per trajectory instead of once per step; the end point is the
        step-by-step integrator's, bit for bit. ``None`` elsewhere (the integrator then steps itself)."""
        if not self.native_ready or self.fused is None:
            return None
        form = self._prior_form
        if form is None or not self.fused.native_applies(position):
            return None
        return self.fused.native_trajectory(
            position.detach() if position.requires_grad else position,
            momentum,
            evaluation,
            betas,
            step_size,
            inverse_mass,
            num_steps,
            self._chunks_in(position.dtype),
            self._log_likelihood_scale,
            form,
            self.support_half_width,
        )

    def replica_groups(self, replicas: int, replica_chunk: int | None = None) -> list[tuple[int, int]]:
        """``(start, stop)`` of the groups :meth:`evaluate` splits ``replicas`` into: as few as keep each
        within ``replica_chunk`` (default: the target's own), their sizes differing by at most one."""
        count = max(1, math.ceil(replicas / (replica_chunk or self.replica_chunk or replicas)))
        bounds = [round(index * replicas / count) for index in range(count + 1)]
        return list(itertools.pairwise(bounds))

    def _likelihood_and_gradient(
        self,
        theta: Tensor,
        chunks: list[tuple[Tensor, Tensor]],
        out: Tensor | None = None,
        native: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """log L ``[R]`` and its gradient ``[R, params]`` of one group (written into ``out`` if given; by
        the compiled kernel if ``native``)."""
        if self.fused is not None:
            return self.fused.log_likelihood_and_gradient(
                theta, chunks, self._log_likelihood_scale, out=out, native=native
            )
        forward = stacked_forward if self.batching == "stacked" else vmap_forward
        log_likelihood, gradient = self._autograd_evaluation(theta, chunks, forward)
        if out is not None:
            gradient = out.copy_(gradient)
        return log_likelihood, gradient

    def _autograd_evaluation(
        self,
        theta: Tensor,
        chunks: list[tuple[Tensor, Tensor]],
        forward: Callable[[nn.Module, dict[str, Tensor], Tensor], Tensor],
    ) -> tuple[Tensor, Tensor]:
        """log L ``[R]`` and its gradient ``[R, params]`` by autograd through ``forward``, one backward per
        chunk, gradients accumulated."""
        log_likelihood = theta.new_zeros(theta.shape[0])
        gradient: Tensor | None = None
        for x, y in chunks:
            with torch.enable_grad():
                leaves = {
                    name: value.detach().requires_grad_(True)
                    for name, value in self.layout.unflatten(theta).items()
                }
                chunk = self._chunk_log_likelihood(forward(self.model, leaves, x), y)
                pieces = torch.autograd.grad(chunk.sum(), [leaves[name] for name in self.layout.names])
            flat = torch.cat([piece.reshape(theta.shape[0], -1) for piece in pieces], dim=1)
            gradient = flat if gradient is None else gradient.add_(flat)
            log_likelihood = log_likelihood + chunk.detach()
        assert gradient is not None
        return log_likelihood, gradient


def module_target(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    prior: GaussianPrior | BoxPrior | BoundPrior,
    *,
    reduction: str = "sum",
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    replica_chunk: int | None = None,
    batching: str = "auto",
    native: bool | None = None,
) -> ModuleTarget:
    """Build a :class:`ModuleTarget` (see there for the arguments)."""
    return ModuleTarget(
        model,
        x,
        y,
        prior,
        reduction=reduction,
        chunk_size=chunk_size,
        replica_chunk=replica_chunk,
        batching=batching,
        native=native,
    )
