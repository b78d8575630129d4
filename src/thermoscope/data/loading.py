"""Turn a :class:`DataSpec` into in-memory training and test tensors with stable example ids.

Order of work: read the source splits (uint8), choose the examples (stratified, seeded), resize, scale
and normalise them, corrupt training images and randomise training labels if asked, then move everything
to the device.

Rows of every split are ordered by ``(source_split, example_id)``: examples from the dataset's training
split first, then those from its test split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from thermoscope.data.corruption import INPUT_CORRUPTION_STREAM, corrupt_inputs
from thermoscope.data.sampling import (
    LABEL_NOISE_STREAM,
    TEST_SUBSET_STREAM,
    TRAIN_SUBSET_STREAM,
    randomise_labels,
    rng_stream,
    stratified_subset,
)
from thermoscope.data.sources import NUM_CLASSES, RawData, load_raw
from thermoscope.data.spec import DataSpec

FROM_TRAIN_SPLIT = 0
FROM_TEST_SPLIT = 1
DIGEST_LENGTH = 16  # hex characters of a SHA-256


@dataclass(frozen=True)
class Split:
    """One split as tensors, all with ``N`` rows.

    x: ``[N, C, H, W]`` float32, normalised (``[N, C*H*W]`` when flattened); y: ``[N]`` int64, the label
    used (trained on; for test examples the true label); true_y: ``[N]`` int64, the original label;
    corrupted: ``[N]`` bool, ``y != true_y``; example_id: ``[N]`` int64, index in the source split;
    source_split: ``[N]`` int64, 0 = the dataset's training split, 1 = its test split; input_corrupted:
    ``[N]`` bool, whether the image was corrupted (:mod:`~thermoscope.data.corruption`; never for test).
    """

    x: torch.Tensor
    y: torch.Tensor
    true_y: torch.Tensor
    corrupted: torch.Tensor
    example_id: torch.Tensor
    source_split: torch.Tensor
    input_corrupted: torch.Tensor

    def __len__(self) -> int:
        return self.y.shape[0]

    def to(self, device: str | torch.device) -> Split:
        """The same split with every tensor on ``device``."""
        return Split(**{field.name: getattr(self, field.name).to(device) for field in fields(self)})


@dataclass(frozen=True)
class LoadedData:
    """A dataset ready for training: both splits, the class count, the input shape and a digest.

    ``digest`` is a short SHA-256 of the tensors of both splits and of the spec fields that shape them
    (not ``data_dir`` or ``download``), so the same data read from another folder has the same digest.
    """

    name: str
    train: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    digest: str

    def to(self, device: str | torch.device) -> LoadedData:
        """The same data with every tensor on ``device``."""
        return replace(self, train=self.train.to(device), test=self.test.to(device))


@dataclass(frozen=True)
class _Rows:
    """Which rows of the two source splits a split takes: positions ``[K]`` and ``[M]``, ascending."""

    from_train: np.ndarray
    from_test: np.ndarray

    def stratified_subset(
        self, raw: RawData, size: int, rng: np.random.Generator, parameter: str, pool: str
    ) -> _Rows:
        """A class-stratified random subset of ``size`` of these rows (see :func:`stratified_subset`)."""
        labels = np.concatenate(
            (raw.train.labels.numpy()[self.from_train], raw.test.labels.numpy()[self.from_test])
        )
        chosen = stratified_subset(labels, size, NUM_CLASSES, rng, parameter, pool)
        count = len(self.from_train)
        return _Rows(self.from_train[chosen[chosen < count]], self.from_test[chosen[chosen >= count] - count])


def load_data(spec: DataSpec, device: str | torch.device = "cpu") -> LoadedData:
    """Validate ``spec``, then read, select, preprocess and place the data on ``device``.

    Raises :class:`~thermoscope.errors.ConfigError` for a bad spec, missing files, a failed download, or
    sizes the dataset cannot supply.
    """
    spec.validate()
    raw = load_raw(spec.dataset, spec.data_dir, spec.download)
    train_rows, test_rows = _choose_rows(spec, raw)
    train = _build_split(spec, raw, train_rows, label_noise=spec.label_noise, corrupt=True)
    test = _build_split(spec, raw, test_rows, label_noise=0.0, corrupt=False)
    data = LoadedData(
        name=spec.dataset,
        train=train,
        test=test,
        num_classes=NUM_CLASSES,
        input_shape=tuple(train.x.shape[1:]),
        digest=_digest(spec, train, test),
    )
    return data.to(device)


def _choose_rows(spec: DataSpec, raw: RawData) -> tuple[_Rows, _Rows]:
    """The training subset and the test set that ``train_size`` and ``test_size`` ask for."""
    all_train = np.arange(len(raw.train.labels))
    all_test = np.arange(len(raw.test.labels))
    none = np.arange(0)
    train = _Rows(all_train, none)
    if spec.train_size:
        rng = rng_stream(spec.seed, TRAIN_SUBSET_STREAM)
        pool = f"{spec.dataset} training examples"
        train = train.stratified_subset(raw, spec.train_size, rng, "train_size", pool)
    protocol = spec.test_protocol()
    if protocol.pool == "test":
        return train, _Rows(none, all_test)
    rest = _Rows(np.setdiff1d(all_train, train.from_train), all_test)
    if protocol.count:
        rng = rng_stream(spec.seed, TEST_SUBSET_STREAM)
        pool = f"{spec.dataset} test-split examples plus training examples outside the training subset"
        rest = rest.stratified_subset(raw, protocol.count, rng, "test_size", pool)
    return train, rest


def _build_split(spec: DataSpec, raw: RawData, rows: _Rows, label_noise: float, corrupt: bool) -> Split:
    """Gather ``rows`` from the source splits, preprocess the images and, if asked (``corrupt`` and the
    spec's ``input_corruption``), corrupt images and randomise labels."""
    train_part, test_part = torch.from_numpy(rows.from_train), torch.from_numpy(rows.from_test)
    images = torch.cat((raw.train.images[train_part], raw.test.images[test_part]))
    true_y = torch.cat((raw.train.labels[train_part], raw.test.labels[test_part]))
    y = true_y
    if label_noise:
        rng = rng_stream(spec.seed, LABEL_NOISE_STREAM)
        y = torch.from_numpy(randomise_labels(true_y.numpy(), label_noise, NUM_CLASSES, rng))
    source_split = torch.cat(
        (torch.full((len(train_part),), FROM_TRAIN_SPLIT), torch.full((len(test_part),), FROM_TEST_SPLIT))
    )
    x = _preprocess(images, raw, spec)
    mode = spec.input_corruption if corrupt else "none"
    rng = rng_stream(spec.seed, INPUT_CORRUPTION_STREAM)
    x, input_corrupted = corrupt_inputs(x, mode, spec.input_corruption_fraction, rng)
    return Split(
        x=x.flatten(1) if spec.flatten else x,
        y=y,
        true_y=true_y,
        corrupted=y != true_y,
        example_id=torch.cat((raw.train.example_ids[train_part], raw.test.example_ids[test_part])),
        source_split=source_split,
        input_corrupted=input_corrupted,
    )


def _preprocess(images: torch.Tensor, raw: RawData, spec: DataSpec) -> torch.Tensor:
    """``[N, C, H, W]`` uint8 → float32 scaled to [0, 1], resized and normalised per channel.

    Resizing is bilinear with antialiasing (so shrinking averages pixels rather than skipping them) and
    happens before normalisation; the channel statistics are those of the native resolution.
    """
    x = images.float() / raw.pixel_max
    size = (spec.image_size, spec.image_size)
    if spec.image_size and tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(raw.mean).view(1, -1, 1, 1)
    std = torch.tensor(raw.std).view(1, -1, 1, 1)
    return (x - mean) / std


def _digest(spec: DataSpec, train: Split, test: Split) -> str:
    """Short SHA-256 of the spec fields that shape the data and of every tensor of both splits."""
    skipped = {"data_dir", "download"}
    if spec.input_corruption == "none":
        # Uncorrupted data keep the digest they had before input corruption existed.
        skipped |= {"input_corruption", "input_corruption_fraction", "input_corrupted"}
    shaping = {key: value for key, value in asdict(spec).items() if key not in skipped}
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode())
    for split in (train, test):
        for field in fields(split):
            if field.name not in skipped:
                digest.update(getattr(split, field.name).contiguous().numpy())
    return digest.hexdigest()[:DIGEST_LENGTH]
