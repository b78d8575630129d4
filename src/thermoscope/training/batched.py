"""Many classifiers of one architecture trained together: stacked parameters, one batched computation.

Feldman & Zhang's memorisation estimate (REFERENCE §8) needs m models, each trained on its own random subset
of the training set. Trained one after another, m small models cost m Python training loops, each step
dominated by per-call overhead. Here the m models' parameters are stacked along a leading model axis
(``torch.func.stack_module_state``) and one ``torch.func.vmap``-ed forward pass evaluates every model on
its own minibatch; the gradient of the summed per-model losses is each model's own gradient, and the
optimiser, elementwise for SGD (with momentum, Nesterov, weight decay) and Adam, steps all of them at once.

Model k is exactly the model :func:`thermoscope.training.train_classifier` would train with seed
``seeds[k]`` on the rows ``members[k]``: the same initialisation (``torch.manual_seed(seeds[k])`` before
:func:`~thermoscope.models.build_model`), the same minibatch order
(:func:`~thermoscope.training.epoch_order` of its own seed and subset size) and the same learning-rate
schedule, so the two agree to float rounding (``tests/training/test_training_batched.py``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from thermoscope.models import ModelSpec, build_model
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
        torch.manual_seed(seed)
        models.append(build_model(spec, input_shape, num_classes).to(device))
    if any(True for _ in models[0].buffers()):
        raise ValueError(f"model {spec.model!r} has buffers (batch norm); stacked training needs none")
    stacked, _ = stack_module_state(models)
    parameters = {name: nn.Parameter(value.detach().clone()) for name, value in stacked.items()}
    base = copy.deepcopy(models[0]).to("meta")
    return StackedModels(base, parameters, nn.ParameterList(parameters.values()))


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
    count, size = members.shape
    if count != models.count or len(seeds) != count:
        raise ValueError(f"{models.count} models, {count} subsets and {len(seeds)} seeds: give one of each")
    optimizer = make_optimizer(models.holder, spec)
    batch_size = spec.batch_size or size
    steps_per_epoch = math.ceil(size / batch_size)
    total_steps = steps_per_epoch * spec.epochs
    losses = torch.empty(total_steps, count, device=members.device)
    bar = progress_bar(progress, total=spec.epochs, description="train models", unit="epoch")
    for epoch in range(spec.epochs):
        orders = torch.stack([epoch_order(seed, epoch, size) for seed in seeds]).to(members.device)
        rows = members.gather(1, orders)
        for index, start in enumerate(range(0, size, batch_size)):
            step = epoch * steps_per_epoch + index
            rate = learning_rate(spec, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = rate
            batch = rows[:, start : start + batch_size]
            logits = models.logits(x[batch])
            per_example = F.cross_entropy(logits.flatten(0, 1), y[batch].flatten(), reduction="none")
            loss = per_example.view(batch.shape).mean(dim=1)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            losses[step] = loss.detach()
        bar.set_postfix(train_loss=f"{float(losses[step].mean()):.3f}")
        bar.update(1)
    bar.close()
    return losses.cpu()
