"""Batch enrollment throughput: the image work on threads of this process, or on Ray workers, in one run.

    python benchmarks/bench_batch.py [--faces DIR] [--per-subject N] [--workers 1,2] [--executors local,ray]
    python benchmarks/bench_batch.py --executors local --workers 1 --gallery-size 1000000   # into a large gallery

The real `Gallery.enroll_batch` end to end, on the same images for every configuration: consent checked, images
decoded, detected and embedded on the executor, templates encrypted and committed here, one transaction and one
audit entry per subject. Each configuration starts from a fresh SQLite gallery with the consents already recorded
(not timed). Ray runs start a local cluster of as many CPUs as workers; its start-up (cluster and actors with their
models) is timed apart from the throughput. The stored templates of every run are compared with the first run's:
the same images must be enrolled with the same embeddings, bit for bit.

With ``--gallery-size N`` every configuration enrolls into a copy of a gallery already holding N synthetic
subjects (one random encrypted template each, filled once and not timed), as a national database would after
years of enrollments; loading its index (every seal checked, every template decrypted) is timed apart, as
"index load", since a process pays it once before its first enrollment.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PURPOSE = "access-control"


def subjects(faces_dir: Path, per_subject: int) -> list[tuple[str, list[Path]]]:
    """Every identity of the manifest with its first ``per_subject`` one-face photos."""
    groups: dict[str, list[Path]] = defaultdict(list)
    with open(faces_dir / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["identity"] and row["n_faces_expected"].strip() == "1":
                groups[row["identity"]].append(faces_dir / row["path"])
    return [(f"s{i:03d}", paths[:per_subject]) for i, (_, paths) in enumerate(sorted(groups.items()))]


def prefilled(folder: Path, size: int) -> Path:
    """A gallery of ``size`` synthetic subjects (one random encrypted template each, as bench_search_scale.py fills
    them), with an extrapolation of the calibration accepted for it; each configuration starts from a copy."""
    script = Path(__file__).with_name("bench_search_scale.py")
    spec = importlib.util.spec_from_file_location("bench_search_scale", script)
    assert spec is not None and spec.loader is not None
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    from faceledger.gallery import Gallery

    base = folder / "prefilled.db"
    started = time.perf_counter()
    scale.fill(str(base), base.with_suffix(".key"), size)
    with Gallery.open(base, key_file=base.with_suffix(".key")) as g:
        g.accept_extrapolation(gallery=None, up_to=2 * size + 1000, reason="benchmark", actor="admin")
    print(f"prefilled {size:,} subjects in {time.perf_counter() - started:.0f} s (not timed below)", flush=True)
    return base


def run(
    kind: str, workers: int, items: list[tuple[str, list[Path]]], folder: Path, base: Path | None = None
) -> tuple[dict, dict]:
    from faceledger import Engine
    from faceledger.engine.executors import make_executor
    from faceledger.gallery import Gallery
    from faceledger.gallery.index_sync import sync_index
    from faceledger.gallery.keys import decrypt_template

    db = folder / f"{kind}-{workers}.db"
    key_file = db.with_suffix(".key")
    if base is not None:
        shutil.copyfile(base, db)
        shutil.copy2(base.with_suffix(".key"), key_file)  # the key file keeps its owner-only mode
        g = Gallery.open(db, key_file=key_file)
    else:
        g = Gallery.init(db, actor="admin", key_file=key_file)
    with g:
        for subject, _ in items:
            g.add_consent(
                subject, actor="desk", collected_by="desk", legal_basis="explicit consent", purpose=PURPOSE,
                evidence_ref=f"form-{subject}",
            )  # fmt: skip
    engine = Engine(threads=1)
    with Gallery.open(db, engine=engine, key_file=key_file) as g:
        start = time.perf_counter()
        with g.context.store.read() as tx:  # what a process pays once before its first enrollment
            sync_index(g.context, tx)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        executor = make_executor(kind, engine, workers=workers)
        ready = time.perf_counter() - start
        try:
            start = time.perf_counter()
            enrolled = images = 0
            for _, result in g.enroll_batch(items, actor="bench", purpose=PURPOSE, executor=executor):
                assert not isinstance(result, Exception), result
                images += len(result.outcomes)
                enrolled += sum(o.status == "enrolled" for o in result.outcomes)
            elapsed = time.perf_counter() - start
        finally:
            executor.close()
        stored = {}
        ctx = g.context
        with ctx.store.read() as tx:
            for subject, _ in items:
                for record in tx.templates_of(subject):
                    stored[record.source_sha256] = decrypt_template(ctx, tx, record).astype(np.float32).tobytes()
    figures = {"ready": ready, "loaded": loaded, "elapsed": elapsed, "images": images, "enrolled": enrolled}
    return figures, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = os.environ.get("FACELEDGER_FACES") or str(ROOT.parent / "shared" / "data" / "faces")
    parser.add_argument("--faces", default=default, help="folder with manifest.csv")
    parser.add_argument("--per-subject", type=int, default=6, help="photos per subject")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    parser.add_argument("--executors", default="local,ray", help="executors to run, comma-separated")
    parser.add_argument(
        "--gallery-size", type=int, default=0,
        help="enroll into a gallery already holding this many synthetic subjects (default: an empty gallery)",
    )  # fmt: skip
    args = parser.parse_args()
    items = subjects(Path(args.faces), args.per_subject)
    total = sum(len(paths) for _, paths in items)
    print(
        f"{len(items)} subjects, {total} images; {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}"
    )
    reference = None
    with tempfile.TemporaryDirectory() as folder:
        base = prefilled(Path(folder), args.gallery_size) if args.gallery_size else None
        print(
            "| executor | workers | gallery before | start-up s | index load s | images/s | subjects/s | enrolled "
            "| same templates as first run |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for kind in args.executors.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                figures, stored = run(kind, workers, items, Path(folder), base)
                reference = reference if reference is not None else stored
                same = "yes" if stored == reference else f"NO ({len(stored)} against {len(reference)})"
                print(
                    f"| {kind} | {workers} | {args.gallery_size:,} | {figures['ready']:.1f} | {figures['loaded']:.1f} "
                    f"| {figures['images'] / figures['elapsed']:.2f} | {len(items) / figures['elapsed']:.2f} "
                    f"| {figures['enrolled']} | {same} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
