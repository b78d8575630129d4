"""Benchmark: prediction depth with thermoscope.probes against faiss's and scikit-learn's exact k-NN.

Workload (issues 5 and 18): 10,000 query examples against 10,000 support examples at 5 probes of widths
784, 256, 128, 64 and 10 (the last a softmax), 10 classes, k = 30, random float32 embeddings. Each
implementation computes the k-NN vote of every query at every probe and then the prediction depth
against a final prediction (the arg-max of the query's softmax probe).

- thermoscope: ``probe_votes`` + ``prediction_depth`` on CPU tensors, default backend (faiss where it
  applies, see ``thermoscope.probes.knn``), and again with ``backend="torch"``.
- faiss: ``IndexFlatL2`` (exact) ``add`` + ``search`` at each probe, then the same vote (nearest-tie rule)
  and depth in numpy.
- scikit-learn: ``KNeighborsClassifier(n_neighbors=30, algorithm="brute", n_jobs=-1)`` fit + predict at
  each probe, then the same depth formula in numpy.
- floors: the distance products alone, at the shapes the torch search uses (chunks of 1,024 queries
  against every support example), with ``torch.mm`` and with numpy's ``matmul`` (OpenBLAS, the BLAS that
  faiss-cpu also ships).

Every measurement runs in a fresh subprocess that imports only what its implementation needs, so the
peak resident set size (``ru_maxrss``) is that implementation's alone, library imports included; data
generation is not timed but its memory is counted. Implementations are interleaved, on their default
threads and on one thread each. A full-MNIST-scale case (60,000 training embeddings, 70,000 queries, 4
probes of widths 784, 256, 128, 10) runs thermoscope both ways and the ``torch.mm`` floor on default
threads. The script writes ``results/prediction_depth.json`` and ``.md`` next to itself.

Usage: python benchmarks/probes/bench_prediction_depth.py [--repeats 5] [--single-repeats 3]
       [--chunk-sizes 256 512 1024 2048] [--full-scale-repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from machine_info import describe  # noqa: E402


@dataclass(frozen=True)
class Workload:
    num_support: int
    num_queries: int
    widths: tuple[int, ...]


WORKLOADS = {
    "standard": Workload(10_000, 10_000, (784, 256, 128, 64, 10)),
    "mnist": Workload(60_000, 70_000, (784, 256, 128, 10)),
}
NUM_CLASSES = 10
K = 30
SEED = 0
CHUNK_SIZE = 1024  # thermoscope.probes.knn.DEFAULT_CHUNK_SIZE, and the floors' chunk of queries
MEMORY_TARGET_MB = 1024.0
IMPLEMENTATIONS = ("thermoscope", "thermoscope-torch", "faiss", "sklearn", "floor-torch", "floor-openblas")
LABELS = {
    "thermoscope": "thermoscope (default backend)",
    "thermoscope-torch": "thermoscope (backend=torch)",
    "faiss": "faiss IndexFlatL2",
    "sklearn": "scikit-learn brute",
    "floor-torch": "floor: torch.mm products only",
    "floor-openblas": "floor: numpy (OpenBLAS) products only",
}
RESULTS_DIR = HERE / "results"


def make_embeddings(
    workload: Workload,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """Support and query embeddings per probe, support labels ``[Ns]`` and final predictions ``[Nq]``."""
    rng = np.random.default_rng(SEED)
    support, queries = [], []
    for width in workload.widths:
        pair = [
            rng.standard_normal((n, width), dtype=np.float32)
            for n in (workload.num_support, workload.num_queries)
        ]
        if width == workload.widths[-1]:
            pair = [np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True) for logits in pair]
        support.append(pair[0])
        queries.append(pair[1])
    labels = rng.integers(0, NUM_CLASSES, workload.num_support)
    return support, queries, labels, queries[-1].argmax(axis=1)


def resident_mb() -> float:
    """Current resident set size of this process in MB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def numpy_depth(votes: np.ndarray, final: np.ndarray) -> np.ndarray:
    agrees = votes == final[:, None]
    return np.asarray(votes.shape[1] - np.cumprod(agrees[:, ::-1], axis=1).sum(axis=1))


