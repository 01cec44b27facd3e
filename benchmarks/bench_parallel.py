"""Whole-machine throughput: every CPU busy, faceledger against face_recognition (dlib), in one run.

    python benchmarks/bench_parallel.py [--faces DIR] [--workers N] [--limit N]

`bench_pipeline.py` compares the two libraries per stage on the same CPU budget. This script asks the other
question a deployment asks: with N CPUs, how many images per second does each get through when it uses all of
them the way its own tools do? faceledger: one `Engine` (one onnxruntime thread per model) and `Engine.map` with N
worker threads. face_recognition: a `multiprocessing` pool of N processes (what its `--cpus` option does), each
with its own models. Both decode, detect and embed every face of every image of the manifest; model loading is
not timed. Files are read into memory first, so neither pays for the disk.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_fr: Any = None


def _fr_init() -> None:
    global _fr
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import face_recognition

    _fr = face_recognition


def _fr_embed(data: bytes) -> int:
    import io

    image = _fr.load_image_file(io.BytesIO(data))
    boxes = _fr.face_locations(image)
    return len(_fr.face_encodings(image, boxes))


def run_face_recognition(blobs: list[bytes], workers: int) -> tuple[float, int]:
    with mp.get_context("fork").Pool(workers, initializer=_fr_init) as pool:
        pool.map(_fr_embed, blobs[:workers])  # load the models in every process before timing
        start = time.perf_counter()
        faces = sum(pool.map(_fr_embed, blobs, chunksize=4))
        return time.perf_counter() - start, faces


def run_faceledger(blobs: list[bytes], workers: int, recognizer: str | None, group: int) -> tuple[float, int]:
    from faceledger import Engine

    os.environ["FACELEDGER_WORKERS"] = str(workers)  # the OpenVINO runtime sizes its streams by it
    engine = Engine(recognizer=recognizer, threads=1)
    engine.embed(blobs[0])
    start = time.perf_counter()
    faces = 0
    if group > 1:
        results = engine.embed_each(blobs, workers=workers, group=group)
    else:
        results = engine.map(engine.embed, blobs, workers=workers)
    for result in results:
        faces += 0 if isinstance(result, BaseException) else len(result)
    return time.perf_counter() - start, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = os.environ.get("FACELEDGER_FACES") or str(ROOT.parent / "shared" / "data" / "faces")
    parser.add_argument("--faces", default=default, help="folder with manifest.csv")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="CPUs to use")
    parser.add_argument("--limit", type=int, default=None, help="first N images of the manifest")
    parser.add_argument("--recognizer", default=None, help="faceledger's recognizer (default: the engine's)")
    parser.add_argument("--group", type=int, default=0, help="faceledger: Engine.embed_each, N images a pass")
    parser.add_argument("--skip-baseline", action="store_true", help="run faceledger only")
    args = parser.parse_args()
    faces_dir = Path(args.faces)
    with open(faces_dir / "manifest.csv", newline="") as handle:
        paths = [faces_dir / row["path"] for row in csv.DictReader(handle)][: args.limit]
    blobs = [path.read_bytes() for path in paths]
    print(f"{len(blobs)} images, {args.workers} workers; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    fl_time, fl_faces = run_faceledger(blobs, args.workers, args.recognizer, args.group)
    how = f"Engine.embed_each, groups of {args.group}" if args.group > 1 else "Engine.map"
    print("| system | images/s | faces/s | faces found |\n| --- | ---: | ---: | ---: |")
    print(f"| faceledger ({how}, {args.workers} threads, {args.recognizer or 'default recognizer'}) | "
          f"{len(blobs) / fl_time:.2f} | {fl_faces / fl_time:.2f} | {fl_faces} |")
    if args.skip_baseline:
        return
    fr_time, fr_faces = run_face_recognition(blobs, args.workers)
    print(f"| face_recognition ({args.workers} processes) | {len(blobs) / fr_time:.2f} | "
          f"{fr_faces / fr_time:.2f} | {fr_faces} |")
    print(f"ratio: {fr_time / fl_time:.2f}x images/s, {(fl_faces / fl_time) / (fr_faces / fr_time):.2f}x faces/s")


if __name__ == "__main__":
    main()
