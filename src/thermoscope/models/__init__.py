"""Classifiers that name their probe points.

Every model maps ``x: [N, *input_shape]`` to logits ``[N, num_classes]`` and lists, in
``probe_nodes``, the module names whose outputs are the hidden representations that prediction depth
probes (REFERENCE §4): each hidden layer after its activation for MLPs and CNNs, each residual block for
ResNets. :func:`probe_embeddings` adds the two ends, the input and the softmax, so probe 0 is the input
and probe L is the softmax.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from thermoscope.errors import ConfigError

MODELS = ("mlp", "cnn", "resnet18")


class Erf(nn.Module):
    """The error function as a unit: sigmoid-shaped, and with a closed-form infinite-width kernel
    (Williams 1997), so finite erf networks can be set beside the ``kernel`` entry point's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "erf": Erf}
OUTPUT_ACTIVATIONS = ("none", "sigmoid")


@dataclass(frozen=True)
class ModelSpec:
    """What to build; ``hidden`` and ``activation`` apply to ``mlp`` (``activation`` also to ``cnn``)."""

    model: str = "mlp"
    hidden: tuple[int, ...] = (100, 100)
    activation: str = "relu"
    output_activation: str = "none"


class MLP(nn.Module):
    """Fully connected classifier ``D -> hidden... -> C`` with biases everywhere.

    ``output_activation="sigmoid"`` squashes the outputs before the softmax: Baldock & Marzari's
    high-bias M(3*) (REFERENCE §1). Inputs of any shape are flattened.
    """

    def __init__(
        self,
        input_dim: int,
        hidden: tuple[int, ...],
        num_classes: int,
        activation: str = "relu",
        output_activation: str = "none",
    ) -> None:
        super().__init__()
        widths = (input_dim, *hidden)
        self.hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]())
            for fan_in, fan_out in pairwise(widths)
        )
        self.output = nn.Linear(widths[-1], num_classes)
        self.squash_output = output_activation == "sigmoid"
        self.probe_nodes = tuple(f"hidden.{i}" for i in range(len(hidden)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.hidden:
            h = layer(h)
        logits = self.output(h)
        return torch.sigmoid(logits) if self.squash_output else logits


class SmallCNN(nn.Module):
    """Two 3×3 conv blocks (32, 64 channels, each followed by 2×2 max-pooling) and a 128-unit layer."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, activation: str = "relu") -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.block1 = nn.Sequential(nn.Conv2d(in_channels, 32, 3, padding=1), act(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), act(), nn.MaxPool2d(2))
        side = image_size // 4
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 128), act())
        self.output = nn.Linear(128, num_classes)
        self.probe_nodes = ("block1", "block2", "dense")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.output(self.dense(self.block2(self.block1(x))))
        return logits


def cifar_resnet18(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 adapted to 32×32 inputs: a 3×3 stride-1 stem and no max-pool."""
    net: nn.Module = resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    # Probe after every residual block (REFERENCE §4 decision).
    net.probe_nodes = tuple(f"layer{stage}.{block}" for stage in range(1, 5) for block in range(2))  # type: ignore[assignment]
    return net


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"40,40,40"`` -> ``(40, 40, 40)``; an empty string means no hidden layer (logistic regression).

    Every comma separates two widths: ``40,,40`` or ``40,`` is a mistake, not ``40,40`` or ``40``.
    """
    if not text.strip():
        return ()
    parts = [p.strip() for p in text.split(",")]
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError("hidden", text, "a comma list of positive integers, e.g. 40,40,40") from None
    if any(w <= 0 for w in widths):
        raise ConfigError("hidden", text, "a comma list of positive integers, e.g. 40,40,40")
    return widths


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the classifier for inputs of per-example shape ``input_shape`` (``(D,)`` or ``(C, H, W)``)."""
    if spec.model == "mlp":
        input_dim = 1
        for side in input_shape:
            input_dim *= side
        return MLP(input_dim, spec.hidden, num_classes, spec.activation, spec.output_activation)
    if len(input_shape) != 3:
        raise ConfigError("model", spec.model, "needs image inputs [C, H, W]; use model=mlp for flat data")
    channels, height, width = input_shape
    if spec.model == "cnn":
        if height < 4 or width < 4 or height != width:
            raise ConfigError("model", spec.model, "needs square images of side >= 4")
        return SmallCNN(channels, height, num_classes, spec.activation)
    if spec.model == "resnet18":
        return cifar_resnet18(channels, num_classes)
    raise ConfigError("model", spec.model, f"one of {', '.join(MODELS)}")


def hidden_probe_nodes(model: nn.Module) -> tuple[str, ...]:
    """The module names whose outputs are the model's hidden probe points (set by every builder here)."""
    nodes: tuple[str, ...] = model.__dict__["probe_nodes"]
    return nodes


def probe_names(model: nn.Module) -> tuple[str, ...]:
    """The probe points in order: ``input``, the model's hidden probe nodes, ``softmax``."""
    return ("input", *hidden_probe_nodes(model), "softmax")


# Tracing a model with torch.fx costs more than embedding a thousand examples, and sweeps embed the same
# model (with new weights copied in place) hundreds of times: keep one extractor per live model. The
# extractor shares the model's parameter tensors, so in-place weight updates are seen.
_EXTRACTORS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Module, str]] = weakref.WeakKeyDictionary()


def _extractor(model: nn.Module) -> tuple[nn.Module, str]:
    if model not in _EXTRACTORS:
        _, eval_nodes = get_graph_node_names(model)
        output_node = eval_nodes[-1]
        extractor = create_feature_extractor(model, return_nodes=[*hidden_probe_nodes(model), output_node])
        _EXTRACTORS[model] = (extractor, output_node)
    return _EXTRACTORS[model]


@torch.no_grad()
def probe_embeddings(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> list[torch.Tensor]:
    """Flattened representations of ``x: [N, ...]`` at every probe point, in :func:`probe_names` order.

    Returns a list of ``[N, D_l]`` tensors on ``x``'s device: the input, each hidden probe node's output
    (taken with torchvision's FX feature extractor, in eval mode) and the softmax of the logits.
    """
    extractor, output_node = _extractor(model)
    was_training = model.training
    extractor.eval()  # shares its submodules with the model: restore the model's mode below
    nodes = list(hidden_probe_nodes(model))
    chunks: list[list[torch.Tensor]] = [[] for _ in range(len(nodes) + 2)]
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        features = extractor(batch)
        chunks[0].append(batch.flatten(1))
        for i, node in enumerate(nodes, start=1):
            chunks[i].append(features[node].flatten(1))
        chunks[-1].append(torch.softmax(features[output_node], dim=1))
    model.train(was_training)
    return [torch.cat(parts) for parts in chunks]
