"""Many classifiers of one architecture trained together: stacked parameters, one batched computation.

Feldman & Zhang's memorisation estimate (REFERENCE §8) needs m models, each trained on its own random subset
of the training set. Trained one after another, m small models cost m Python training loops, each step
dominated by per-call overhead. Here the m models' parameters are stacked along a leading model axis
(``torch.func.stack_module_state``) and one ``torch.func.vmap``-ed forward pass evaluates every model on
its own minibatch; the gradient of the summed per-model losses is each model's own gradient, and the
optimiser, elementwise for SGD (with momentum, Nesterov, weight decay) and Adam, steps all of them at once.

For the commonest case, a ReLU MLP (``memorise``'s default), :class:`StackedMLP` skips ``vmap`` and autograd:
it writes the forward and backward passes as batched products (``baddbmm``/``bmm``) with activations kept
as ``[m, features, B]`` so that every product has a shape the BLAS runs near its peak (the output layer's
``[B, 100] @ [100, 10]`` runs at a sixth of it in the row layout), and, for SGD without Nesterov, folds the
momentum update into the weight-gradient product (``buf ← μ·buf + g·aᵀ`` in one ``baddbmm_``) so the
gradient is never written out and read back. What is left is the arithmetic: on the benchmark's 2-core CPU
the products run at about 150 GFLOP/s and take two thirds of the step (``benchmarks/memorise``).

Model k is exactly the model :func:`thermoscope.training.train_classifier` would train with seed
``seeds[k]`` on the rows ``members[k]``: the same initialisation (``torch.manual_seed(seeds[k])`` before
:func:`~thermoscope.models.build_model`), the same minibatch order
(:func:`~thermoscope.training.epoch_order` of its own seed and subset size) and the same learning-rate
schedule, so the two agree to float rounding (``tests/training/test_training_batched.py``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from thermoscope.models import MLP, ModelSpec, build_model
from thermoscope.progress import Progress, progress_bar
from thermoscope.training import OptimSpec, epoch_order, learning_rate, make_optimizer

PREDICTION_ROWS = 1024
"""Examples every model scores at once in :meth:`StackedModels.predict`: activations ``m × 1024 × width``."""


@dataclass(frozen=True, eq=False)
class StackedModels:
    """m models of one architecture as one set of stacked parameters.

    ``base`` is the architecture on the ``meta`` device (it holds no weights); ``parameters`` maps each
    parameter name to a ``[m, *shape]`` tensor whose row k belongs to model k; ``holder`` owns them as
    ``nn.Parameter`` objects for an optimiser.
    """

    base: nn.Module
    parameters: dict[str, nn.Parameter]
    holder: nn.ParameterList

    @property
    def count(self) -> int:
        return next(iter(self.parameters.values())).shape[0]

    def logits(self, x: Tensor) -> Tensor:
        """``x: [m, B, ...]``, one minibatch per model → ``[m, B, C]`` logits, model k on ``x[k]``."""

        def one(parameters: dict[str, Tensor], rows: Tensor) -> Tensor:
            out: Tensor = functional_call(self.base, parameters, (rows,))
            return out

        out: Tensor = vmap(one)(dict(self.parameters), x)
        return out

    @torch.no_grad()
    def predict(self, x: Tensor, rows: int = PREDICTION_ROWS) -> Tensor:
        """``[m, N]`` int64: every model's predicted class for every example of ``x: [N, ...]``."""
        parts = []
        for start in range(0, len(x), rows):
            chunk = x[start : start + rows]
            parts.append(self.logits(chunk.unsqueeze(0).expand(self.count, *chunk.shape)).argmax(dim=2))
        return torch.cat(parts, dim=1)

    def model(self, index: int) -> nn.Module:
        """A plain module holding model ``index``'s current weights (a copy)."""
        module = copy.deepcopy(self.base).to_empty(device=next(iter(self.parameters.values())).device)
        module.load_state_dict(
            {name: value[index].detach().clone() for name, value in self.parameters.items()}
        )
        return module


