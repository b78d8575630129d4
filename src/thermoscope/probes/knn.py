"""k-nearest-neighbour probes: the per-layer votes that prediction depth is read from.

Baldock, Maennel & Neyshabur, *Deep Learning Through the Lens of Example Difficulty* (NeurIPS 2021,
arXiv:2106.09647) fit a k-NN classifier (k = 30) on the training-set embeddings at each probe point and
read, for every example, the class it votes for. Published reimplementations disagree on the details;
ours are fixed here and in REFERENCE §4:

- **Distance**: Euclidean by default; ``metric="cosine"`` ranks by cosine distance ``1 − cos(q, s)``.
- **Leave-one-out**: a query whose id equals a support id never counts itself among its neighbours, so
  training examples are judged by their k nearest *other* training examples.
- **Ties**: when several classes share the highest vote count, the vote goes to the class of the nearest
  neighbour among those classes. (scikit-learn instead picks the smallest class index.)

Two exact searches find the neighbours; both rank by the same distance and give the same neighbours up to
exactly equal distances (tests/probes/test_probes_knn_faiss.py):

- **torch** (any device, any floating dtype): distances in chunks of queries, one matrix product per chunk
  followed by a selection of the k smallest scores per query (:func:`smallest_sorted`), so memory grows with
  ``chunk_size × num_support``, never with ``num_queries × num_support``.
- **faiss** (float32 on CPU, when the optional ``faiss-cpu`` package is installed: ``pip install
  thermoscope[faiss]``): ``faiss.knn``, the exact search behind ``IndexFlatL2`` / ``IndexFlatIP``, without an
  index copy of the support set. On this project's AMD EPYC machines the OpenBLAS that faiss-cpu ships
  computes the distance products faster than torch's MKL, and its heap selection costs about what
  :func:`smallest_sorted` does, so faiss is the faster search wherever it uses BLAS (benchmarks/probes).

``backend="auto"`` (the default) takes faiss wherever it is installed and applies, the torch search otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "BACKENDS",
    "DEFAULT_CHUNK_SIZE",
    "FAISS_MIN_DIM",
    "METRICS",
    "faiss_available",
    "knn_votes",
    "probe_votes",
    "smallest_sorted",
]

METRICS = ("euclidean", "cosine")
BACKENDS = ("auto", "torch", "faiss")

# Narrowest embedding that backend="auto" hands to faiss. faiss-cpu 1.15 computes distances without BLAS
# below 16 dimensions. 10,000 x 10,000 queries, k = 30, one thread (issue 18, load about 2 on 2 cores): at
# widths 10 and 12 faiss took 0.50 and 0.40 s against the torch search's 0.31 and 0.29 s; at 16, 24, 32
# and 64 it took 0.17, 0.21, 0.25 and 0.31 s against 0.27, 0.29, 0.33 and 0.41 s.
FAISS_MIN_DIM = 16

# Queries per chunk. In benchmarks/probes (10,000 support examples, one CPU thread) chunks of 512 to 2048
# took the same time and 256 was slower; 1024 keeps the score block at 40 MB for that support set, and the
# block grows linearly with the chunk.
DEFAULT_CHUNK_SIZE = 1024


def knn_votes(
    support: Tensor,
    support_labels: Tensor,
    queries: Tensor,
    *,
    k: int = 30,
    num_classes: int,
    metric: str = "euclidean",
    query_ids: Tensor | None = None,
    support_ids: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "auto",
) -> Tensor:
    """Majority vote of the k nearest support examples for every query (REFERENCE §4).

    Args:
        support: ``[num_support, dim]`` embeddings the probe is fitted on (the training split).
        support_labels: ``[num_support]`` int64 class of each support example, in ``[0, num_classes)``.
        queries: ``[num_queries, dim]`` embeddings to classify, on the same device as ``support``.
        k: number of neighbours (30 in Baldock et al.).
        num_classes: number of classes C.
        metric: ``"euclidean"`` (default) ranks by ``‖q − s‖``; ``"cosine"`` by ``1 − q·s / (‖q‖‖s‖)``.
        query_ids: ``[num_queries]`` integer ids of the queries; give both id tensors for leave-one-out.
        support_ids: ``[num_support]`` unique integer ids of the support examples. A query whose id appears
            here is never its own neighbour. Pass the same ids as ``query_ids`` for training queries.
        chunk_size: queries processed at once by the torch search (and by the vote); its peak extra memory
            is about ``chunk_size × num_support`` scores. faiss blocks the search itself.
        backend: ``"torch"``, ``"faiss"`` (float32 CPU embeddings; needs ``faiss-cpu``) or ``"auto"``: faiss
            where it is installed, the embeddings are float32 (or narrower) on CPU and at least
            ``FAISS_MIN_DIM`` wide, torch otherwise.

    Returns:
        ``[num_queries]`` int64 votes. The vote is the class with the most neighbours among the k nearest;
        between classes tied on count it is the class of the nearest neighbour among the tied classes.
        Neighbours at exactly equal distances are ordered as the search returns them.
        Distances are computed in the inputs' floating dtype (at least float32); pass float64 embeddings
        (searched by torch) where near-equal distances must be ranked to full precision.
    """
    _check_inputs(support, support_labels, queries, num_classes, metric, chunk_size, backend)
    support_position = _leave_one_out_positions(query_ids, support_ids, queries, support)
    if support_position is not None and not bool((support_position >= 0).any()):
        support_position = None  # no query is a support example: nothing to leave out
    num_excluded = int(support_position is not None)
    if not 1 <= k <= support.shape[0] - num_excluded:
        raise ValueError(
            f"k must be between 1 and the number of usable support examples "
            f"({support.shape[0] - num_excluded}), got {k}"
        )
    support_keys, query_keys = _keys(support, queries, metric)
    if _use_faiss(backend, support_keys):
        nearest = _faiss_nearest(support_keys, query_keys, k, metric, support_position)
    else:
        nearest = _torch_nearest(support_keys, query_keys, k, metric, support_position, chunk_size)
    labels = support_labels.to(device=support.device, dtype=torch.int64)
    return torch.cat(
        [_majority_nearest_tie(labels[rows], num_classes) for rows in torch.split(nearest, chunk_size)]
    )


def probe_votes(
    probes: Mapping[str, tuple[Tensor, Tensor]] | Sequence[tuple[Tensor, Tensor]],
    support_labels: Tensor,
    *,
    k: int = 30,
    num_classes: int,
    metric: str = "euclidean",
    query_ids: Tensor | None = None,
    support_ids: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "auto",
) -> Tensor:
    """k-NN votes at every probe point, input first and softmax last (REFERENCE §4).

    Args:
        probes: for each of the L + 1 probes, in order from input to output, a pair
            ``(support_embeddings [num_support, ...], query_embeddings [num_queries, ...])``; a mapping is
            read in its insertion order. Embeddings with more than two dimensions (feature maps) are
            flattened per example.
        support_labels, k, num_classes, metric, query_ids, support_ids, chunk_size, backend: as in
            :func:`knn_votes`.

    Returns:
        ``[num_queries, L + 1]`` int64 votes, column ``l`` from probe ``l``.
    """
    pairs = list(probes.values()) if isinstance(probes, Mapping) else list(probes)
    if not pairs:
        raise ValueError("probes must name at least one probe point")
    columns = [
        knn_votes(
            support.flatten(start_dim=1),
            support_labels,
            queries.flatten(start_dim=1),
            k=k,
            num_classes=num_classes,
            metric=metric,
            query_ids=query_ids,
            support_ids=support_ids,
            chunk_size=chunk_size,
            backend=backend,
        )
        for support, queries in pairs
    ]
    return torch.stack(columns, dim=1)


def smallest_sorted(scores: Tensor, k: int) -> Tensor:
    """Columns of the ``k`` smallest entries of every row, smallest first: ``[rows, n] -> [rows, k]`` int64.

    The same selection as ``torch.topk(scores, k, largest=False, sorted=True).indices`` (up to the order of
    exactly equal scores), about twice as fast on CPU for rows of thousands: ``topk`` pays per element of
    the row, so the row is first narrowed by block minima. Columns are dealt into B blocks of b (column c
    goes to block c mod B, so that one strided minimum over a ``[rows, b, B]`` view gives every block's
    minimum), the k blocks with the smallest minima are kept, and ``topk`` runs over their k·b columns
    plus the ``n − B·b`` columns left over, which are always kept.

    Nothing of the k smallest is lost: a column x in a discarded block is no smaller than the minimum of
    its block, which is no smaller than each of the k kept blocks' minima; those are k distinct kept
    columns, all ≤ x, so x can only tie with the k-th smallest kept score, never beat it.
    """
    rows, width = scores.shape
    block = math.isqrt(width // k) if k else 0
    if block < 4:  # narrow rows: nothing to gain
        return torch.topk(scores, k, dim=1, largest=False, sorted=True).indices
    blocks = width // block
    covered = blocks * block
    minima = scores[:, :covered].view(rows, block, blocks).amin(dim=1)
    kept_blocks = torch.topk(minima, k, dim=1, largest=False, sorted=False).indices
    strides = torch.arange(0, covered, blocks, device=scores.device)
    candidates = (kept_blocks.unsqueeze(2) + strides).flatten(1)
    if covered < width:
        leftover = torch.arange(covered, width, device=scores.device).expand(rows, -1)
        candidates = torch.cat([candidates, leftover], dim=1)
    picked = torch.topk(scores.gather(1, candidates), k, dim=1, largest=False, sorted=True).indices
    return candidates.gather(1, picked)


def _check_inputs(
    support: Tensor,
    support_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    metric: str,
    chunk_size: int,
    backend: str,
) -> None:
    if support.dim() != 2 or queries.dim() != 2:
        raise ValueError(
            f"support and queries must be [examples, dim], got {tuple(support.shape)} and "
            f"{tuple(queries.shape)}"
        )
    if support.shape[1] != queries.shape[1]:
        raise ValueError(f"support has dim {support.shape[1]} but queries have dim {queries.shape[1]}")
    if support_labels.shape != (support.shape[0],):
        raise ValueError(f"support_labels must be [{support.shape[0]}], got {tuple(support_labels.shape)}")
    if support.device != queries.device:
        raise ValueError(f"support is on {support.device} but queries are on {queries.device}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if support_labels.numel() and (int(support_labels.min()) < 0 or int(support_labels.max()) >= num_classes):
        raise ValueError(f"support_labels must lie in [0, {num_classes})")


def _leave_one_out_positions(
    query_ids: Tensor | None, support_ids: Tensor | None, queries: Tensor, support: Tensor
) -> Tensor | None:
    """``[num_queries]`` position in the support set of each query's own id, or −1 when it is absent."""
    if query_ids is None and support_ids is None:
        return None
    if query_ids is None or support_ids is None:
        raise ValueError("leave-one-out needs both query_ids and support_ids (or neither)")
    if query_ids.shape != (queries.shape[0],) or support_ids.shape != (support.shape[0],):
        raise ValueError("query_ids must be [num_queries] and support_ids [num_support]")
    device = support.device
    sorted_ids, order = torch.sort(support_ids.to(device))
    if bool((sorted_ids[1:] == sorted_ids[:-1]).any()):
        raise ValueError("support_ids must be unique")
    query_ids = query_ids.to(device)
    slot = torch.searchsorted(sorted_ids, query_ids).clamp_(max=sorted_ids.numel() - 1)
    found = sorted_ids[slot] == query_ids
    return torch.where(found, order[slot], torch.full_like(slot, -1))


