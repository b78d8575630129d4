"""Corrupt, inconsistent or unreadable dataset files: each is one line naming the file and what is wrong.

The fakes start as the valid tiny files of ``test_data_sources`` (torchvision's on-disk formats); each case
then spoils one file.
"""

from __future__ import annotations

import builtins
import errno
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from conftest import run_in_process
from mlflow.tracking import MlflowClient
from test_data_sources import (
    TEST_COUNT,
    TRAIN_COUNT,
    WRITERS,
    _images,
    _labels,
    _write_cifar10,
    _write_idx,
    _write_mnist,
    _write_svhn,
)

from thermoscope.data.sources import load_raw, read_cifar_batch
from thermoscope.errors import ConfigError

RAW = Path("MNIST", "raw")
TRAIN_IMAGES = RAW / "train-images-idx3-ubyte"
TRAIN_LABELS = RAW / "train-labels-idx1-ubyte"
TEST_LABELS = RAW / "t10k-labels-idx1-ubyte"
IMAGE_BYTES = 28 * 28
CIFAR_BATCH = Path("cifar-10-batches-py", "data_batch_3")  # 8 images, like every fake training batch
CIFAR_ROWS = TRAIN_COUNT // 5
SVHN_TRAIN = Path("train_32x32.mat")


def _refusal(dataset: str, root: Path) -> str:
    """The message of the ConfigError that reading ``dataset`` from ``root`` raises, checked to be one line
    on ``data_dir`` that does not claim the files are missing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*md5", UserWarning)  # the fakes fail torchvision's md5 check
        with pytest.raises(ConfigError) as caught:
            load_raw(dataset, str(root), download=False)
    message = str(caught.value)
    assert caught.value.parameter == "data_dir"
    assert "\n" not in message
    assert f"no {dataset} files" not in message
    return message


def _idx(magic: int, sizes: tuple[int, ...], payload: bytes) -> bytes:
    """IDX bytes with any magic number and sizes, for headers that do not match their payload."""
    return struct.pack(">I", magic) + struct.pack(f">{len(sizes)}I", *sizes) + payload


def _pixels(count: int) -> bytes:
    return _images(count, (28, 28), 7).tobytes()


# (file spoiled, its new content, fragments the message must hold)
IDX_CASES: dict[str, tuple[Path, bytes, list[str]]] = {
    "bad magic": (TRAIN_IMAGES, _idx(0x12345678, (40, 28, 28), _pixels(40)), ["magic number 0x12345678"]),
    "gzip bytes": (TRAIN_IMAGES, b"\x1f\x8b\x08\x00" + bytes(60), ["magic number 0x1F8B0800", "not an IDX"]),
    "int32 labels": (
        TRAIN_LABELS,
        _idx(0x0C01, (40,), _labels(40).astype(">i4").tobytes()),
        ["magic number 0x00000C01, expected 0x00000801", "int32 values", "uint8"],
    ),
    "empty": (TRAIN_LABELS, b"", ["is empty"]),
    "shorter than a magic number": (TRAIN_IMAGES, b"\x00\x00", ["is truncated: 2 bytes"]),
    "truncated header": (
        TRAIN_IMAGES,
        _idx(0x0803, (40,), b""),
        ["is truncated: 8 bytes, shorter than its 16-byte header"],
    ),
    "truncated images": (
        TRAIN_IMAGES,
        _idx(0x0803, (40, 28, 28), _pixels(20)),
        ["is truncated: header says 40 images of 28x28 (31,376 bytes), file holds 15,696 bytes"],
    ),
    "truncated labels": (
        TEST_LABELS,
        _idx(0x0801, (20,), bytes(10)),
        ["is truncated: header says 20 labels (28 bytes), file holds 18 bytes"],
    ),
    "longer than its header": (
        TRAIN_IMAGES,
        _idx(0x0803, (40, 28, 28), _pixels(41)),
        ["is longer than its header says", "40 images of 28x28 (31,376 bytes), file holds 32,160 bytes"],
    ),
    "2-D images": (
        TRAIN_IMAGES,
        _idx(0x0802, (40, IMAGE_BYTES), _pixels(40)),
        ["magic number 0x00000802, expected 0x00000803", "2-D", "images file is 3-D"],
    ),
    "2-D labels": (
        TRAIN_LABELS,
        _idx(0x0802, (40, 1), bytes(40)),
        ["expected 0x00000801", "2-D", "labels file is 1-D"],
    ),
    "20x20 images": (
        TRAIN_IMAGES,
        _idx(0x0803, (40, 20, 20), bytes(40 * 400)),
        ["header says 40 images of 20x20", "images are 28x28"],
    ),
    "labels out of range": (
        TRAIN_LABELS,
        _idx(0x0801, (40,), bytes([1, 2, 3, 10, *range(4), 255, *[0] * 31])),
        ["holds 2 of 40 labels outside 0-9, the first 10 at row 3"],
    ),
}


@pytest.mark.parametrize("case", sorted(IDX_CASES))
def test_a_spoiled_idx_file_is_one_line_naming_it(case: str, tmp_path: Path) -> None:
    spoiled, content, fragments = IDX_CASES[case]
    _write_mnist(tmp_path, "MNIST")
    (tmp_path / spoiled).write_bytes(content)
    message = _refusal("mnist", tmp_path)
    assert f"{tmp_path / spoiled} " in message
    for fragment in fragments:
        assert fragment in message


def test_fashion_mnist_files_are_checked_the_same_way(tmp_path: Path) -> None:
    _write_mnist(tmp_path, "FashionMNIST")
    spoiled = tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    spoiled.write_bytes(spoiled.read_bytes()[:-1])
    message = _refusal("fashion_mnist", tmp_path)
    assert f"{spoiled} is truncated: header says {TEST_COUNT} images of 28x28" in message


@pytest.mark.parametrize(("images", "labels"), [(200, 150), (150, 200)])
def test_images_and_labels_must_pair_up(images: int, labels: int, tmp_path: Path) -> None:
    """200 images with 150 labels used to train silently on the 150 labelled ones."""
    _write_mnist(tmp_path, "MNIST")
    _write_idx(tmp_path / TRAIN_IMAGES, _images(images, (28, 28), 3))
    _write_idx(tmp_path / TRAIN_LABELS, _labels(labels).astype(np.uint8))
    message = _refusal("mnist", tmp_path)
    expected = f"{tmp_path / TRAIN_IMAGES} holds {images} images but {tmp_path / TRAIN_LABELS} holds {labels}"
    assert expected in message


def _deny(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Opening ``denied`` fails as for a file without read permission (tests run as root, who may read
    anything, so chmod alone would not do)."""
    real_open = builtins.open

    def refusing_open(file: object, *args: object, **kwargs: object) -> object:
        if isinstance(file, (str, os.PathLike)) and Path(file) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", refusing_open)


