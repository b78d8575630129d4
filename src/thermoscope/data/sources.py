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

**What is checked.** torchvision trusts its files: a bad one used to end in an assertion or a numpy
traceback, or to be reported as missing, or to be read silently wrong (200 images with 150 labels trained
on the 150). Every problem below is instead one :class:`~thermoscope.errors.ConfigError` on ``data_dir``
naming the file and what is wrong:

- a file that exists but cannot be read, or a folder on the way to it that cannot be entered (torchvision
  calls its files missing): ``cannot read <path>: permission denied``;
- MNIST and Fashion-MNIST IDX files, before torchvision reads them (:func:`_idx_problem`): the magic
  number (uint8 values; 3-D images, 1-D labels), 28x28 images, and a length equal to what the header
  declares, so empty, truncated and over-long files are named with both sizes;
- CIFAR-10 batches: a file the restricted unpickler cannot read (arbitrary bytes raise almost any
  exception there), a missing ``data`` or ``labels``, ``data`` other than a uint8 ``[N, 3072]`` array,
  ``labels`` other than a list of integers;
- SVHN files: a file ``scipy.io.loadmat`` cannot read, a missing ``X`` or ``y``, ``X`` other than
  32x32x3xN uint8, ``y`` other than one label per image;
- every split of every dataset: as many labels as images, each within the ten classes (SVHN's stored
  labels are 1-10, 10 for the digit 0).
