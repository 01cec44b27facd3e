#!/usr/bin/env python3
"""Exact 1:N search at national scale, from the encrypted store: 1M and 10M templates.

What a search process does when it starts on a gallery of N subjects (one template each), measured in a fresh
process per size:

* ``fill``: writing N subjects into a gallery database: each with a consent, its own data key (wrapped by the master
  key) and one AES-GCM encrypted template, sealed and on the ledger (one consent and one enrollment entry per
  20,000 subjects, each naming them, so that ``faceledger audit verify`` passes; the consents one row at a time,
  as the store records them, the rest in bulk). The
  vectors are random unit vectors (search does the same arithmetic whatever the values); the per-image work of
  a real enrollment (detection, embedding) is measured by the other benchmarks and left out here;
* ``cold start``: opening the gallery and building the search index from the store (read every template,
  unwrap every subject key, decrypt every template, fill the matrix): what a `serve` or `watch` process pays
  before its first search;
* ``RSS``: resident memory of that process after the build, and per template;
* ``search 1`` / ``search/q @32``: one exact top-5 search (matrix product over all N templates, best template per
  subject) for one probe, and per probe when 32 probes are searched together (median of 15 runs);
* ``sync check``: what a search pays to learn the index is in sync (nothing changed); ``resync``: what its next
  search pays after another process enrolled one subject (the index synced, the searchable subjects worked out
  again; median of 5).

Templates are decrypted only in the memory of the searching process. The database files go to --folder
(default: a temporary folder, removed at the end; 10M templates take about 10 GB of SQLite).

    python benchmarks/bench_search_scale.py --sizes 1000000,10000000
    python benchmarks/bench_search_scale.py --sizes 100000 --db postgresql://USER@HOST/DB   # an empty database
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
import uuid
from pathlib import Path
from typing import Any

import numpy as np

CHUNK = 20_000
PURPOSE = "access-control"


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_mb() -> float:
    return _status_mb("VmHWM")


def _bench_search() -> Any:
    """benchmarks/bench_search.py (its timing helper), loaded from beside this script."""
    spec = importlib.util.spec_from_file_location("bench_search", Path(__file__).with_name("bench_search.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fill(db: str, key_file: Path, n: int) -> dict[str, Any]:
    """A gallery of ``n`` subjects with one encrypted template each (see the module docstring), written with the
    store's bulk insert (``tx.add_subjects``)."""
    from faceledger import Gallery

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    with Gallery.init(db, actor="bench", key_file=key_file) as g:
        for start in range(0, n, CHUNK):
            count = min(CHUNK, n - start)
            add_subjects(g.context, rng, start, count)
            done = start + count
            if done % 500_000 == 0 or done == n:
                print(f"  filled {done:,} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return {"fill_s": time.perf_counter() - started}


def add_subjects(ctx: Any, rng: np.random.Generator, start: int, count: int) -> None:
    """Subjects ``s{start:08d}`` onwards, each with a consent, a data key and one template of a random unit vector,
    in one transaction with its audit entries (consents and enrollments of ``count`` subjects without the image
    work)."""
    from faceledger.gallery.context import bump_consent_version
    from faceledger.gallery.keys import encrypt_template, new_data_key
    from faceledger.ledger.actions import AuditAction
    from faceledger.ledger.records import Consent, Subject, TemplateRecord
    from faceledger.ledger.timeutil import to_text

    model, gallery = ctx.model_id(), ctx.policy.policy.galleries[0].name
    vectors = rng.standard_normal((count, 128), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = to_text(ctx.now())
    cached = set(ctx.data_keys)
    ids = [f"s{start + i:08d}" for i in range(count)]
    # two transactions, as the consents and the enrollments of real subjects are: each entry names the records it
    # seals (`faceledger audit verify` checks that), here all of the chunk's at once
    with ctx.write() as tx:
        consents = [uuid.uuid4().hex for _ in ids]
        for consent_id, subject in zip(consents, ids, strict=True):
            tx.add_consent(
                Consent(consent_id, subject, gallery, "bench", "explicit consent", PURPOSE, f"form-{subject}", now,
                        None, None, None, now, "bench")
            )  # fmt: skip
        bump_consent_version(tx)
        ctx.record(tx, AuditAction.CONSENT_ADD, actor="bench", purpose=PURPOSE, gallery=gallery, subjects=tuple(ids),
                   details={"consent_ids": consents, "note": "benchmark fill"})  # fmt: skip
    with ctx.write() as tx:
        subjects, keys, templates = [], [], []
        for i, subject in enumerate(ids):
            subjects.append(Subject(subject, gallery, now, "bench"))
            record, key = new_data_key(ctx, tx, subject, now)
            keys.append(record)
            template_id = uuid.uuid4().hex
            nonce, ciphertext = encrypt_template(key, vectors[i], subject=subject, template_id=template_id)
            templates.append(
                TemplateRecord(
                    template_id, subject, record.id, model, 128, nonce, ciphertext, f"{start + i:064x}", 0, 1.0, now
                )
            )
        tx.add_subjects(subjects, keys, templates)  # in bulk: a few round trips per chunk
        ctx.record(tx, AuditAction.ENROLL, actor="bench", purpose=PURPOSE, gallery=gallery, subjects=tuple(ids),
                   details={"subjects": count, "note": "benchmark fill"})  # fmt: skip
        tx.bump_data_version()
    for subject in set(ctx.data_keys) - cached:
        del ctx.data_keys[subject]


def cold_start(db: str, key_file: Path) -> dict[str, Any]:
    """Run in a fresh process: open the gallery, build the index from the store, search."""
    from faceledger import Gallery
    from faceledger.gallery.index_sync import allowed_subjects, search_mask, sync_index

    before = rss_mb()
    started = time.perf_counter()
    with Gallery.open(db, key_file=key_file) as g:
        ctx = g.context
        opened = time.perf_counter()
        with ctx.store.read() as tx:
            index = sync_index(ctx, tx)
        built = time.perf_counter()
        rss = rss_mb()
        n = len(index)
        rng = np.random.default_rng(1)
        probes = rng.standard_normal((32, index.dim), dtype=np.float32)
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)

        timed = _bench_search().median_time
        one = timed(lambda: index.search(probes[:1], 5), 15)
        batch = timed(lambda: index.search(probes, 5), 5) / len(probes)
        with ctx.store.read() as tx:
            check = timed(lambda: sync_index(ctx, tx), 50)  # an index in sync: one data_version read

        gallery, added = ctx.policy.policy.galleries[0].name, iter(range(n, n + 1000))
        with ctx.store.read() as tx:  # what the first search works out
            search_mask(index, allowed_subjects(ctx, tx, gallery, PURPOSE, ctx.now()))

        def changed_elsewhere() -> None:
            """What another process's enrollment of one subject costs this one's next search: the subject written
            (outside the timing), then the index synced and the searchable subjects worked out again."""
            add_subjects(other.context, rng, next(added), 1)
            begun = time.perf_counter()
            with ctx.store.read() as tx:
                index = sync_index(ctx, tx)
                search_mask(index, allowed_subjects(ctx, tx, gallery, PURPOSE, ctx.now()))
            synced.append(time.perf_counter() - begun)

        synced: list[float] = []
        with Gallery.open(db, key_file=key_file) as other:  # the other process (its own connection and caches)
            for _ in range(5):
                changed_elsewhere()
        resync = float(np.median(synced))
        assert len(index) == n + 5, "the resync did not bring the index up to date"
    return {
        "templates": n,
        "open_s": opened - started,
        "build_s": built - opened,
        "rss_mb": rss,
        "peak_mb": peak_mb(),
        "rss_before_mb": before,
        "bytes_per_template": (rss - before) * 2**20 / max(n, 1),
        "matrix_mb": index.nbytes / 2**20,
        "search_1_ms": one * 1000,
        "search_per_probe_at_32_ms": batch * 1000,
        "sync_check_ms": check * 1000,
        "resync_after_change_ms": resync * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--db", help="an empty PostgreSQL database URL (one size only); default: SQLite files")
    parser.add_argument("--folder", type=Path, help="where the SQLite files go (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cold-start", nargs=2, metavar=("DB", "KEY_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_start:
        print(json.dumps(cold_start(args.cold_start[0], Path(args.cold_start[1]))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.db and len(sizes) != 1:
        parser.error("--db takes one size")
    folder = args.folder or Path(tempfile.mkdtemp(prefix="faceledger-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    os.environ.setdefault("FACELEDGER_THREADS", "1")
    try:
        for n in sizes:
            db = args.db or str(folder / f"scale-{n}.db")
            key_file = folder / f"scale-{n}.key"
            print(f"{n:,} templates: filling {db}", file=sys.stderr, flush=True)
            row: dict[str, Any] = {"size": n, **fill(db, key_file, n)}
            if not args.db:
                row["db_mb"] = sum(p.stat().st_size for p in folder.glob(f"scale-{n}.db*")) / 2**20
            out = subprocess.run(
                [sys.executable, __file__, "--cold-start", db, str(key_file)],
                check=True,
                capture_output=True,
                text=True,
            )
            row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            rows.append(row)
            if not args.db:
                for p in folder.glob(f"scale-{n}.*"):
                    p.unlink()
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"exact search from the encrypted store, dim 128, 1 template/subject, top-5, {os.cpu_count()} CPUs, "
        f"{'PostgreSQL' if args.db else 'SQLite'}"
    )
    print(
        f"{'templates':>11} {'fill s':>7} {'cold start s':>12} {'RSS MB':>8} {'peak MB':>8} {'B/template':>10} "
        f"{'search 1 ms':>11} {'search/q @32 ms':>15} {'sync check ms':>13} {'resync ms':>9}"
    )
    for r in rows:
        print(
            f"{r['templates']:>11,} {r['fill_s']:>7.0f} {r['open_s'] + r['build_s']:>12.1f} {r['rss_mb']:>8.0f} "
            f"{r['peak_mb']:>8.0f} "
            f"{r['bytes_per_template']:>10.0f} {r['search_1_ms']:>11.1f} {r['search_per_probe_at_32_ms']:>15.2f} "
            f"{r['sync_check_ms']:>13.3f} {r.get('resync_after_change_ms', float('nan')):>9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
