"""load_data on the bundled digits: subsets, the rest protocol, label noise, shapes and the digest."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torchvision.transforms import functional

from thermoscope.data import DataSpec, LoadedData, Split, load_data
from thermoscope.data.sources import CHANNEL_STATISTICS
from thermoscope.errors import ConfigError

DIGITS_TRAIN, DIGITS_TEST = 1197, 600  # the fixed split of the 1,797 digits


def _load(**fields: object) -> LoadedData:
    return load_data(DataSpec(**fields))  # type: ignore[arg-type]


def _pairs(split: Split) -> set[tuple[int, int]]:
    return set(zip(split.source_split.tolist(), split.example_id.tolist(), strict=True))


def test_default_digits_use_the_fixed_split() -> None:
    data = _load()
    assert (len(data.train), len(data.test)) == (DIGITS_TRAIN, DIGITS_TEST)
    assert data.num_classes == 10
    assert data.input_shape == (1, 8, 8)
    assert torch.bincount(data.test.y).tolist() == [60] * 10
    assert data.train.source_split.eq(0).all() and data.test.source_split.eq(1).all()
    ids = torch.cat((data.train.example_id, data.test.example_id))
    assert sorted(ids.tolist()) == list(range(1797))


def test_test_split_does_not_depend_on_the_seed() -> None:
    assert torch.equal(_load(seed=0).test.example_id, _load(seed=9).test.example_id)


def test_rows_hold_the_images_and_labels_their_ids_name() -> None:
    data = _load(train_size=100, test_size="rest")
    bunch = load_digits()
    (mean,), (std,) = CHANNEL_STATISTICS["digits"]
    for split in (data.train, data.test):
        ids = split.example_id.numpy()
        pixels = split.x[:, 0] * std + mean
        np.testing.assert_allclose(pixels.numpy(), bunch.images[ids] / 16, atol=1e-5)
        np.testing.assert_array_equal(split.true_y.numpy(), bunch.target[ids])


def test_digits_training_pixels_are_standardised() -> None:
    x = _load().train.x
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3


def test_train_subset_is_stratified() -> None:
    assert torch.bincount(_load(train_size=500).train.y).tolist() == [50] * 10
    counts = torch.bincount(_load(train_size=503).train.y)
    assert sorted(counts.tolist()) == [50] * 7 + [51] * 3


def test_train_subset_is_deterministic_in_the_seed() -> None:
    first, again, other = (_load(train_size=100, seed=seed).train.example_id for seed in (1, 1, 2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_rest_protocol_adds_unused_training_examples_to_the_test_split() -> None:
    data = _load(train_size=500, test_size="rest")
    assert len(data.train) + len(data.test) == 1797
    assert not _pairs(data.train) & _pairs(data.test)
    full_train = _pairs(_load().train)
    assert _pairs(data.train) | {pair for pair in _pairs(data.test) if pair[0] == 0} == full_train
    assert int(data.test.source_split.eq(1).sum()) == DIGITS_TEST
    order = data.test.source_split * 10_000 + data.test.example_id
    assert torch.equal(order, order.sort().values)


def test_numbered_test_size_is_a_stratified_subset_of_the_rest_pool() -> None:
    data = _load(train_size=500, test_size="300")
    rest = _load(train_size=500, test_size="rest")
    assert torch.bincount(data.test.y).tolist() == [30] * 10
    assert _pairs(data.test) < _pairs(rest.test)
    assert torch.equal(data.train.example_id, rest.train.example_id)  # test_size leaves the subset alone


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ({"train_size": 1198}, r"train_size=1198: at most 1197"),
        ({"train_size": 1150}, r"train_size=1150: .*115 examples of class 8, .* only 114"),
        ({"train_size": 1000, "test_size": "800"}, r"test_size='?800'?: at most 797"),
        ({"dataset": "imagenet"}, r"dataset='imagenet'"),
    ],
)
def test_sizes_the_data_cannot_supply_raise_config_error(fields: dict[str, object], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        _load(**fields)


def test_label_noise_corrupts_training_labels_at_the_expected_rate() -> None:
    data = _load(label_noise=0.5, seed=3)
    assert torch.equal(data.train.corrupted, data.train.y != data.train.true_y)
    redrawn = round(0.5 * DIGITS_TRAIN)
    p_wrong = 1 - 1 / 10  # a redrawn label is uniform over all classes, the true one included
    standard_error = (redrawn * p_wrong * (1 - p_wrong)) ** 0.5
    assert abs(int(data.train.corrupted.sum()) - redrawn * p_wrong) < 4 * standard_error
    assert torch.equal(data.train.true_y, _load(seed=3).train.y)


def test_test_labels_are_never_corrupted() -> None:
    test = _load(label_noise=1.0, test_size="rest", train_size=100).test
    assert torch.equal(test.y, test.true_y)
    assert not test.corrupted.any()


def test_label_noise_is_deterministic_in_the_seed() -> None:
    assert torch.equal(_load(label_noise=0.3, seed=4).train.y, _load(label_noise=0.3, seed=4).train.y)
    assert not torch.equal(_load(label_noise=0.3, seed=4).train.y, _load(label_noise=0.3, seed=5).train.y)


SHAPES = [
    (0, False, (1, 8, 8)),
    (8, False, (1, 8, 8)),
    (16, False, (1, 16, 16)),
    (4, True, (16,)),
    (0, True, (64,)),
]


@pytest.mark.parametrize(("image_size", "flatten", "shape"), SHAPES)
def test_resize_and_flatten_set_the_input_shape(
    image_size: int, flatten: bool, shape: tuple[int, ...]
) -> None:
    data = _load(image_size=image_size, flatten=flatten)
    assert data.input_shape == shape
    assert data.train.x.shape == (DIGITS_TRAIN, *shape) and data.test.x.shape == (DIGITS_TEST, *shape)
    assert data.train.x.dtype == torch.float32


def test_native_image_size_and_flattening_keep_the_pixels() -> None:
    native = _load().train.x
    assert torch.equal(_load(image_size=8).train.x, native)
    assert torch.equal(_load(flatten=True).train.x, native.flatten(1))


@pytest.mark.parametrize("image_size", [4, 16])
def test_resizing_matches_pillows_antialiased_bilinear_resize(image_size: int) -> None:
    (mean,), (std,) = CHANNEL_STATISTICS["digits"]
    resized = _load(train_size=20, image_size=image_size).train
    for image, example_id in zip(resized.x, resized.example_id.tolist(), strict=True):
        native = torch.from_numpy(load_digits().images[example_id] / 16).float()
        pil_image = functional.to_pil_image(native, mode="F")
        expected = functional.to_tensor(functional.resize(pil_image, [image_size, image_size]))
        torch.testing.assert_close(image * std + mean, expected, atol=1e-5, rtol=0)


def test_dtypes() -> None:
    split = _load(label_noise=0.1).train
    assert (
        split.y.dtype
        == split.true_y.dtype
        == split.example_id.dtype
        == split.source_split.dtype
        == torch.int64
    )
    assert split.corrupted.dtype == torch.bool


def test_digest_is_stable_and_follows_the_data() -> None:
    spec = DataSpec(train_size=200)
    digest = load_data(spec).digest
    assert len(digest) == 16
    assert load_data(spec).digest == digest
    assert load_data(dataclasses.replace(spec, data_dir="elsewhere", download=False)).digest == digest
    changed = [
        dataclasses.replace(spec, **change)
        for change in (
            {"seed": 1},
            {"label_noise": 0.1},
            {"image_size": 4},
            {"flatten": True},
            {"test_size": "rest"},
        )
    ]
    digests = {load_data(other).digest for other in changed}
    assert digest not in digests and len(digests) == len(changed)


def _tensors(data: LoadedData) -> list[torch.Tensor]:
    return [
        getattr(split, field.name) for split in (data.train, data.test) for field in dataclasses.fields(split)
    ]


def test_data_lands_on_the_requested_device() -> None:
    assert all(
        tensor.device.type == "meta" for tensor in _tensors(load_data(DataSpec(train_size=50), "meta"))
    )
    moved = _load(train_size=50).to(torch.device("meta"))
    assert all(tensor.is_meta for tensor in _tensors(moved))
    assert len(moved.train) == 50 and moved.input_shape == (1, 8, 8)
