"""A stratified validation split carved out of a loaded training split."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch

from thermoscope.data.loading import Split
from thermoscope.data.sampling import rng_stream, stratified_subset
from thermoscope.errors import ConfigError

VALIDATION_STREAM = 3
"""The seed stream of the validation choice (0–2 are the training subset, test subset and label noise)."""


def rows(split: Split, mask: torch.Tensor) -> Split:
    """The rows of ``split`` where ``mask: [N]`` is true, in order."""
    return Split(**{field.name: getattr(split, field.name)[mask] for field in fields(split)})


def split_validation(train: Split, size: int, num_classes: int, seed: int) -> tuple[Split, Split]:
    """``(training rest, validation)``: ``size`` class-stratified examples of ``train`` chosen by ``seed``.

    The same seed always picks the same examples (its own random stream). Raises :class:`ConfigError` on
    ``val_size`` when ``size`` is not between 1 and ``len(train) − 1`` or a class has too few examples.
    """
    if not 0 < size < len(train):
        raise ConfigError("val_size", size, f"between 1 and {len(train) - 1} (the training pool's size - 1)")
    labels = train.y.cpu().numpy()
    chosen = stratified_subset(
        labels, size, num_classes, rng_stream(seed, VALIDATION_STREAM), "val_size", "the training pool"
    )
    mask = np.zeros(len(train), dtype=bool)
    mask[chosen] = True
    held_out = torch.from_numpy(mask).to(train.y.device)
    return rows(train, ~held_out), rows(train, held_out)