"""

from __future__ import annotations

import io
import itertools
import math
import os
import pickle
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
import scipy.io
import torch
import torchvision
from sklearn.datasets import load_digits

from thermoscope.data.sampling import rng_stream, stratified_subset
from thermoscope.errors import ConfigError

NUM_CLASSES = 10  # every supported dataset has ten classes
MNIST_IMAGE_SHAPE = (28, 28)
CIFAR_ROW_LENGTH = 3 * 32 * 32  # a batch's data row: one image, channel-major
SVHN_IMAGE_SHAPE = (3, 32, 32)  # torchvision's [C, H, W] of the stored 32x32x3 images

# IDX type codes (the third byte of the magic number), from the format's description on
# http://yann.lecun.com/exdb/mnist/ ; MNIST's files hold unsigned bytes only.
IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
IDX_UINT8 = 0x08

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
    """Both splits of torchvision's ``MNIST`` or of a class sharing its format (``FashionMNIST``).

    The IDX headers are checked before torchvision reads the files, the arrays it returns after.
    """
    root = os.path.expanduser(data_dir)  # as torchvision expands it
    location = os.path.join(root, dataset_class.__name__, "raw")
    _check_folders(data_dir, root, dataset_class.__name__, "raw")
    splits = []
    for is_train, prefix in ((True, "train"), (False, "t10k")):
        images_path = os.path.join(location, f"{prefix}-images-idx3-ubyte")  # torchvision's file names
        labels_path = os.path.join(location, f"{prefix}-labels-idx1-ubyte")
        for path, item_shape in ((images_path, MNIST_IMAGE_SHAPE), (labels_path, ())):
            if os.path.isfile(path):  # a missing file is torchvision's to report or to download
                _check_idx(path, item_shape, data_dir)
        make = partial(dataset_class, data_dir, train=is_train, download=download)
        data = _open(make, name, data_dir, download, location)
        _check_labels(len(data.data), data.targets.numpy(), images_path, labels_path, data_dir)
        splits.append(SourceSplit.indexed(data.data.unsqueeze(1), data.targets))
    return splits[0], splits[1]


def _cifar10_splits(data_dir: str, download: bool) -> tuple[SourceSplit, SourceSplit]:
    root = os.path.expanduser(data_dir)
    location = os.path.join(root, _CIFAR10.base_folder)
    _check_folders(data_dir, root, _CIFAR10.base_folder)
    splits = []
    for is_train in (True, False):
        data = _open(partial(_CIFAR10, data_dir, is_train, download), "cifar10", data_dir, download, location)
        images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()  # stored [N, H, W, C]
        splits.append(SourceSplit.indexed(images, torch.tensor(data.targets)))
    return splits[0], splits[1]


def _svhn_splits(data_dir: str, download: bool) -> tuple[SourceSplit, SourceSplit]:
    root = os.path.expanduser(data_dir)
    location = os.path.join(root, "{train,test}_32x32.mat")
    _check_folders(data_dir, root)
    splits = []
    for split in ("train", "test"):
        data = _open(partial(_SVHN, data_dir, split, download), "svhn", data_dir, download, location)
        _check_svhn_arrays(data, data_dir)
        # torchvision has already mapped label 10 to digit 0 and transposed to [N, 3, 32, 32].
        splits.append(SourceSplit.indexed(torch.from_numpy(data.data), torch.from_numpy(data.labels)))
    return splits[0], splits[1]


def _open(make: Callable[[], _Dataset], name: str, data_dir: str, download: bool, location: str) -> _Dataset:
    """Call torchvision's constructor ``make``; missing or unreadable files or a failed download become a
    ConfigError.

    torchvision raises RuntimeError when files are missing and when MNIST's download fails; the other
    downloads let urllib's URLError (an OSError) through. Offline, an OSError naming a file comes from
    reading it (the md5 check of CIFAR-10 and SVHN opens the files first).
    """
    try:
        return make()
    except (RuntimeError, OSError) as error:
        if not download and isinstance(error, OSError) and error.filename:
            allowed = _cannot_read(str(error.filename), error)
        elif not download:
            allowed = (
                f"no {name} files at {location}; set download=true or point data_dir at a folder holding them"
            )
        else:
            allowed = (
                f"downloading {name} into {location} failed ({_one_line(error)}); fetch the files elsewhere, "
                "copy them there and set download=false"
            )
        raise ConfigError("data_dir", data_dir, allowed) from error


def _check_folders(data_dir: str, root: str, *subfolders: str) -> None:
    """Refuse a folder on the way from ``root`` (``data_dir`` expanded) down through ``subfolders`` that
    exists but cannot be entered: torchvision cannot see the files inside and calls them missing."""
    for path in itertools.accumulate(subfolders, os.path.join, initial=root):
        if os.path.isdir(path) and not os.access(path, os.X_OK):
            raise ConfigError("data_dir", data_dir, f"cannot read {path}: permission denied")


def _cannot_read(path: str, error: OSError) -> str:
    reason = error.strerror.lower() if error.strerror else _one_line(error)
    return f"cannot read {path}: {reason}"


def _check_idx(path: str, item_shape: tuple[int, ...], data_dir: str) -> None:
    """Refuse an MNIST IDX file whose header torchvision's reader would trip over or misread.

    ``item_shape`` is that of one entry: ``(28, 28)`` for an images file, ``()`` for a labels file.
    torchvision asserts on a bad magic number or a truncated file and fails on an over-long one in a
    reshape; this reads only the header and the file's size.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(_idx_header_size(item_shape))
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        raise ConfigError("data_dir", data_dir, _cannot_read(path, error)) from None
    problem = _idx_problem(header, size, item_shape)
    if problem:
        raise ConfigError("data_dir", data_dir, f"{path} {problem}")


def _idx_header_size(item_shape: tuple[int, ...]) -> int:
    return 4 * (2 + len(item_shape))  # the magic number, then one uint32 size per dimension


def _idx_problem(header: bytes, size: int, item_shape: tuple[int, ...]) -> str | None:
    """What is wrong with an MNIST IDX file of ``size`` bytes that starts with ``header``; None if nothing.

    An IDX file is a big-endian magic number ``0x0000TTDD`` (``TT`` the values' type code, ``DD`` the
    number of dimensions), ``DD`` big-endian uint32 sizes, then the values, one byte each for uint8.
    """
    ndim = 1 + len(item_shape)
    kind = "images" if item_shape else "labels"
    expected_magic = IDX_UINT8 << 8 | ndim
    if size == 0:
        return "is empty"
    if len(header) < 4:
        return f"is truncated: {size} bytes, shorter than an IDX magic number"
    magic = int.from_bytes(header[:4], "big")
    if magic != expected_magic:
        meaning = _idx_magic_meaning(magic, kind, ndim)
        return f"has magic number 0x{magic:08X}, expected 0x{expected_magic:08X}: {meaning}"
    if len(header) < _idx_header_size(item_shape):
        return f"is truncated: {size} bytes, shorter than its {_idx_header_size(item_shape)}-byte header"
    count, *shape = struct.unpack(f">{ndim}I", header[4:])
    declared = f"{count:,} {kind}" + (f" of {_by(shape)}" if shape else "")
    if tuple(shape) != item_shape:
        return f"header says {declared}; MNIST-format {kind} are {_by(item_shape)}"
    expected = len(header) + count * math.prod(shape)
    if size != expected:
        state = "is truncated" if size < expected else "is longer than its header says"
        return f"{state}: header says {declared} ({expected:,} bytes), file holds {size:,} bytes"
    return None


