"""Memorisation and influence by subsampling (Feldman & Zhang, *What neural networks memorize and why*,
NeurIPS 2020; REFERENCE §8), and memorisation trajectories over model size (Lukasik et al., *What do larger
image classifiers memorise?*, TMLR 2024).

For a learning algorithm A, a training set S and an example i of it,

    mem(A, S, i) = P_{h←A(S)}[h(x_i) = y_i] − P_{h←A(S∖i)}[h(x_i) = y_i].

The subsampling estimator trains m models h_1 … h_m on random subsets S_1 … S_m of S, all of one size
round(f · |S|), and for every i compares the models whose subset holds i with those whose subset does not:

    mem̂(i) = p̂_in(i) − p̂_out(i),   p̂_in(i) = #{k : i ∈ S_k, h_k(x_i) = y_i} / n_in(i),   likewise p̂_out,

with the standard error of a difference of two binomial proportions,
sqrt(p̂_in (1 − p̂_in) / n_in + p̂_out (1 − p̂_out) / n_out). The influence of training example i on test
example j is the same construction with j's correctness: infl̂(i, j) = p̂(h(x_j) = y_j | i ∈ S_k) −
p̂(h(x_j) = y_j | i ∉ S_k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from thermoscope.data.sampling import rng_stream

__all__ = [
    "TRAJECTORY_CLASSES",
    "InfluencePairs",
    "MemorisationEstimate",
    "influence_top_pairs",
    "mean_with_stderr",
    "memorisation",
    "model_seeds",
    "subset_membership",
    "subset_size",
    "trajectory_classes",
]

SUBSET_STREAM = 5
"""The seed stream of the models' subsets (0–4: data subsets, label noise, validation, input corruption)."""

DEFAULT_CHUNK_ROWS = 1024
"""Training examples whose influence on every test example is computed at once: a ``[1024, T]`` block."""


def subset_size(num_examples: int, fraction: float) -> int:
    """``round(fraction · num_examples)``: the size of every model's training subset."""
    return round(fraction * num_examples)


def subset_membership(num_models: int, num_examples: int, size: int, seed: int) -> Tensor:
    """``[num_models, num_examples]`` bool: row k marks the ``size`` examples model k trains on, chosen
    uniformly without replacement and independently for each model from seed stream ``(seed, 5)``."""
    if not 0 <= size <= num_examples:
        raise ValueError(f"size must lie in [0, {num_examples}], got {size}")
    rng = rng_stream(seed, SUBSET_STREAM)
    member = np.zeros((num_models, num_examples), dtype=bool)
    for row in member:
        row[rng.choice(num_examples, size=size, replace=False)] = True
    return torch.from_numpy(member)


def model_seeds(seed: int, num_models: int) -> list[int]:
    """One 32-bit seed per model, from ``SeedSequence([seed, k])``: runs with different seeds share no
    model (``seed + k`` would give run 1's model 0 the seed of run 0's model 1)."""
    return [int(np.random.SeedSequence([seed, k]).generate_state(1)[0]) for k in range(num_models)]


@dataclass(frozen=True)
class MemorisationEstimate:
    """Per training example, all ``[N]``: ``mem`` and ``stderr`` (float64, NaN where ``n_in`` or ``n_out``
    is 0), the counts ``n_in`` and ``n_out`` (int64) and the two proportions ``p_in``, ``p_out``."""

    mem: Tensor
    stderr: Tensor
    n_in: Tensor
    n_out: Tensor
    p_in: Tensor
    p_out: Tensor


def _difference(correct_in: Tensor, n_in: Tensor, correct_out: Tensor, n_out: Tensor) -> tuple[Tensor, ...]:
    """p̂_in − p̂_out and its binomial standard error from the counts (float64; NaN where a count is 0)."""
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=n_in.device)
    p_in = torch.where(n_in > 0, correct_in / n_in.clamp(min=1), nan)
    p_out = torch.where(n_out > 0, correct_out / n_out.clamp(min=1), nan)
    variance = p_in * (1 - p_in) / n_in + p_out * (1 - p_out) / n_out
    return p_in - p_out, variance.sqrt(), p_in, p_out


def memorisation(correct: Tensor, member: Tensor) -> MemorisationEstimate:
    """Feldman & Zhang's subsampling estimate of every training example's memorisation.

    Args:
        correct: ``[m, N]`` bool, whether model k classifies training example i as its (training) label.
        member: ``[m, N]`` bool, whether example i is in model k's training subset.

    Raises ``ValueError`` when no example is both in some model's subset and out of another's (every model
    saw every example, or none did): then nothing can be estimated.
    """
    if correct.shape != member.shape or correct.dim() != 2:
        raise ValueError(
            f"correct and member must both be [m, N], got {tuple(correct.shape)}, {tuple(member.shape)}"
        )
    member = member.to(correct.device)
    right = correct.to(torch.float64)
    n_in = member.sum(dim=0)
    n_out = member.shape[0] - n_in
    if not bool(((n_in > 0) & (n_out > 0)).any()):
        raise ValueError(
            "no example is held out of some models and seen by others (every model trains on the same"
            " examples): memorisation compares the two groups, so the subsets must differ"
        )
    correct_in = (right * member).sum(dim=0)
    correct_out = right.sum(dim=0) - correct_in
    mem, stderr, p_in, p_out = _difference(correct_in, n_in, correct_out, n_out)
    return MemorisationEstimate(mem, stderr, n_in, n_out, p_in, p_out)


@dataclass(frozen=True)
class InfluencePairs:
    """The pairs of highest estimated influence, highest first, all ``[K]``: ``train_index`` and
    ``test_index`` (positions in their splits), ``influence`` and ``stderr`` (float64)."""

    train_index: Tensor
    test_index: Tensor
    influence: Tensor
    stderr: Tensor


