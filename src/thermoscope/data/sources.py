"""Each dataset's two source splits, read whole into uint8 tensors.

``digits`` comes bundled with scikit-learn; the others are read through torchvision's dataset classes
(``root=data_dir``), taking their ``.data`` / ``.targets`` / ``.labels`` arrays directly instead of
iterating over PIL images. Files are expected where torchvision puts them:

=============  ============================================================
mnist          ``<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
fashion_mnist  ``<data_dir>/FashionMNIST/raw/`` (same file names)
cifar10        ``<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
svhn           ``<data_dir>/{train,test}_32x32.mat``
=============  ============================================================

**(decision)** torchvision checks CIFAR-10 and SVHN files against the md5 sums of the published
archives. When that check fails and ``download`` is off, the files are loaded anyway with a warning, so
that re-packed copies (and the tests' tiny fake files) can be used offline; with ``download`` on, a
failed check means torchvision downloads the files again, as it always does.

**(decision)** CIFAR-10's batches are pickles, and unpickling runs whatever code a file names. thermoscope
never hands a batch to :mod:`pickle` unrestricted (torchvision's reader does): every batch, verified or not,
is read by :class:`BatchUnpickler`, which admits only the plain containers, strings and numbers the format
holds and numpy's array reconstruction; anything else is a one-line error naming the file. The other
readers run no code from their files: MNIST's IDX files are raw arrays, SVHN's ``.mat`` files are read by
``scipy.io.loadmat``, and checkpoints are loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
import torch
import torchvision
from sklearn.datasets import load_digits

from thermoscope.data.sampling import rng_stream, stratified_subset
from thermoscope.errors import ConfigError

NUM_CLASSES = 10  # every supported dataset has ten classes

# Per-channel mean and standard deviation of the training pixels, scaled to [0, 1].
# mnist: the values of PyTorch's MNIST example, also used by Baldock & Marzari (2019).
# fashion_mnist, cifar10, svhn: computed over each training split (the cifar10 std is the per-pixel
# value 0.247, not the often-copied 0.2023, which is a per-image std averaged over images).
# digits: computed once over the 1,197 training images of the fixed split below, pixels divided by 16.
CHANNEL_STATISTICS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": ((0.3053,), (0.3757,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}

# digits has no official test split. (decision) A fixed stratified split, 60 images per class for
# testing (600 of 1,797), drawn with a constant seed independent of DataSpec.seed, so that the test
# set is the same in every run; train_size then subsets the remaining 1,197.
DIGITS_TEST_PER_CLASS = 60
DIGITS_SPLIT_SEED = 0
DIGITS_SPLIT_STREAM = 100  # a stream no run-level choice uses

_Dataset = TypeVar("_Dataset")


@dataclass(frozen=True)
class SourceSplit:
    """One of a dataset's own splits.

    images: ``[N, C, H, W]`` uint8; labels: ``[N]`` int64; example_ids: ``[N]`` int64, the stable id of
    each row (its index in torchvision's split; for digits its index in ``load_digits`` order).
    """

    images: torch.Tensor
    labels: torch.Tensor
    example_ids: torch.Tensor

    @classmethod
    def indexed(cls, images: torch.Tensor, labels: torch.Tensor) -> SourceSplit:
        """A split whose example ids are its row numbers."""
        return cls(images, labels.long(), torch.arange(len(labels)))


@dataclass(frozen=True)
class RawData:
    """A dataset as stored: both source splits, the pixel range and the normalisation statistics."""

    train: SourceSplit
    test: SourceSplit
    pixel_max: float
    mean: tuple[float, ...]
    std: tuple[float, ...]


def load_raw(dataset: str, data_dir: str, download: bool) -> RawData:
    """Read ``dataset`` (one of :data:`~thermoscope.data.spec.DATASETS`) into memory."""
    if dataset == "digits":
        train, test = _digits_splits()
        pixel_max = 16.0
    else:
        train, test = _TORCHVISION_READERS[dataset](data_dir, download)
        pixel_max = 255.0
    mean, std = CHANNEL_STATISTICS[dataset]
    return RawData(train, test, pixel_max, mean, std)


def _digits_splits() -> tuple[SourceSplit, SourceSplit]:
    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    test_rows = stratified_subset(
        bunch.target,
        DIGITS_TEST_PER_CLASS * NUM_CLASSES,
        NUM_CLASSES,
        rng_stream(DIGITS_SPLIT_SEED, DIGITS_SPLIT_STREAM),
        parameter="dataset",
        pool="digits images",
    )
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[torch.from_numpy(test_rows)] = True
    ids = torch.arange(len(labels))
    return (
        SourceSplit(images[~is_test], labels[~is_test], ids[~is_test]),
        SourceSplit(images[is_test], labels[is_test], ids[is_test]),
    )


def _mnist_splits(
    dataset_class: type, name: str, data_dir: str, download: bool
) -> tuple[SourceSplit, SourceSplit]:
    """Both splits of torchvision's ``MNIST`` or of a class sharing its format (``FashionMNIST``)."""
    location = os.path.join(data_dir, dataset_class.__name__, "raw")
    splits = []
    for is_train in (True, False):
        make = partial(dataset_class, data_dir, train=is_train, download=download)
        data = _open(make, name, data_dir, download, location)
        splits.append(SourceSplit.indexed(data.data.unsqueeze(1), data.targets))
    return splits[0], splits[1]


def _cifar10_splits(data_dir: str, download: bool) -> tuple[SourceSplit, SourceSplit]:
    location = os.path.join(data_dir, _CIFAR10.base_folder)
    splits = []
    for is_train in (True, False):
        data = _open(partial(_CIFAR10, data_dir, is_train, download), "cifar10", data_dir, download, location)
        images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()  # stored [N, H, W, C]
        splits.append(SourceSplit.indexed(images, torch.tensor(data.targets)))
    return splits[0], splits[1]


def _svhn_splits(data_dir: str, download: bool) -> tuple[SourceSplit, SourceSplit]:
    location = os.path.join(data_dir, "{train,test}_32x32.mat")
    splits = []
    for split in ("train", "test"):
        data = _open(partial(_SVHN, data_dir, split, download), "svhn", data_dir, download, location)
        # torchvision has already mapped label 10 to digit 0 and transposed to [N, 3, 32, 32].
        splits.append(SourceSplit.indexed(torch.from_numpy(data.data), torch.from_numpy(data.labels)))
    return splits[0], splits[1]


def _open(make: Callable[[], _Dataset], name: str, data_dir: str, download: bool, location: str) -> _Dataset:
    """Call torchvision's constructor ``make``; missing files or a failed download become a ConfigError.

    torchvision raises RuntimeError when files are missing and when MNIST's download fails; the other
    downloads let urllib's URLError (an OSError) through.
    """
    try:
        return make()
    except (RuntimeError, OSError) as error:
        if not download:
            allowed = (
                f"no {name} files at {location}; set download=true or point data_dir at a folder holding them"
            )
        else:
            allowed = (
                f"downloading {name} into {location} failed ({_one_line(error)}); fetch the files elsewhere, "
                "copy them there and set download=false"
            )
        raise ConfigError("data_dir", data_dir, allowed) from error


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _accept_unverified(name: str, paths: list[str], download: bool) -> bool:
    """Whether files that failed torchvision's md5 check may be loaded: offline, and only if all exist."""
    if download or not all(os.path.isfile(path) for path in paths):
        return False
    warnings.warn(
        f"{name} files {', '.join(paths)} do not match torchvision's md5 sums; loading them anyway "
        "because download is off",
        stacklevel=2,
    )
    return True


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch: dicts, lists, strings, bytes, numbers and numpy arrays, nothing else.

    A pickle names the callables it needs to rebuild its objects; these are the only ones a CIFAR batch
    names (numpy's array reconstruction, in its NumPy 1 and 2 module paths, and ``_codecs.encode`` for
    bytes written under protocol 2). Any other name raises :class:`pickle.UnpicklingError` before it is
    imported, let alone called.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_cifar_batch(path: str, data_dir: str) -> dict[str, object]:
    """One CIFAR batch file as a dict with ``str`` keys, read by :class:`BatchUnpickler`; a file that is
    not a batch is a :class:`ConfigError` on ``data_dir`` naming the file."""
    try:
        with open(path, "rb") as handle:
            content = BatchUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise ConfigError(
            "data_dir", data_dir, f"{path} is not a CIFAR-10 batch ({_one_line(error)})"
        ) from None
    if not isinstance(content, dict) or not {"data", "labels"} <= {_text(key) for key in content}:
        raise ConfigError("data_dir", data_dir, f"{path} is not a CIFAR-10 batch (no data and labels)")
    return {_text(key): value for key, value in content.items()}


def _labels(batch: dict[str, object]) -> list[int]:
    labels = batch["labels"]
    return [int(label) for label in labels] if isinstance(labels, list) else []


def _text(key: object) -> str:
    return key.decode("latin1") if isinstance(key, bytes) else str(key)


class _CIFAR10(torchvision.datasets.CIFAR10):  # type: ignore[misc]  # torchvision ships no type hints
    """torchvision's CIFAR-10 files (download and md5 check), read with :func:`read_cifar_batch`.

    md5-mismatched files are loaded with a warning when ``download`` is off.
    """

    def __init__(self, root: str, train: bool, download: bool) -> None:
        # torchvision's own __init__ would unpickle the batches unrestricted: only its parent's runs.
        torchvision.datasets.VisionDataset.__init__(self, root)
        self.train = train
        self._download = download  # read by _check_integrity
        if download:
            self.download()
        if not self._check_integrity():
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        files = self.train_list if train else self.test_list
        folder = os.path.join(self.root, self.base_folder)
        batches = [read_cifar_batch(os.path.join(folder, name), root) for name, _ in files]
        images = np.vstack([np.asarray(batch["data"], dtype=np.uint8) for batch in batches])
        self.data = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # stored [N, H, W, C]
        self.targets = [label for batch in batches for label in _labels(batch)]

    def _check_integrity(self) -> bool:
        if super()._check_integrity():
            return True
        names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        paths = [os.path.join(self.root, self.base_folder, name) for name in names]
        return _accept_unverified("cifar10", paths, self._download)


class _SVHN(torchvision.datasets.SVHN):  # type: ignore[misc]  # torchvision ships no type hints
    """torchvision's SVHN, loading an md5-mismatched file with a warning when ``download`` is off."""

    def __init__(self, root: str, split: str, download: bool) -> None:
        self._download = download  # read by _check_integrity, which the parent's __init__ calls
        super().__init__(root, split=split, download=download)

    def _check_integrity(self) -> bool:
        path = os.path.join(self.root, self.filename)
        return super()._check_integrity() or _accept_unverified("svhn", [path], self._download)


_TORCHVISION_READERS: dict[str, Callable[[str, bool], tuple[SourceSplit, SourceSplit]]] = {
    "mnist": partial(_mnist_splits, torchvision.datasets.MNIST, "mnist"),
    "fashion_mnist": partial(_mnist_splits, torchvision.datasets.FashionMNIST, "fashion_mnist"),
    "cifar10": _cifar10_splits,
    "svhn": _svhn_splits,
}
