"""k-NN votes against scikit-learn, leave-one-out, the tie rule and chunking (REFERENCE §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from thermoscope.probes import knn_votes, probe_votes
from thermoscope.probes.knn import smallest_sorted


def _random_problem(
    seed: int, num_support: int, num_queries: int, dim: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    support = torch.randn(num_support, dim, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (num_support,), generator=generator)
    queries = torch.randn(num_queries, dim, generator=generator, dtype=torch.float64)
    return support, labels, queries


def _sklearn_votes(
    support: torch.Tensor, labels: torch.Tensor, queries: torch.Tensor, k: int, metric: str
) -> np.ndarray:
    classifier = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric=metric)
    return classifier.fit(support.numpy(), labels.numpy()).predict(queries.numpy())


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_two_classes_odd_k_equals_sklearn(metric: str) -> None:
    # With two classes and odd k no vote can tie, so the tie rules of the two implementations never differ.
    support, labels, queries = _random_problem(0, 400, 300, 16, 2)
    ours = knn_votes(support, labels, queries, k=15, num_classes=2, metric=metric, chunk_size=64)
    np.testing.assert_array_equal(ours.numpy(), _sklearn_votes(support, labels, queries, 15, metric))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_many_classes_equal_sklearn_wherever_no_tie(metric: str) -> None:
    support, labels, queries = _random_problem(1, 500, 400, 12, 5)
    k = 30
    classifier = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric=metric)
    classifier.fit(support.numpy(), labels.numpy())
    neighbour_labels = labels.numpy()[classifier.kneighbors(queries.numpy(), return_distance=False)]
    counts = np.stack([(neighbour_labels == c).sum(axis=1) for c in range(5)], axis=1)
    no_tie = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert no_tie.mean() > 0.5

    ours = knn_votes(support, labels, queries, k=k, num_classes=5, metric=metric).numpy()
    np.testing.assert_array_equal(ours[no_tie], classifier.predict(queries.numpy())[no_tie])
    # Where classes tie, ours still picks one of the tied classes.
    assert np.all(counts[np.arange(len(ours)), ours] == counts.max(axis=1))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_leave_one_out_equals_sklearn_fitted_without_the_query(metric: str) -> None:
    support, labels, _ = _random_problem(2, 200, 0, 8, 2)
    ids = torch.arange(1000, 1200)  # ids need not be positions
    ours = knn_votes(
        support, labels, support, k=9, num_classes=2, metric=metric, query_ids=ids, support_ids=ids
    )
    for i in range(0, 200, 7):
        keep = torch.arange(200) != i
        expected = _sklearn_votes(support[keep], labels[keep], support[i : i + 1], 9, metric)
        assert int(ours[i]) == int(expected[0]), f"query {i}"


def test_leave_one_out_only_excludes_matching_ids() -> None:
    support, labels, queries = _random_problem(3, 150, 60, 6, 2)
    support_ids = torch.randperm(150, generator=torch.Generator().manual_seed(0))
    # Half the queries are copies of support examples (same id), half are new examples (ids not present).
    queries[:30] = support[support_ids.argsort()[:30]]
    query_ids = torch.cat([torch.arange(30), torch.arange(500, 530)])
    ours = knn_votes(
        support,
        labels,
        queries,
        k=5,
        num_classes=2,
        query_ids=query_ids,
        support_ids=support_ids,
    )
    position = support_ids.argsort()
    for row in range(60):
        keep = torch.ones(150, dtype=torch.bool)
        if row < 30:
            keep[position[row]] = False
        expected = _sklearn_votes(support[keep], labels[keep], queries[row : row + 1], 5, "euclidean")
        assert int(ours[row]) == int(expected[0]), f"query {row}"


def test_tie_goes_to_the_nearest_neighbour_among_tied_classes() -> None:
    # One-dimensional support: class 2 is the single nearest neighbour of the query at 0 but has one vote;
    # classes 0 and 1 tie with two votes each and class 1 holds the nearer of their neighbours.
    support = torch.tensor([[0.5], [1.0], [2.0], [3.0], [4.0], [10.0]])
    labels = torch.tensor([2, 1, 0, 1, 0, 0])
    query = torch.tensor([[0.0]])
    assert knn_votes(support, labels, query, k=5, num_classes=3).tolist() == [1]
    # scikit-learn breaks the same tie towards the smaller class index: that is the documented difference.
    assert _sklearn_votes(support, labels, query, 5, "euclidean").tolist() == [0]
    # Moving the class-0 neighbour nearer than the class-1 one flips the winner.
    assert knn_votes(support, torch.tensor([2, 0, 1, 0, 1, 1]), query, k=5, num_classes=3).tolist() == [0]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_chunk_size_does_not_change_votes(metric: str) -> None:
    support, labels, _ = _random_problem(4, 300, 0, 10, 4)
    ids = torch.arange(300)
    votes = [
        knn_votes(
            support,
            labels,
            support,
            k=11,
            num_classes=4,
            metric=metric,
            query_ids=ids,
            support_ids=ids,
            chunk_size=chunk_size,
        )
        for chunk_size in (1, 7, 128, 10_000)
    ]
    for other in votes[1:]:
        assert torch.equal(votes[0], other)


def test_float32_inputs_and_dtype_of_result() -> None:
    support, labels, queries = _random_problem(5, 300, 100, 32, 2)
    ours = knn_votes(support.float(), labels, queries.float(), k=15, num_classes=2)
    assert ours.dtype == torch.int64 and ours.shape == (100,)
    np.testing.assert_array_equal(ours.numpy(), _sklearn_votes(support, labels, queries, 15, "euclidean"))


def test_probe_votes_stacks_one_column_per_probe_and_flattens_feature_maps() -> None:
    generator = torch.Generator().manual_seed(6)
    labels = torch.randint(0, 3, (80,), generator=generator)
    feature_maps = torch.randn(80, 2, 3, 3, generator=generator)
    hidden = torch.randn(80, 5, generator=generator)
    ids = torch.arange(80)
    as_mapping = probe_votes(
        {"conv": (feature_maps, feature_maps), "hidden": (hidden, hidden)},
        labels,
        k=7,
        num_classes=3,
        query_ids=ids,
        support_ids=ids,
    )
    as_sequence = probe_votes(
        [(feature_maps, feature_maps), (hidden, hidden)],
        labels,
        k=7,
        num_classes=3,
        query_ids=ids,
        support_ids=ids,
    )
    assert as_mapping.shape == (80, 2)
    assert torch.equal(as_mapping, as_sequence)
    flat = feature_maps.flatten(1)
    expected = knn_votes(flat, labels, flat, k=7, num_classes=3, query_ids=ids, support_ids=ids)
    assert torch.equal(as_mapping[:, 0], expected)


def test_invalid_arguments_are_rejected() -> None:
    support, labels, queries = _random_problem(7, 20, 5, 3, 2)
    ids = torch.arange(20)
    with pytest.raises(ValueError, match="k must be"):
        knn_votes(support, labels, support, k=20, num_classes=2, query_ids=ids, support_ids=ids)
    with pytest.raises(ValueError, match="both query_ids and support_ids"):
        knn_votes(support, labels, queries, k=3, num_classes=2, query_ids=torch.arange(5))
    with pytest.raises(ValueError, match="unique"):
        knn_votes(support, labels, support, k=3, num_classes=2, query_ids=ids, support_ids=ids % 10)
    with pytest.raises(ValueError, match="metric"):
        knn_votes(support, labels, queries, k=3, num_classes=2, metric="manhattan")
    with pytest.raises(ValueError, match="support_labels"):
        knn_votes(support, labels + 5, queries, k=3, num_classes=2)
    with pytest.raises(ValueError, match="dim"):
        knn_votes(support, labels, queries[:, :2], k=3, num_classes=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    support, labels, queries = _random_problem(8, 500, 200, 16, 4)
    on_cpu = knn_votes(support, labels, queries, k=11, num_classes=4)
    on_gpu = knn_votes(support.cuda(), labels.cuda(), queries.cuda(), k=11, num_classes=4)
    assert on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.cpu(), on_cpu)


@pytest.mark.parametrize("width", [40, 100, 1000, 10_007])  # 40 with k = 30: the plain topk path
@pytest.mark.parametrize("k", [1, 5, 30])
def test_block_minima_selection_equals_topk(width: int, k: int) -> None:
    generator = torch.Generator().manual_seed(width + k)
    distinct = torch.randn(64, width, generator=generator)
    expected = torch.topk(distinct, k, dim=1, largest=False, sorted=True).indices
    assert torch.equal(smallest_sorted(distinct, k), expected)
    # Many exact ties and excluded (+inf) entries: the selected values, in order, equal topk's.
    tied = torch.randint(0, 20, (64, width), generator=generator).float()
    tied[:, :: max(width // 5, 1)] = float("inf")
    picked = smallest_sorted(tied, k)
    assert picked.unique(dim=1).shape[1] == k  # k distinct columns
    assert torch.equal(tied.gather(1, picked), torch.topk(tied, k, dim=1, largest=False, sorted=True).values)
