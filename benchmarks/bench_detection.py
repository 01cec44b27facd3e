"""Detection strategies on the shared images with a known face count: faces found, false detections, time.

    python benchmarks/bench_detection.py [--faces DIR]

Compares the detector's pyramid options on every image of the manifest whose ``n_faces_expected`` is known and is
not 1 (group photos and images without a face), so the choice of defaults rests on figures, not on taste.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

from faceledger import Engine

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = os.environ.get("FACELEDGER_FACES") or str(ROOT.parent / "shared" / "data" / "faces")
    parser.add_argument("--faces", default=default, help="shared face folder with manifest.csv")
    args = parser.parse_args()
    faces = Path(args.faces)
    with open(faces / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["n_faces_expected"] not in {"1", "-1"}]
    engine = Engine()
    images = [(engine.load(faces / r["path"]), int(r["n_faces_expected"]), r["path"]) for r in rows]
    n_group = sum(1 for _, n, _ in images if n > 0)
    n_empty = len(images) - n_group
    print(
        f"{len(images)} images: {n_group} with 2+ faces ({sum(n for _, n, _ in images)} faces), {n_empty} with none"
    )
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    strategies = {
        "640 pass with margin": {"tile": False, "upscale_small": False, "look_again": False},
        "640 pass + full-resolution tiles": {"tile": True, "upscale_small": False, "look_again": False},
        "640 pass + tiles + second look at small weak faces (default)": {"tile": True, "upscale_small": False},
        "640 pass + tiles + small images at 2x": {"tile": True, "upscale_small": True, "look_again": False},
    }
    print("| strategy | faces found | false detections | seconds |\n| --- | --- | --- | --- |")
    for name, options in strategies.items():
        found = expected = false = 0
        detail = []
        engine.detector.detect(images[0][0], **options)  # warm-up
        start = time.perf_counter()
        for image, n, path in images:
            result = engine.detector.detect(image, **options)
            found += min(len(result), n)
            expected += n
            false += max(0, len(result) - n)
            if len(result) != n:
                detail.append(f"{Path(path).name}: {len(result)} for {n}")
        seconds = time.perf_counter() - start
        print(f"| {name} | {found} / {expected} | {false} | {seconds:.1f} |  {'; '.join(detail)}")


if __name__ == "__main__":
    main()
