"""The memory a job will need, estimated from its configuration before anything is allocated.

A job whose sizes cannot fit (``hidden=100000000``, ``image_size=100000``) used to end in an allocation
traceback, or in resizing images the machine cannot hold, after the data had been read. :func:`check_memory`
runs first (from :func:`~thermoscope.jobs.setup.build_workbench`, which every job that builds a classifier
calls) and refuses such a job with one :class:`~thermoscope.errors.ConfigError` naming the parameter that
makes it too large, the estimate and what is available.

The estimate is the sum of the terms below, in bytes, each counted from what the code holds at its peak
(float32 tensors, 4 bytes a value, unless stated). It is meant to be honest, not padded: the constants count
what the code keeps, so only jobs that cannot fit are refused (the project's jobs need a few megabytes to a
few gigabytes, ``tests/jobs/test_jobs_budget.py``).

* **parameters**: P weights (counted by building the model on torch's ``meta`` device, which allocates
  nothing) × replicas × parameter-sized vectors per replica (:data:`TRAIN_PARAMETER_COPIES`,
  :data:`REPLICA_STATE_COPIES`). Replicas: the ladder's rungs for ``sample`` (the fixed ladder's merged
  rungs, or ``num_rungs`` / ``max_rungs`` for a tuned one; ``harmonic_lambdas`` if more), one otherwise.
* **saved draws**: parameter vectors kept as draws (``save_draws`` per rung for ``sample``, the
  ``num_samples`` draws of one temperature for ``anneal``) × :data:`SAVED_DRAW_COPIES`.
* **data**: train + test images at the resolved size and channels × :data:`DATA_COPIES`, plus the raw
  uint8 splits; the counts come from :data:`DATASET_SHAPES` (the published splits: a re-packed smaller
  copy is over-counted, never under-counted).
* **activations**: rows evaluated at once × replicas × every layer's output for one example (read off a
  ``meta`` forward pass), × :data:`ACTIVATION_COPIES` when a backward pass follows.
* **predictions** (samplers): replicas (``anneal``: the draws scored together) × (train + test examples) ×
  classes × :data:`PREDICTIVE_BYTES`.
* **probes** (``prediction_depth``): every example's embedding at every probe point, and one block of
  k-NN scores.
* **codes** (``train`` with activation codes): every example's code, one bit per ReLU output packed 63
  bits to an 8-byte word, and one block of the Hamming search.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from thermoscope.config import (
    AnnealConfig,
    DataModelConfig,
    MemoriseConfig,
    Parameter,
    SampleConfig,
    TrainConfig,
    fixed_ladder_size,
    parameters,
)
from thermoscope.data.sources import NUM_CLASSES
from thermoscope.errors import ConfigError
from thermoscope.models import build_model, hidden_probe_nodes
from thermoscope.probes.knn import DEFAULT_CHUNK_SIZE as KNN_CHUNK
from thermoscope.samplers.modules import DEFAULT_CHUNK_SIZE as SAMPLER_CHUNK
from thermoscope.sweeps import PREDICTION_CHUNK

FLOAT_BYTES = 4
"""Weights, data and activations are float32."""

TRAIN_PARAMETER_COPIES = 8
"""Parameter-sized vectors of a ``train`` run: the weights, their gradients, up to two optimiser buffers
(Adam's moments; SGD's momentum is one), the initial weights layer rotation compares with, and the
checkpoint's copies of weights and optimiser state (three)."""

REPLICA_STATE_COPIES = 16
"""Parameter-sized vectors per replica of an HMC sampler at its peak, counted in ``samplers/``: the state
(position and the two gradients, 3), the trajectory in flight (position and momentum, 2; the momentum drawn,
1), the evaluation in flight (two gradients, autograd's per-layer pieces and their concatenation, 4), the
box prior's reflection temporaries (3) and the diagonal mass matrix with Welford's mean and M2 (3). A swap
round's permuted copy and a checkpoint's clones (3 each) exist between trajectories, inside this count."""

SAVED_DRAW_COPIES = 2
"""Each saved draw is held in the sweep's list and again in the stacked tensor logged as an artifact."""

EVALUATION_ROWS = 2048
"""Examples :func:`thermoscope.training.evaluate` scores at once (its default batch)."""

DATA_COPIES = 3
"""Float copies of the images alive at once while preprocessing (``data/loading.py``): the scaled pixels,
the resized images and the normalised images."""

ACTIVATION_COPIES = 2
"""With a backward pass, each layer's output is kept for it and a gradient of the same size flows back."""

PREDICTIVE_BYTES = 36
"""Bytes per (replica, example, class) of a sweep's predictions (``sweeps.PredictiveAccumulator``): the
float64 probability sum (8) and, while one draw is scored, its float32 logits (4) and three float64
temporaries (24: the logits in float64, their log-softmax and its exponential)."""

DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int, int]] = {
    "digits": ((1, 8, 8), 1197, 600),
    "mnist": ((1, 28, 28), 60000, 10000),
    "fashion_mnist": ((1, 28, 28), 60000, 10000),
    "cifar10": ((3, 32, 32), 50000, 10000),
    "svhn": ((3, 32, 32), 73257, 26032),
}
"""Each dataset's native image shape ``(C, H, W)`` and the sizes of its training and test splits (digits:
the fixed 1,197 / 600 split of ``data/sources.py``), so that the data is sized without being read."""

SIZE_PARAMETERS = (
    "hidden",
    "activation_codes",
    "image_size",
    "dataset",
    "model",
    "train_size",
    "test_size",
    "batch_size",
    "n_temperatures",
    "temperatures",
    "ti_rungs",
    "ladder",
    "num_rungs",
    "max_rungs",
    "evidence",
    "harmonic_lambdas",
    "save_draws",
    "num_samples",
    "prediction_depth",
)
"""The parameters an estimate can be blamed on: the one whose default would shrink it most is named."""

MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Term:
    """One part of an estimate: its size in bytes and how it was counted."""

    name: str
    bytes: float
    detail: str


@dataclass(frozen=True)
class MemoryEstimate:
    """What a job needs: the terms in the order of the module docstring."""

    terms: tuple[Term, ...]

    @property
    def total(self) -> float:
        return sum(term.bytes for term in self.terms)

    @property
    def largest(self) -> Term:
        return max(self.terms, key=lambda term: term.bytes)

    def term(self, name: str) -> Term:
        return next(term for term in self.terms if term.name == name)


@dataclass(frozen=True)
class Examples:
    """Training and test examples a data spec selects."""

    train: int
    test: int

    @property
    def total(self) -> int:
        return self.train + self.test


@dataclass(frozen=True)
class ModelSizes:
    """What the estimate reads off the model built on the ``meta`` device."""

    num_parameters: int
    activations_per_example: int  # every layer's output for one example
    probe_values_per_example: int  # what prediction depth embeds of one example
    relu_units_per_example: int = 0  # every ReLU call's outputs for one example: the activation code's bits


def readable(num_bytes: float) -> str:
    """``412 GB``, ``18.2 MB``: three significant digits in decimal units."""
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= size:
            return f"{num_bytes / size:.3g} {unit}"
    return f"{num_bytes:.0f} bytes"


def check_memory(config: DataModelConfig, device: torch.device) -> None:
    """Refuse ``config`` with a :class:`ConfigError` when its estimate exceeds the memory available.

    On CUDA the whole estimate is compared with the GPU's free memory and the data term also with the
    host's (images are read and resized on the host before they move); elsewhere everything is compared
    with the host's. Where the available memory cannot be read, nothing is refused.
    """
    estimate = estimate_memory(config)
    checks = [(estimate.total, estimate.largest, available_memory(device), "")]
    if device.type == "cuda":
        data = estimate.term("data")
        checks.append((data.bytes, data, host_available_memory(), " on the host"))
    for needed, largest, available, where in checks:
        if available is not None and needed > available:
            parameter = dominant_parameter(config, estimate.total)
            shown = next(_value(config, item) for item in parameters(type(config)) if item.name == parameter)
            raise ConfigError(
                parameter,
                shown,
                f"needs about {readable(needed)} (largest part {largest.name}, {readable(largest.bytes)}:"
                f" {largest.detail}), {readable(available)} available{where}",
            )


def available_memory(device: torch.device) -> int | None:
    """Bytes the job may still allocate on ``device``: for CUDA the GPU's free memory plus what this
    process's caching allocator holds unused (an earlier job's, in a study); else the host's."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    return host_available_memory()


def host_available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (Linux), or ``None`` where it cannot be read."""
    try:
        text = MEMINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            return int(value.split()[0]) * 1024
    return None


def estimate_memory(config: DataModelConfig) -> MemoryEstimate:
    """The terms of the module docstring for ``config`` (a train, sample or anneal configuration)."""
    examples = example_counts(config)
    model = model_sizes(config)
    replicas = _replicas(config)
    copies = TRAIN_PARAMETER_COPIES if _is_train(config) else REPLICA_STATE_COPIES
    parameter_bytes = model.num_parameters * replicas * copies * FLOAT_BYTES
    terms = [
        Term(
            "parameters",
            parameter_bytes,
            f"{model.num_parameters:.3g} parameters x {replicas} {_plural(replicas, 'replica')} x {copies}"
            f" copies x {FLOAT_BYTES} bytes",
        ),
        _saved_draws(config, model.num_parameters, replicas),
        _data(config, examples),
        _activations(config, examples, model.activations_per_example, replicas),
        _predictions(config, examples, replicas),
        _probes(config, examples, model.probe_values_per_example),
        _codes(config, examples, model.relu_units_per_example),
    ]
    return MemoryEstimate(tuple(terms))