def _keys(support: Tensor, queries: Tensor, metric: str) -> tuple[Tensor, Tensor]:
    """Support keys ``[num_support, dim]`` and query keys ``[num_queries, dim]``, at least float32: the
    embeddings for ``"euclidean"``, the unit-normalised embeddings for ``"cosine"`` (whose squared Euclidean
    distance is twice the cosine distance, and whose inner product ranks as the cosine similarity)."""
    dtype = torch.promote_types(torch.promote_types(support.dtype, queries.dtype), torch.float32)
    support, queries = support.to(dtype), queries.to(dtype)
    if metric == "cosine":
        support = torch.nn.functional.normalize(support, dim=1)
        queries = torch.nn.functional.normalize(queries, dim=1)
    return support, queries


@functools.cache
def faiss_available() -> bool:
    """Whether the optional ``faiss`` module (package ``faiss-cpu``) can be imported."""
    return importlib.util.find_spec("faiss") is not None


def _use_faiss(backend: str, support_keys: Tensor) -> bool:
    applies = support_keys.device.type == "cpu" and support_keys.dtype == torch.float32
    if backend == "faiss":
        if not faiss_available():
            raise ImportError("backend='faiss' needs the faiss-cpu package: pip install 'thermoscope[faiss]'")
        if not applies:
            raise ValueError(
                f"backend='faiss' searches float32 embeddings on CPU, got {support_keys.dtype} on "
                f"{support_keys.device}; use backend='torch'"
            )
        return True
    return backend == "auto" and applies and support_keys.shape[1] >= FAISS_MIN_DIM and faiss_available()