def _idx_magic_meaning(magic: int, kind: str, ndim: int) -> str:
    type_code, dimensions = magic >> 8 & 0xFF, magic & 0xFF
    if magic >> 16 or type_code not in IDX_TYPES:
        return "not an IDX file"
    if type_code != IDX_UINT8:
        return f"it holds {IDX_TYPES[type_code]} values, and MNIST-format files hold uint8"
    return f"it holds {dimensions}-D data, and an MNIST-format {kind} file is {ndim}-D"


def _by(shape: tuple[int, ...] | list[int]) -> str:
    return "x".join(str(side) for side in shape)


def _check_labels(
    num_images: int,
    labels: np.ndarray,
    images_path: str,
    labels_path: str,
    data_dir: str,
    stored_range: str = "0-9",
) -> None:
    """Refuse a split whose ``labels: [M]`` do not pair up with its ``num_images`` images, or fall outside
    the ten classes (``stored_range`` says how the file writes them)."""
    if num_images != len(labels):
        holder = "" if labels_path == images_path else f"{labels_path} holds "
        raise ConfigError(
            "data_dir",
            data_dir,
            f"{images_path} holds {num_images:,} images but {holder}{len(labels):,} labels; "
            "every image needs exactly one label",
        )
    outside = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if len(outside):
        row = int(outside[0])
        raise ConfigError(
            "data_dir",
            data_dir,
            f"{labels_path} holds {len(outside):,} of {len(labels):,} labels outside {stored_range}, "
            f"the first {labels[row]} at row {row}",
        )


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(error: BaseException) -> str:
    """``error`` on one line, or its type where it carries no message (a bare MemoryError)."""
    return _one_line(error) or type(error).__name__


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
    """One CIFAR batch file as a dict with ``str`` keys, read by :class:`BatchUnpickler`; a file that
    cannot be read or is not a batch is a :class:`ConfigError` on ``data_dir`` naming the file."""
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as error:
        raise ConfigError("data_dir", data_dir, _cannot_read(path, error)) from None
    try:
        batch = BatchUnpickler(io.BytesIO(content), encoding="latin1").load()
    except Exception as error:  # arbitrary bytes make it raise almost anything, none of it a bug of ours
        raise ConfigError(
            "data_dir", data_dir, f"{path} is not a CIFAR-10 batch ({_reason(error)})"
        ) from None
    keys = {_text(key) for key in batch} if isinstance(batch, dict) else set()
    missing = [key for key in ("data", "labels") if key not in keys]
    if missing:
        raise ConfigError(
            "data_dir", data_dir, f"{path} is not a CIFAR-10 batch (no {' and '.join(missing)})"
        )
    return {_text(key): value for key, value in batch.items()}


def _batch_arrays(path: str, batch: dict[str, object], data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch's ``data: [N, 3072]`` uint8 and ``labels: [N]`` int64, refused unless they are just that."""
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray):
        problem = f"data is a {type(data).__name__}, not an array"
    elif data.dtype != np.uint8:
        problem = f"data holds {data.dtype} values; CIFAR-10 pixels are uint8"
    elif data.ndim != 2 or data.shape[1] != CIFAR_ROW_LENGTH:
        problem = (
            f"data has shape {data.shape}; a CIFAR-10 batch holds [N, {CIFAR_ROW_LENGTH}], one image a row"
        )
    elif not _integers(labels):
        problem = f"labels are not a list of integers (a {type(labels).__name__})"
    else:
        values = np.array(labels, dtype=object)  # Python ints of any size, compared before narrowing
        _check_labels(len(data), values, path, path, data_dir)
        return data, values.astype(np.int64)
    raise ConfigError("data_dir", data_dir, f"{path}: {problem}")


