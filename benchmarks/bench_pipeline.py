#!/usr/bin/env python3
"""Compare faceledger with ``face_recognition`` (dlib) on the same images, in one run.

Each system runs in its own subprocess (so native memory is measured separately and the two libraries never
share a process). Every image is decoded, its faces are detected and every detected face is embedded, each
stage timed with ``time.perf_counter``. The script then prints:

- throughput: images/s and faces/s over the timed loop (model loading and one warm-up image excluded),
- milliseconds per image for each stage (decode, detect, embed) and per embedded face,
- CPU milliseconds per image (less sensitive than wall time to other load on the machine),
- peak resident memory of the subprocess (``ru_maxrss``) and its resident memory once the models are loaded,
- verification on the same same/different pairs: every genuine pair of the manifest's identities and, within
  each source, as many impostor pairs drawn with a fixed seed; each image's largest face; accuracy at each
  system's own default threshold (face_recognition: distance <= 0.6; faceledger: ``Engine.verify``'s
  threshold) and AUC, plus two figures chosen on this data (best accuracy of any threshold, TAR at FMR 1%). An
  image where a system finds no face makes every pair it is in an error for that system (and the worst score
  for the AUC; a non-match for the match rates); the counts are reported, and every figure is repeated on the
  pairs where both systems found both faces.

Both subprocesses get the same thread budget (``--threads``, default 2): they are pinned to the same CPUs with
``sched_setaffinity``, the usual thread-count variables are set, and OpenCV is told the same number.

Usage::

    python benchmarks/bench_pipeline.py [--faces DIR] [--limit N] [--min-side N] [--skip-baseline | --only SYSTEM]
                                        [--threads N] [--recognizer NAME] [--json OUT]

The face set defaults to ``<project root>/../shared/data/faces`` or the folder named by ``FACELEDGER_FACES``.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("faceledger", "face_recognition")
RECOGNIZER_VARIABLE = "FACELEDGER_BENCH_RECOGNIZER"
GROUP_VARIABLE = "FACELEDGER_BENCH_GROUP"  # --group: faceledger embeds through Engine.embed_each, N images a pass
FACE_RECOGNITION_TOLERANCE = 0.6  # face_recognition.compare_faces' default tolerance
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


# ----------------------------------------------------------------------------------------------------------
# Data set and pairs


@dataclass(frozen=True)
class Row:
    """One manifest row: relative path, identity ('' if unlabeled), source, expected face count."""

    path: str
    identity: str
    source: str
    n_faces: int


def default_faces_dir() -> Path:
    """The shared face folder: ``FACELEDGER_FACES`` if set, else ``<project root>/../shared/data/faces``."""
    env = os.environ.get("FACELEDGER_FACES")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "faces"


def read_manifest(faces: Path) -> list[Row]:
    """Read ``manifest.csv`` of the face folder; exits with a message naming the file if it is missing."""
    manifest = faces / "manifest.csv"
    if not manifest.is_file():
        sys.exit(f"error: {manifest} not found; pass --faces DIR or set FACELEDGER_FACES to the face folder")
    with open(manifest, newline="") as handle:
        return [Row(r["path"], r["identity"], r["source"], int(r["n_faces_expected"])) for r in csv.DictReader(handle)]


def longer_side(path: Path) -> int:
    """The longer side of an image in pixels, from its header (0 when it cannot be read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return max(image.size)
    except (OSError, UnidentifiedImageError):
        return 0


def select_rows(rows: list[Row], limit: int | None) -> list[Row]:
    """All rows, or ``limit`` rows evenly spaced through the manifest (deterministic, covers every source)."""
    if limit is None or limit >= len(rows):
        return rows
    if limit <= 0:
        return []
    if limit == 1:
        return rows[:1]
    step = (len(rows) - 1) / (limit - 1)
    return [rows[round(i * step)] for i in range(limit)]


def build_pairs(rows: Sequence[Row], seed: int = 0) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Genuine pairs (every pair of images of one identity) and as many impostor pairs, sampled per source.

    Impostor pairs are drawn, within each source, between images of different identities of that source, as
    many as that source has genuine pairs (all of them if there are fewer), with a fixed seed. Drawing them
    within a source keeps capture conditions alike, so impostors cannot be told apart by image style alone.
    """
    by_identity: dict[str, list[int]] = defaultdict(list)
    by_source: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        if row.identity:
            by_identity[row.identity].append(index)
            by_source[row.source].append(index)
    genuine: list[tuple[int, int]] = []
    genuine_per_source: dict[str, int] = defaultdict(int)
    for members in by_identity.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                genuine.append((members[a], members[b]))
                genuine_per_source[rows[members[a]].source] += 1
    rng = random.Random(seed)
    impostor: list[tuple[int, int]] = []
    for source in sorted(by_source):
        members = by_source[source]
        candidates = [
            (members[a], members[b])
            for a in range(len(members))
            for b in range(a + 1, len(members))
            if rows[members[a]].identity != rows[members[b]].identity
        ]
        wanted = genuine_per_source.get(source, 0)
        impostor.extend(candidates if len(candidates) <= wanted else rng.sample(candidates, wanted))
    return genuine, impostor


def held_out_pairs(rows: Sequence[Row]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
    """Pairs built as in :func:`build_pairs` from the identities faceledger's threshold was not calibrated on.

    faceledger's default threshold was calibrated on one half of this face set's identities (the rule lives in
    ``faceledger.evaluate.splits``); these pairs use the other half only. None if that module is unavailable.
    """
    try:
        from faceledger.evaluate.splits import is_calibration_identity
    except ImportError:
        return None
    kept = [
        r if r.identity and not is_calibration_identity(r.identity) else Row(r.path, "", r.source, r.n_faces)
        for r in rows
    ]
    return build_pairs(kept)


# ----------------------------------------------------------------------------------------------------------
# Metrics


def auc(genuine: Sequence[float], impostor: Sequence[float]) -> float | None:
    """Area under the ROC curve: chance that a genuine score beats an impostor score (ties count half)."""
    import numpy as np

    if not genuine or not impostor:
        return None
    scores = np.concatenate([np.asarray(genuine, dtype=np.float64), np.asarray(impostor, dtype=np.float64)])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over ties
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    n_g, n_i = len(genuine), len(impostor)
    rank_sum = ranks[:n_g].sum()
    return float((rank_sum - n_g * (n_g + 1) / 2.0) / (n_g * n_i))


def tar_at_fmr(genuine: Sequence[float], impostor: Sequence[float], fmr: float) -> float | None:
    """True-match rate at the threshold giving false-match rate ``fmr`` on these impostors (a data oracle).

    Infinite scores mark pairs without a face; such a pair is a non-match (as in the generalized rates of
    ISO/IEC 19795-1): a genuine one is never accepted, an impostor one never falsely matches but counts in the
    denominator of the false-match rate.
    """
    import numpy as np

    if not genuine or not impostor:
        return None
    imp = np.asarray(impostor, dtype=np.float64)
    real = np.sort(imp[np.isfinite(imp)])[::-1]
    allowed = int(np.floor(fmr * len(imp)))  # impostors allowed at or above the threshold
    threshold = real[allowed] if allowed < len(real) else -np.inf
    gen = np.asarray(genuine, dtype=np.float64)
    return float(np.mean(np.isfinite(gen) & (gen > threshold)))


def verification(
    embeddings: Sequence[list[float] | None],
    genuine: Sequence[tuple[int, int]],
    impostor: Sequence[tuple[int, int]],
    score: Callable[[list[float], list[float]], float],
    accept: Callable[[float], bool] | None,
    subset: set[int] | None = None,
) -> dict[str, Any]:
    """Accuracy at the system's own decision, AUC, best accuracy and TAR@FMR=1% over the pairs.

    A pair where the system found no face in one of the images is an error for the accuracies and takes the
    worst possible score for the AUC; for the match rates (true-match rate, false-match rate, TAR@FMR) it is a
    non-match, as in ISO/IEC 19795-1's generalized rates.

    ``score`` maps two embeddings to a similarity (higher = more alike); ``accept`` is the system's own
    decision on that similarity (None when the system has no default threshold: no accuracy then). With
    ``subset``, only pairs whose two images are both in it are used.
    """
    worst = float("inf")
    result: dict[str, Any] = {}
    scores: dict[str, list[float]] = {"genuine": [], "impostor": []}
    correct = total = unscorable = 0
    for kind, pairs in (("genuine", genuine), ("impostor", impostor)):
        for a, b in pairs:
            if subset is not None and (a not in subset or b not in subset):
                continue
            total += 1
            ea, eb = embeddings[a], embeddings[b]
            if ea is None or eb is None:
                unscorable += 1  # counted as an error, and as the worst score for the AUC
                scores[kind].append(-worst if kind == "genuine" else worst)
                continue
            s = score(ea, eb)
            scores[kind].append(s)
            if accept is not None and accept(s) == (kind == "genuine"):
                correct += 1
    result["pairs"] = total
    result["genuine_pairs"] = len(scores["genuine"])
    result["impostor_pairs"] = len(scores["impostor"])
    result["pairs_without_face"] = unscorable
    result["accuracy"] = correct / total if total and accept is not None else None
    g, i = scores["genuine"], scores["impostor"]
    result["auc"] = auc(g, i)
    result["best_accuracy"] = best_accuracy(g, i)
    result["tar_at_fmr_1pct"] = tar_at_fmr(g, i, 0.01)
    if accept is not None:  # a pair without a face (infinite score) is a non-match
        result["true_match_rate"] = sum(1 for s in g if math.isfinite(s) and accept(s)) / len(g) if g else None
        result["false_match_rate"] = sum(1 for s in i if math.isfinite(s) and accept(s)) / len(i) if i else None
    else:
        result["true_match_rate"] = result["false_match_rate"] = None
    return result


def best_accuracy(genuine: Sequence[float], impostor: Sequence[float]) -> float | None:
    """Highest accuracy any single threshold reaches on these pairs (an oracle, chosen on the test data).

    Infinite scores mark pairs without a face; they are errors whatever the threshold.
    """
    import numpy as np

    total = len(genuine) + len(impostor)
    if total == 0:
        return None
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    g, i = g[np.isfinite(g)], i[np.isfinite(i)]
    candidates = np.concatenate([np.unique(np.concatenate([g, i])), [np.inf]])
    # accepting scores >= t: genuine accepted = len(g) - #(g < t), impostors rejected = #(i < t)
    accepted = len(g) - np.searchsorted(g, candidates, side="left")
    rejected = np.searchsorted(i, candidates, side="left")
    return float(np.max(accepted + rejected) / total)


# ----------------------------------------------------------------------------------------------------------
# Workers (each runs in its own subprocess)


def _pin_threads(threads: int) -> list[int]:
    """Pin this process to ``threads`` CPUs (the first ones it may use) and return them."""
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cpus)
        return cpus
    return []


def _rss_now_mb() -> float | None:
    """Current resident memory in MiB from /proc (Linux), or None where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


class _Stage:
    """Per-image timings and results collected by a worker."""

    def __init__(self) -> None:
        self.decode: list[float] = []
        self.detect: list[float] = []
        self.embed: list[float] = []
        self.faces: list[int] = []
        self.pixels: list[int] = []
        self.largest: list[list[float] | None] = []
        self.errors: list[str | None] = []

    def add_error(self, message: str) -> None:
        for stage in (self.decode, self.detect, self.embed):
            stage.append(0.0)
        self.faces.append(0)
        self.pixels.append(0)
        self.largest.append(None)
        self.errors.append(message)


RunImage = Callable[[str, "_Stage | None"], None]
Finish = Callable[[list[str], "_Stage"], tuple[dict[str, Any], dict[str, Any]]]


def _setup_faceledger(threads: int) -> tuple[RunImage, Finish, float]:
    """Load faceledger's Engine; return the per-image function, the final-facts function and the load time."""
    import cv2
    import numpy as np

    cv2.setNumThreads(threads)
    start = time.perf_counter()
    import faceledger
    from faceledger import Engine, load_image

    # The thread budget reaches onnxruntime through Engine(threads=...) and FACELEDGER_THREADS; --recognizer reaches
    # the worker through RECOGNIZER_VARIABLE (unset: the engine's default)
    options: dict[str, Any] = {"threads": threads} if "threads" in inspect.signature(Engine).parameters else {}
    if os.environ.get(RECOGNIZER_VARIABLE):
        options["recognizer"] = os.environ[RECOGNIZER_VARIABLE]
    engine = Engine(**options)
    load_s = time.perf_counter() - start

    def run(path: str, stage: _Stage | None) -> None:
        t0 = time.perf_counter()
        image = load_image(path)
        t1 = time.perf_counter()
        dets = engine.detect(image)
        t2 = time.perf_counter()
        vectors = engine.embed_faces(image, dets) if len(dets) else np.zeros((0, 0), np.float32)
        t3 = time.perf_counter()
        if stage is not None:
            stage.decode.append(t1 - t0)
            stage.detect.append(t2 - t1)
            stage.embed.append(t3 - t2)
            stage.faces.append(len(dets))
            stage.pixels.append(int(image.shape[0] * image.shape[1]))
            stage.largest.append(vectors[0].astype(float).tolist() if len(dets) else None)  # largest first
            stage.errors.append(None)

    group = int(os.environ.get(GROUP_VARIABLE) or 0)

    def run_group(paths: list[str], stage: _Stage) -> None:
        """The chunk through ``Engine.embed_each`` (``group`` images per recognizer pass, one thread): the stages
        are not timed apart, so each image is given an equal share of the chunk's time as its detect time."""
        t0 = time.perf_counter()
        results = list(engine.embed_each(paths, workers=1, group=group))
        share = (time.perf_counter() - t0) / len(paths)
        for result in results:
            if isinstance(result, BaseException):
                stage.add_error(f"{type(result).__name__}: {result}")
                continue
            stage.decode.append(0.0)
            stage.detect.append(share)
            stage.embed.append(0.0)
            stage.faces.append(len(result.detections))
            stage.pixels.append(int(result.detections.image_size[0] * result.detections.image_size[1]))
            stage.largest.append(result.vectors[0].astype(float).tolist() if len(result.vectors) else None)
            stage.errors.append(None)

    run.group = run_group if group > 1 else None  # type: ignore[attr-defined]

    def finish(paths: list[str], stage: _Stage) -> tuple[dict[str, Any], dict[str, Any]]:
        # The decision rule: Engine.verify's own threshold, read from a verify call; its similarity is printed
        # beside the dot product of the embeddings computed above, so the two paths can be seen to agree.
        verify_check: dict[str, Any] = {}
        scored = [i for i, v in enumerate(stage.largest) if v is not None]
        if len(scored) >= 2:
            a, b = scored[0], scored[-1]
            try:
                result = engine.verify(paths[a], paths[b])
            except Exception as exc:  # e.g. a recognizer without calibration: no default threshold
                verify_check = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                va, vb = np.asarray(stage.largest[a]), np.asarray(stage.largest[b])
                verify_check = {
                    "threshold": float(result.threshold),
                    "fmr_at_threshold": None if result.fmr is None else float(result.fmr),
                    "verify_similarity": float(result.similarity),
                    "dot_of_embeddings": float(va @ vb),
                    "verify_match": bool(result.match),
                }
        card = getattr(getattr(engine, "recognizer", None), "card", None)
        det_card = getattr(getattr(engine, "detector", None), "card", None)
        versions = {
            "faceledger": getattr(faceledger, "__version__", None) or _version("faceledger"),
            "numpy": np.__version__,
            "onnxruntime": _version("onnxruntime"),
            "opencv": cv2.__version__,
            "recognizer": getattr(card, "name", None),
            "recognizer_sha256": getattr(card, "sha256", None),
            "detector": getattr(det_card, "name", None),
        }
        return versions, verify_check

    return run, finish, load_s


def _setup_face_recognition(threads: int) -> tuple[RunImage, Finish, float]:
    """Import face_recognition (which loads dlib's models); same contract as :func:`_setup_faceledger`."""
    start = time.perf_counter()
    try:
        import dlib
        import face_recognition  # loads the dlib models at import time
    except ImportError as exc:
        sys.exit(
            f"error: face_recognition cannot be imported ({exc}); install it with "
            "`pip install -r benchmarks/requirements.txt && pip install --no-deps face_recognition==1.3.0`, "
            "or pass --skip-baseline"
        )
    import numpy as np

    load_s = time.perf_counter() - start

    def run(path: str, stage: _Stage | None) -> None:
        t0 = time.perf_counter()
        image = face_recognition.load_image_file(path)
        t1 = time.perf_counter()
        locations = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
        t2 = time.perf_counter()
        # defaults: 5-point landmarks ("small"), num_jitters=1
        encodings = face_recognition.face_encodings(image, known_face_locations=locations)
        t3 = time.perf_counter()
        if stage is not None:
            stage.decode.append(t1 - t0)
            stage.detect.append(t2 - t1)
            stage.embed.append(t3 - t2)
            stage.faces.append(len(locations))
            stage.pixels.append(int(image.shape[0] * image.shape[1]))
            if locations:
                areas = [(bottom - top) * (right - left) for top, right, bottom, left in locations]
                stage.largest.append(np.asarray(encodings[int(np.argmax(areas))]).astype(float).tolist())
            else:
                stage.largest.append(None)
            stage.errors.append(None)

    def finish(paths: list[str], stage: _Stage) -> tuple[dict[str, Any], dict[str, Any]]:
        dlib_bin = _version("dlib-bin")
        versions = {
            "face_recognition": _version("face_recognition"),
            "face_recognition_models": _version("face_recognition_models"),
            "dlib": getattr(dlib, "__version__", None),
            "dlib_package": f"dlib-bin {dlib_bin}" if dlib_bin else f"dlib {_version('dlib')}",
            "dlib_use_blas": getattr(dlib, "DLIB_USE_BLAS", None),
            "dlib_use_avx": getattr(dlib, "USE_AVX_INSTRUCTIONS", None),
            "numpy": np.__version__,
        }
        return versions, {}

    return run, finish, load_s


def worker_main(system: str, list_file: Path, threads: int) -> None:
    """Subprocess entry point: load one system, then run the chunks of images the driver asks for.

    Protocol, one line each way: the worker says ``ready`` once loaded and warmed up (on the first image); the
    driver sends ``run START END`` (answered ``done``) for consecutive chunks, then ``finish OUT`` (answered
    ``finished``) to have the raw results written to OUT as JSON. The protocol uses the worker's original
    standard output; anything the libraries print there goes to standard error instead.
    """
    _pin_threads(threads)
    paths: list[str] = json.loads(list_file.read_text())
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    setup = _setup_faceledger if system == "faceledger" else _setup_face_recognition
    run, finish, load_s = setup(threads)
    rss_loaded = _rss_now_mb()
    if paths:
        try:
            run(paths[0], None)
        except Exception as exc:  # the timed pass reports the image's error
            print(f"warm-up on {paths[0]} failed: {exc}", file=sys.stderr)
    stage = _Stage()
    wall = cpu = 0.0
    protocol.write("ready\n")
    for line in sys.stdin:
        command, *arguments = line.split()
        if command == "run":
            wall0, cpu0 = time.perf_counter(), time.process_time()
            chunk = paths[int(arguments[0]) : int(arguments[1])]
            if getattr(run, "group", None) is not None:
                run.group(chunk, stage)  # type: ignore[attr-defined]
            for path in chunk if getattr(run, "group", None) is None else ():
                try:
                    run(path, stage)
                except Exception as exc:  # one bad image must not stop the benchmark
                    stage.add_error(f"{type(exc).__name__}: {exc}")
            wall += time.perf_counter() - wall0
            cpu += time.process_time() - cpu0
            protocol.write("done\n")
        elif command == "finish":
            versions, extra = finish(paths, stage)
            result = {
                "wall_s": wall,
                "cpu_s": cpu,
                "load_s": load_s,
                "rss_after_load_mb": rss_loaded,
                "peak_rss_mb": _peak_rss_mb(),
                "decode_s": stage.decode,
                "detect_s": stage.detect,
                "embed_s": stage.embed,
                "faces": stage.faces,
                "pixels": stage.pixels,
                "largest": stage.largest,
                "errors": stage.errors,
                "versions": versions,
                "verify_check": extra,
                "group": getattr(run, "group", None) is not None and int(os.environ.get(GROUP_VARIABLE) or 0),
                "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            }
            Path(arguments[0]).write_text(json.dumps(result))
            protocol.write("finished\n")
            return


# ----------------------------------------------------------------------------------------------------------
# Driver


class _Worker:
    """A running worker subprocess and its line protocol."""

    def __init__(self, system: str, list_file: Path, threads: int) -> None:
        env = dict(os.environ)
        for variable in (*THREAD_VARIABLES, "FACELEDGER_THREADS"):
            env[variable] = str(threads)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", system]
        command += ["--worker-list", str(list_file), "--threads", str(threads)]
        self.system = system
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def request(self, line: str | None, expected: str) -> None:
        """Send ``line`` (if any) and wait for the ``expected`` answer; RuntimeError if the worker died."""
        assert self.process.stdin is not None and self.process.stdout is not None
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if answer != expected:
            code = self.process.wait()
            raise RuntimeError(f"the {self.system} worker stopped (exit code {code}); see the messages above")

    def close(self) -> None:
        """Stop the worker if it is still running."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def run_systems(
    systems: Sequence[str], paths: list[str], threads: int, chunk: int, workdir: Path
) -> dict[str, dict[str, Any]] | None:
    """Run every system on ``paths`` in interleaved chunks; the raw results per system, or None on failure.

    Each system lives in its own subprocess. The chunks alternate between them in the order A B, B A, A B, ...
    so that both see the same changes of load on the machine during the run.
    """
    list_file = workdir / "paths.json"
    list_file.write_text(json.dumps(paths))
    workers: list[_Worker] = []
    try:
        for system in systems:  # load one after the other so that load times do not overlap
            print(f"loading {system} ...", file=sys.stderr, flush=True)
            workers.append(_Worker(system, list_file, threads))
            workers[-1].request(None, "ready")
        chunks = [(start, min(start + chunk, len(paths))) for start in range(0, len(paths), chunk)]
        done = 0
        for number, (start, end) in enumerate(chunks):
            for worker in workers if number % 2 == 0 else workers[::-1]:
                worker.request(f"run {start} {end}", "done")
            if end // 100 > done // 100:
                print(f"  {end}/{len(paths)} images", file=sys.stderr, flush=True)
            done = end
        raw: dict[str, dict[str, Any]] = {}
        for worker in workers:
            out_file = workdir / f"{worker.system}.json"
            worker.request(f"finish {out_file}", "finished")
            raw[worker.system] = json.loads(out_file.read_text())
        return raw
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    finally:
        for worker in workers:
            worker.close()


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summarize(raw: dict[str, Any], rows: Sequence[Row]) -> dict[str, Any]:
    """Throughput, per-stage times, memory and detection counts of one system's raw results."""
    n = len(raw["faces"])
    ok = [i for i in range(n) if raw["errors"][i] is None]
    faces = sum(raw["faces"])
    wall = raw["wall_s"]

    def mean_ms(key: str) -> float:
        values = [raw[key][i] for i in ok]
        return 1000.0 * sum(values) / len(values) if values else float("nan")

    embed_total = sum(raw["embed_s"][i] for i in ok)
    expected_face = [i for i in range(n) if rows[i].n_faces != 0 and (rows[i].identity or rows[i].n_faces > 0)]
    no_face_expected = [i for i in range(n) if rows[i].n_faces == 0]
    counted = [i for i in range(n) if rows[i].n_faces > 1]
    return {
        "images": n,
        "faces": faces,
        "wall_s": wall,
        "cpu_s": raw["cpu_s"],
        "images_per_s": n / wall if wall > 0 else None,
        "faces_per_s": faces / wall if wall > 0 else None,
        "cpu_ms_per_image": 1000.0 * raw["cpu_s"] / n if n else None,
        "decode_ms": mean_ms("decode_s"),
        "detect_ms": mean_ms("detect_s"),
        "embed_ms": mean_ms("embed_s"),
        "embed_ms_per_face": 1000.0 * embed_total / faces if faces and not raw.get("group") else None,
        "total_ms": mean_ms("decode_s") + mean_ms("detect_s") + mean_ms("embed_s"),
        "load_s": raw["load_s"],
        "rss_after_load_mb": raw["rss_after_load_mb"],
        "peak_rss_mb": raw["peak_rss_mb"],
        "errors": {rows[i].path: raw["errors"][i] for i in range(n) if raw["errors"][i] is not None},
        "no_face_found": [rows[i].path for i in expected_face if raw["faces"][i] == 0],
        "images_expecting_a_face": len(expected_face),
        "faces_on_no_face_images": sum(raw["faces"][i] for i in no_face_expected),
        "no_face_images": len(no_face_expected),
        "group_faces_found": sum(min(raw["faces"][i], rows[i].n_faces) for i in counted),
        "group_faces_expected": sum(rows[i].n_faces for i in counted),
        "by_source": _by_source(raw, rows, ok),
        "versions": raw["versions"],
        "cpus": raw["cpus"],
        "group": raw.get("group") or 0,
    }


def _by_source(raw: dict[str, Any], rows: Sequence[Row], ok: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Per source folder: images, mean megapixels, faces found and mean ms per stage (where time goes)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in ok:
        groups[rows[i].source].append(i)
    out: dict[str, dict[str, Any]] = {}
    for source in sorted(groups):
        members = groups[source]
        count = len(members)
        out[source] = {
            "images": count,
            "megapixels": sum(raw["pixels"][i] for i in members) / count / 1e6,
            "faces": sum(raw["faces"][i] for i in members),
            **{
                f"{stage}_ms": 1000.0 * sum(raw[f"{stage}_s"][i] for i in members) / count
                for stage in ("decode", "detect", "embed")
            },
        }
    return out


def _dot(a: list[float], b: list[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


def _neg_distance(a: list[float], b: list[float]) -> float:
    return -float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_report(report: dict[str, Any]) -> None:
    """Print the machine facts, the comparison table and the verification results."""
    m = report["machine"]
    print("faceledger vs face_recognition benchmark")
    print(f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs; {m['platform']}; Python {m['python']}")
    print(
        f"thread budget: {report['threads']} CPU(s) per system (pinned: same CPUs, thread variables set); "
        f"load average before/after: {m['loadavg_before']} / {m['loadavg_after']}"
    )
    for name, summary in report["systems"].items():
        versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v is not None)
        print(f"{name}: {versions}")
    print(
        f"images: {report['images']} from {report['faces_dir_name']} "
        f"({report['pairs']['genuine']} genuine pairs, {report['pairs']['impostor']} impostor pairs)"
    )
    print()
    names = list(report["systems"])
    rows: list[tuple[str, str, int]] = [
        ("images/s", "images_per_s", 2),
        ("faces/s", "faces_per_s", 2),
        ("CPU ms per image", "cpu_ms_per_image", 1),
        ("decode ms/image", "decode_ms", 2),
        ("detect ms/image", "detect_ms", 2),
        ("embed ms/image", "embed_ms", 2),
        ("embed ms/face", "embed_ms_per_face", 2),
        ("total ms/image", "total_ms", 2),
        ("faces found", "faces", 0),
        ("model load s", "load_s", 2),
        ("RSS after load MiB", "rss_after_load_mb", 0),
        ("peak RSS MiB", "peak_rss_mb", 0),
    ]
    width = 26
    print(f"{'':{width}}" + "".join(f"{n:>18}" for n in names) + ("          ratio" if len(names) == 2 else ""))
    for label, key, digits in rows:
        values = [report["systems"][n][key] for n in names]
        line = f"{label:{width}}" + "".join(f"{_fmt(v, digits):>18}" for v in values)
        if len(names) == 2 and key in {"images_per_s", "faces_per_s"} and values[1]:
            line += f"{values[0] / values[1]:>14.2f}x"
        print(line)
    print()
    for name in names:
        if report["systems"][name].get("group"):
            print(
                f"{name}: Engine.embed_each, {report['systems'][name]['group']} images per recognizer pass; the "
                "stages are not timed apart (the detect row is the whole time per image)"
            )
    for name in names:
        s = report["systems"][name]
        print(
            f"{name}: no face found on {len(s['no_face_found'])} of {s['images_expecting_a_face']} images "
            f"that have one; {s['faces_on_no_face_images']} face(s) on the {s['no_face_images']} "
            "no-face images; "
            f"group photos {s['group_faces_found']}/{s['group_faces_expected']} faces; "
            f"{len(s['errors'])} image error(s)"
        )
        for path, error in list(s["errors"].items())[:5]:
            print(f"  error {path}: {error}")
        if len(s["errors"]) > 5:
            print(f"  ... and {len(s['errors']) - 5} more (all of them in the --json report)")
    print()
    print("mean ms per image by source: decode / detect / embed (faces found)")
    sources = sorted({src for n in names for src in report["systems"][n]["by_source"]})
    print(f"{'source':18}{'images':>7}{'MP':>7}" + "".join(f"{n:>32}" for n in names))
    for src in sources:
        entries = [report["systems"][n]["by_source"].get(src) for n in names]
        first = next(e for e in entries if e)
        cells = [
            f"{e['decode_ms']:.1f} / {e['detect_ms']:.1f} / {e['embed_ms']:.1f} ({e['faces']})" if e else "n/a"
            for e in entries
        ]
        print(f"{src:18}{first['images']:>7}{first['megapixels']:>7.2f}" + "".join(f"{c:>32}" for c in cells))
    print()
    print(f"{'verification':{width}}" + "".join(f"{n:>18}" for n in names))
    for label, key, digits in [
        ("decision threshold", "threshold", 3),
        ("accuracy", "accuracy", 4),
        ("true-match rate", "true_match_rate", 4),
        ("false-match rate", "false_match_rate", 4),
        ("AUC", "auc", 4),
        ("best accuracy (oracle)", "best_accuracy", 4),
        ("TAR@FMR=1% (oracle)", "tar_at_fmr_1pct", 4),
        ("pairs without a face", "pairs_without_face", 0),
    ]:
        print(
            f"{label:{width}}"
            + "".join(f"{_fmt(report['verification'][n]['all'].get(key), digits):>18}" for n in names)
        )
    for key, title in [
        ("common", "where every system found both faces"),
        ("held_out", "of identities outside faceledger's threshold calibration half"),
    ]:
        if not all(key in report["verification"][n] for n in names):
            continue
        first = report["verification"][names[0]][key]
        print(
            f"on the {first['pairs']} pairs {title} "
            f"({first['genuine_pairs']} genuine, {first['impostor_pairs']} impostor):"
        )
        for label, field in [
            ("accuracy", "accuracy"),
            ("true-match rate", "true_match_rate"),
            ("false-match rate", "false_match_rate"),
            ("AUC", "auc"),
            ("best accuracy (oracle)", "best_accuracy"),
            ("TAR@FMR=1% (oracle)", "tar_at_fmr_1pct"),
            ("pairs without a face", "pairs_without_face"),
        ]:
            digits = 0 if field == "pairs_without_face" else 4
            print(
                f"{'  ' + label:{width}}"
                + "".join(f"{_fmt(report['verification'][n][key].get(field), digits):>18}" for n in names)
            )
    check = report.get("faceledger_verify_check")
    if check and "error" in check:
        print(f"faceledger: Engine.verify failed, so it has no default threshold here: {check['error']}")
    elif check:
        print(
            f"faceledger threshold {check['threshold']:.4f} (FMR {_fmt(check['fmr_at_threshold'], 6)} on "
            f"its model card); Engine.verify similarity {check['verify_similarity']:.5f} vs dot of benchmark "
            f"embeddings {check['dot_of_embeddings']:.5f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the systems and print the report; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--faces",
        type=Path,
        default=None,
        help="face folder with manifest.csv (default: FACELEDGER_FACES or ../shared/data/faces)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use N images evenly spaced through the manifest")
    parser.add_argument(
        "--min-side",
        type=int,
        default=0,
        help="use only the images whose longer side is more than N pixels (641: those the tile pass searches)",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="run faceledger only")
    parser.add_argument("--only", choices=SYSTEMS, default=None, help="run this one system only")
    parser.add_argument("--threads", type=int, default=2, help="CPUs (threads) given to each system (default 2)")
    parser.add_argument("--chunk", type=int, default=20, help="images per turn when the systems alternate (default 20)")
    parser.add_argument("--json", type=Path, default=None, dest="json_out", help="also write the full report here")
    parser.add_argument(
        "--recognizer", default=None, help="faceledger's recognizer, a bundled name or a file (default: the engine's)"
    )
    parser.add_argument(
        "--group",
        type=int,
        default=0,
        help="faceledger embeds the faces of N consecutive images in one recognizer pass (Engine.embed_each, as "
        "`faceledger embed` does); its stages are then not timed apart (default: one image at a time)",
    )
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-list", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.chunk < 1:
        parser.error("--threads and --chunk must be at least 1")
    if args.worker:
        worker_main(args.worker, args.worker_list, args.threads)
        return 0
    if args.recognizer:
        os.environ[RECOGNIZER_VARIABLE] = args.recognizer  # the workers inherit it
    if args.group > 1:
        os.environ[GROUP_VARIABLE] = str(args.group)

    faces = args.faces if args.faces is not None else default_faces_dir()
    rows = select_rows(read_manifest(faces), args.limit)
    if args.min_side:
        rows = [r for r in rows if longer_side(faces / r.path) > args.min_side]
    if not rows:
        parser.error("--limit and --min-side select no image")
    paths = [str(faces / r.path) for r in rows]
    for path in paths:  # read every file once so that neither system pays for a cold disk cache
        Path(path).read_bytes()
    genuine, impostor = build_pairs(rows)
    systems = [args.only] if args.only else ["faceledger"] if args.skip_baseline else list(SYSTEMS)

    loadavg_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="faceledger-bench-") as tmp:
        result = run_systems(systems, paths, args.threads, args.chunk, Path(tmp))
    if result is None:
        return 1
    raw = result
    loadavg_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    import numpy as np

    report: dict[str, Any] = {
        "machine": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "loadavg_before": [round(x, 2) for x in loadavg_before] if loadavg_before else None,
            "loadavg_after": [round(x, 2) for x in loadavg_after] if loadavg_after else None,
        },
        "threads": args.threads,
        "faces_dir_name": faces.name,
        "images": len(rows),
        "pairs": {"genuine": len(genuine), "impostor": len(impostor)},
        "systems": {name: summarize(raw[name], rows) for name in systems},
        "verification": {},
    }
    check = raw.get("faceledger", {}).get("verify_check") or {}
    report["faceledger_verify_check"] = check
    Rule = tuple[Callable[[list[float], list[float]], float], Callable[[float], bool] | None, float | None]
    rules: dict[str, Rule] = {}
    if "faceledger" in raw:
        faceledger_threshold: float | None = check.get("threshold")

        def faceledger_accepts(similarity: float) -> bool:
            # Verification.match is ``similarity >= threshold``
            return faceledger_threshold is not None and similarity >= faceledger_threshold

        accepts = faceledger_accepts if faceledger_threshold is not None else None
        rules["faceledger"] = (_dot, accepts, faceledger_threshold)
    if "face_recognition" in raw:

        def face_recognition_accepts(similarity: float) -> bool:
            return -similarity <= FACE_RECOGNITION_TOLERANCE  # similarity is minus the distance

        rules["face_recognition"] = (_neg_distance, face_recognition_accepts, FACE_RECOGNITION_TOLERANCE)
    common = {i for i in range(len(rows)) if all(raw[n]["largest"][i] is not None for n in systems)}
    held_out = held_out_pairs(rows)
    report["pairs"]["held_out"] = (
        None if held_out is None else {k: len(v) for k, v in zip(("genuine", "impostor"), held_out, strict=True)}
    )
    for name in systems:
        score, accept, threshold = rules[name]
        entry = {"all": verification(raw[name]["largest"], genuine, impostor, score, accept)}
        entry["all"]["threshold"] = threshold
        if len(systems) > 1:
            entry["common"] = verification(raw[name]["largest"], genuine, impostor, score, accept, subset=common)
        if held_out is not None:
            entry["held_out"] = verification(raw[name]["largest"], *held_out, score, accept)
        report["verification"][name] = entry
    print_report(report)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