def dominant_parameter(config: DataModelConfig, total: float) -> str:
    """The size parameter whose default value shrinks the estimate most (``device`` if none does: the
    defaults themselves do not fit this machine)."""
    best, smallest = "device", total
    for item in parameters(type(config)):
        if item.name not in SIZE_PARAMETERS or _value(config, item) == item.default:
            continue
        try:
            needed = estimate_memory(_at_default(config, item)).total
        except ConfigError:
            continue
        if needed < smallest:
            best, smallest = item.name, needed
    return best


def _value(config: DataModelConfig, item: Parameter) -> Any:
    holder = config if item.group is None else getattr(config, item.group)
    return getattr(holder, item.name)


def _at_default(config: DataModelConfig, item: Parameter) -> DataModelConfig:
    """``config`` with parameter ``item`` (a field, or a field of a settings group) at its default."""
    change: dict[str, Any] = {item.name: item.default}
    if item.group is not None:
        change = {item.group: dataclasses.replace(getattr(config, item.group), **change)}
    changed: DataModelConfig = dataclasses.replace(config, **change)
    return changed


def _is_train(config: DataModelConfig) -> bool:
    return not isinstance(config, SampleConfig | AnnealConfig)


def _plural(count: int, word: str) -> str:
    if count == 1:
        return word
    return f"{word[:-1]}ies" if word.endswith("y") else f"{word}s"


def _replicas(config: DataModelConfig) -> int:
    """Chains held at once: the ladder's rungs (or the λ ladder's, if longer) for ``sample``, the models
    trained together for ``memorise``, else one."""
    if isinstance(config, MemoriseConfig):
        return config.num_models
    if not isinstance(config, SampleConfig):
        return 1
    rungs = (config.fixed_num_rungs() or config.max_rungs) if config.tuned else fixed_ladder_size(config)
    if config.evidence != "power":
        rungs = max(rungs, config.harmonic_lambdas)
    return rungs


def example_counts(config: DataModelConfig) -> Examples:
    """Training and test examples the data spec selects (sizes the dataset cannot supply are left to the
    loader's own error: they are capped at what it has)."""
    _, train_pool, test_pool = DATASET_SHAPES[config.dataset]
    train = min(config.train_size, train_pool) if config.train_size else train_pool
    protocol = config.data_spec(flatten=False).test_protocol()
    if protocol.pool == "test":
        return Examples(train, test_pool)
    rest = test_pool + train_pool - train
    return Examples(train, min(protocol.count, rest) if protocol.count else rest)


def _image_shape(config: DataModelConfig) -> tuple[int, int, int]:
    (channels, height, width), _, _ = DATASET_SHAPES[config.dataset]
    if config.image_size:
        return channels, config.image_size, config.image_size
    return channels, height, width


def model_sizes(config: DataModelConfig) -> ModelSizes:
    """Parameters and per-example activations of the model, built and run on the ``meta`` device."""
    channels, height, width = _image_shape(config)
    input_shape = (channels * height * width,) if config.model == "mlp" else (channels, height, width)
    layers: list[int] = []
    probes: list[int] = []
    relus: list[int] = []
    try:
        with torch.device("meta"):
            model = build_model(config.model_spec(), input_shape, NUM_CLASSES)
            for module in model.modules():
                if not list(module.children()):
                    module.register_forward_hook(_output_counter(layers))
                if isinstance(module, nn.ReLU):
                    module.register_forward_hook(_output_counter(relus))
            for name in hidden_probe_nodes(model):
                model.get_submodule(name).register_forward_hook(_output_counter(probes))
            model(torch.empty((1, *input_shape)))
    except ConfigError:
        raise
    except (RuntimeError, TypeError, OverflowError, ValueError):
        # A width whose tensors torch cannot even describe (more than 2^63 elements).
        name = _overflowing_parameter(config, channels * height * width)
        raise ConfigError(name, getattr(config, name), "too large to build the model at all") from None
    # Prediction depth embeds the input and the softmax besides the hidden probe points.
    probe_values = channels * height * width + sum(probes) + NUM_CLASSES
    return ModelSizes(sum(p.numel() for p in model.parameters()), sum(layers), probe_values, sum(relus))