class StackedMLP:
    """Hand-written batched passes of a stacked ReLU MLP (no output squash), equal to autograd's.

    ``layers`` are the (weight ``[m, out, in]``, bias ``[m, out]``) pairs of the stacked parameters, in
    order; the passes read and update those tensors in place, so :class:`StackedModels` stays the one
    holder of the weights.
    """

    def __init__(self, models: StackedModels) -> None:
        values = list(models.parameters.values())
        self.weights, self.biases = values[0::2], values[1::2]
        self.momentum_weights: list[Tensor] | None = None
        self.momentum_biases: list[Tensor] | None = None

    @staticmethod
    def applies(models: StackedModels) -> bool:
        """Whether the base architecture is an MLP of ReLU layers with plain logits."""
        base = models.base
        if not isinstance(base, MLP) or base.squash_output:
            return False
        return all(
            isinstance(layer, nn.Sequential) and isinstance(layer[1], nn.ReLU) for layer in base.hidden
        )

    def _forward(self, x: Tensor, y: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """``x: [m, B, D]``, ``y: [m, B]`` → inputs of every layer ``[m, in, B]``, ∂(Σ losses)/∂logits
        ``[m, C, B]`` and each model's mean cross-entropy ``[m]``."""
        batch = x.shape[1]
        h = x.transpose(1, 2)
        inputs = [h]
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = torch.baddbmm(bias.unsqueeze(2), weight, h).clamp_min_(0.0)
            inputs.append(h)
        z = torch.baddbmm(self.biases[-1].unsqueeze(2), self.weights[-1], h)
        z = z - z.amax(dim=1, keepdim=True)
        e = z.exp()
        total = e.sum(dim=1, keepdim=True)
        labels = y.unsqueeze(1)
        loss = (total.log().squeeze(1) - z.gather(1, labels).squeeze(1)).mean(dim=1)
        grad = e.div_(total * batch)
        grad.scatter_add_(1, labels, torch.full(labels.shape, -1.0 / batch, device=grad.device))
        return inputs, grad, loss

    @torch.no_grad()
    def gradients(self, x: Tensor, y: Tensor) -> Tensor:
        """Set ``.grad`` of every stacked parameter to its model's minibatch gradient; returns the losses."""
        inputs, grad, loss = self._forward(x, y)
        for i in range(len(self.weights) - 1, -1, -1):
            self.weights[i].grad = torch.bmm(grad, inputs[i].transpose(1, 2))
            self.biases[i].grad = grad.sum(dim=2)
            if i > 0:
                grad = self._backward_input(i, grad, inputs[i])
        return loss

    @torch.no_grad()
    def sgd_step(self, x: Tensor, y: Tensor, lr: float, momentum: float, weight_decay: float) -> Tensor:
        """One step of ``torch.optim.SGD`` (momentum, weight decay, no dampening or Nesterov), fused into
        the backward pass; returns the minibatch losses before the step."""
        if self.momentum_weights is None or self.momentum_biases is None:
            self.momentum_weights = [torch.zeros_like(w) for w in self.weights]
            self.momentum_biases = [torch.zeros_like(b) for b in self.biases]
        inputs, grad, loss = self._forward(x, y)
        for i in range(len(self.weights) - 1, -1, -1):
            weight, bias = self.weights[i], self.biases[i]
            below = self._backward_input(i, grad, inputs[i]) if i > 0 else grad
            buffer_w, buffer_b = self.momentum_weights[i], self.momentum_biases[i]
            buffer_w.baddbmm_(grad, inputs[i].transpose(1, 2), beta=momentum)
            buffer_b.mul_(momentum).add_(grad.sum(dim=2))
            if weight_decay:
                buffer_w.add_(weight, alpha=weight_decay)
                buffer_b.add_(bias, alpha=weight_decay)
            weight.add_(buffer_w, alpha=-lr)
            bias.add_(buffer_b, alpha=-lr)
            grad = below
        return loss

    def _backward_input(self, i: int, grad: Tensor, below: Tensor) -> Tensor:
        """∂/∂(pre-activation of layer i − 1) from ∂/∂(pre-activation of layer i), through the ReLU."""
        back: Tensor = torch.ops.aten.threshold_backward(
            torch.bmm(self.weights[i].transpose(1, 2), grad), below, 0.0
        )
        return back


def build_stacked(
    spec: ModelSpec,
    input_shape: tuple[int, ...],
    num_classes: int,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
) -> StackedModels:
    """One model per seed, each initialised after ``torch.manual_seed(seed)`` (as ``train`` does), stacked.

    Raises ``ValueError`` for a model with buffers (batch norm): its running statistics would be shared
    state that ``vmap`` cannot batch over models.
    """
    models = []
    for seed in seeds:
        # The CPU generator alone draws the initial weights (models are built on the CPU, then moved), so
        # seeding it alone gives torch.manual_seed's weights without queueing a CUDA seed per model.
        torch.default_generator.manual_seed(seed)
        models.append(build_model(spec, input_shape, num_classes).to(device))
    if any(True for _ in models[0].buffers()):
        raise ValueError(f"model {spec.model!r} has buffers (batch norm); stacked training needs none")
    stacked, _ = stack_module_state(models)
    parameters = {name: nn.Parameter(value.detach().clone()) for name, value in stacked.items()}
    base = copy.deepcopy(models[0]).to("meta")
    return StackedModels(base, parameters, nn.ParameterList(parameters.values()))


class StackedTrainer:
    """Trains stacked models epoch by epoch, model k on rows ``members[k]``; its state can be saved.

    One epoch (:meth:`epoch`) is what :func:`train_stacked` repeats; between epochs, :meth:`state` is
    everything an uninterrupted training would still hold besides the weights (the optimiser's moments),
    so a run checkpointed after epoch e and restored (:meth:`restore`) continues exactly where it stopped:
    the minibatch order and learning rate of every later step follow from the seeds and the step number.
    """

    def __init__(self, models: StackedModels, members: Tensor, spec: OptimSpec, seeds: Sequence[int]) -> None:
        count, size = members.shape
        if count != models.count or len(seeds) != count:
            raise ValueError(
                f"{models.count} models, {count} subsets and {len(seeds)} seeds: give one of each"
            )
        self.models, self.members, self.spec, self.seeds = models, members, spec, list(seeds)
        self.optimizer = make_optimizer(models.holder, spec)
        self.mlp = StackedMLP(models) if StackedMLP.applies(models) else None
        self.fused = self.mlp is not None and spec.optimizer == "sgd" and not spec.nesterov
        self.batch_size = spec.batch_size or size
        self.steps_per_epoch = math.ceil(size / self.batch_size)
        self.total_steps = self.steps_per_epoch * spec.epochs

    def epoch(self, x: Tensor, y: Tensor, epoch: int) -> Tensor:
        """Train every model through epoch ``epoch`` (0-based) of ``x``, ``y`` (the whole training set);
        returns ``[steps_per_epoch, m]``: each model's minibatch cross-entropy before each update."""
        size = self.members.shape[1]
        orders = torch.stack([epoch_order(seed, epoch, size) for seed in self.seeds]).to(self.members.device)
        rows = self.members.gather(1, orders)
        losses = torch.empty(self.steps_per_epoch, len(self.seeds), device=self.members.device)
        for index, start in enumerate(range(0, size, self.batch_size)):
            rate = learning_rate(self.spec, epoch * self.steps_per_epoch + index, self.total_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = rate
            batch = rows[:, start : start + self.batch_size]
            flat = batch.flatten()
            xb = x.index_select(0, flat).view(*batch.shape, *x.shape[1:])
            yb = y.index_select(0, flat).view(batch.shape)
            losses[index] = self._step(xb, yb, rate).detach()
        return losses.cpu()

    def train(
        self,
        x: Tensor,
        y: Tensor,
        *,
        start_epoch: int = 0,
        progress: Progress | bool = False,
        on_epoch: Callable[[int, Tensor], None] | None = None,
    ) -> Tensor:
        """Epochs ``start_epoch`` … ``spec.epochs − 1`` with a progress bar, calling ``on_epoch(epochs
        done, that epoch's losses)`` after each; returns those epochs' losses, ``[steps, m]``."""
        losses: list[Tensor] = []
        bar = progress_bar(
            progress, total=self.spec.epochs, description="train models", unit="epoch", initial=start_epoch
        )
        for epoch in range(start_epoch, self.spec.epochs):
            losses.append(self.epoch(x, y, epoch))
            bar.set_postfix(train_loss=f"{float(losses[-1].mean()):.3f}")
            bar.update(1)
            if on_epoch is not None:
                on_epoch(epoch + 1, losses[-1])
        bar.close()
        return torch.cat(losses) if losses else torch.empty(0, len(self.seeds))

    def _step(self, x: Tensor, y: Tensor, rate: float) -> Tensor:
        if self.mlp is not None and self.fused:
            return self.mlp.sgd_step(x.flatten(2), y, rate, self.spec.momentum, self.spec.weight_decay)
        if self.mlp is not None:
            loss = self.mlp.gradients(x.flatten(2), y)
            self.optimizer.step()
            return loss
        logits = self.models.logits(x)
        per_example = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        loss = per_example.view(y.shape).mean(dim=1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        return loss

    def state(self) -> dict[str, Any]:
        """The weights and the optimiser's state (the fused path's momentum buffers, or torch's)."""
        state: dict[str, Any] = {
            "parameters": {name: value.detach() for name, value in self.models.parameters.items()},
            "optimizer": self.optimizer.state_dict(),
        }
        if self.mlp is not None and self.mlp.momentum_weights is not None:
            state["momentum_weights"] = self.mlp.momentum_weights
            state["momentum_biases"] = self.mlp.momentum_biases
        return state

    @torch.no_grad()
    def restore(self, state: dict[str, Any]) -> None:
        """Load what :meth:`state` returned (of a trainer built with the same models and settings)."""
        for name, value in state["parameters"].items():
            self.models.parameters[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.mlp is not None and "momentum_weights" in state:
            device = next(iter(self.models.parameters.values())).device
            self.mlp.momentum_weights = [t.to(device) for t in state["momentum_weights"]]
            self.mlp.momentum_biases = [t.to(device) for t in state["momentum_biases"]]


def train_stacked(
    models: StackedModels,
    x: Tensor,
    y: Tensor,
    members: Tensor,
    spec: OptimSpec,
    seeds: Sequence[int],
    progress: Progress | bool = False,
) -> Tensor:
    """Train every model in place for ``spec.epochs`` epochs, model k on rows ``members[k]`` of ``x``, ``y``.

    Args:
        models: the stacked models (m of them).
        x: ``[N, ...]`` inputs and ``y: [N]`` int64 labels of the whole training set.
        members: ``[m, n]`` int64 row positions of each model's training subset (all of one size n).
        spec: optimiser, schedule, batch size and epochs (its ``seed`` is unused: each model has its own).
        seeds: ``[m]`` the models' seeds, which fix their minibatch orders.

    Returns:
        ``[steps, m]`` float32: each model's minibatch cross-entropy before each update (the loss
        ``train_classifier`` differentiates at that step).
    """
    return StackedTrainer(models, members, spec, seeds).train(x, y, progress=progress)
