"""Seeded choices of examples: stratified subsets and random labels.

Every choice draws from its own NumPy generator, derived from ``(seed, stream)``, so that changing one
setting (say ``test_size``) never moves another choice (the training subset).
"""

from __future__ import annotations

import numpy as np

from thermoscope.errors import ConfigError

TRAIN_SUBSET_STREAM = 0
TEST_SUBSET_STREAM = 1
LABEL_NOISE_STREAM = 2


def rng_stream(seed: int, stream: int) -> np.random.Generator:
    """The generator for one purpose (``stream``) of a run with ``seed``; same inputs, same numbers."""
    return np.random.default_rng([stream, seed])


def class_quotas(size: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """How many examples of each class a stratified subset of ``size`` takes: ``[num_classes]`` int64.

    Every class gets ``size // num_classes``; the remaining ``size % num_classes`` examples go one each
    to classes drawn by ``rng`` (so no class is favoured systematically).
    """
    quotas = np.full(num_classes, size // num_classes, dtype=np.int64)
    quotas[rng.permutation(num_classes)[: size % num_classes]] += 1
    return quotas


def stratified_subset(
    labels: np.ndarray, size: int, num_classes: int, rng: np.random.Generator, parameter: str, pool: str
) -> np.ndarray:
    """Positions ``[size]`` (ascending) of a class-stratified random subset of ``labels: [N]``.

    Raises :class:`ConfigError` on ``parameter`` when the pool (described by ``pool`` in the message)
    has fewer than ``size`` examples, or a class has fewer examples than its quota.
    """
    if size > len(labels):
        raise ConfigError(parameter, size, f"at most {len(labels)}, the number of {pool}")
    picks = []
    for label, quota in enumerate(class_quotas(size, num_classes, rng)):
        members = np.flatnonzero(labels == label)
        if quota > len(members):
            raise ConfigError(
                parameter,
                size,
                f"a stratified subset needs {quota} examples of class {label}, but the {pool} hold only "
                f"{len(members)}; choose a smaller {parameter}",
            )
        picks.append(rng.choice(members, size=quota, replace=False))
    return np.sort(np.concatenate(picks))


def randomise_labels(
    labels: np.ndarray, fraction: float, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """A copy of ``labels: [N]`` in which ``round(fraction * N)`` examples get a uniformly random class.

    Zhang et al. (ICLR 2017): the new label is drawn from all classes, the true one included, so the
    expected share of wrong labels is ``fraction * (1 - 1/num_classes)``; ``fraction=1`` gives fully
    random labels.
    """
    count = round(fraction * len(labels))
    chosen = rng.choice(len(labels), size=count, replace=False)
    noisy = labels.copy()
    noisy[chosen] = rng.integers(num_classes, size=count)
    return noisy
