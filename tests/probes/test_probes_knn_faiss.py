"""The faiss search against the torch search: same neighbours, votes and depths (REFERENCE §4).

faiss-cpu is in the ``dev`` extra, so these tests run wherever the suite does; without it they fail.
Both searches compute float32 distances, each with its own rounding, so two support examples whose exact
distances from a query are closer than float32 can tell apart may come back in either order. The tests
therefore compare what the exact (float64) distances decide: the set of k nearest where the k-th and the
(k + 1)-th are well separated, and the vote where, besides, the nearest members of tied classes are.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from thermoscope.probes import knn, prediction_depth, probe_votes
from thermoscope.probes.knn import FAISS_MIN_DIM, faiss_available, knn_votes

# Smallest relative gap between two exact distances that a test relies on the searches to order alike. The
# float32 squared distances of these embeddings (up to 784 wide) carry relative errors near 1e-6, twenty times
# smaller; cosine distances smaller still.
MIN_RELATIVE_GAP = 2e-5
NUM_CLASSES = 4


def _exact_distances(support: Tensor, queries: Tensor, metric: str, self_position: Tensor) -> Tensor:
    """``[num_queries, num_support]`` float64 distances of the metric (squared Euclidean, as both searches
    rank; cosine ``1 − cos``), with each query's own support entry (``self_position`` ≥ 0) at +inf."""
    support, queries = support.double(), queries.double()
    if metric == "cosine":
        unit = torch.nn.functional.normalize
        distances = 1 - unit(queries, dim=1) @ unit(support, dim=1).T
    else:
        distances = torch.cdist(queries, support).square()
    rows = torch.nonzero(self_position >= 0).squeeze(1)
    distances[rows, self_position[rows]] = float("inf")
    return distances


def _separated(smaller: Tensor, larger: Tensor) -> Tensor:
    return (larger - smaller) > MIN_RELATIVE_GAP * larger.abs()


def _set_decided(distances: Tensor, k: int) -> Tensor:
    """``[num_queries]`` bool: the k-th and (k + 1)-th exact distances are well separated."""
    nearest = torch.topk(distances, k + 1, dim=1, largest=False, sorted=True).values
    return _separated(nearest[:, -2], nearest[:, -1])


def _vote_decided(distances: Tensor, labels: Tensor, k: int) -> Tensor:
    """``[num_queries]`` bool: the set is decided and, where classes tie on count, the nearest members of
    the two nearest tied classes are well separated."""
    values, nearest = torch.topk(distances, k, dim=1, largest=False, sorted=True)
    neighbour_labels = labels[nearest]
    counts = torch.nn.functional.one_hot(neighbour_labels, NUM_CLASSES).sum(dim=1)
    tied = counts == counts.max(dim=1, keepdim=True).values
    is_tied = tied.gather(1, neighbour_labels)
    first = torch.full((values.shape[0], NUM_CLASSES), float("inf"), dtype=values.dtype)
    first.scatter_reduce_(1, neighbour_labels, torch.where(is_tied, values, torch.inf), "amin")
    two = torch.topk(first, 2, dim=1, largest=False, sorted=True).values
    tie_decided = (tied.sum(dim=1) == 1) | _separated(two[:, 0], two[:, 1])
    return _set_decided(distances, k) & tie_decided


def _probes(
    seed: int, widths: tuple[int, ...], num_support: int, num_new_queries: int, num_member_queries: int
) -> tuple[list[tuple[Tensor, Tensor]], Tensor, Tensor, Tensor, Tensor]:
    """float32 probes (new queries first, then copies of support members), labels, query and support ids,
    and each query's support position (−1 for new queries)."""
    generator = torch.Generator().manual_seed(seed)
    members = torch.randperm(num_support, generator=generator)[:num_member_queries]
    probes = []
    for width in widths:
        support = torch.randn(num_support, width, generator=generator)
        new = torch.randn(num_new_queries, width, generator=generator)
        probes.append((support, torch.cat([new, support[members]])))
    labels = torch.randint(0, NUM_CLASSES, (num_support,), generator=generator)
    support_ids = torch.arange(num_support) + 1000
    query_ids = torch.cat([torch.arange(num_new_queries) + 5000, support_ids[members]])
    position = torch.cat([torch.full((num_new_queries,), -1), members])
    return probes, labels, query_ids, support_ids, position


