#!/usr/bin/env python3
"""Exact 1:N search split between shard processes (``FACELEDGER_SHARDS``, :mod:`faceledger.gallery.shards`).

For a synthetic encrypted gallery of N subjects with one random 128-d template each (filled as
``bench_search_scale.py`` does, by its own ``fill``), each configuration runs in a fresh process:

* ``in-process``: today's search: the searching process holds every template (``SearchIndex``);
* ``1 shard`` / ``2 shards``: the searching process holds none; each shard process opens the store, decrypts its
  subjects' templates and searches them; the parent merges the top-k.

Printed per configuration: the cold start (until the first search answered: every template read, decrypted and
in a matrix), the RSS of the searching process and of each shard process after it, one top-5 search for one
probe and per probe when 32 are searched together (median of 15 and 5 runs), the time a search spends on the
parent's sync check (the shards sync themselves in each search), and the exactness
check: the hits of 64 probes (everyone, and a random half of the subjects allowed) compared with those of the
in-process index (subjects, order and float32 similarities all equal).

    python benchmarks/bench_shards.py --sizes 200000,1000000

Memory: the in-process index costs about 1.35 GB per million templates (BENCHMARKS.md); with shards each one
holds its part, so a gallery needs sharding where one host's memory per searching process runs out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _sibling(name: str) -> Any:
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


scale = _sibling("bench_search_scale")
median_time = _sibling("bench_search").median_time


def _probes(dim: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    probes = rng.standard_normal((64, dim), dtype=np.float32)
    return probes / np.linalg.norm(probes, axis=1, keepdims=True)


def _allowed(subjects: list[str]) -> set[str]:
    rng = np.random.default_rng(2)
    return {s for s, keep in zip(sorted(subjects), rng.random(len(subjects)) < 0.5, strict=True) if keep}


def run(db: str, key_file: Path, shards: int, out: Path) -> dict[str, Any]:
    """One configuration in this (fresh) process; the hits go to ``out`` (JSON) for the exactness check."""
    from faceledger import Gallery
    from faceledger.gallery.index_sync import sync_index
    from faceledger.gallery.shards import ShardedIndex, open_shards

    started = time.perf_counter()
    with Gallery.open(db, key_file=key_file) as g:
        ctx = g.context
        ctx.model_id()  # the engine is loaded before the clock's cold start, in both configurations
        before = scale.rss_mb()
        opened = time.perf_counter()
        if shards:
            ctx.index = open_shards(ctx, shards)
        with ctx.store.read() as tx:
            index = sync_index(ctx, tx)
        probes = _probes(index.dim)
        index.search(probes[:1], 5)  # the shards load here
        built = time.perf_counter()
        loaded_rss, loaded_peak = scale.rss_mb(), scale.peak_mb()
        stats = index.stats(detail=False) if isinstance(index, ShardedIndex) else []
        with ctx.store.read() as tx:
            everyone = [s.id for s in tx.list_subjects()]
        allowed = _allowed(everyone)
        sent = time.perf_counter()
        mask = index.mask(allowed)  # sharded: each shard is sent its part of the allowed set, once per set
        sent = time.perf_counter() - sent
        one = median_time(lambda: index.search(probes[:1], 5), 15)
        batch = median_time(lambda: index.search(probes[:32], 5), 5) / 32
        masked = median_time(lambda: index.search(probes[:32], 5, allowed=mask), 5) / 32
        with ctx.store.read() as tx:
            check = median_time(lambda: sync_index(ctx, tx), 50)
        hits = {
            "all": [[(h.subject, h.similarity) for h in row] for row in index.search(probes, 5)],
            "half": [[(h.subject, h.similarity) for h in row] for row in index.search(probes, 5, allowed=mask)],
            "k20": [[(h.subject, h.similarity) for h in row] for row in index.search(probes, 20)],
        }
        out.write_text(json.dumps(hits))
        row = {
            "shards": shards,
            "templates": len(index),
            "cold_start_s": built - opened,
            "open_s": opened - started,
            "parent_rss_mb": loaded_rss,
            "parent_peak_mb": loaded_peak,
            "parent_rss_end_mb": scale.rss_mb(),
            "parent_rss_before_mb": before,
            "shard_rss_mb": [s["rss_mb"] for s in stats],
            "shard_peak_mb": [s["peak_mb"] for s in stats],
            "mask_s": sent,
            "shard_templates": [s["count"] for s in stats],
            "search_1_ms": one * 1000,
            "search_per_probe_at_32_ms": batch * 1000,
            "search_per_probe_at_32_half_allowed_ms": masked * 1000,
            "sync_check_ms": check * 1000,
        }
        if isinstance(index, ShardedIndex):
            index.close()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200000,1000000")
    parser.add_argument("--shards", default="0,1,2", help="configurations (0: in-process)")
    parser.add_argument("--folder", type=Path, help="where the SQLite files go (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--run", nargs=4, metavar=("DB", "KEY_FILE", "SHARDS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        db, key, n, out = args.run
        print(json.dumps(run(db, Path(key), int(n), Path(out))))
        return 0
    configs = [int(c) for c in args.shards.split(",")]
    folder = args.folder or Path(tempfile.mkdtemp(prefix="faceledger-shards-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FACELEDGER_THREADS", "1")
    rows: list[dict[str, Any]] = []
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            db, key_file = str(folder / f"shards-{size}.db"), folder / f"shards-{size}.key"
            print(f"{size:,} templates: filling {db}", file=sys.stderr, flush=True)
            filled = scale.fill(db, key_file, size)
            reference = None
            for shards in configs:
                out = folder / f"hits-{size}-{shards}.json"
                print(f"  {shards or 'no'} shard(s)", file=sys.stderr, flush=True)
                done = subprocess.run(
                    [sys.executable, __file__, "--run", db, str(key_file), str(shards), str(out)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                row = {"size": size, **filled, **json.loads(done.stdout.strip().splitlines()[-1])}
                hits = json.loads(out.read_text())
                reference = reference or hits
                row["exact"] = hits == reference
                row["compared"] = f"{configs[0] or 'in-process'}"
                rows.append(row)
            for p in folder.glob(f"shards-{size}.*"):
                p.unlink()
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"exact search, sharded (gallery/shards.py), dim 128, 1 template/subject, top-5, {os.cpu_count()} CPUs")
    print(
        f"{'templates':>10} {'shards':>6} {'cold s':>7} {'parent RSS/peak MB':>18} {'shard RSS MB':>12} "
        f"{'shard peak MB':>13} {'search 1 ms':>11} {'/q @32 ms':>9} {'/q @32 half ms':>14} {'allowed sent s':>14} "
        "exact"
    )
    for r in rows:
        shard_rss = "+".join(f"{v:.0f}" for v in r["shard_rss_mb"]) or "-"
        shard_peak = "+".join(f"{v:.0f}" for v in r["shard_peak_mb"]) or "-"
        parent = f"{r['parent_rss_mb']:.0f}/{r['parent_peak_mb']:.0f}"
        print(
            f"{r['templates']:>10,} {r['shards'] or 'none':>6} {r['cold_start_s']:>7.1f} {parent:>18} "
            f"{shard_rss:>12} {shard_peak:>13} {r['search_1_ms']:>11.1f} {r['search_per_probe_at_32_ms']:>9.2f} "
            f"{r['search_per_probe_at_32_half_allowed_ms']:>14.2f} {r['mask_s']:>14.2f} {r['exact']}"
        )
    print(
        "parent RSS/peak: the searching process after its first search (before the benchmark lists the subjects); "
        "exact: 64 probes x (top-5, top-5 of half the subjects, top-20) equal to the first configuration's"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