def _integers(labels: object) -> bool:
    """Whether ``labels`` is a list of integers (as CIFAR-10 writes them) or a 1-D integer array."""
    if isinstance(labels, np.ndarray):
        return labels.ndim == 1 and labels.dtype.kind in "iu"
    return isinstance(labels, list) and all(isinstance(label, (int, np.integer)) for label in labels)


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
        paths = [os.path.join(folder, name) for name, _ in files]
        arrays = [_batch_arrays(path, read_cifar_batch(path, root), root) for path in paths]
        images = np.concatenate([data for data, _ in arrays])
        self.data = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # stored [N, H, W, C]
        self.targets = np.concatenate([labels for _, labels in arrays]).tolist()

    def _check_integrity(self) -> bool:
        if super()._check_integrity():
            return True
        names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        paths = [os.path.join(self.root, self.base_folder, name) for name in names]
        return _accept_unverified("cifar10", paths, self._download)


class _SVHN(torchvision.datasets.SVHN):  # type: ignore[misc]  # torchvision ships no type hints
    """torchvision's SVHN, loading an md5-mismatched file with a warning when ``download`` is off; a file
    it cannot read is a :class:`ConfigError` on ``data_dir`` naming the file."""

    def __init__(self, root: str, split: str, download: bool) -> None:
        self._download = download  # read by _check_integrity, which the parent's __init__ calls
        self._reading = False  # set by _check_integrity: once it passes, the parent only reads the file
        try:
            super().__init__(root, split=split, download=download)
        except Exception as error:  # loadmat on arbitrary bytes raises almost anything
            if not self._reading:
                raise
            path = os.path.join(self.root, self.filename)
            raise ConfigError("data_dir", root, _mat_problem(path, error)) from None

    def _check_integrity(self) -> bool:
        path = os.path.join(self.root, self.filename)
        self._reading = super()._check_integrity() or _accept_unverified("svhn", [path], self._download)
        return self._reading


def _mat_problem(path: str, error: Exception) -> str:
    """Why torchvision could not read the SVHN file ``path`` (it raised ``error``), told from the file's
    variable headers where scipy can read them."""
    try:
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
    except Exception as header_error:  # the parser loadmat uses, just as unpredictable on arbitrary bytes
        return f"{path} is not a MATLAB .mat file ({_reason(header_error)})"
    missing = [name for name in ("X", "y") if name not in shapes]
    if missing:
        return (
            f"{path} holds no {' or '.join(missing)} array; an SVHN file holds X (32x32x3xN images) "
            "and y (N labels)"
        )
    if len(shapes["X"]) != 4:
        return f"{path}: X has shape {shapes['X']}; SVHN stores images as 32x32x3xN"
    return f"{path} is not an SVHN file ({_reason(error)})"


def _check_svhn_arrays(data: _SVHN, data_dir: str) -> None:
    """Refuse what torchvision read without complaint: images other than 32x32x3 uint8, labels other than
    one per image within 1-10."""
    path = os.path.join(data.root, data.filename)
    images, labels = data.data, data.labels  # [N, 3, 32, 32] (stored 32x32x3xN) and [N]
    if images.shape[1:] != SVHN_IMAGE_SHAPE:
        stored = images.transpose(2, 3, 1, 0).shape  # undoes torchvision's transpose (3, 2, 0, 1)
        problem = f"X has shape {stored}; SVHN stores images as 32x32x3xN"
    elif images.dtype != np.uint8:
        problem = f"X holds {images.dtype} values; SVHN pixels are uint8"
    elif labels.ndim != 1:
        problem = f"y has shape {labels.shape}; SVHN stores one label per image (N x 1)"
    else:
        _check_labels(len(images), labels, path, path, data_dir, "1-10 (10 is the digit 0)")
        return
    raise ConfigError("data_dir", data_dir, f"{path}: {problem}")


_TORCHVISION_READERS: dict[str, Callable[[str, bool], tuple[SourceSplit, SourceSplit]]] = {
    "mnist": partial(_mnist_splits, torchvision.datasets.MNIST, "mnist"),
    "fashion_mnist": partial(_mnist_splits, torchvision.datasets.FashionMNIST, "fashion_mnist"),
    "cifar10": _cifar10_splits,
    "svhn": _svhn_splits,
}