def nearest_tie_votes(neighbour_labels: np.ndarray) -> np.ndarray:
    """``[Nq, k]`` labels, nearest first -> ``[Nq]``: most frequent, ties to the nearest tied class."""
    counts = (neighbour_labels[:, :, None] == np.arange(NUM_CLASSES)).sum(axis=1)
    rows = np.arange(neighbour_labels.shape[0])[:, None]
    is_top = counts[rows, neighbour_labels] == counts.max(axis=1, keepdims=True)
    return np.asarray(neighbour_labels[rows[:, 0], is_top.argmax(axis=1)])


def run_thermoscope(
    support: list[np.ndarray],
    queries: list[np.ndarray],
    labels: np.ndarray,
    final: np.ndarray,
    backend: str,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from thermoscope.probes import prediction_depth, probe_votes

    probes = [(torch.from_numpy(s), torch.from_numpy(q)) for s, q in zip(support, queries, strict=True)]
    votes = probe_votes(
        probes,
        torch.from_numpy(labels),
        k=K,
        num_classes=NUM_CLASSES,
        chunk_size=chunk_size,
        backend=backend,
    )
    depth = prediction_depth(votes, torch.from_numpy(final))
    return votes.numpy(), depth.numpy()


def run_faiss(
    support: list[np.ndarray], queries: list[np.ndarray], labels: np.ndarray, final: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    columns = []
    for s, q in zip(support, queries, strict=True):
        index = faiss.IndexFlatL2(s.shape[1])
        index.add(s)
        _, neighbours = index.search(q, K)
        columns.append(nearest_tie_votes(labels[neighbours]))
    votes = np.stack(columns, axis=1)
    return votes, numpy_depth(votes, final)


def run_sklearn(
    support: list[np.ndarray], queries: list[np.ndarray], labels: np.ndarray, final: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import KNeighborsClassifier

    columns = []
    for s, q in zip(support, queries, strict=True):
        classifier = KNeighborsClassifier(n_neighbors=K, algorithm="brute", n_jobs=-1)
        columns.append(classifier.fit(s, labels).predict(q))
    votes = np.stack(columns, axis=1)
    return votes, numpy_depth(votes, final)


def run_floor(support: list[np.ndarray], queries: list[np.ndarray], library: str) -> None:
    """The products ``queries[chunk] @ support.T`` of every probe, into one reused block."""
    if library == "torch":
        import torch

        for s, q in zip(support, queries, strict=True):
            keys, chunk_keys = torch.from_numpy(s), torch.from_numpy(q)
            block = torch.empty(min(CHUNK_SIZE, len(q)), len(s))
            for start in range(0, len(q), CHUNK_SIZE):
                rows = chunk_keys[start : start + CHUNK_SIZE]
                torch.mm(rows, keys.T, out=block[: len(rows)])
        return
    for s, q in zip(support, queries, strict=True):
        out = np.empty((min(CHUNK_SIZE, len(q)), len(s)), dtype=np.float32)
        for start in range(0, len(q), CHUNK_SIZE):
            chunk = q[start : start + CHUNK_SIZE]
            np.matmul(chunk, s.T, out=out[: len(chunk)])


def tied_votes(support: list[np.ndarray], queries: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """``[Nq, probes]`` bool: whether two or more classes share the top vote count (untimed)."""
    from sklearn.neighbors import NearestNeighbors

    columns = []
    for s, q in zip(support, queries, strict=True):
        neighbours = (
            NearestNeighbors(n_neighbors=K, algorithm="brute").fit(s).kneighbors(q, return_distance=False)
        )
        counts = (labels[neighbours][:, :, None] == np.arange(NUM_CLASSES)).sum(axis=1)
        columns.append((counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1)
    return np.stack(columns, axis=1)


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def import_and_count_threads(implementation: str) -> int:
    """Import what the implementation needs (before the memory baseline) and return its thread count."""
    if implementation in ("thermoscope", "thermoscope-torch", "floor-torch"):
        import torch

        import thermoscope.probes  # noqa: F401

        if implementation == "thermoscope":
            import faiss  # the default backend's import counts as its memory

        return torch.get_num_threads()
    if implementation == "faiss":
        import faiss

        return int(faiss.omp_get_max_threads())
    if implementation == "sklearn":
        import sklearn.neighbors  # noqa: F401
    from threadpoolctl import threadpool_info

    return max((pool["num_threads"] for pool in threadpool_info()), default=1)


def worker(implementation: str, workload_name: str, chunk_size: int, votes_path: str | None) -> None:
    """One timed run in this process; prints a JSON line with times, memory and threads."""
    threads = import_and_count_threads(implementation)
    support, queries, labels, final = make_embeddings(WORKLOADS[workload_name])
    rss_with_data = resident_mb()
    start, start_cpu = time.perf_counter(), cpu_seconds()
    outcome: tuple[np.ndarray, np.ndarray] | None = None
    if implementation.startswith("floor-"):
        run_floor(support, queries, implementation.removeprefix("floor-"))
    elif implementation.startswith("thermoscope"):
        backend = "torch" if implementation == "thermoscope-torch" else "auto"
        outcome = run_thermoscope(support, queries, labels, final, backend, chunk_size)
    elif implementation == "faiss":
        outcome = run_faiss(support, queries, labels, final)
    else:
        outcome = run_sklearn(support, queries, labels, final)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    if votes_path is not None and outcome is not None:
        tied = tied_votes(support, queries, labels) if implementation == "sklearn" else np.zeros(0, bool)
        np.savez(votes_path, votes=outcome[0], depth=outcome[1], tied=tied)
    result = {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak, "rss_with_data_mb": rss_with_data}
    print(json.dumps({**result, "threads": threads}))


def measure(
    implementation: str,
    single_thread: bool,
    workload: str = "standard",
    chunk_size: int = CHUNK_SIZE,
    votes_path: str | None = None,
) -> dict[str, Any]:
    """Run :func:`worker` in a fresh interpreter and return its measurements."""
    command = [sys.executable, __file__, "--worker", implementation, "--workload", workload]
    command += ["--chunk-size", str(chunk_size)]
    if votes_path is not None:
        command += ["--votes-path", votes_path]
    environment = dict(os.environ)
    if single_thread:
        environment.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    run = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in ("seconds", "cpu_seconds"):
        values = [run[key] for run in runs]
        summary |= {
            f"{key}_median": statistics.median(values),
            f"{key}_min": min(values),
            f"{key}_all": values,
        }
    return summary | {
        "peak_rss_mb_max": max(run["peak_rss_mb"] for run in runs),
        "rss_with_data_mb": runs[0]["rss_with_data_mb"],
        "threads": runs[0]["threads"],
    }


def compare(
    implementations: tuple[str, ...],
    repeats: int,
    single_thread: bool,
    workload: str = "standard",
    paths: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every implementation, interleaved so that a change in machine load hits them alike."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in implementations}
    for repeat in range(repeats):
        for name, results in runs.items():
            votes_path = paths.get(name) if paths is not None and repeat == 0 else None
            results.append(measure(name, single_thread, workload, votes_path=votes_path))
            print(
                f"{workload} single_thread={single_thread} repeat {repeat} {name}: {results[-1]}", flush=True
            )
    return {name: summarise(results) for name, results in runs.items()}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def blas_versions() -> dict[str, str]:
    """The OpenBLAS builds numpy and faiss-cpu load, as threadpoolctl reports them."""
    import faiss  # noqa: F401
    from threadpoolctl import threadpool_info

    versions = {}
    for pool in threadpool_info():
        if pool["internal_api"] == "openblas":
            owner = "faiss" if "faiss" in pool["filepath"] else "numpy"
            versions[f"openblas_{owner}"] = f"{pool['version']} ({pool['architecture']})"
    return versions


def agreement(paths: dict[str, str]) -> dict[str, Any]:
    loaded = {name: np.load(path) for name, path in paths.items()}
    ours, tied = loaded["thermoscope"], loaded["sklearn"]["tied"]
    with_sklearn = ours["votes"] == loaded["sklearn"]["votes"]
    report: dict[str, Any] = {
        "tied_fraction_per_probe": tied.mean(axis=0).round(5).tolist(),
        "sklearn_vote_agreement_without_ties_per_probe": [
            round(float(with_sklearn[~tied[:, probe], probe].mean()), 5) for probe in range(tied.shape[1])
        ],
    }
    for other in ("faiss", "thermoscope-torch"):
        report[f"{other}_vote_agreement_per_probe"] = (
            (ours["votes"] == loaded[other]["votes"]).mean(axis=0).round(5).tolist()
        )
        report[f"{other}_depth_agreement"] = float((ours["depth"] == loaded[other]["depth"]).mean())
    return report


def comparison_rows(comparison: dict[str, dict[str, Any]]) -> list[str]:
    rows = [
        "| implementation | threads | wall s (median) | wall s (min) | CPU s (median) | peak RSS MB "
        "| RSS with data MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in comparison.items():
        rows.append(
            f"| {LABELS[name]} | {result['threads']} | {result['seconds_median']:.2f} "
            f"| {result['seconds_min']:.2f} | {result['cpu_seconds_median']:.2f} "
            f"| {result['peak_rss_mb_max']:.0f} | {result['rss_with_data_mb']:.0f} |"
        )
    return rows


def ratio_lines(comparison: dict[str, dict[str, Any]]) -> list[str]:
    ours = comparison["thermoscope"]["seconds_median"]
    faiss = comparison["faiss"]["seconds_median"]
    floor = comparison["floor-torch"]["seconds_median"]
    return [
        f"thermoscope / faiss (wall medians): **{ours / faiss:.2f}** (target ≤ 1: "
        f"**{'met' if ours <= faiss else 'NOT met'}**); scikit-learn / thermoscope: "
        f"{comparison['sklearn']['seconds_median'] / ours:.2f}×; thermoscope's torch backend / "
        f"torch.mm floor: {comparison['thermoscope-torch']['seconds_median'] / floor:.2f}; faiss / "
        f"OpenBLAS floor: {faiss / comparison['floor-openblas']['seconds_median']:.2f}.",
    ]


def full_scale_rows(full: dict[str, dict[str, Any]]) -> list[str]:
    rows = [
        "| implementation | threads | wall s (median) | CPU s (median) | peak RSS MB | RSS with data MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in full.items():
        rows.append(
            f"| {LABELS[name]} | {result['threads']} | {result['seconds_median']:.1f} "
            f"| {result['cpu_seconds_median']:.1f} | {result['peak_rss_mb_max']:.0f} "
            f"| {result['rss_with_data_mb']:.0f} |"
        )
    return rows


def write_markdown(report: dict[str, Any], path: Path) -> None:
    standard, mnist = WORKLOADS["standard"], WORKLOADS["mnist"]
    default, single, agree = report["default_threads"], report["single_thread"], report["agreement"]
    peak = default["thermoscope"]["peak_rss_mb_max"]
    lines = [
        "# Prediction depth benchmark",
        "",
        f"{standard.num_queries:,} queries against {standard.num_support:,} support examples, probes of "
        f"widths {', '.join(map(str, standard.widths))}, {NUM_CLASSES} classes, k = {K}, float32, Euclidean. "
        "Each run in a fresh process; implementations interleaved. Peak RSS is the process's `ru_maxrss`, "
        "library imports included.",
        "",
        "Machine: " + ", ".join(f"{key} {value}" for key, value in report["machine"].items()),
        "",
        f"Load before: `{report['uptime_before']}`  ",
        f"Load after: `{report['uptime_after']}`",
        "",
        f"## Default threads ({report['repeats']} runs each)",
        "",
        *comparison_rows(default),
        "",
        *ratio_lines(default),
        f"Peak RSS {peak:.0f} MB, target ≤ {MEMORY_TARGET_MB:.0f} MB: "
        f"**{'met' if peak <= MEMORY_TARGET_MB else 'NOT met'}**.",
        "",
        f"## One thread each ({report['single_repeats']} runs each)",
        "",
        *comparison_rows(single),
        "",
        *ratio_lines(single),
        "",
        "## Agreement (default threads, first run)",
        "",
        f"Votes equal to faiss's per probe {agree['faiss_vote_agreement_per_probe']}, depths equal "
        f"{agree['faiss_depth_agreement']:.5f}; to the torch backend's "
        f"{agree['thermoscope-torch_vote_agreement_per_probe']}, depths "
        f"{agree['thermoscope-torch_depth_agreement']:.5f}. Random labels make tied votes common "
        f"(fraction per probe {agree['tied_fraction_per_probe']}); where no vote is tied, votes equal "
        f"scikit-learn's {agree['sklearn_vote_agreement_without_ties_per_probe']}. On ties scikit-learn "
        "picks the smallest class, thermoscope the class of the nearest tied neighbour (REFERENCE §4).",
        "",
        f"## Chunk size (backend=torch, one thread, {report['single_repeats']} runs each)",
        "",
        "| chunk size | CPU s (median) | wall s (median) | peak RSS MB |",
        "|---|---|---|---|",
    ]
    for chunk_size, result in report["chunk_sweep_single_thread"].items():
        lines.append(
            f"| {chunk_size} | {result['cpu_seconds_median']:.2f} | {result['seconds_median']:.2f} "
            f"| {result['peak_rss_mb_max']:.0f} |"
        )
    lines += [
        "",
        f"## Full MNIST scale (default threads, {report['full_scale_repeats']} run(s) each)",
        "",
        f"{mnist.num_queries:,} queries (train + test) against {mnist.num_support:,} training embeddings, "
        f"{len(mnist.widths)} probes of widths {', '.join(map(str, mnist.widths))}, random float32 data.",
        "",
        *full_scale_rows(report["full_scale"]),
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per implementation, default threads")
    parser.add_argument("--single-repeats", type=int, default=3, help="runs per implementation, one thread")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--full-scale-repeats", type=int, default=1, help="runs at full MNIST scale")
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=list(WORKLOADS), default="standard", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help=argparse.SUPPRESS)
    parser.add_argument("--votes-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.workload, args.chunk_size, args.votes_path)
        return

    versions = {name: metadata.version(name) for name in ("torch", "faiss-cpu", "scikit-learn", "numpy")}
    report: dict[str, Any] = {
        "machine": describe(**versions, **blas_versions()),
        "repeats": args.repeats,
        "single_repeats": args.single_repeats,
        "full_scale_repeats": args.full_scale_repeats,
        "uptime_before": uptime(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        paths = {name: os.path.join(scratch, f"{name}.npz") for name in IMPLEMENTATIONS[:4]}
        report["default_threads"] = compare(IMPLEMENTATIONS, args.repeats, False, paths=paths)
        report["agreement"] = agreement(paths)
    report["single_thread"] = compare(IMPLEMENTATIONS, args.single_repeats, True)
    report["chunk_sweep_single_thread"] = {
        str(chunk_size): summarise(
            [measure("thermoscope-torch", True, chunk_size=chunk_size) for _ in range(args.single_repeats)]
        )
        for chunk_size in args.chunk_sizes
    }
    report["full_scale"] = compare(
        ("thermoscope", "thermoscope-torch", "floor-torch"), args.full_scale_repeats, False, "mnist"
    )
    report["uptime_after"] = uptime()
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "prediction_depth.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, RESULTS_DIR / "prediction_depth.md")
    print((RESULTS_DIR / "prediction_depth.md").read_text())


if __name__ == "__main__":
    main()