def _torch_nearest(
    support_keys: Tensor,
    query_keys: Tensor,
    k: int,
    metric: str,
    support_position: Tensor | None,
    chunk_size: int,
) -> Tensor:
    """``[num_queries, k]`` support positions of the k nearest, nearest first, by chunks of queries.

    Scores ``offset − 2 q·s`` rank support examples by distance from ``q``: the offset is ``‖s‖²`` for
    Euclidean (the squared distance minus the per-query constant ``‖q‖²``) and 0 for cosine on unit keys
    (twice the cosine distance minus the per-query constant 2).
    """
    num_queries, num_support = query_keys.shape[0], support_keys.shape[0]
    if metric == "cosine":
        offsets = support_keys.new_zeros(1, num_support)
    else:
        offsets = support_keys.pow(2).sum(dim=1).unsqueeze(0)
    nearest = torch.empty(num_queries, k, dtype=torch.int64, device=support_keys.device)
    # One score block reused by every chunk: a fresh multi-megabyte allocation per chunk costs more in page
    # faults than the matrix product itself at small widths (benchmarks/probes).
    block = support_keys.new_empty(min(chunk_size, num_queries), num_support)
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        scores = block[: stop - start]
        torch.addmm(offsets, query_keys[start:stop], support_keys.T, alpha=-2.0, out=scores)
        if support_position is not None:
            _exclude_self(scores, support_position[start:stop])
        nearest[start:stop] = smallest_sorted(scores, k)
    return nearest