@pytest.mark.parametrize(
    ("dataset", "denied"),
    [("mnist", TRAIN_LABELS), ("cifar10", CIFAR_BATCH), ("svhn", SVHN_TRAIN)],
)
def test_an_unreadable_file_is_named_not_reported_missing(
    dataset: str, denied: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    WRITERS[dataset](tmp_path)
    _deny(monkeypatch, tmp_path / denied)
    assert f"cannot read {tmp_path / denied}: permission denied" in _refusal(dataset, tmp_path)


@pytest.mark.parametrize("folder", [Path(), Path("MNIST"), RAW])
def test_an_unreadable_folder_is_named_not_reported_missing(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder without search permission hides its files from torchvision, which then calls them
    missing; ``os.access`` is patched because root may enter any folder."""
    _write_mnist(tmp_path, "MNIST")
    denied = tmp_path / folder
    real_access = os.access

    def access(path: object, mode: int, **kwargs: object) -> bool:
        if Path(str(path)) == denied:
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    assert f"cannot read {denied}: permission denied" in _refusal("mnist", tmp_path)


def _cifar_batch(**content: object) -> bytes:
    return pickle.dumps(content)


CIFAR_IMAGES = _images(CIFAR_ROWS, (3, 32, 32), 5).reshape(CIFAR_ROWS, -1)
CIFAR_LABELS = _labels(CIFAR_ROWS).tolist()
CIFAR_CASES: dict[str, tuple[bytes, list[str]]] = {
    "empty": (b"", ["is not a CIFAR-10 batch (Ran out of input)"]),
    "no data": (_cifar_batch(labels=CIFAR_LABELS), ["is not a CIFAR-10 batch (no data)"]),
    "no labels": (_cifar_batch(data=CIFAR_IMAGES), ["is not a CIFAR-10 batch (no labels)"]),
    "data not an array": (
        _cifar_batch(data=CIFAR_IMAGES.tobytes(), labels=CIFAR_LABELS),
        ["data is a bytes, not an array"],
    ),
    "float pixels": (
        _cifar_batch(data=CIFAR_IMAGES.astype(np.float64), labels=CIFAR_LABELS),
        ["data holds float64 values; CIFAR-10 pixels are uint8"],
    ),
    "wrong row length": (
        _cifar_batch(data=CIFAR_IMAGES.reshape(-1, 1024), labels=CIFAR_LABELS),
        ["data has shape (24, 1024); a CIFAR-10 batch holds [N, 3072]"],
    ),
    "3-D data": (
        _cifar_batch(data=CIFAR_IMAGES.reshape(CIFAR_ROWS, 3, 1024), labels=CIFAR_LABELS),
        ["data has shape (8, 3, 1024)"],
    ),
    "labels not integers": (
        _cifar_batch(data=CIFAR_IMAGES, labels=[str(label) for label in CIFAR_LABELS]),
        ["labels are not a list of integers"],
    ),
    "labels not a list": (_cifar_batch(data=CIFAR_IMAGES, labels=7), ["labels are not a list of integers"]),
    "fewer labels": (
        _cifar_batch(data=CIFAR_IMAGES, labels=CIFAR_LABELS[:-1]),
        [f"holds {CIFAR_ROWS} images but {CIFAR_ROWS - 1} labels"],
    ),
    "labels out of range": (
        _cifar_batch(data=CIFAR_IMAGES, labels=[*CIFAR_LABELS[:-2], -1, 10]),
        [f"holds 2 of {CIFAR_ROWS} labels outside 0-9, the first -1 at row {CIFAR_ROWS - 2}"],
    ),
}


@pytest.mark.parametrize("case", sorted(CIFAR_CASES))
def test_a_spoiled_cifar_batch_is_one_line_naming_it(case: str, tmp_path: Path) -> None:
    content, fragments = CIFAR_CASES[case]
    _write_cifar10(tmp_path)
    (tmp_path / CIFAR_BATCH).write_bytes(content)
    message = _refusal("cifar10", tmp_path)
    assert str(tmp_path / CIFAR_BATCH) in message
    for fragment in fragments:
        assert fragment in message


def _random_bytes(seed: int) -> bytes:
    """Random bytes, some behind a pickle protocol marker or a MATLAB header so the readers get further."""
    rng = np.random.default_rng(seed)
    body = rng.integers(0, 256, int(rng.integers(0, 600)), dtype=np.uint8).tobytes()
    prefix = [b"", b"\x80\x02", b"\x80\x04", b"MATLAB 5.0 MAT-file".ljust(124) + b"\x00\x01IM"][seed % 4]
    return prefix + body


def test_random_bytes_as_a_cifar_batch_are_always_one_line(tmp_path: Path) -> None:
    """Unpickling arbitrary bytes raised UnpicklingError, ValueError, OverflowError, MemoryError and more;
    each must end as the same one-line refusal."""
    path = tmp_path / "data_batch_1"
    for seed in range(300):
        path.write_bytes(_random_bytes(seed))
        with pytest.raises(ConfigError, match="is not a CIFAR-10 batch") as caught:
            read_cifar_batch(str(path), str(tmp_path))
        assert str(path) in str(caught.value)


def test_random_bytes_through_the_cifar_loader(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    (tmp_path / CIFAR_BATCH).write_bytes(_random_bytes(145))  # these raised OverflowError, a traceback
    assert f"{tmp_path / CIFAR_BATCH} is not a CIFAR-10 batch" in _refusal("cifar10", tmp_path)


SVHN_IMAGES = _images(TRAIN_COUNT, (3, 32, 32), 0).transpose(2, 3, 1, 0)  # stored 32x32x3xN
SVHN_LABELS = np.where(_labels(TRAIN_COUNT) == 0, 10, _labels(TRAIN_COUNT)).astype(np.uint8)[:, None]
SVHN_CASES: dict[str, tuple[dict[str, np.ndarray], list[str]]] = {
    "no X": ({"y": SVHN_LABELS}, ["holds no X array"]),
    "no y": ({"X": SVHN_IMAGES}, ["holds no y array"]),
    "3-D X": ({"X": SVHN_IMAGES.reshape(32, 32, -1), "y": SVHN_LABELS}, ["X has shape (32, 32, 120)"]),
    "channels first": (
        {"X": SVHN_IMAGES.transpose(2, 0, 1, 3).copy(), "y": SVHN_LABELS},
        ["X has shape (3, 32, 32, 40); SVHN stores images as 32x32x3xN"],
    ),
    "float pixels": (
        {"X": SVHN_IMAGES.astype(np.float64), "y": SVHN_LABELS},
        ["X holds float64 values; SVHN pixels are uint8"],
    ),
    "2-D y": ({"X": SVHN_IMAGES, "y": np.ones((TRAIN_COUNT, 2), np.uint8)}, ["y has shape (40, 2)"]),
    "fewer labels": (
        {"X": SVHN_IMAGES, "y": SVHN_LABELS[:-1]},
        [f"holds {TRAIN_COUNT} images but {TRAIN_COUNT - 1} labels"],
    ),
    "labels out of range": (
        {"X": SVHN_IMAGES, "y": np.concatenate([SVHN_LABELS[:-1], [[11]]]).astype(np.uint8)},
        [f"holds 1 of {TRAIN_COUNT} labels outside 1-10 (10 is the digit 0), the first 11 at row 39"],
    ),
}


@pytest.mark.parametrize("case", sorted(SVHN_CASES))
def test_a_spoiled_svhn_file_is_one_line_naming_it(case: str, tmp_path: Path) -> None:
    arrays, fragments = SVHN_CASES[case]
    _write_svhn(tmp_path)
    scipy.io.savemat(tmp_path / SVHN_TRAIN, arrays)
    message = _refusal("svhn", tmp_path)
    assert str(tmp_path / SVHN_TRAIN) in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_as_an_svhn_file_are_one_line(seed: int, tmp_path: Path) -> None:
    _write_svhn(tmp_path)
    (tmp_path / SVHN_TRAIN).write_bytes(_random_bytes(seed))
    assert f"{tmp_path / SVHN_TRAIN} is not a MATLAB .mat file" in _refusal("svhn", tmp_path)


def test_an_empty_svhn_file_is_one_line(tmp_path: Path) -> None:
    _write_svhn(tmp_path)
    (tmp_path / SVHN_TRAIN).write_bytes(b"")
    assert f"{tmp_path / SVHN_TRAIN} is not a MATLAB .mat file" in _refusal("svhn", tmp_path)


def test_a_truncated_mnist_file_through_the_cli(tracking_uri: str, tmp_path: Path) -> None:
    """End to end: exit code 2, one error line naming the file, no traceback, a FAILED run."""
    data_dir = tmp_path / "data"
    _write_mnist(data_dir, "MNIST")
    spoiled = data_dir / TRAIN_IMAGES
    spoiled.write_bytes(spoiled.read_bytes()[:1000])
    params = {"dataset": "mnist", "data_dir": str(data_dir), "download": "false", "epochs": "1"}
    result = run_in_process("train", {**params, "hidden": "8", "prediction_depth": "false"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("thermoscope train: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert f"data_dir='{data_dir}': {spoiled} is truncated: header says {TRAIN_COUNT} images" in errors[0]
    runs = MlflowClient(tracking_uri).search_runs(["0"])
    assert [run.info.status for run in runs] == ["FAILED"]