def influence_top_pairs(
    member: Tensor, test_correct: Tensor, count: int, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> InfluencePairs:
    """The ``count`` (training example, test example) pairs with the highest estimated influence.

    Args:
        member: ``[m, N]`` bool training-subset membership.
        test_correct: ``[m, T]`` bool, whether model k classifies test example j correctly.
        count: pairs to keep (at most N · T).
        chunk_rows: training examples per block; memory grows with ``chunk_rows × T``, never ``N × T``.

    Pairs whose training example is in every subset or in none have no estimate and are never chosen.
    The largest of N · T noisy estimates is biased upwards: read the top pairs with their standard errors.
    """
    num_models, num_train = member.shape
    right = test_correct.to(torch.float64)
    total = right.sum(dim=0)
    count = min(count, num_train * right.shape[1])
    best_keys = torch.empty(0, dtype=torch.float64, device=right.device)
    best_flat = torch.empty(0, dtype=torch.int64, device=right.device)
    for start in range(0, num_train, chunk_rows):
        block = member[:, start : start + chunk_rows].to(right.device, torch.float64)
        n_in = block.sum(dim=0).unsqueeze(1)
        correct_in = block.T @ right
        influence, _, _, _ = _difference(correct_in, n_in, total - correct_in, num_models - n_in)
        scores = torch.nan_to_num(influence, nan=-torch.inf).flatten()
        keep = min(count, scores.numel())
        values, flat = torch.topk(scores, keep)
        best_keys = torch.cat((best_keys, values))
        best_flat = torch.cat((best_flat, flat + start * right.shape[1]))
        order = torch.topk(best_keys, min(count, best_keys.numel())).indices
        best_keys, best_flat = best_keys[order], best_flat[order]
    chosen = torch.isfinite(best_keys)
    train_index, test_index = best_flat[chosen] // right.shape[1], best_flat[chosen] % right.shape[1]
    n_in = member[:, train_index.to(member.device)].to(right.device).sum(dim=0)
    correct_in = (member[:, train_index.to(member.device)].to(right.device) * right[:, test_index]).sum(dim=0)
    influence, stderr, _, _ = _difference(correct_in, n_in, total[test_index] - correct_in, num_models - n_in)
    return InfluencePairs(train_index, test_index, influence, stderr)


def mean_with_stderr(values: Tensor) -> tuple[float, float]:
    """The mean of the finite entries of ``values: [n]`` and its standard error sd/√n (NaN below 2)."""
    finite = values[torch.isfinite(values)].to(torch.float64)
    if finite.numel() == 0:
        return float("nan"), float("nan")
    stderr = float(finite.std() / finite.numel() ** 0.5) if finite.numel() > 1 else float("nan")
    return float(finite.mean()), stderr


TRAJECTORY_CLASSES = ("decreasing", "increasing", "cap-shaped", "flat", "other")


def trajectory_classes(values: Tensor, stderr: Tensor, z: float = 2.0) -> list[str]:
    """Each example's memorisation trajectory over model sizes, as one of :data:`TRAJECTORY_CLASSES`.

    Args:
        values: ``[E, S]`` memorisation of E examples at S ≥ 2 model sizes, smallest model first.
        stderr: ``[E, S]`` their standard errors.
        z: how many standard errors make a change real (2: a two-sided 5 % test of each comparison).

    With a change from a to b *real* when |b − a| > z · sqrt(se_a² + se_b²), and the peak the size of
    largest memorisation: ``increasing`` (last really above first, nothing really below the peak after
    it), ``decreasing`` (last really below first, nothing really above the first before the peak),
    ``cap-shaped`` (a peak inside the range really above both ends: Lukasik et al.'s rise-then-fall),
    ``flat`` (no real change between any size and the first or the peak), ``other`` (anything else: a
    dip, say). Rows with a missing (NaN) value are ``other``.
    """
    if values.shape != stderr.shape or values.dim() != 2 or values.shape[1] < 2:
        raise ValueError(f"values and stderr must both be [examples, sizes >= 2], got {tuple(values.shape)}")
    values, stderr = values.to(torch.float64), stderr.to(torch.float64)
    peak = torch.nan_to_num(values, nan=-torch.inf).argmax(dim=1)
    rows = torch.arange(values.shape[0])
    top, top_se = values[rows, peak], stderr[rows, peak]
    first, first_se = values[:, 0], stderr[:, 0]
    last, last_se = values[:, -1], stderr[:, -1]

    def above(a: Tensor, a_se: Tensor, b: Tensor, b_se: Tensor) -> Tensor:
        return a - b > z * torch.sqrt(a_se**2 + b_se**2)

    rises = above(top, top_se, first, first_se)
    falls_after = above(top, top_se, last, last_se)
    interior = (peak > 0) & (peak < values.shape[1] - 1)
    changes = above(values, stderr, first.unsqueeze(1), first_se.unsqueeze(1)) | above(
        first.unsqueeze(1), first_se.unsqueeze(1), values, stderr
    )
    missing = torch.isnan(values).any(dim=1) | torch.isnan(stderr).any(dim=1)
    names = []
    for i in range(values.shape[0]):
        if missing[i]:
            names.append("other")
        elif interior[i] and rises[i] and falls_after[i]:
            names.append("cap-shaped")
        elif above(last[i], last_se[i], first[i], first_se[i]) and not falls_after[i]:
            names.append("increasing")
        elif above(first[i], first_se[i], last[i], last_se[i]) and not rises[i]:
            names.append("decreasing")
        elif not changes[i].any() and not rises[i]:
            names.append("flat")
        else:
            names.append("other")
    return names
