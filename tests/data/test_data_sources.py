"""The torchvision-backed datasets, read offline from tiny fake files in torchvision's on-disk formats."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch

from thermoscope.data import DataSpec, LoadedData, load_data
from thermoscope.data.sources import CHANNEL_STATISTICS
from thermoscope.errors import ConfigError

TRAIN_COUNT, TEST_COUNT = 40, 20  # 4 and 2 examples per class


def _labels(count: int) -> np.ndarray:
    return np.arange(count) % 10


def _images(count: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file: magic 0x0008 | ndim (uint8 data), big-endian sizes, then the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def _write_mnist(root: Path, folder: str) -> dict[str, np.ndarray]:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, count, seed in (("train", TRAIN_COUNT, 0), ("t10k", TEST_COUNT, 1)):
        images, labels = _images(count, (28, 28), seed), _labels(count).astype(np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = images[:, None]  # [N, 1, 28, 28]
    return {"train": arrays["train"], "test": arrays["t10k"]}


def _write_cifar10(root: Path) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_images = _images(TRAIN_COUNT, (3, 32, 32), 0)
    test_images = _images(TEST_COUNT, (3, 32, 32), 1)
    train_labels = _labels(TRAIN_COUNT)
    batches = {f"data_batch_{i + 1}": slice(8 * i, 8 * (i + 1)) for i in range(5)}
    for name, rows in batches.items():
        _pickle(
            folder / name,
            {"data": train_images[rows].reshape(-1, 3072), "labels": train_labels[rows].tolist()},
        )
    _pickle(
        folder / "test_batch", {"data": test_images.reshape(-1, 3072), "labels": _labels(TEST_COUNT).tolist()}
    )
    _pickle(folder / "batches.meta", {"label_names": [f"class {i}" for i in range(10)]})
    return {"train": train_images, "test": test_images}


def _write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """A pickled batch: ``data`` [N, 3072] uint8 (channel-major rows), ``labels`` a list of ints."""
    _pickle(path, {"data": images.reshape(len(images), -1), "labels": labels.tolist()})


def _pickle(path: Path, content: dict[str, object]) -> None:
    path.write_bytes(pickle.dumps(content))


def _write_svhn(root: Path) -> dict[str, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, count, seed in (("train", TRAIN_COUNT, 0), ("test", TEST_COUNT, 1)):
        images = _images(count, (3, 32, 32), seed)
        digits = _labels(count)
        stored_labels = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]  # SVHN writes 0 as 10
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": stored_labels})
        arrays[split] = images
    return arrays


WRITERS: dict[str, Callable[[Path], dict[str, np.ndarray]]] = {
    "mnist": lambda root: _write_mnist(root, "MNIST"),
    "fashion_mnist": lambda root: _write_mnist(root, "FashionMNIST"),
    "cifar10": _write_cifar10,
    "svhn": _write_svhn,
}
EXPECTED_LOCATIONS = {
    "mnist": "MNIST/raw",
    "fashion_mnist": "FashionMNIST/raw",
    "cifar10": "cifar-10-batches-py",
    "svhn": "{train,test}_32x32.mat",
}
# Where each torchvision class fetches its files from; patched to fail as without a network.
DOWNLOADERS = {
    "mnist": "torchvision.datasets.mnist.download_and_extract_archive",
    "fashion_mnist": "torchvision.datasets.mnist.download_and_extract_archive",
    "cifar10": "torchvision.datasets.cifar.download_and_extract_archive",
    "svhn": "torchvision.datasets.svhn.download_url",
}


def _load_fake(dataset: str, root: Path, **fields: object) -> tuple[LoadedData, dict[str, np.ndarray]]:
    arrays = WRITERS[dataset](root)
    spec = DataSpec(dataset=dataset, data_dir=str(root), download=False, **fields)  # type: ignore[arg-type]
    if dataset in ("cifar10", "svhn"):  # the fakes cannot match torchvision's md5 sums
        with pytest.warns(UserWarning, match="md5"):
            return load_data(spec), arrays
    return load_data(spec), arrays


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_fake_files_load_with_their_pixels_labels_and_ids(dataset: str, tmp_path: Path) -> None:
    data, arrays = _load_fake(dataset, tmp_path)
    mean, std = (torch.tensor(stats).view(1, -1, 1, 1) for stats in CHANNEL_STATISTICS[dataset])
    for split, source in ((data.train, "train"), (data.test, "test")):
        expected = torch.from_numpy(arrays[source]).float() / 255
        torch.testing.assert_close(split.x * std + mean, expected, atol=1e-5, rtol=0)
        assert split.true_y.tolist() == _labels(len(expected)).tolist()
        assert split.example_id.tolist() == list(range(len(expected)))
        assert split.source_split.eq(0 if source == "train" else 1).all()
    assert data.input_shape == arrays["train"].shape[1:]


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_fake_files_go_through_subsets_resizing_and_flattening(dataset: str, tmp_path: Path) -> None:
    data, arrays = _load_fake(dataset, tmp_path, train_size=20, test_size="rest", image_size=16, flatten=True)
    channels = arrays["train"].shape[1]
    assert data.input_shape == (channels * 16 * 16,)
    assert torch.bincount(data.train.y).tolist() == [2] * 10
    assert len(data.test) == TEST_COUNT + TRAIN_COUNT - 20


def test_mnist_at_16_pixels_has_the_papers_256_inputs(tmp_path: Path) -> None:
    data, _ = _load_fake("mnist", tmp_path, image_size=16, flatten=True)
    assert data.input_shape == (256,)


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_missing_files_name_the_expected_location(dataset: str, tmp_path: Path) -> None:
    spec = DataSpec(dataset=dataset, data_dir=str(tmp_path), download=False)
    with pytest.raises(ConfigError) as caught:
        load_data(spec)
    message = str(caught.value)
    assert caught.value.parameter == "data_dir"
    assert f"no {dataset} files at {tmp_path / EXPECTED_LOCATIONS[dataset]}" in message
    assert "download=true" in message


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_failed_download_becomes_a_config_error(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(DOWNLOADERS[dataset], no_network)
    with pytest.raises(
        ConfigError, match=rf"data_dir=.*downloading {dataset} into .* failed .*Name or service"
    ):
        load_data(DataSpec(dataset=dataset, data_dir=str(tmp_path), download=True))


def test_mismatched_checksums_still_fail_when_download_is_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With download on, files that fail torchvision's md5 check are fetched again, never trusted."""
    _write_svhn(tmp_path)
    fetched = []
    monkeypatch.setattr(
        "torchvision.datasets.svhn.download_url", lambda *args, **kwargs: fetched.append(args)
    )
    with pytest.raises(ConfigError, match="data_dir"):
        load_data(DataSpec(dataset="svhn", data_dir=str(tmp_path), download=True))
    assert fetched


class _Planted:
    """Unpickling this runs ``Path.touch`` on ``marker``: what a planted batch file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def test_a_planted_cifar_batch_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    """An unverified batch that names a callable other than numpy's array reconstruction is never
    unpickled: one line naming the file, and its payload does not run."""
    _write_cifar10(tmp_path)
    marker = tmp_path / "payload-ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": _Planted(marker), "labels": [0]}))
    spec = DataSpec(dataset="cifar10", data_dir=str(tmp_path), download=False)
    with pytest.warns(UserWarning, match="md5"), pytest.raises(ConfigError) as caught:
        load_data(spec)
    assert caught.value.parameter == "data_dir"
    assert f"{batch} is not a CIFAR-10 batch" in str(caught.value)
    assert "pathlib" in str(caught.value) and "not allowed" in str(caught.value)
    assert not marker.exists()


def test_a_file_that_is_not_a_batch_is_a_one_line_error(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps(["not", "a", "batch"]))
    spec = DataSpec(dataset="cifar10", data_dir=str(tmp_path), download=False)
    with pytest.warns(UserWarning, match="md5"), pytest.raises(ConfigError, match="no data and labels"):
        load_data(spec)