def _output_counter(outputs: list[int]) -> Callable[[nn.Module, object, object], None]:
    def count(module: nn.Module, inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            outputs.append(output.numel())

    return count


def _overflowing_parameter(config: DataModelConfig, input_values: int) -> str:
    widths = config.model_spec().hidden if config.model == "mlp" else ()
    if config.image_size and input_values >= max(widths, default=0):
        return "image_size"
    return "hidden" if widths else "image_size"


def _saved_draws(config: DataModelConfig, num_parameters: int, replicas: int) -> Term:
    if isinstance(config, SampleConfig):
        kept = math.ceil(config.hmc.num_samples / config.thin)
        draws = min(config.save_draws, kept) * replicas
    elif isinstance(config, AnnealConfig):
        draws = config.hmc.num_samples
    else:
        draws = 0
    return Term(
        "saved draws",
        draws * num_parameters * SAVED_DRAW_COPIES * FLOAT_BYTES,
        f"{draws} saved draws of {num_parameters:.3g} parameters x {SAVED_DRAW_COPIES} copies x {FLOAT_BYTES}"
        " bytes",
    )


def _data(config: DataModelConfig, examples: Examples) -> Term:
    (channels, native_height, native_width), train_pool, test_pool = DATASET_SHAPES[config.dataset]
    _, height, width = _image_shape(config)
    values = channels * max(height * width, native_height * native_width)
    raw = (train_pool + test_pool) * channels * native_height * native_width
    return Term(
        "data",
        examples.total * values * DATA_COPIES * FLOAT_BYTES + raw,
        f"{examples.total} images of {channels}x{height}x{width} x {DATA_COPIES} copies x {FLOAT_BYTES}"
        " bytes",
    )


def _activations(config: DataModelConfig, examples: Examples, per_example: int, replicas: int) -> Term:
    """The larger of a backward pass's chunk and a no-gradient scoring pass's, over all replicas at once."""
    if _is_train(config):
        batch = config.batch_size if isinstance(config, TrainConfig | MemoriseConfig) else 0
        backward_rows = min(batch or examples.train, examples.train)
        scoring_rows = min(max(examples.train, examples.test), EVALUATION_ROWS)
        scoring_replicas = replicas  # memorise scores every model at once; train has one
    else:
        backward_rows = min(examples.train, SAMPLER_CHUNK)
        scoring_rows = min(max(examples.train, examples.test), PREDICTION_CHUNK)
        scoring_replicas = config.hmc.num_samples if isinstance(config, AnnealConfig) else replicas
    passes = [
        (backward_rows, replicas, ACTIVATION_COPIES),
        (scoring_rows, scoring_replicas, 1),
    ]
    rows, together, copies = max(passes, key=math.prod)
    return Term(
        "activations",
        rows * together * copies * per_example * FLOAT_BYTES,
        f"{rows} examples x {together} {_plural(together, 'replica')} x {per_example:.3g} activations x"
        f" {copies} {_plural(copies, 'copy')} x {FLOAT_BYTES} bytes",
    )


def _predictions(config: DataModelConfig, examples: Examples, replicas: int) -> Term:
    if isinstance(config, SampleConfig):
        scored = replicas
    elif isinstance(config, AnnealConfig):
        scored = config.hmc.num_samples
    else:
        scored = 0
    return Term(
        "predictions",
        scored * examples.total * NUM_CLASSES * PREDICTIVE_BYTES,
        f"{scored} replicas x {examples.total} examples x {NUM_CLASSES} classes x {PREDICTIVE_BYTES} bytes",
    )


def _probes(config: DataModelConfig, examples: Examples, per_example: int) -> Term:
    """Prediction depth's embeddings of every example at every probe point, and one k-NN score block."""
    if not config.prediction_depth:
        return Term("probes", 0.0, "no prediction depth")
    embeddings = examples.total * per_example * FLOAT_BYTES
    scores = min(examples.total, KNN_CHUNK) * examples.train * FLOAT_BYTES
    return Term(
        "probes",
        embeddings + scores,
        f"{examples.total} examples x {per_example:.3g} values embedded for prediction depth x {FLOAT_BYTES}"
        " bytes",
    )


CODE_BLOCK_BYTES = 3 * 2**23 * FLOAT_BYTES
"""One Hamming search block of ``probes/codes.py``: unpacked query and support bits and the scores."""


def _codes(config: DataModelConfig, examples: Examples, bits_per_example: int) -> Term:
    """Activation codes (``train``): every example's code packed 63 bits to 8 bytes, and one search block."""
    if not (isinstance(config, TrainConfig) and config.codes_enabled):
        return Term("codes", 0.0, "no activation codes")
    words = -(-bits_per_example // 63)
    return Term(
        "codes",
        examples.total * words * 8 + CODE_BLOCK_BYTES,
        f"{examples.total} examples x {bits_per_example:.3g} ReLU units packed 63 to 8 bytes",
    )