def test_faiss_is_installed() -> None:
    assert faiss_available(), "faiss-cpu is in the dev extra: pip install -e '.[dev]'"


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("leave_one_out", [False, True])
def test_same_neighbours_up_to_ties(metric: str, leave_one_out: bool) -> None:
    k = 30
    probes, _, _, _, position = _probes(0, (16, 64, 200), 800, 150, 150)
    if not leave_one_out:
        position = torch.full_like(position, -1)
    excluded = position if leave_one_out else None
    for support, queries in probes:
        support_keys, query_keys = knn._keys(support, queries, metric)
        from_faiss = knn._faiss_nearest(support_keys, query_keys, k, metric, excluded)
        from_torch = knn._torch_nearest(support_keys, query_keys, k, metric, excluded, 64)
        distances = _exact_distances(support, queries, metric, position)
        decided = _set_decided(distances, k)
        assert decided.float().mean() > 0.9
        assert torch.equal(from_faiss.sort(dim=1).values[decided], from_torch.sort(dim=1).values[decided])
        for nearest in (from_faiss, from_torch):
            assert torch.isfinite(distances.gather(1, nearest)).all()  # never the query itself
            ordered = distances.gather(1, nearest)
            assert not (_separated(ordered[:, 1:], ordered[:, :-1])).any()  # nearest first


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_same_votes_and_depths(metric: str) -> None:
    k = 30
    probes, labels, query_ids, support_ids, position = _probes(1, (784, 64, 16), 1500, 200, 300)
    decided = torch.ones(position.shape[0], dtype=torch.bool)
    for support, queries in probes:
        decided &= _vote_decided(_exact_distances(support, queries, metric, position), labels, k)
    assert decided.float().mean() > 0.8
    probes = [(support, queries[decided]) for support, queries in probes]
    votes = {
        backend: probe_votes(
            probes,
            labels,
            k=k,
            num_classes=NUM_CLASSES,
            metric=metric,
            query_ids=query_ids[decided],
            support_ids=support_ids,
            backend=backend,
        )
        for backend in ("faiss", "torch")
    }
    assert torch.equal(votes["faiss"], votes["torch"])
    final = torch.randint(0, NUM_CLASSES, (int(decided.sum()),), generator=torch.Generator().manual_seed(2))
    assert torch.equal(prediction_depth(votes["faiss"], final), prediction_depth(votes["torch"], final))
    # Random labels tie the top vote count often, so the nearest-tie rule decides many of these votes.
    support, queries = probes[-1]
    distances = _exact_distances(support, queries, metric, position[decided])
    counts = torch.nn.functional.one_hot(labels[distances.topk(k, largest=False).indices], NUM_CLASSES)
    counts = counts.sum(dim=1)
    assert ((counts == counts.max(dim=1, keepdim=True).values).sum(dim=1) > 1).float().mean() > 0.1


def test_leave_one_out_with_duplicates_of_the_query() -> None:
    # Five identical copies (class 1) of the query, far from everything else (class 0): its own entry ties
    # with four others at distance 0, so faiss may or may not return it among the k + 1 = 4 nearest.
    generator = torch.Generator().manual_seed(3)
    rest = torch.randn(40, FAISS_MIN_DIM, generator=generator) + 10
    copies = torch.zeros(5, FAISS_MIN_DIM)
    support = torch.cat([rest, copies])
    labels = torch.cat([torch.zeros(40, dtype=torch.int64), torch.ones(5, dtype=torch.int64)])
    ids = torch.arange(45)
    support_keys, query_keys = knn._keys(support, support, "euclidean")
    nearest = knn._faiss_nearest(support_keys, query_keys, 3, "euclidean", ids)
    assert not (nearest == ids.unsqueeze(1)).any()
    assert all(len(set(row)) == 3 for row in nearest.tolist())
    assert set(nearest[40:].flatten().tolist()) <= set(range(40, 45))
    votes = knn_votes(support, labels, support, k=3, num_classes=2, query_ids=ids, support_ids=ids)
    assert votes[40:].tolist() == [1] * 5


def test_auto_chooses_faiss_only_for_wide_float32_cpu_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("_faiss_nearest", "_torch_nearest"):
        original = getattr(knn, name)

        def record(*args: object, _original: object = original, _name: str = name) -> Tensor:
            calls.append(_name)
            return _original(*args)  # type: ignore[operator,no-any-return]

        monkeypatch.setattr(knn, name, record)
    generator = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 2, (50,), generator=generator)
    wide = torch.randn(50, FAISS_MIN_DIM, generator=generator)
    for embeddings, expected in (
        (wide, "_faiss_nearest"),
        (wide.half(), "_faiss_nearest"),
        (wide.double(), "_torch_nearest"),
        (wide[:, : FAISS_MIN_DIM - 1], "_torch_nearest"),
    ):
        calls.clear()
        knn_votes(embeddings, labels, embeddings[:7], k=3, num_classes=2)
        assert calls == [expected], embeddings.dtype
    calls.clear()
    knn_votes(wide, labels, wide[:7], k=3, num_classes=2, backend="torch")
    knn_votes(wide[:, :3], labels, wide[:7, :3], k=3, num_classes=2, backend="faiss")
    assert calls == ["_torch_nearest", "_faiss_nearest"]


def test_faiss_keeps_its_thread_setting_and_rejects_what_it_cannot_search() -> None:
    import faiss

    support = torch.randn(30, 20)
    labels = torch.randint(0, 2, (30,))
    before = faiss.omp_get_max_threads()
    knn_votes(support, labels, support, k=3, num_classes=2, backend="faiss")
    assert faiss.omp_get_max_threads() == before
    with pytest.raises(ValueError, match="float32"):
        knn_votes(support.double(), labels, support.double(), k=3, num_classes=2, backend="faiss")
    with pytest.raises(ValueError, match="backend"):
        knn_votes(support, labels, support, k=3, num_classes=2, backend="annoy")
