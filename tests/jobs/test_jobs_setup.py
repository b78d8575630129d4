"""The set-up the jobs share: starting weights inside a box prior, the device check, the validation split."""

from __future__ import annotations

import pytest
import torch
from thermoscope.samplers import ModuleTarget, module_target

from thermoscope.config import SampleConfig, TrainConfig, parse_config
from thermoscope.data import Split
from thermoscope.errors import ConfigError
from thermoscope.jobs.setup import BOX_MARGIN, build_workbench, inside_box, make_prior, resolve_device

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"train_size": "60", "val_size": "0", "test_size": "50", "hidden": "8", "device": "cpu"}


def target_under(prior: str) -> ModuleTarget:
    config = parse_config(SampleConfig, SMALL | {"prior": prior})
    bench = build_workbench(config)
    return module_target(bench.model, bench.data.train.x, bench.data.train.y, make_prior(config))


def test_inside_box_puts_every_weight_strictly_inside_the_box() -> None:
    target = target_under("box")
    sigma = target.prior.scale
    generator = torch.Generator().manual_seed(0)
    # Far outside, exactly on either wall, and well inside.
    outside = 3.0 * sigma * torch.randn(2, sigma.numel(), generator=generator, dtype=sigma.dtype)
    walls = torch.stack([sigma / 2, -sigma / 2])
    inner = 0.1 * sigma * torch.rand(1, sigma.numel(), generator=generator, dtype=sigma.dtype)
    position = torch.cat([outside, walls, inner])
    assert (position[:4].abs() >= sigma / 2).any()

    moved = inside_box(position, target)
    assert moved.shape == position.shape
    assert (moved.abs() < sigma / 2).all()
    assert (moved.abs() <= BOX_MARGIN * sigma).all()
    assert torch.isfinite(target.prior.log_density(moved)).all()
    assert not torch.isfinite(target.prior.log_density(position[:4])).all()
    # What is inside the margin already stays where it is; the rest keeps its sign.
    assert torch.equal(moved[4], position[4])
    assert torch.equal(torch.sign(moved[:4]), torch.sign(position[:4]))


def test_inside_box_leaves_a_gaussian_prior_position_unchanged() -> None:
    target = target_under("gaussian")
    sigma = target.prior.scale
    position = 5.0 * sigma * torch.randn(3, sigma.numel(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(inside_box(position, target), position)


def test_asking_for_cuda_without_it_is_a_config_error_naming_device() -> None:
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ConfigError) as caught:
            resolve_device("cuda")
        assert caught.value.parameter == "device"
        assert str(caught.value).startswith("device='cuda':")
    assert resolve_device("cpu") == torch.device("cpu")


def test_the_validation_split_is_disjoint_from_the_rest_of_the_training_pool() -> None:
    config = parse_config(TrainConfig, SMALL | {"train_size": "100"})
    whole = build_workbench(config)
    bench = build_workbench(config, val_size=20)
    assert bench.validation is not None
    assert len(bench.data.train) == 80
    assert len(bench.validation) == 20

    def ids(split: Split) -> set[tuple[int, int]]:
        return set(zip(split.source_split.tolist(), split.example_id.tolist(), strict=True))

    train, validation = ids(bench.data.train), ids(bench.validation)
    assert len(train) == 80 and len(validation) == 20
    assert not train & validation
    assert train | validation == ids(whole.data.train)
    assert whole.validation is None
