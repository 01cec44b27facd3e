#!/usr/bin/env python3
"""Recognition under CCTV and phone conditions: faceledger and ``face_recognition`` (dlib) on the same degraded faces.

Every labeled photo of the face set is decoded once (longer side capped at ``--max-side``, 1024 by default) and then
degraded in code, one *layer* at a time: in-plane rotation by 15°, 30°, 45° and 90° (half of the photos one way, half
the other), motion blur, the face shrunk to 24 or 40 pixels and placed in a 1280×720 frame, low light with sensor
noise, JPEG quality 10, and a combined CCTV-like layer (a 48-pixel face in a 1280×720 frame, slight motion blur, dark,
noisy, JPEG quality 30). Each identity is enrolled with one clean photo (its first one on which every system finds a
face); every other photo of the identity is a probe, degraded by the layer. Per layer and system:

- the share of probes on which a face was found,
- the true-accept rate at a false-match rate of 1e-3: each probe's largest face against every enrolled identity,
  genuine = its own, impostor = every other; the threshold is the one that lets through at most 0.1 % of that layer's
  impostor comparisons, for each system on its own scores (a probe without a face is a non-match),
- rank-1: the share of probes whose own identity scores highest among the enrolled ones,
- milliseconds per probe (detection and the largest face's embedding).

faceledger runs twice in one process, alternating image by image: with its defaults (``upright="auto"``: tilted faces
re-detected upright, images without a face tried turned) and with ``upright="off"`` (one detection pass), so the cost
of the rotation handling is measured on the same images in the same conditions. face_recognition runs in its own
subprocess with its defaults (HOG, upsample 1, one jitter). faceledger's threshold was calibrated on one half of this
face set's identities (``faceledger.evaluate.splits``); the first table uses the other half only (held-out), the
second all identities. faceledger's own model-card threshold for FMR 1e-3 is also applied to the held-out probes.

Usage::

    python benchmarks/bench_robustness.py [--faces DIR] [--limit N] [--threads N] [--layers a,b,...]
                                          [--held-out-only] [--skip-baseline] [--sequential] [--json OUT]

With ``--threads 1`` (the default) and two free CPUs the two subprocesses run at the same time, each pinned to its own
CPU; ``--sequential`` runs them one after the other. Install the comparison packages first (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import THREAD_VARIABLES, cpu_model, default_faces_dir, select_rows

FRAME = (1280, 720)
TARGET_FMR = 1e-3
LAYERS = ("clean", "rot15", "rot30", "rot45", "rot90", "blur", "tiny24", "tiny40", "dark", "jpeg10", "cctv")
DESCRIPTIONS = {
    "clean": "the photo as decoded",
    "rot15": "rolled 15° in the image plane (canvas enlarged, edges replicated)",
    "rot30": "rolled 30°",
    "rot45": "rolled 45°",
    "rot90": "turned 90° (a phone photo without EXIF orientation)",
    "blur": "linear motion blur over 15 % of the face width (at least 5 px), random direction",
    "tiny24": "face 24 px wide in a 1280×720 corridor frame",
    "tiny40": "face 40 px wide in a 1280×720 corridor frame",
    "dark": "20 % of the light, Gaussian noise sigma 5",
    "jpeg10": "JPEG quality 10",
    "cctv": "face 48 px in a 1280×720 frame, 3 px motion blur, 45 % light, noise sigma 4, JPEG quality 30",
}
SYSTEMS = ("faceledger", "faceledger_off", "face_recognition")


# ----------------------------------------------------------------------------------------------------------
# Degradations (deterministic: each image and layer has its own seed)


def _rng(index: int, layer: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{index}:{layer}".encode()))


def rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """``image`` turned by ``angle`` degrees (counter-clockwise) on a canvas that holds all of it."""
    if angle % 90 == 0:
        codes = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
        return image.copy() if angle % 360 == 0 else cv2.rotate(image, codes[int(angle % 360)])
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(matrix[0, 0]), abs(matrix[0, 1])
    nw, nh = round(h * s + w * c), round(h * c + w * s)
    matrix[:, 2] += (nw / 2 - w / 2, nh / 2 - h / 2)
    return cv2.warpAffine(image, matrix, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def motion_blur(image: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Linear motion blur of ``length`` pixels in direction ``angle`` (degrees)."""
    length = max(1, int(length))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    turn = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
    kernel = cv2.warpAffine(kernel, turn, (length, length))
    kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REPLICATE)


