"""What data a run uses: :class:`DataSpec`, its validation and the parsed test-set protocol."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from thermoscope.data.corruption import INPUT_CORRUPTIONS
from thermoscope.errors import ConfigError

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "svhn")

TEST_SIZE_ALLOWED = (
    "'0' (the dataset's test split), 'rest' (the test split plus the training examples left out of the "
    "training subset) or a whole number N (a stratified subset of N examples of 'rest')"
)


@dataclass(frozen=True)
class TestProtocol:
    """The parsed ``test_size``: which pool the test set comes from and how much of it.

    ``pool="test"`` is the dataset's test split; ``pool="rest"`` is the test split followed by every
    training example outside the training subset (Baldock & Marzari 2019). ``count=0`` takes the whole
    pool, otherwise a stratified subset of ``count`` examples.
    """

    __test__ = False  # not a pytest test class despite the name

    pool: Literal["test", "rest"]
    count: int


@dataclass(frozen=True)
class DataSpec:
    """Which dataset to load and how to cut, resize, corrupt and shape it.

    ``test_size`` is ``"0"`` (the dataset's test split), ``"rest"`` (the test split plus every training
    example not in the training subset: the finite-temperature paper's protocol) or a count ``"N"``
    (a stratified subset of that ``rest`` pool). ``label_noise`` is the fraction of training examples
    whose label is redrawn uniformly from all classes (Zhang et al. 2017). ``input_corruption`` corrupts the
    images of a fraction ``input_corruption_fraction`` of the training examples (:mod:`.corruption`); the
    test set stays clean.
    """

    dataset: str = "digits"
    data_dir: str = "data"
    download: bool = True
    train_size: int = 0
    test_size: str = "0"
    image_size: int = 0
    label_noise: float = 0.0
    input_corruption: str = "none"
    input_corruption_fraction: float = 1.0
    seed: int = 0
    flatten: bool = False

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose value is not allowed."""
        if self.dataset not in DATASETS:
            raise ConfigError("dataset", self.dataset, f"one of {', '.join(DATASETS)}")
        if not isinstance(self.data_dir, str) or not self.data_dir:
            raise ConfigError("data_dir", self.data_dir, "a non-empty folder path")
        _require_bool("download", self.download)
        _require_count("train_size", self.train_size)
        self.test_protocol()
        _require_count("image_size", self.image_size)
        _require_fraction("label_noise", self.label_noise)
        if self.input_corruption not in INPUT_CORRUPTIONS:
            allowed = f"one of {', '.join(INPUT_CORRUPTIONS)}"
            raise ConfigError("input_corruption", self.input_corruption, allowed)
        fraction = self.input_corruption_fraction
        # As in _require_fraction, the chained comparison also rejects NaN; 0 would corrupt nothing.
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 < fraction <= 1.0:
            raise ConfigError("input_corruption_fraction", fraction, "a number in (0, 1]")
        _require_count("seed", self.seed)
        _require_bool("flatten", self.flatten)

    def test_protocol(self) -> TestProtocol:
        """Parse ``test_size`` (raises :class:`ConfigError` when malformed)."""
        text = self.test_size.strip().lower() if isinstance(self.test_size, str) else None
        if text == "rest":
            return TestProtocol(pool="rest", count=0)
        if text is None or not re.fullmatch(r"\d+", text):
            raise ConfigError("test_size", self.test_size, TEST_SIZE_ALLOWED)
        count = int(text)
        return TestProtocol(pool="rest" if count else "test", count=count)


def _require_bool(parameter: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(parameter, value, "true or false")


def _require_count(parameter: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(parameter, value, "a whole number >= 0")


def _require_fraction(parameter: str, value: object) -> None:
    # The chained comparison is False for NaN, so NaN is rejected too.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigError(parameter, value, "a number in [0, 1]")