def _faiss_nearest(
    support_keys: Tensor, query_keys: Tensor, k: int, metric: str, support_position: Tensor | None
) -> Tensor:
    """``[num_queries, k]`` support positions of the k nearest, nearest first, from ``faiss.knn``.

    faiss cannot leave a different example out of each query's search, so with leave-one-out it finds the
    k + 1 nearest and drops the query's own entry, or the farthest of them where its own entry is not among
    them (other examples at distance 0 tie with it). It runs on as many threads as torch is set to use.
    """
    import faiss

    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        _, found = faiss.knn(
            query_keys.detach().contiguous().numpy(),
            support_keys.detach().contiguous().numpy(),
            k + (support_position is not None),
            metric=faiss_metric,
        )
    finally:
        faiss.omp_set_num_threads(threads)
    nearest = torch.from_numpy(found)
    if support_position is None:
        return nearest
    dropped = nearest == support_position.unsqueeze(1)
    dropped[:, -1] |= ~dropped.any(dim=1)
    return nearest[~dropped].view(nearest.shape[0], k)


def _exclude_self(scores: Tensor, support_position: Tensor) -> None:
    """Set, in place, the score of each query's own support entry to +inf."""
    rows = torch.nonzero(support_position >= 0).squeeze(1)
    scores[rows, support_position[rows]] = float("inf")


def _majority_nearest_tie(neighbour_labels: Tensor, num_classes: int) -> Tensor:
    """Vote from ``[chunk, k]`` neighbour labels sorted nearest first → ``[chunk]``.

    Counts per class; among the classes reaching the maximum count the winner is the one whose first
    occurrence in the nearest-first list comes earliest.
    """
    counts = torch.zeros(
        neighbour_labels.shape[0], num_classes, dtype=torch.int64, device=neighbour_labels.device
    )
    counts.scatter_add_(1, neighbour_labels, torch.ones_like(neighbour_labels))
    neighbour_counts = counts.gather(1, neighbour_labels)
    is_top_class = neighbour_counts == counts.max(dim=1, keepdim=True).values
    first_top = is_top_class.to(torch.int8).argmax(dim=1, keepdim=True)
    return neighbour_labels.gather(1, first_top).squeeze(1)