def low_light(image: np.ndarray, level: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``level`` of the light, then additive Gaussian sensor noise of ``sigma`` grey levels."""
    dark = image.astype(np.float32) * level + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(dark, 0, 255).round().astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after a round trip through JPEG at ``quality``."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def in_frame(image: np.ndarray, box: np.ndarray, face_px: int, rng: np.random.Generator) -> np.ndarray:
    """The photo shrunk so that the face box's longer side is ``face_px`` and pasted into a 1280×720 corridor."""
    from faceledger.evaluate.scene_drawing import corridor

    width, height = FRAME
    scale = face_px / max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    face = box * scale
    # keep at most a frame's worth of the photo around the face
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    x0 = int(np.clip(cx - width / 2, 0, max(0, small.shape[1] - width)))
    y0 = int(np.clip(cy - height / 2, 0, max(0, small.shape[0] - height)))
    small = small[y0 : y0 + height, x0 : x0 + width]
    frame = corridor(width, height, rng)
    sh, sw = small.shape[:2]
    px = int(rng.integers(0, width - sw + 1))
    py = int(rng.integers(0, height - sh + 1))
    frame[py : py + sh, px : px + sw] = small
    return frame


def capped_with_box(image: np.ndarray, reference: Any, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``image`` shrunk to at most ``max_side`` pixels on its longer side, and the box :func:`degrade` sizes its
    faces by: ``reference``'s (an Engine's) largest face, else the middle of the photo."""
    h, w = image.shape[:2]
    if max(h, w) > max_side:
        k = max_side / max(h, w)
        image = cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    found = reference.detect(image)
    box = found.boxes[0] if len(found) else np.array([0.2 * w, 0.2 * h, 0.8 * w, 0.8 * h], np.float32)
    return image, box


def degrade(image: np.ndarray, box: np.ndarray, layer: str, index: int) -> np.ndarray:
    """``image`` degraded as ``layer`` says; ``box`` is the reference face box, ``index`` seeds the randomness."""
    rng = _rng(index, layer)
    sign = 1 if index % 2 == 0 else -1
    face = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
    if layer == "clean":
        return image
    if layer.startswith("rot"):
        return rotate(image, sign * float(layer[3:]))
    if layer == "blur":
        return motion_blur(image, max(5, round(0.15 * face)), float(rng.uniform(0, 180)))
    if layer.startswith("tiny"):
        return in_frame(image, box, int(layer[4:]), rng)
    if layer == "dark":
        return low_light(image, 0.2, 5.0, rng)
    if layer == "jpeg10":
        return jpeg(image, 10)
    if layer == "cctv":
        frame = in_frame(image, box, 48, rng)
        frame = motion_blur(frame, 3, float(rng.uniform(0, 180)))
        return jpeg(low_light(frame, 0.45, 4.0, rng), 30)
    raise ValueError(f"unknown layer {layer!r}")


# ----------------------------------------------------------------------------------------------------------
# Workers: one subprocess per library; each writes the largest face's embedding and the time per image


def _pin(threads: int, slot: int) -> list[int]:
    """Pin this process to ``threads`` CPUs, the ``slot``-th group of the CPUs it may use (wrapping around)."""
    if not hasattr(os, "sched_setaffinity"):
        return []
    cpus = sorted(os.sched_getaffinity(0))
    start = (slot * threads) % len(cpus)
    chosen = [cpus[(start + i) % len(cpus)] for i in range(min(threads, len(cpus)))]
    os.sched_setaffinity(0, chosen)
    return chosen


Embedder = Callable[[str], tuple[np.ndarray | None, int]]


def _faceledger_embedders(threads: int) -> dict[str, Embedder]:
    from faceledger import Engine, load_image

    cv2.setNumThreads(threads)
    engines = {"faceledger": Engine(threads=threads), "faceledger_off": Engine(threads=threads, upright="off")}

    def make(engine: Engine) -> Embedder:
        def run(path: str) -> tuple[np.ndarray | None, int]:
            image = load_image(path)
            found = engine.detect(image)
            if len(found) == 0:
                return None, 0
            return engine.embed_faces(image, found[:1])[0], len(found)  # largest first

        return run

    return {name: make(engine) for name, engine in engines.items()}


def _face_recognition_embedders(threads: int) -> dict[str, Embedder]:
    try:
        import face_recognition
    except ImportError as exc:
        sys.exit(
            f"error: face_recognition cannot be imported ({exc}); install it with "
            "`pip install -r benchmarks/requirements.txt && pip install --no-deps face_recognition==1.3.0`, "
            "or pass --skip-baseline"
        )

    def run(path: str) -> tuple[np.ndarray | None, int]:
        image = face_recognition.load_image_file(path)
        locations = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
        if not locations:
            return None, 0
        largest = max(locations, key=lambda loc: (loc[2] - loc[0]) * (loc[1] - loc[3]))
        vector = face_recognition.face_encodings(image, known_face_locations=[largest])[0]
        return np.asarray(vector, np.float32), len(locations)

    return {"face_recognition": run}


def worker_main(library: str, list_file: Path, out_file: Path, threads: int, slot: int) -> None:
    """Subprocess entry point: embed every listed image with every configuration of ``library``."""
    cpus = _pin(threads, slot)
    embedders = (_faceledger_embedders if library == "faceledger" else _face_recognition_embedders)(threads)
    paths = list_file.read_text().splitlines()
    for run in embedders.values():  # warm up: first calls allocate
        run(paths[0])
    names = list(embedders)
    vectors: dict[str, list[np.ndarray | None]] = {n: [] for n in names}
    faces: dict[str, list[int]] = {n: [] for n in names}
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for i, path in enumerate(paths):
        for name in names if i % 2 == 0 else names[::-1]:  # alternate which configuration goes first
            t0 = time.perf_counter()
            vector, count = embedders[name](path)
            seconds[name].append(time.perf_counter() - t0)
            vectors[name].append(vector)
            faces[name].append(count)
    out: dict[str, Any] = {"cpus": cpus}
    for name in names:
        dim = next((len(v) for v in vectors[name] if v is not None), 1)
        matrix = np.full((len(paths), dim), np.nan, np.float32)
        for i, v in enumerate(vectors[name]):
            if v is not None:
                matrix[i] = v
        out[name] = {"vectors": matrix, "faces": np.asarray(faces[name]), "seconds": np.asarray(seconds[name])}
    np.savez(out_file, **{f"{n}.{k}": v for n in names for k, v in out[n].items()}, cpus=np.asarray(cpus))


def run_workers(
    libraries: Sequence[str], paths: Sequence[str], threads: int, sequential: bool, work: Path
) -> dict[str, dict[str, np.ndarray]]:
    """Run one worker per library on ``paths``; their results by configuration name."""
    list_file = work / "images.txt"
    list_file.write_text("\n".join(paths) + "\n")
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARIABLES}, FACELEDGER_THREADS=str(threads))
    parallel = not sequential and len(os.sched_getaffinity(0)) >= threads * len(libraries)
    procs = []
    for slot, library in enumerate(libraries):
        out = work / f"{library}.npz"
        cmd = [sys.executable, __file__, "--worker", library, "--worker-list", str(list_file),
               "--worker-out", str(out), "--threads", str(threads), "--worker-slot", str(slot if parallel else 0)]
        proc = subprocess.Popen(cmd, env=env)
        if not parallel:
            proc.wait()
        procs.append((library, proc, out))
    results: dict[str, dict[str, np.ndarray]] = {}
    for library, proc, out in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"the {library} worker failed (exit code {proc.returncode})")
        with np.load(out) as data:
            for key in data.files:
                if "." in key:
                    name, field = key.split(".", 1)
                    results.setdefault(name, {})[field] = data[key]
                else:
                    results.setdefault("_cpus", {})[library] = data[key]
    return results


# ----------------------------------------------------------------------------------------------------------
# Scores and figures


def score_matrix(name: str, probes: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Similarity of every probe to every enrolled face (higher = more alike); NaN rows (no face) become -inf.

    faceledger: cosine similarity (its embeddings are L2-normalised); face_recognition: minus the Euclidean distance,
    the quantity its ``compare_faces`` thresholds."""
    if name.startswith("faceledger"):
        scores = probes @ gallery.T
    else:
        scores = -np.linalg.norm(probes[:, None, :] - gallery[None, :, :], axis=2)
    scores[np.isnan(probes).any(axis=1)] = -np.inf
    return scores.astype(np.float64)


def layer_figures(scores: np.ndarray, mate: np.ndarray, fixed: float | None = None) -> dict[str, Any]:
    """Detection rate, TAR at FMR 1e-3 (threshold set on these impostor scores), rank-1; and with ``fixed``, the TAR
    and FMR at that threshold."""
    from faceledger.evaluate.metrics import closed_set_identification, tar_at_fmr

    n, g = scores.shape
    found = np.isfinite(scores[:, 0])
    genuine_mask = np.zeros_like(scores, bool)
    genuine_mask[np.arange(n), mate] = True
    floor = -1e9  # a probe without a face: below every threshold, a non-match
    finite = np.where(np.isfinite(scores), scores, floor)
    genuine, impostor = finite[genuine_mask], finite[~genuine_mask]
    out: dict[str, Any] = {"probes": n, "gallery": g, "impostor_pairs": int(impostor.size)}
    out["detected"] = float(found.mean()) if n else None
    point = tar_at_fmr(genuine, impostor, targets=(TARGET_FMR,))[0] if n else {"supported": False}
    out["tar"] = point.get("tar") if point["supported"] else None
    out["tar_note"] = point.get("reason")
    ranks = closed_set_identification(finite, mate).ranks if n else np.zeros(0)
    out["rank1"] = float(np.mean((ranks == 1) & found)) if n else None
    if fixed is not None and n:
        out["tar_fixed"] = float(np.mean(genuine >= fixed))
        out["fmr_fixed"] = float(np.mean(impostor >= fixed))
    return out


def evaluate(
    results: dict[str, dict[str, np.ndarray]],
    index: dict[tuple[str, int], int],
    identities: list[str],
    gallery_rows: dict[str, int],
    probe_rows: list[int],
    layers: Sequence[str],
    fixed: float | None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Figures per layer and configuration for the given enrolled identities and probes."""
    names = [n for n in SYSTEMS if n in results]
    enrolled = [k for k in dict.fromkeys(identities) if k in gallery_rows]
    column = {k: j for j, k in enumerate(enrolled)}
    probes = [r for r in probe_rows if identities[r] in column]
    mate = np.asarray([column[identities[r]] for r in probes], np.int64)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for layer in layers:
        out[layer] = {}
        for name in names:
            vectors = results[name]["vectors"]
            gallery = vectors[[index["clean", gallery_rows[k]] for k in enrolled]]
            rows = [index[layer, r] for r in probes]
            scores = score_matrix(name, vectors[rows], gallery)
            figures = layer_figures(scores, mate, fixed if name == "faceledger" else None)
            figures["ms"] = float(1000 * results[name]["seconds"][rows].mean()) if rows else None
            out[layer][name] = figures
    return out


def _cell(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_table(title: str, figures: dict[str, dict[str, dict[str, Any]]]) -> None:
    """One row per layer: found / TAR@1e-3 / rank-1 for each configuration, and ms per probe."""
    first = next(iter(figures.values()))
    names = list(first)
    sample = next(iter(first.values()))
    print(f"{title}: {sample['gallery']} enrolled, {sample['probes']} probes per layer, "
          f"{sample['impostor_pairs']} impostor comparisons per layer")
    head = f"{'layer':8}" + "".join(f"{n:>28}" for n in names) + "".join(f"{'ms ' + n[:14]:>19}" for n in names)
    print(head)
    print(f"{'':8}" + "".join(f"{'found   TAR@1e-3  rank-1':>28}" for _ in names))
    for layer, row in figures.items():
        cells = "".join(
            f"{_cell(row[n]['detected']):>10}{_cell(row[n]['tar']):>9}{_cell(row[n]['rank1']):>9}" for n in names
        )
        times = "".join(f"{_cell(row[n]['ms'], 1):>19}" for n in names)
        print(f"{layer:8}{cells}{times}")
    if any(row[n].get("tar_note") for row in figures.values() for n in names):
        note = next(row[n]["tar_note"] for row in figures.values() for n in names if row[n].get("tar_note"))
        print(f"  TAR n/a: {note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--faces", type=Path, default=None, help="face folder (default: FACELEDGER_FACES or "
                        "../shared/data/faces)")
    parser.add_argument("--limit", type=int, default=None, help="use N labeled images evenly spaced in the manifest")
    parser.add_argument("--threads", type=int, default=1, help="CPUs (threads) per system (default 1)")
    parser.add_argument("--layers", default=",".join(LAYERS), help=f"comma-separated subset of {','.join(LAYERS)}")
    parser.add_argument("--max-side", type=int, default=1024, help="shrink photos whose longer side is larger")
    parser.add_argument("--held-out-only", action="store_true", help="only the identities faceledger's threshold "
                        "was not calibrated on (about half the work; the held-out table is then complete)")
    parser.add_argument("--skip-baseline", action="store_true", help="run faceledger only")
    parser.add_argument("--sequential", action="store_true", help="run the systems one after the other")
    parser.add_argument("--json", type=Path, default=None, dest="json_out", help="also write every figure here")
    parser.add_argument("--worker", choices=("faceledger", "face_recognition"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-list", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-slot", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.worker_list, args.worker_out, args.threads, args.worker_slot)
        return 0
    layers = [x for x in args.layers.split(",") if x]
    unknown = set(layers) - set(LAYERS)
    if unknown:
        parser.error(f"unknown layers {sorted(unknown)}")
    if "clean" not in layers:
        layers.insert(0, "clean")  # the enrolled photos

    from faceledger import Engine, load_image
    from faceledger.evaluate.datasets import load_manifest
    from faceledger.evaluate.splits import is_calibration_identity

    faces_dir = args.faces if args.faces is not None else default_faces_dir()
    if not (faces_dir / "manifest.csv").is_file():
        sys.exit(f"error: {faces_dir / 'manifest.csv'} not found; pass --faces DIR or set FACELEDGER_FACES")
    labeled = [s for s in load_manifest(faces_dir / "manifest.csv").samples if s.identity]
    if args.held_out_only:
        labeled = [s for s in labeled if not is_calibration_identity(s.identity)]
    samples = select_rows(labeled, args.limit)  # type: ignore[arg-type]
    identities = [s.identity for s in samples]

    # Reference face boxes (to size the faces of the frame layers and the blur): faceledger's one-pass detection on
    # the clean photo, else the middle of the photo. Only the degradation uses them, never the scoring.
    reference = Engine(threads=args.threads, upright="off")
    libraries = ["faceledger"] + ([] if args.skip_baseline else ["face_recognition"])
    loadavg_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="faceledger-robustness-") as tmp:
        work = Path(tmp)
        paths: list[str] = []
        index: dict[tuple[str, int], int] = {}
        for r, sample in enumerate(samples):
            image, box = capped_with_box(load_image(sample.path), reference, args.max_side)
            for layer in layers:
                path = work / f"{r:04d}_{layer}.png"
                cv2.imwrite(str(path), degrade(image, box, layer, r), [cv2.IMWRITE_PNG_COMPRESSION, 1])
                index[layer, r] = len(paths)
                paths.append(str(path))
        prepared = time.perf_counter() - started
        print(f"{len(paths)} images written ({len(samples)} photos x {len(layers)} layers) in {prepared:.0f} s; "
              "embedding...", flush=True)
        results = run_workers(libraries, paths, args.threads, args.sequential, work)
    names = [n for n in SYSTEMS if n in results]

    # Enrollment: each identity's first photo on which every configuration found a face, clean.
    gallery_rows: dict[str, int] = {}
    for r, k in enumerate(identities):
        if k not in gallery_rows and all(not np.isnan(results[n]["vectors"][index["clean", r]]).any() for n in names):
            gallery_rows[k] = r
    probe_rows = [r for r, k in enumerate(identities) if k in gallery_rows and gallery_rows[k] != r]
    fixed = Engine(threads=1).threshold_for_fmr(TARGET_FMR)
    held_out = [r for r in probe_rows if not is_calibration_identity(identities[r])]
    held_gallery = {k: r for k, r in gallery_rows.items() if not is_calibration_identity(k)}
    report: dict[str, Any] = {
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": loadavg_before,
                    "loadavg_after": os.getloadavg(), "cpus_per_worker": {k: v.tolist() for k, v in
                                                                          results["_cpus"].items()}},
        "threads": args.threads, "faces_dir": faces_dir.name, "photos": len(samples), "max_side": args.max_side,
        "layers": {layer: DESCRIPTIONS[layer] for layer in layers},
        "faceledger_threshold_fmr_1e-3": fixed,
        "held_out": evaluate(results, index, identities, held_gallery, held_out, layers, fixed),
        "all": evaluate(results, index, identities, gallery_rows, probe_rows, layers, fixed),
        "wall_s": time.perf_counter() - started,
    }
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs; {m['platform']}; Python {m['python']}; "
          f"{args.threads} thread(s) per system, CPUs {m['cpus_per_worker']}; load average "
          f"{m['loadavg_before'][0]:.1f} -> {m['loadavg_after'][0]:.1f}")
    print(f"face set {faces_dir.name}: {len(samples)} labeled photos, {len(gallery_rows)} identities enrolled with "
          f"a clean photo, longer side capped at {args.max_side} px")
    print("configurations: faceledger = Engine() defaults (upright='auto'); faceledger_off = Engine(upright='off'); "
          "face_recognition = HOG, upsample 1, 1 jitter")
    print("layers: " + "; ".join(f"{k}: {v}" for k, v in report["layers"].items()))
    print()
    print_table("held-out identities (the evaluation half: faceledger's threshold was not calibrated on them)",
                report["held_out"])
    ho = report["held_out"]
    print(f"  faceledger at its model-card threshold for FMR 1e-3 ({fixed:.3f}), held-out: "
          + ", ".join(f"{layer} TAR {_cell(ho[layer]['faceledger'].get('tar_fixed'))} FMR "
                      f"{_cell(ho[layer]['faceledger'].get('fmr_fixed'), 4)}" for layer in layers))
    print()
    print_table("all identities", report["all"])
    print(f"\nwall time {report['wall_s']:.0f} s")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
