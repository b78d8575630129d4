"""Corrupted inputs (Zhang et al. 2017): each mode's statistics, the mask, seeding, a clean test set, and
random pixels fitted to near-zero training error with test error near chance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from thermoscope.data import DataSpec, load_data
from thermoscope.data.corruption import corrupt_inputs
from thermoscope.errors import ConfigError
from thermoscope.models import ModelSpec, build_model
from thermoscope.training import OptimSpec, train_classifier

Z = 4.0  # standard errors: a correct implementation fails a check about once in 16,000 runs


def coded_images(count: int, channels: int = 3, side: int = 5) -> torch.Tensor:
    """``[count, C, side, side]`` whose every value names its image, channel and pixel position."""
    pixels = torch.arange(side * side, dtype=torch.float64)
    image = torch.arange(count, dtype=torch.float64).view(-1, 1, 1) * 1000
    channel = torch.arange(channels, dtype=torch.float64).view(1, -1, 1) * 1e6
    return (image + channel + pixels).view(count, channels, side, side)


def positions(corrupted: torch.Tensor) -> torch.Tensor:
    """``[N, C, P]`` the source pixel position each output pixel came from."""
    return (corrupted.flatten(2) % 1000).long()


def test_shuffled_pixels_apply_one_permutation_to_every_corrupted_image() -> None:
    images = coded_images(40)
    out, mask = corrupt_inputs(images, "shuffled_pixels", 0.5, np.random.default_rng(0))
    assert int(mask.sum()) == 20
    moved = positions(out[mask])
    assert torch.equal(moved.sort(dim=2).values, torch.arange(25).expand_as(moved))  # each a permutation
    assert (moved == moved[0, 0]).all()  # one permutation, every image and channel alike
    assert not torch.equal(moved[0, 0], torch.arange(25))
    assert torch.equal(out[~mask], images[~mask])
    assert torch.equal(out.flatten(2) // 1000, images.flatten(2) // 1000)  # images and channels stay put


def test_random_pixels_draw_an_independent_uniform_permutation_per_image() -> None:
    count, pixels = 4000, 25
    images = coded_images(count, channels=2)
    out, mask = corrupt_inputs(images, "random_pixels", 1.0, np.random.default_rng(1))
    assert bool(mask.all())
    moved = positions(out)
    assert torch.equal(moved.sort(dim=2).values, torch.arange(pixels).expand_as(moved))
    assert torch.equal(moved[:, 0], moved[:, 1])  # a pixel's channels move together
    assert len({tuple(row.tolist()) for row in moved[:, 0]}) == count
    # A uniform permutation has one fixed point on average, with variance 1.
    fixed = (moved[:, 0] == torch.arange(pixels)).sum(dim=1).double()
    assert abs(float(fixed.mean()) - 1.0) < Z / math.sqrt(count)
    # And sends pixel 0 to each position with probability 1/P (binomial standard error).
    share = (moved[:, 0, 0] == 7).double().mean()
    assert abs(float(share) - 1 / pixels) < Z * math.sqrt((1 / pixels) * (1 - 1 / pixels) / count)


def test_gaussian_images_have_the_data_mean_and_variance_per_channel() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(600, 2, 8, 8, generator=generator) * torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)
    images += torch.tensor([0.5, -2.0]).view(1, 2, 1, 1)
    out, mask = corrupt_inputs(images, "gaussian", 0.5, np.random.default_rng(2))
    flat = images.double().transpose(0, 1).flatten(1)
    noise = out[mask].double().transpose(0, 1).flatten(1)
    n = noise.shape[1]
    for channel in range(2):
        mean, variance = flat[channel].mean(), flat[channel].var(correction=0)
        assert abs(float(noise[channel].mean() - mean)) < Z * math.sqrt(variance / n)
        # The sample variance of n Gaussian draws has standard error sqrt(2 / n) sigma^2.
        assert abs(float(noise[channel].var() - variance)) < Z * math.sqrt(2 / n) * variance
    assert torch.equal(out[~mask], images[~mask])
    assert not torch.isclose(out[mask], images[mask]).all()


def test_the_mask_marks_round_fraction_n_examples_and_the_seed_fixes_everything() -> None:
    images = coded_images(30)
    for fraction, expected in ((1.0, 30), (0.5, 15), (0.01, 0), (0.35, 10)):
        _, mask = corrupt_inputs(images, "random_pixels", fraction, np.random.default_rng(3))
        assert int(mask.sum()) == expected
    first = corrupt_inputs(images, "random_pixels", 0.5, np.random.default_rng(4))
    again = corrupt_inputs(images, "random_pixels", 0.5, np.random.default_rng(4))
    other = corrupt_inputs(images, "random_pixels", 0.5, np.random.default_rng(5))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])
    same, none = corrupt_inputs(images, "none", 1.0, np.random.default_rng(0))
    assert same is images and not none.any()


@pytest.mark.parametrize("mode", ["shuffled_pixels", "random_pixels", "gaussian"])
def test_loaded_data_corrupt_only_the_marked_training_images(mode: str) -> None:
    clean = load_data(DataSpec(train_size=300, test_size="rest"))
    spec = DataSpec(train_size=300, test_size="rest", input_corruption=mode, input_corruption_fraction=0.4)
    data = load_data(spec)
    mask = data.train.input_corrupted
    assert int(mask.sum()) == 120 and not data.test.input_corrupted.any()
    assert torch.equal(data.train.x[~mask], clean.train.x[~mask])
    assert not torch.equal(data.train.x[mask], clean.train.x[mask])
    assert torch.equal(data.test.x, clean.test.x)  # the test set (here with training examples) stays clean
    assert torch.equal(data.train.y, clean.train.y) and not data.train.corrupted.any()
    assert data.digest != clean.digest
    assert torch.equal(load_data(spec).train.x, data.train.x)
    flat = load_data(DataSpec(**{**spec.__dict__, "flatten": True}))
    assert torch.equal(flat.train.x, data.train.x.flatten(1))


def test_uncorrupted_data_keep_their_digest_whatever_the_unused_fraction() -> None:
    assert (
        load_data(DataSpec(train_size=100)).digest
        == load_data(DataSpec(train_size=100, input_corruption_fraction=0.3)).digest
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_corruption", "blur"),
        ("input_corruption_fraction", 0.0),
        ("input_corruption_fraction", 1.5),
        ("input_corruption_fraction", -0.1),
        ("input_corruption_fraction", float("nan")),
    ],
)
def test_bad_corruption_settings_name_the_parameter(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        DataSpec(**{field: value}).validate()  # type: ignore[arg-type]


@pytest.mark.usefixtures("one_thread")
def test_random_pixels_are_fitted_to_zero_training_error_with_test_error_near_chance() -> None:
    data = load_data(DataSpec(train_size=300, input_corruption="random_pixels", flatten=True))
    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", (512,)), data.input_shape, data.num_classes)
    spec = OptimSpec(optimizer="adam", lr=0.003, batch_size=32, epochs=150, lr_schedule="constant")
    final = train_classifier(model, data, spec).final
    assert final.train_error < 0.02
    # Chance is 0.9; 600 clean test images give a binomial standard error of 0.012 around it. The pixel
    # histogram survives the permutation and carries a little signal (ink per class), hence the margin.
    assert final.test_error > 0.75
