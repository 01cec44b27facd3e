#!/usr/bin/env python3
"""Exact gallery search: latency and memory from 10k to 1M templates.

Builds the gallery's in-memory search index (:class:`faceledger.gallery.SearchIndex`: one float32 matrix,
one matrix product per search, best template per subject, top-k) over random unit vectors and times it:

* ``build``: grouping the templates by subject into the matrix (what a process does once, then per change);
* ``matmul 1``: the bare matrix product of one probe against every template;
* ``search 1``: a full search of one probe (matrix product, best template per subject, top-k);
* ``search/q @B``: per-probe time when ``B`` probes (e.g. the faces of a group photo, or a video batch) are
  searched together with one matrix product;
* ``matrix MB``: the template matrix; ``RSS MB``: resident memory of the process after building the index;
* ``batch peak MB``: the most memory a search of ``B`` probes together holds beyond the index (numpy's
  allocations, traced by tracemalloc): the similarities and what sorts them.

Random vectors exercise the same arithmetic as real templates (the work does not depend on the values).
Timings are medians; the machine's load shows in them, so compare rows of one run.

    python benchmarks/bench_search.py                         # 10k, 100k, 300k, 1M templates
    python benchmarks/bench_search.py --sizes 10000,50000 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
import tracemalloc
from typing import Any

import numpy as np


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux), else the peak."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` random L2-normalised float32 vectors, generated in chunks to bound memory."""
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def median_time(func: Any, repeats: int) -> float:
    """Median wall time of ``func()`` over ``repeats`` runs, after one warm-up run."""
    func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(n: int, dim: int, per_subject: int, batch: int, k: int, repeats: int, seed: int) -> dict[str, Any]:
    """Measure one gallery size."""
    from faceledger.gallery.index import SearchIndex

    rng = np.random.default_rng(seed)
    gc.collect()
    base_rss = rss_mb()
    vectors = unit_vectors(rng, n, dim)
    ids = [f"t{i:07d}" for i in range(n)]
    subjects = [f"s{i // per_subject:07d}" for i in range(n)]
    index = SearchIndex(dim)
    start = time.perf_counter()
    index.update(remove=(), add_ids=ids, add_subjects=subjects, add_vectors=vectors)
    build = time.perf_counter() - start
    del vectors, ids, subjects
    gc.collect()
    rss = rss_mb() - base_rss

    probes = unit_vectors(rng, max(batch, 1), dim)
    one = probes[:1]
    matrix = index._matrix[: len(index)]
    matmul = median_time(lambda: one @ matrix.T, repeats)
    search_one = median_time(lambda: index.search(one, k), repeats)
    search_batch = median_time(lambda: index.search(probes, k), max(3, repeats // 4)) / len(probes)
    tracemalloc.start()
    index.search(probes, k)
    batch_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # exactness check: the best subject for a stored template's own vector is its subject
    probe = matrix[n // 2 : n // 2 + 1]
    best = index.search(probe, 1)[0][0]
    assert abs(best.similarity - 1.0) < 1e-4, best
    return {
        "templates": n,
        "subjects": len(index.subjects),
        "dim": dim,
        "build_s": round(build, 3),
        "matmul_1_ms": round(matmul * 1e3, 3),
        "search_1_ms": round(search_one * 1e3, 3),
        f"search_per_query_at_{batch}_ms": round(search_batch * 1e3, 3),
        "matrix_mb": round(index.nbytes / 2**20, 1),
        "rss_mb": round(rss, 1),
        f"search_peak_at_{batch}_mb": round(batch_peak / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,300000,1000000", help="comma-separated gallery sizes")
    parser.add_argument("--dim", type=int, default=128, help="template dimension (SFace: 128)")
    parser.add_argument("--templates-per-subject", type=int, default=1, help="templates of each subject")
    parser.add_argument("--batch", type=int, default=32, help="probes searched together for the batched figure")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per figure (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object per size on stdout")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    threads = os.environ.get("OMP_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS") or "default"
    if not args.json:
        print(
            f"exact search, dim {args.dim}, {args.templates_per_subject} template(s)/subject, "
            f"top-{args.top_k}, numpy {np.__version__}, {os.cpu_count()} CPUs, BLAS threads: {threads}"
        )
        batch_label = f"search/q @{args.batch} ms"
        header = (
            f"{'templates':>10} {'build s':>8} {'matmul 1 ms':>12} {'search 1 ms':>12} "
            f"{batch_label:>16} {'matrix MB':>10} {'RSS MB':>8} {'batch peak MB':>13}"
        )
        print(header)
        print("-" * len(header))
    for n in sizes:
        row = bench(n, args.dim, args.templates_per_subject, args.batch, args.top_k, args.repeats, args.seed)
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['templates']:>10,} {row['build_s']:>8.2f} {row['matmul_1_ms']:>12.2f} "
                f"{row['search_1_ms']:>12.2f} {row[f'search_per_query_at_{args.batch}_ms']:>16.3f} "
                f"{row['matrix_mb']:>10.1f} {row['rss_mb']:>8.1f} {row[f'search_peak_at_{args.batch}_mb']:>13.1f}"
            )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
