"""Small faces in large photos: how often the detector finds a face of a given size, and what the tile pass costs.

    python benchmarks/bench_small_faces.py [--faces DIR] [--portraits 164] [--canvas 4000x3000]

Builds canvases from the shared set: the largest face of every fourth one-face photo of the manifest (up to
``--portraits``), shrunk so the shorter side of the face's box is S pixels, with its surroundings, pasted twenty to a
canvas onto a photo without a face (stretched to the canvas), one in each cell of a 5x4 grid at a random place
(seeded). Prints:

1. how many of the faces the detector finds at each size S, on canvases of 2000x1500 (default pyramid: first pass at
   640 px, tile pass at full resolution, second look), with the other detections (false ones);
2. for each smallest face asked for (``min_face_size``), faces of 1.25 and 2 times that size found and the
   detector's CPU time per ``--canvas`` canvas, with the tile pass at full resolution (``min_face_size=0``, the
   faces at or above it kept) against the tile pass at the scale ``min_face_size`` sets
   (``faceledger.vision.detection.tile_scale``).

A face counts as found when a detection overlaps its box by IoU 0.3 or more.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import time
from pathlib import Path

import cv2
import numpy as np

from faceledger import Engine
from faceledger.vision.detection import box_iou, tile_scale

ROOT = Path(__file__).resolve().parents[1]
Crop = tuple[np.ndarray, np.ndarray]  # the face with its surroundings, and the face's box in it


def portrait_crops(engine: Engine, faces: Path, limit: int) -> list[Crop]:
    with open(faces / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["n_faces_expected"] == "1"][::4][:limit]
    crops = []
    for row in rows:
        image = engine.load(faces / row["path"])
        found = engine.detect(image)
        if len(found) == 0:
            continue
        x1, y1, x2, y2 = found.boxes[0]
        side = y2 - y1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        left, top = int(max(0, cx - 1.5 * side)), int(max(0, cy - 1.5 * side))
        right, bottom = int(min(image.shape[1], cx + 1.5 * side)), int(min(image.shape[0], cy + 1.5 * side))
        crops.append((image[top:bottom, left:right], np.array([x1 - left, y1 - top, x2 - left, y2 - top])))
    return crops


def canvases(
    crops: list[Crop], backgrounds: list[np.ndarray], size: tuple[int, int], sides: list[float], seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Canvases of ``size`` (width, height), each with up to 20 faces whose boxes have the given shorter sides, and
    those boxes."""
    rng = random.Random(seed)
    width, height = size
    cell_w, cell_h = width // 5, height // 4
    out = []
    for start in range(0, len(crops), 20):
        canvas = cv2.resize(backgrounds[(start // 20) % len(backgrounds)], size, interpolation=cv2.INTER_LINEAR)
        boxes = []
        for j, (crop, box) in enumerate(crops[start : start + 20]):
            f = sides[j % len(sides)] / min(box[2] - box[0], box[3] - box[1])
            small = cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            sh, sw = small.shape[:2]
            x = (j % 5) * cell_w + rng.randint(0, max(0, cell_w - sw))
            y = (j // 5) * cell_h + rng.randint(0, max(0, cell_h - sh))
            canvas[y : y + sh, x : x + sw] = small[: height - y, : width - x]
            boxes.append(box * f + np.array([x, y, x, y]))
        out.append((canvas, np.array(boxes, np.float32)))
    return out


def score(found: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """Faces of ``truth`` found, and detections that are none of them."""
    if len(found) == 0:
        return 0, 0
    hit = box_iou(truth, found) >= 0.3
    return int(hit.any(axis=1).sum()), int((~hit.any(axis=0)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = os.environ.get("FACELEDGER_FACES") or str(ROOT.parent / "shared" / "data" / "faces")
    parser.add_argument("--faces", type=Path, default=Path(default), help="shared face folder with manifest.csv")
    parser.add_argument("--portraits", type=int, default=164, help="faces to paste (default 164)")
    parser.add_argument("--canvas", default="4000x3000", help="canvas of part 2, WIDTHxHEIGHT (default 4000x3000)")
    parser.add_argument("--sizes", default="16,20,24,32,40,48,64", help="face sizes of part 1 (pixels)")
    parser.add_argument("--min-faces", default="48,64,96,128", help="smallest faces asked for in part 2 (pixels)")
    args = parser.parse_args()
    engine = Engine(upright="off")
    crops = portrait_crops(engine, args.faces, args.portraits)
    with open(args.faces / "manifest.csv", newline="") as handle:
        empty = [r["path"] for r in csv.DictReader(handle) if r["n_faces_expected"] == "0"]
    backgrounds = [engine.load(args.faces / p) for p in empty]
    print(f"{len(crops)} faces on {len(backgrounds)} photos without a face as backgrounds")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, one onnxruntime thread")

    print("\n1. faces found by size, 2000x1500 canvases (first pass, full-resolution tiles, second look)")
    print("| face px (shorter side) | found | other detections |\n| ---: | ---: | ---: |")
    for size in [float(s) for s in args.sizes.split(",")]:
        found = false = 0
        for canvas, truth in canvases(crops, backgrounds, (2000, 1500), [size]):
            f, x = score(engine.detect(canvas).boxes, truth)
            found, false = found + f, false + x
        print(f"| {size:.0f} | {found}/{len(crops)} ({found / len(crops):.0%}) | {false} |")

    width, height = (int(v) for v in args.canvas.split("x"))
    first = min(1.0, 640 / max(width, height))
    print(f"\n2. faces at or above the smallest asked for, {width}x{height} canvases, faces of 1.25x and 2x that size")
    print(
        "| min_face_size | tile scale | found, full resolution | found, at the scale | CPU ms per canvas, full "
        "| at the scale |\n| ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for smallest in [float(s) for s in args.min_faces.split(",")]:
        scenes = canvases(crops, backgrounds, (width, height), [1.25 * smallest, 2 * smallest])
        level = tile_scale(first, smallest)
        row = []
        for asked in (0.0, smallest):
            found = 0
            start = time.process_time()
            for canvas, truth in scenes:
                boxes = engine.detector.detect(canvas, min_face_size=asked).boxes
                sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
                found += score(boxes[sides >= smallest], truth)[0]
            row.append((found, (time.process_time() - start) * 1000 / len(scenes)))
        (full, full_ms), (scaled, scaled_ms) = row
        shown = "none" if level <= first else f"{level:.2f}"
        print(
            f"| {smallest:.0f} | {shown} | {full}/{len(crops)} | {scaled}/{len(crops)} | {full_ms:.0f} "
            f"| {scaled_ms:.0f} |"
        )


if __name__ == "__main__":
    main()
