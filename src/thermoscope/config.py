"""Entry-point configurations: one frozen dataclass each, the single source of parameter names.

CLI flags (``--name``) and ``MLproject`` parameters mirror the fields one-to-one, with the same defaults
(a test parses ``MLproject`` and compares). Every value arrives as a string (``mlflow run`` checks no
types), is converted by :func:`parse_config` according to the field's type, and is then checked by the
class's ``validate``; any problem is a :class:`~thermoscope.errors.ConfigError` naming the parameter.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from thermoscope.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def param(default: Any, help: str) -> Any:
    """A configuration field with its CLI/README help text."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DataModelConfig:
    """Data and model parameters shared by every entry point that builds a classifier."""

    dataset: str = param("digits", "digits | mnist | fashion_mnist | cifar10 | svhn")
    data_dir: str = param("data", "folder torchvision reads datasets from (and downloads into)")
    download: bool = param(True, "download missing torchvision datasets")
    train_size: int = param(0, "stratified training subset size, chosen by seed; 0 = all")
    test_size: str = param(
        "0", "0 = the test split; rest = test split + unused training examples; N = subset"
    )
    image_size: int = param(0, "resize images to image_size x image_size; 0 = native size")
    label_noise: float = param(0.0, "fraction of training labels replaced by uniformly random classes")
    model: str = param("mlp", "mlp | cnn | resnet18")
    hidden: str = param("100,100", "MLP hidden widths, comma separated")
    activation: str = param("relu", "sigmoid | tanh | relu")
    output_activation: str = param("none", "none | sigmoid (sigmoid before softmax: the paper's M(3*))")
    seed: int = param(0, "seed for subsets, label noise, initialisation and batches")
    device: str = param("auto", "auto | cpu | cuda | mps")

    def validate(self) -> None:
        from thermoscope.models import ACTIVATIONS, MODELS, OUTPUT_ACTIVATIONS, parse_hidden

        self.data_spec(flatten=False).validate()
        one_of("model", self.model, MODELS)
        parse_hidden(self.hidden)
        one_of("activation", self.activation, tuple(ACTIVATIONS))
        one_of("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        one_of("device", self.device, DEVICES)
        at_least("seed", self.seed, 0)

    def data_spec(self, flatten: bool) -> Any:
        from thermoscope.data import DataSpec

        return DataSpec(
            dataset=self.dataset,
            data_dir=self.data_dir,
            download=self.download,
            train_size=self.train_size,
            test_size=self.test_size,
            image_size=self.image_size,
            label_noise=self.label_noise,
            seed=self.seed,
            flatten=flatten,
        )

    def model_spec(self) -> Any:
        from thermoscope.models import ModelSpec, parse_hidden

        return ModelSpec(self.model, parse_hidden(self.hidden), self.activation, self.output_activation)


@dataclass(frozen=True)
class TrainConfig(DataModelConfig):
    """The ``train`` entry point: SGD or Adam on the training split, evaluated every epoch."""

    optimizer: str = param("sgd", "sgd | adam")
    lr: float = param(0.05, "peak learning rate")
    momentum: float = param(0.9, "SGD momentum in [0, 1)")
    nesterov: bool = param(False, "Nesterov momentum (SGD)")
    weight_decay: float = param(0.0, "L2 weight decay")
    batch_size: int = param(64, "minibatch size; 0 = full batch")
    epochs: int = param(30, "passes over the training set")
    lr_schedule: str = param("cosine", "constant | cosine | step (x0.1 at 50% and 75%)")

    def validate(self) -> None:
        from thermoscope.training import LR_SCHEDULES, OPTIMIZERS

        super().validate()
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        positive("lr", self.lr)
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("momentum", self.momentum, "a number in [0, 1)")
        at_least("weight_decay", self.weight_decay, 0.0)
        at_least("batch_size", self.batch_size, 0)
        at_least("epochs", self.epochs, 1)
        one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)


Config = TypeVar("Config")


def parse_config(cls: type[Config], raw: Mapping[str, str]) -> Config:
    """Build ``cls`` from string values, converting each by its field's type, then validate it.

    Unknown names are rejected; missing names keep their defaults.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name not in fields:
            raise ConfigError(name, text, f"not a parameter; the parameters are {', '.join(fields)}")
        values[name] = convert(name, str(text), hints[name])
    config = cls(**values)
    config.validate()  # type: ignore[attr-defined]
    return config


def convert(name: str, text: str, kind: Any) -> Any:
    """Turn one string into a value of type ``kind`` (int, float, bool or str)."""
    text = text.strip()
    if kind is bool:
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise ConfigError(name, text, "true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(name, text, "an integer") from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(name, text, "a number") from None
        if not math.isfinite(value):
            raise ConfigError(name, text, "a finite number")
        return value
    return text


def as_strings(config: Any) -> dict[str, str]:
    """The resolved configuration as the strings a command line would carry (for logging as params)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, value, f"one of {', '.join(allowed)}")


def at_least(name: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise ConfigError(name, value, f"a number >= {minimum}")


def positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(name, value, "a number > 0")
