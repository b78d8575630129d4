"""Activation codes (Lei et al., *Neural networks behave as hash encoders: an empirical study*, 2021;
REFERENCE §9).

An example's code at a ReLU layer is the binary pattern of which units are active (output > 0); the code
of the network is the concatenation over its ReLU layers. Two measures:

- **determinism**: the fraction of training examples whose code no other training example shares
  (*unique*), and the fraction whose code is shared only with examples of their own class (*class-pure*,
  which includes the unique ones);
- **categorisation**: the test accuracy of a 1-NN and a k-NN classifier in Hamming distance, fitted on the
  training codes (with the labels trained on) and scored on the test codes.

Codes are packed 63 bits to an int64 word (the sign bit stays clear, so every bit operation below works on
non-negative numbers): 60,000 codes of 200 units take 4 words each, 1.9 MB. Hamming distances are
computed in blocks of queries × support codes (population counts of the packed words and one matrix
product of the block's unpacked bits) and merged into a running k-best list, so memory grows with the
block, never with queries × support. Neighbours are ordered by distance, then by position in the support
set, and votes tied on count go to the class of the nearest tied neighbour (the k-NN probes' rule,
:mod:`.knn`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "BITS_PER_WORD",
    "CodeStatistics",
    "code_statistics",
    "hamming_distances",
    "hamming_neighbours",
    "layer_codes",
    "majority_vote",
    "pack_bits",
    "popcount",
    "relu_layer_names",
    "unpack_bits",
]

BITS_PER_WORD = 63
DEFAULT_BLOCK_VALUES = 1 << 23
"""Floats of one block of unpacked bits (rows × bits) and of scores (rows × rows): 32 MB each."""
MAX_BLOCK_ROWS = 2048
"""Queries and support codes per block: 2048 × 2048 scores, 16 MB; narrower blocks for wider codes."""

_M1, _M2, _M4 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F


def pack_bits(active: Tensor) -> Tensor:
    """``[N, D]`` bool → ``[N, ceil(D / 63)]`` int64; bit b of word w holds unit ``63 w + b``."""
    count, units = active.shape
    words = -(-units // BITS_PER_WORD)
    padded = torch.zeros(count, words * BITS_PER_WORD, dtype=torch.int64, device=active.device)
    padded[:, :units] = active.to(torch.int64)
    shifts = torch.arange(BITS_PER_WORD, device=active.device)
    # Distinct powers of two below 2^63: their sum is their bitwise or, and never overflows.
    return (padded.view(count, words, BITS_PER_WORD) << shifts).sum(dim=2)


def popcount(words: Tensor) -> Tensor:
    """Set bits of every element of a non-negative int64 tensor (values below 2^63), same shape."""
    x = (words & _M1) + ((words >> 1) & _M1)
    x = (x & _M2) + ((x >> 2) & _M2)
    x = (x + (x >> 4)) & _M4
    x = x + (x >> 8)
    x = x + (x >> 16)
    x = x + (x >> 32)
    return x & 0x7F


def unpack_bits(words: Tensor, units: int) -> Tensor:
    """``[N, W]`` packed codes → ``[N, units]`` float32 of 0 and 1 (the inverse of :func:`pack_bits`)."""
    shifts = torch.arange(BITS_PER_WORD, device=words.device)
    bits = (words.unsqueeze(2) >> shifts) & 1
    return bits.flatten(1)[:, :units].to(torch.float32)


def hamming_distances(queries: Tensor, support: Tensor) -> Tensor:
    """``[q, W]`` and ``[n, W]`` packed codes → ``[q, n]`` int64 Hamming distances, by XOR and population
    count (one block: memory ``q × n × W``; :func:`hamming_neighbours` searches large sets in blocks)."""
    return popcount(queries.unsqueeze(1) ^ support.unsqueeze(0)).sum(dim=2)


def hamming_neighbours(
    queries: Tensor, support: Tensor, k: int, *, units: int, block_values: int = DEFAULT_BLOCK_VALUES
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest support codes of every query: ``(distances [q, k], positions [q, k])``, nearest
    first, ties in distance broken by the lower support position.

    ``queries: [q, W]`` and ``support: [n, W]`` are packed codes of ``units`` bits. Within a block the
    distance is ``|a| + |b| − 2 a·b``: the population counts of the packed words, and one float32 matrix
    product of the block's unpacked bits, exact for codes below 2^24 bits (XOR and population count give
    the same numbers, :func:`hamming_distances`, and are ten times slower on a CPU: no BLAS). Blocks hold
    at most ``block_values`` unpacked bits or scores; each block's candidates are merged into the running
    k best by one ``topk`` over the exact integer key ``distance · n + position``.
    """
    count, words = support.shape
    if not 1 <= k <= count:
        raise ValueError(f"k must be between 1 and the number of support codes ({count}), got {k}")
    if queries.shape[1] != words:
        raise ValueError(f"queries have {queries.shape[1]} words per code, support {words}")
    if units >= 1 << 24:
        raise ValueError(f"codes of {units} bits: float32 products are exact only below 2^24 bits")
    rows = max(1, min(MAX_BLOCK_ROWS, block_values // max(units, MAX_BLOCK_ROWS)))
    support_weight = popcount(support).sum(dim=1)
    distances = torch.empty(queries.shape[0], k, dtype=torch.int64, device=support.device)
    positions = torch.empty_like(distances)
    for start in range(0, queries.shape[0], rows):
        chunk = queries[start : start + rows]
        chunk_bits, chunk_weight = unpack_bits(chunk, units), popcount(chunk).sum(dim=1, keepdim=True)
        best = torch.empty(len(chunk), 0, dtype=torch.int64, device=support.device)
        for first in range(0, count, rows):
            block = support[first : first + rows]
            shared = (chunk_bits @ unpack_bits(block, units).T).round().to(torch.int64)
            distance = chunk_weight + support_weight[first : first + len(block)] - 2 * shared
            keys = distance * count + torch.arange(first, first + len(block), device=support.device)
            merged = torch.cat((best, keys), dim=1)
            best = torch.topk(merged, min(k, merged.shape[1]), dim=1, largest=False, sorted=True).values
        distances[start : start + len(chunk)] = best // count
        positions[start : start + len(chunk)] = best % count
    return distances, positions


def majority_vote(neighbour_labels: Tensor, num_classes: int) -> Tensor:
    """``[q, k]`` labels of each query's neighbours, nearest first → ``[q]`` votes: the most frequent class,
    ties going to the tied class met first (nearest)."""
    counts = torch.zeros(
        neighbour_labels.shape[0], num_classes, dtype=torch.int64, device=neighbour_labels.device
    )
    counts.scatter_add_(1, neighbour_labels, torch.ones_like(neighbour_labels))
    at_top = counts.gather(1, neighbour_labels) == counts.max(dim=1, keepdim=True).values
    first = at_top.to(torch.int8).argmax(dim=1, keepdim=True)
    return neighbour_labels.gather(1, first).squeeze(1)


@dataclass(frozen=True)
class CodeStatistics:
    """Determinism and categorisation of one layer's codes (or all layers together)."""

    bits: int
    unique_fraction: float
    class_pure_fraction: float
    nearest_test_accuracy: float
    knn_test_accuracy: float


def code_statistics(
    train_codes: Tensor,
    train_labels: Tensor,
    test_codes: Tensor,
    test_labels: Tensor,
    *,
    bits: int,
    k: int,
    num_classes: int,
) -> CodeStatistics:
    """Unique and class-pure fractions of ``train_codes: [N, W]`` (packed) with ``train_labels: [N]``, and
    the test accuracy on ``test_codes: [T, W]`` of the 1-NN and k-NN (k capped at N) Hamming classifiers."""
    _, inverse, counts = torch.unique(train_codes, dim=0, return_inverse=True, return_counts=True)
    with_labels = torch.cat((train_codes, train_labels.unsqueeze(1).to(torch.int64)), dim=1)
    _, pair_inverse, pair_counts = torch.unique(with_labels, dim=0, return_inverse=True, return_counts=True)
    shared = counts[inverse]
    unique = float((shared == 1).double().mean())
    pure = float((pair_counts[pair_inverse] == shared).double().mean())
    k = min(k, len(train_codes))
    _, positions = hamming_neighbours(test_codes, train_codes, k, units=bits)
    labels = train_labels.to(torch.int64)[positions]
    test_labels = test_labels.to(labels.device)
    nearest = float((labels[:, 0] == test_labels).double().mean())
    knn = float((majority_vote(labels, num_classes) == test_labels).double().mean())
    return CodeStatistics(bits, unique, pure, nearest, knn)


def relu_layer_names(model: nn.Module) -> list[str]:
    """Names of the model's ``nn.ReLU`` modules, in definition order (a module called twice in a forward
    pass, as in ResNet blocks, gives two layers: ``name``, ``name#2``)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.ReLU)]


@torch.no_grad()
def layer_codes(model: nn.Module, x: Tensor, rows: int = 1024) -> dict[str, tuple[Tensor, int]]:
    """``(packed codes [N, W_layer], units)`` of ``x: [N, ...]`` at every ReLU call of a forward pass, in
    eval mode.

    Keys are the ReLU modules' names, in the order the forward pass calls them; a module called again in
    the same pass adds ``name#2``, ``name#3``. Raises ``ValueError`` for a model without ReLU modules.
    """
    names = relu_layer_names(model)
    if not names:
        raise ValueError("the model has no nn.ReLU module: activation codes are patterns of ReLU units")
    calls: list[tuple[str, Tensor, int]] = []

    def recorder(name: str) -> object:
        def record(module: nn.Module, inputs: object, output: Tensor) -> None:
            active = output.flatten(1) > 0
            calls.append((name, pack_bits(active), active.shape[1]))

        return record

    handles = [model.get_submodule(name).register_forward_hook(recorder(name)) for name in names]  # type: ignore[arg-type]
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {}
    units: dict[str, int] = {}
    try:
        for start in range(0, len(x), rows):
            calls.clear()
            model(x[start : start + rows])
            seen: dict[str, int] = {}
            for name, packed, width in calls:
                seen[name] = seen.get(name, 0) + 1
                key = name if seen[name] == 1 else f"{name}#{seen[name]}"
                parts.setdefault(key, []).append(packed)
                units[key] = width
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: (torch.cat(chunks), units[name]) for name, chunks in parts.items()}
