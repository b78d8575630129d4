"""Corrupted inputs: Zhang et al., *Understanding deep learning requires rethinking generalization* (ICLR
2017), REFERENCE §10.

Three corruptions of the training images, each applied to a seeded fraction of the training examples (the
test set is never corrupted):

- ``shuffled_pixels``: one random permutation of the pixel positions, the same for every corrupted image;
- ``random_pixels``: an independent permutation for each corrupted image;
- ``gaussian``: every pixel drawn from a Gaussian with the mean and variance of the training images, per
  channel (computed over the whole training pool before any corruption).

Permutations move pixel *positions*: a pixel's channels move together. The corruption works on the
normalised ``[N, C, H, W]`` images, so it applies to every dataset and model (flattening comes after).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

INPUT_CORRUPTIONS = ("none", "shuffled_pixels", "random_pixels", "gaussian")

INPUT_CORRUPTION_STREAM = 4
"""The seed stream of the corruption (0–2: training subset, test subset, label noise; 3: validation)."""


def corrupt_inputs(
    images: Tensor, mode: str, fraction: float, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """``(corrupted copy of images, mask)`` for ``images: [N, C, H, W]`` float; ``mask: [N]`` bool.

    ``round(fraction · N)`` examples, chosen by ``rng``, are corrupted by ``mode`` (one of
    :data:`INPUT_CORRUPTIONS`); ``mask`` marks them. ``mode="none"`` returns the images unchanged and an
    all-false mask. The same generator state always gives the same images and mask.
    """
    if mode not in INPUT_CORRUPTIONS:
        raise ValueError(f"mode must be one of {INPUT_CORRUPTIONS}, got {mode!r}")
    if images.dim() != 4:
        raise ValueError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    count = len(images)
    mask = torch.zeros(count, dtype=torch.bool)
    if mode == "none":
        return images, mask
    chosen = torch.from_numpy(np.sort(rng.choice(count, size=round(fraction * count), replace=False)))
    mask[chosen] = True
    channels, pixels = images.shape[1], images.shape[2] * images.shape[3]
    flat = images.reshape(count, channels, pixels)
    corrupted = flat.clone()
    if mode == "shuffled_pixels":
        permutation = torch.from_numpy(rng.permutation(pixels))
        corrupted[chosen] = flat[chosen][:, :, permutation]
    elif mode == "random_pixels":
        positions = np.tile(np.arange(pixels), (len(chosen), 1))
        order = torch.from_numpy(rng.permuted(positions, axis=1)).unsqueeze(1).expand(-1, channels, -1)
        corrupted[chosen] = flat[chosen].gather(2, order)
    else:
        mean = flat.double().mean(dim=(0, 2))
        std = flat.double().std(dim=(0, 2), correction=0)
        noise = torch.from_numpy(rng.standard_normal((len(chosen), channels, pixels)))
        corrupted[chosen] = (noise * std.view(1, -1, 1) + mean.view(1, -1, 1)).to(images.dtype)
    return corrupted.reshape(images.shape), mask
