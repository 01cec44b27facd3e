#!/usr/bin/env python3
"""Video: the real ``Gallery.watch`` path on generated scenes, files and live streams, in one run.

Scenes come from :func:`faceledger.evaluate.scenes.make_scene` (people cut from the shared face set walking through
a drawn corridor, H.264, with the true face box of every frame); the watchlisted people of each scene are enrolled
from another photo of them into a watchlist gallery, under a deployment, and every measurement goes through
``Gallery.watch``: detection on every frame (``detect_every=1``), tracking, embedding of the best faces of each
track, search, and the ledger (session start, heartbeats, one entry per track with candidates, session stop).
The engine has one onnxruntime thread per model (``Engine(threads=1)``, the default) and the pipeline detects on
its default two threads, ahead of tracking.

1. **720p files** (``--seeds`` scenes of ``--seconds`` s with ``--people`` people each): frames per second,
   real-time factor (video seconds per wall second), time per stage, tracks per appearance, recall, wrong subjects
   and bystander candidates (``faceledger.evaluate.video_score.score_tracks``), audit entries per session, peak
   memory; once without output, once writing the blurred video (``out=``), once with one detection thread.
2. **1080p file**: the same (no output).
3. **Two live 720p streams at once**: a server process (this script with ``--serve``) serves two scenes as MJPEG
   over HTTP on 127.0.0.1, paced at 25 fps from JPEGs encoded before serving (as a camera would: its encoding
   costs this machine nothing during the run); both are opened with ``open_video(url, live=True)`` and watched in
   two threads on one Gallery for ``--live-seconds``; per stream: frames served, decoded, processed, dropped,
   gaps, and the latency from decoding a frame to having tracked it, with the CPU time of each thread role.
4. **Audit volume**: one session over a long scene (``--audit-seconds``, default 180 s) where people keep coming
   and going (each person of the scene crosses it several times): audit entries written by the session.

Every measurement runs in its own subprocess (so ``ru_maxrss`` is that session's peak), models loaded and warmed
up on one frame before the clock starts. The stage timers are wrappers this script puts around the pipeline's
methods (wall time, ``time.perf_counter``); detection runs on its own threads, overlapping the rest, so the stages
do not add up to the wall time: "main thread waiting" is what remains of the wall time on the session's thread.

Usage::

    python benchmarks/bench_video.py                       # ~5 minutes on 2 idle CPUs, 1.5 of them making scenes
    python benchmarks/bench_video.py --quick               # a small run of everything (~1 minute)
    python benchmarks/bench_video.py --skip-live --skip-1080p --audit-seconds 0 --json video.json

The face set defaults to ``<project root>/../shared/data/faces`` or the folder named by ``FACELEDGER_FACES``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FPS = 25.0

POLICY = """\
version = 1
unmatched_faces = "discard"

[deployment]
controller = "Benchmark"
purpose = "Locating missing persons in recorded and live video"
legal_basis = "court order"

[identification]
target_fmr = 1e-3
top_k = 5
reviewers_required = 2

[[galleries]]
name = "missing-persons"
purposes = ["locate-missing-person"]
[galleries.watchlist]
legal_bases = ["court order"]
categories = ["missing person"]
max_entry_days = 30
"""
PURPOSE = "locate-missing-person"

# What "real time without growing queues" means for a live stream here.
LIVE_MAX_DROPPED = 0.05  # at most this fraction of the decoded frames dropped
LIVE_MAX_P95_S = 0.5  # decode-to-tracked latency, 95th percentile
AUDIT_MAX_ENTRIES = 100  # "tens, not thousands" per session of a 3-minute video


def default_faces_dir() -> Path:
    """The shared face folder: ``FACELEDGER_FACES`` if set, else ``<project root>/../shared/data/faces``."""
    env = os.environ.get("FACELEDGER_FACES")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "faces"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux), else the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB: ``VmHWM`` on Linux (``ru_maxrss`` of a child process starts
    from the parent's peak: Linux carries it over fork and exec), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# ----------------------------------------------------------------------------------------------------------
# Scenes


@dataclass(frozen=True)
class SceneSpec:
    """A scene to generate: file name, seed, length, people, size; ``long`` makes people cross it repeatedly."""

    name: str
    seed: int
    seconds: float
    people: int
    width: int = 1280
    height: int = 720
    long: bool = False


def long_plans(seed: int, seconds: float, people: int, width: int, faces: Path) -> tuple[list[Any], dict[str, str]]:
    """People of a watchlist split (half watchlisted) crossing a long scene again and again: the next one enters
    2-6 s after the last, so one to three are in view, on the paths :func:`make_scene` uses."""
    import numpy as np

    from faceledger.evaluate.scenes import MOTIONS, PersonPlan, make_watchlist_split

    n_watch = max(1, people // 2)
    split = make_watchlist_split(seed, n_watch, people - n_watch, faces)
    rng = np.random.default_rng(seed + 4242)
    lo, hi = 35.0, 130.0
    plans = []
    start = 0.5
    order: list[Any] = []
    while True:
        if not order:
            order = [split.people[j] for j in rng.permutation(len(split.people))]
        person, motion = order.pop(), MOTIONS[int(rng.integers(len(MOTIONS)))]
        if motion in ("ltr", "rtl"):
            s0 = float(rng.uniform(lo + 5, lo + 0.7 * (hi - lo)))
            s1 = s0 * float(rng.uniform(0.9, 1.1))
        elif motion == "diagonal":
            s0 = float(rng.uniform(lo + 5, (lo + hi) / 2))
            s1 = min(hi, 1.5 * s0)
        else:
            s0, s1 = float(rng.uniform(lo, lo + 10)), float(rng.uniform(hi - 10, hi))
        frac = 0.25 + 0.3 * ((s0 + s1) / 2 - lo) / (hi - lo) + float(rng.uniform(-0.04, 0.04))
        if motion == "approach":
            frac, duration = 0.25, float(rng.uniform(4.0, 6.0))
        else:
            speed = float(np.clip((s0 + s1) / 2 * rng.uniform(2.5, 4.5), 150, 450))
            duration = (width + 1.3 * (s0 + s1) + 16) / speed
        if start + duration > seconds:
            break
        mirror = bool(rng.random() < 0.5)
        plans.append(PersonPlan(person.person, person.scene_photo, motion, start, duration, (s0, s1), frac, mirror))
        start += float(rng.uniform(2.0, 6.0))
    return plans, split.enrollment


def make_scenes(specs: list[SceneSpec], work: Path, faces: Path) -> dict[str, dict[str, Any]]:
    """Generate (or reuse, when ``work`` already has them) the scenes; name -> path, enrollment, seconds made in."""
    from faceledger.evaluate.scenes import load_scene, make_scene

    made: dict[str, dict[str, Any]] = {}
    for spec in specs:
        path = work / f"{spec.name}.mp4"
        meta = work / f"{spec.name}.spec.json"
        wanted = json.dumps(spec.__dict__, sort_keys=True)
        started = time.perf_counter()
        if path.exists() and meta.exists() and meta.read_text() == wanted:
            scene = load_scene(path)
            enrollment = json.loads((work / f"{spec.name}.enroll.json").read_text())
            how = "reused"
        else:
            if spec.long:
                plans, enrollment = long_plans(spec.seed, spec.seconds, spec.people, spec.width, faces)
                scene = make_scene(
                    path,
                    plans,
                    width=spec.width,
                    height=spec.height,
                    fps=FPS,
                    seconds=spec.seconds,
                    seed=spec.seed,
                    faces_root=faces,
                )
            else:
                scene = make_scene(
                    path,
                    width=spec.width,
                    height=spec.height,
                    fps=FPS,
                    seconds=spec.seconds,
                    people=spec.people,
                    seed=spec.seed,
                    faces_root=faces,
                )
                enrollment = dict(scene.enrollment)
            (work / f"{spec.name}.enroll.json").write_text(json.dumps(enrollment))
            meta.write_text(wanted)
            how = "made"
        took = time.perf_counter() - started
        watched = sum(1 for a in scene.appearances if a.person in enrollment)
        print(
            f"  {spec.name}: {spec.width}x{spec.height}, {scene.frames / scene.fps:.0f} s, {len(scene.appearances)} "
            f"appearances ({watched} watchlisted), {how} in {took:.1f} s",
            flush=True,
        )
        made[spec.name] = {"path": str(path), "enrollment": enrollment, "frames": scene.frames}
    return made


# ----------------------------------------------------------------------------------------------------------
# Stage timers (wrappers around the pipeline's methods, in the worker process only)


class Probe:
    """Wall time per stage and per session (the thread running ``watch``), frame latencies, and the thread of each
    pipeline (detection runs on the pipeline's own threads and is charged to the session that owns it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.owner: dict[int, str] = {}
        self.local = threading.local()

    def add(self, session: str, stage: str, dt: float) -> None:
        with self.lock:
            self.seconds[session][stage] += dt

    def install(self, workers: int | None) -> None:
        """Wrap the methods; ``workers`` forces the pipeline's detection threads (``None``: its default)."""
        from faceledger.engine import video as engine_video
        from faceledger.gallery import video as gallery_video
        from faceledger.vision import video_io, video_live

        probe, clock = self, time.perf_counter
        pipeline = engine_video.TrackPipeline

        def me() -> str:
            return threading.current_thread().name

        def timed_iter(stage: str, original: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def wrapper(*args: Any) -> Iterator[Any]:
                inner, session = original(*args), me()
                while True:
                    t = clock()
                    try:
                        item = next(inner)
                    except StopIteration:
                        return
                    finally:
                        probe.add(session, stage, clock() - t)
                    yield item

            return wrapper

        def timed_call(stage: str, original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                t = clock()
                try:
                    return original(*args, **kwargs)
                finally:
                    probe.add(me(), stage, clock() - t)

            return wrapper

        run, detect, process, embed = pipeline.run, pipeline.detect, pipeline.process, pipeline._embed

        def run_wrapper(self: Any, frames: Any, workers_: int | None = None) -> Iterator[Any]:
            probe.owner[id(self)] = me()
            yield from run(self, frames, workers if workers is not None else workers_)

        def detect_wrapper(self: Any, image: Any) -> Any:
            t = clock()
            try:
                return detect(self, image)
            finally:
                dt = clock() - t
                probe.add(probe.owner.get(id(self), me()), "detect", dt)
                if getattr(probe.local, "inside", False):
                    probe.local.inner += dt

        def process_wrapper(self: Any, frame: Any, detections: Any = None) -> Any:
            probe.local.inside, probe.local.inner = True, 0.0
            t = clock()
            try:
                return process(self, frame, detections)
            finally:
                dt = clock() - t
                probe.local.inside = False
                session = me()
                probe.add(session, "track", dt - probe.local.inner)
                probe.add(session, "frames", 1)
                with probe.lock:
                    probe.latency[session].append(time.monotonic() - frame.wall)

        def embed_wrapper(self: Any, frame: Any, dets: Any) -> Any:
            t = clock()
            try:
                return embed(self, frame, dets)
            finally:
                dt = clock() - t
                probe.add(me(), "embed", dt)
                probe.local.inner += dt

        pipeline.run = run_wrapper  # type: ignore[method-assign]
        pipeline.detect = detect_wrapper  # type: ignore[method-assign]
        pipeline.process = process_wrapper  # type: ignore[method-assign]
        pipeline._embed = embed_wrapper  # type: ignore[method-assign]
        video_io.FileSource.__iter__ = timed_iter("decode", video_io.FileSource.__iter__)  # type: ignore[method-assign]
        video_live.LiveSource.__iter__ = timed_iter("frame_wait", video_live.LiveSource.__iter__)  # type: ignore[method-assign]
        gallery_video._decide = timed_iter("search", gallery_video._decide)  # type: ignore[assignment]
        gallery_video._heartbeat = timed_call("ledger", gallery_video._heartbeat)  # type: ignore[assignment]
        gallery_video._stop = timed_call("ledger", gallery_video._stop)  # type: ignore[assignment]
        output = engine_video.AnonymizedOutput
        output.add = timed_call("output", output.add)  # type: ignore[method-assign]
        output.close = timed_call("output", output.close)  # type: ignore[method-assign]


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads, summed by role (from /proc/self/task/*/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = defaultdict(float)
    for tid, name in names.items():
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        role = (
            "detection threads"
            if name.startswith("faceledger-detect")
            else "stream readers (MJPEG decode)"
            if name.startswith("faceledger video reader")
            else "watch threads (BGR conversion, track, embed, search, ledger)"
            if name.startswith("stream-")
            else "other"
        )
        out[role] += (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


# ----------------------------------------------------------------------------------------------------------
# Worker: one measurement in its own process


def setup_gallery(folder: Path, enrollment: dict[str, str], sources: list[str]) -> tuple[Any, dict[str, str]]:
    """A watchlist gallery with ``enrollment`` (person -> photo) enrolled, and a deployment covering ``sources``."""
    from faceledger import Engine
    from faceledger.gallery import Gallery
    from faceledger.ledger import parse_policy

    gallery = Gallery.init(folder / "g.db", actor="admin", policy=parse_policy(POLICY), engine=Engine(threads=1))
    now = gallery.now()
    subjects: dict[str, str] = {}
    for i, (person, photo) in enumerate(sorted(enrollment.items())):
        subject = f"w-{i:03d}"
        gallery.add_consent(
            subject,
            actor="desk",
            collected_by="duty officer",
            legal_basis="court order",
            purpose=PURPOSE,
            evidence_ref=f"order-{i}",
            category="missing person",
            expires_at=now + timedelta(days=5),
        )
        if gallery.enroll(subject, [photo], actor="desk", purpose=PURPOSE).enrolled:
            subjects[person] = subject
    gallery.add_deployment(
        "bench",
        actor="chief",
        purpose="administration",
        gallery=None,
        search_purpose=PURPOSE,
        legal_basis="court order",
        location="benchmark",
        sources=sources,
        authorised_by="chief",
        authorisation_ref="A-1",
        valid_to=now + timedelta(hours=6),
        max_watchlist=max(10, len(subjects)),
    )
    return gallery, subjects


def warm_up(gallery: Any, video: str) -> None:
    """Detect and embed on the first frame of ``video`` (onnxruntime's first runs at a new size are slower)."""
    from faceledger.engine.video import TrackPipeline
    from faceledger.vision.video import open_video

    with open_video(video) as source:
        frame = next(iter(source))
    pipeline = TrackPipeline(gallery.engine, fps=FPS)
    for _ in range(2):
        dets = pipeline.detect(frame.image)
        if len(dets):
            gallery.engine.embed_faces(frame.image, dets[:1])


def audit_summary(gallery: Any, after: int) -> dict[str, Any]:
    entries = gallery.audit_entries(after_seq=after)
    by_action: dict[str, int] = defaultdict(int)
    for entry in entries:
        by_action[str(entry.data.get("action"))] += 1
    return {"entries": len(entries), "by_action": dict(by_action)}


def last_seq(gallery: Any) -> int:
    entries = gallery.audit_entries()
    return entries[-1].seq if entries else 0


def stage_ms(seconds: dict[str, float], frames: int, wall: float) -> dict[str, float]:
    """Milliseconds per frame of each stage, and what remains of the wall time on the session's thread."""
    per = {k: 1000 * v / max(frames, 1) for k, v in seconds.items() if k != "frames"}
    main = sum(per.get(k, 0.0) for k in ("decode", "frame_wait", "track", "embed", "search", "ledger", "output"))
    inline = per.get("detect", 0.0) if seconds.get("inline_detect") else 0.0
    per["main_waiting"] = max(0.0, 1000 * wall / max(frames, 1) - main - inline)
    per.pop("inline_detect", None)
    return per


def worker_file(job: dict[str, Any], folder: Path) -> dict[str, Any]:
    from faceledger.evaluate.scenes import load_scene
    from faceledger.evaluate.video_score import score_tracks

    gallery, subjects = setup_gallery(folder, job["enrollment"], [job["video"]])
    warm_up(gallery, job["video"])
    rss_ready = rss_mb()
    probe = Probe()
    probe.install(job["workers"])
    before = last_seq(gallery)
    out = str(folder / "blurred.mp4") if job["out"] else None
    threading.current_thread().name = "stream-0"
    cpu0, t0 = time.process_time(), time.perf_counter()
    events = list(gallery.watch(job["video"], actor="operator", out=out))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    summary = events[-1]
    frames = int(summary["frames"])
    seconds = dict(probe.seconds["stream-0"])
    if job["workers"] == 1:
        seconds["inline_detect"] = 1.0
    score = score_tracks(load_scene(job["video"]), [e for e in events if e["event"] == "track"], watchlist=subjects)
    result = {
        "frames": frames,
        "video_s": frames / FPS,
        "wall_s": wall,
        "fps": frames / wall,
        "realtime": frames / FPS / wall,
        "cpu_s": cpu,
        "stages_ms": stage_ms(seconds, frames, wall),
        "score": score.to_dict(),
        "audit": audit_summary(gallery, before),
        "tracks": int(summary["tracks"]),
        "candidates": int(summary["candidates"]),
        "rss_ready_mb": rss_ready,
        "peak_rss_mb": peak_rss_mb(),
        "out_bytes": os.path.getsize(out) if out and os.path.exists(out) else None,
    }
    gallery.close()
    return result


def worker_live(job: dict[str, Any], folder: Path) -> dict[str, Any]:
    from faceledger.vision.video import open_video

    urls: list[str] = job["urls"]
    gallery, _ = setup_gallery(folder, job["enrollment"], ["http://127.0.0.1:*"])
    warm_up(gallery, job["warm_up"])
    probe = Probe()
    probe.install(None)
    before = last_seq(gallery)
    sources: dict[int, Any] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    errors: list[str] = []

    def session(k: int) -> None:
        try:
            # opened here, just before watching: the reader starts decoding (and dropping) at once
            sources[k] = source = open_video(urls[k], live=True)
            results[f"stream-{k}"] = list(gallery.watch(urls[k], actor="operator", video=source))
        except Exception as exc:  # reported, not raised: the other stream's figures still count
            errors.append(f"stream {k}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=session, args=(k,), name=f"stream-{k}") for k in range(len(urls))]
    roles0 = thread_cpu()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(job["seconds"])
    roles = {k: v - roles0.get(k, 0.0) for k, v in thread_cpu().items()}
    counts = {k: (s.frames_read, s.dropped, len(s.gaps), s.reconnects) for k, s in sources.items()}
    with probe.lock:
        processed = {name: int(v.get("frames", 0)) for name, v in probe.seconds.items()}
        latencies = {name: list(v) for name, v in probe.latency.items()}
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    for s in sources.values():
        s.close()
    for t in threads:
        t.join(30)
    streams = []
    for k in range(len(urls)):
        name = f"stream-{k}"
        latency = latencies.get(name, [])
        third = max(1, len(latency) // 3)
        seconds = dict(probe.seconds[name])
        frames = processed.get(name, 0)
        events = results.get(name, [])
        decoded, dropped, gaps, reconnects = counts.get(k, (0, 0, 0, 0))
        streams.append(
            {
                "decoded": decoded,
                "processed": frames,
                "dropped": dropped,
                "gaps": gaps,
                "reconnects": reconnects,
                "fps_processed": frames / wall,
                "latency_p50_s": percentile(latency, 0.5),
                "latency_p95_s": percentile(latency, 0.95),
                "latency_max_s": max(latency, default=math.nan),
                "latency_p95_first_third_s": percentile(latency[:third], 0.95),
                "latency_p95_last_third_s": percentile(latency[-third:], 0.95),
                "stages_ms": stage_ms(seconds, frames, wall),
                "tracks": sum(1 for e in events if e["event"] == "track"),
                "candidates": sum(len(e["candidates"]) for e in events if e["event"] == "candidate"),
            }
        )
    result = {
        "wall_s": wall,
        "cpu_s": cpu,
        "thread_cpu_s": roles,
        "streams": streams,
        "errors": errors,
        "audit": audit_summary(gallery, before),
        "peak_rss_mb": peak_rss_mb(),
    }
    gallery.close()
    return result


def worker_main(job_file: Path) -> None:
    job = json.loads(job_file.read_text())
    with tempfile.TemporaryDirectory(prefix="faceledger-bench-video-") as tmp:
        result = worker_live(job, Path(tmp)) if job["kind"] == "live" else worker_file(job, Path(tmp))
    Path(job["result"]).write_text(json.dumps(result))


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy since boot (user, nice, system, irq, softirq) and stolen by the
    hypervisor, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return sum(values[i] for i in (0, 1, 2, 5, 6)) / tick, (values[7] if len(values) > 7 else 0) / tick


def process_cpu(pid: int) -> float:
    """CPU seconds of a running process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_worker(job: dict[str, Any], work: Path, also_ours: int | None = None) -> dict[str, Any]:
    """Run one measurement in a subprocess of this script; its result, with the CPU that other programs on the
    machine used meanwhile (``other_cpus``: CPUs' worth; ``also_ours`` is another process of this benchmark, the
    stream server, whose CPU is not theirs)."""
    job_file = work / "job.json"
    result_file = work / "result.json"
    result_file.unlink(missing_ok=True)
    job_file.write_text(json.dumps({**job, "result": str(result_file)}))
    (busy0, steal0), ours0, t0 = machine_cpu(), children_cpu(), time.monotonic()
    extra0 = process_cpu(also_ours) if also_ours else 0.0
    completed = subprocess.run([sys.executable, __file__, "--worker", str(job_file)], check=False, timeout=1800)
    (busy1, steal1), ours1, elapsed = machine_cpu(), children_cpu(), time.monotonic() - t0
    extra = (process_cpu(also_ours) - extra0) if also_ours else 0.0
    if completed.returncode != 0 or not result_file.exists():
        raise RuntimeError(f"worker for {job.get('label', job['kind'])} failed (exit {completed.returncode})")
    result: dict[str, Any] = json.loads(result_file.read_text())
    result["server_cpus"] = extra / elapsed
    result["other_cpus"] = max(0.0, busy1 - busy0 - (ours1 - ours0) - extra) / elapsed
    result["steal_cpus"] = (steal1 - steal0) / elapsed
    return result


# ----------------------------------------------------------------------------------------------------------
# MJPEG server (its own process)


def serve_main(files: list[str], quality: int) -> None:
    """Serve each file as ``/<k>.mjpg`` at 25 fps, looping; prints ``READY <port>``, then stops at a line on stdin
    and prints what it sent per connection as JSON."""
    import cv2

    from faceledger.vision.video import open_video

    encoded: list[list[bytes]] = []
    for path in files:
        with open_video(path) as source:
            params = [cv2.IMWRITE_JPEG_QUALITY, quality]
            encoded.append([cv2.imencode(".jpg", f.image, params)[1].tobytes() for f in source])
    stop = threading.Event()
    sent: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            try:
                jpegs = encoded[int(self.path.strip("/").split(".")[0])]
            except (ValueError, IndexError):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            record = {"path": self.path, "frames": 0, "skipped": 0, "seconds": 0.0}
            with lock:
                sent.append(record)
            t0, tick = time.monotonic(), 0
            try:
                while not stop.is_set():
                    wait = t0 + tick / FPS - time.monotonic()
                    if wait > 0:
                        stop.wait(wait)
                    elif wait < -1 / FPS:  # behind by more than a frame: skip to now, as a camera would
                        late = int(-wait * FPS)
                        tick += late
                        record["skipped"] += late
                    jpeg = jpegs[tick % len(jpegs)]
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    self.wfile.write(head.encode() + jpeg + b"\r\n")
                    record["frames"] += 1
                    record["seconds"] = time.monotonic() - t0
                    tick += 1
            except OSError:
                pass  # the client went away

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    sizes = [sum(map(len, jpegs)) / len(jpegs) / 1024 for jpegs in encoded]
    print(f"READY {server.server_address[1]} {json.dumps(sizes)}", flush=True)
    sys.stdin.readline()
    with lock:
        report = json.dumps(sent)
    stop.set()
    server.shutdown()
    print(report, flush=True)


# ----------------------------------------------------------------------------------------------------------
# Report


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures of one configuration over several scenes (sums of frames and times; scores pooled)."""
    frames = sum(r["frames"] for r in rows)
    wall = sum(r["wall_s"] for r in rows)
    stages: dict[str, float] = defaultdict(float)
    for r in rows:
        for k, v in r["stages_ms"].items():
            stages[k] += v * r["frames"]
    scores = [r["score"] for r in rows]
    watched = sum(s["watchlisted_appearances"] for s in scores)
    appearances = sum(s["appearances"] for s in scores)
    return {
        "scenes": len(rows),
        "frames": frames,
        "video_s": frames / FPS,
        "wall_s": wall,
        "fps": frames / wall,
        "realtime": frames / FPS / wall,
        "cpu_use": sum(r["cpu_s"] for r in rows) / wall,
        "cpu_ms": 1000 * sum(r["cpu_s"] for r in rows) / frames,
        "stages_ms": {k: v / frames for k, v in stages.items()},
        "hits": sum(s["hits"] for s in scores),
        "watchlisted_appearances": watched,
        "recall": sum(s["hits"] for s in scores) / watched if watched else math.nan,
        "wrong_subject": sum(s["wrong_subject"] for s in scores),
        "bystander_candidates": sum(s["bystander_candidates"] for s in scores),
        "tracks_per_appearance": sum(s["tracks_per_appearance"] * s["appearances"] for s in scores) / appearances,
        "max_tracks_per_appearance": max(s["max_tracks_per_appearance"] for s in scores),
        "unassigned_tracks": sum(s["unassigned_tracks"] for s in scores),
        "appearances": appearances,
        "audit_per_session": [r["audit"]["entries"] for r in rows],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "rss_ready_mb": max(r["rss_ready_mb"] for r in rows),
        "other_cpus": sum(r["other_cpus"] * r["wall_s"] for r in rows) / wall,
    }


STAGES = (
    ("decode", "decode (session thread)"),
    ("detect", "detect (detection threads)"),
    ("track", "track (Kalman, matching, quality)"),
    ("embed", "embed (best faces of tracks)"),
    ("search", "search + candidate entries"),
    ("ledger", "ledger heartbeat + stop"),
    ("output", "blur + encode output"),
    ("main_waiting", "session thread waiting"),
)


def print_table(columns: list[tuple[str, dict[str, Any]]]) -> None:
    width = 16
    print(f"{'':38}" + "".join(f"{name:>{width}}" for name, _ in columns))

    def line(label: str, values: list[str]) -> None:
        print(f"{label:38}" + "".join(f"{v:>{width}}" for v in values))

    def fmt(key: str, spec: str) -> list[str]:
        return [format(c[key], spec) if isinstance(c.get(key), int | float) else "-" for _, c in columns]

    line("scenes", fmt("scenes", "d"))
    line("frames", fmt("frames", "d"))
    line("video s", fmt("video_s", ".1f"))
    line("wall s", fmt("wall_s", ".1f"))
    line("frames/s", fmt("fps", ".1f"))
    line("real-time factor", [f"{c['realtime']:.2f}x" for _, c in columns])
    line("CPU use (of 2)", fmt("cpu_use", ".2f"))
    line("CPU ms/frame (all threads)", fmt("cpu_ms", ".1f"))
    line("other programs' CPU meanwhile (of 2)", fmt("other_cpus", ".2f"))
    for key, label in STAGES:
        line(f"{label} ms/frame", [f"{c['stages_ms'].get(key, 0.0):.2f}" for _, c in columns])
    line("recall (watchlisted appearances)", [f"{c['hits']}/{c['watchlisted_appearances']}" for _, c in columns])
    line("wrong subject", fmt("wrong_subject", "d"))
    line("bystander candidates", fmt("bystander_candidates", "d"))
    line(
        "tracks per appearance (max)",
        [f"{c['tracks_per_appearance']:.2f} ({c['max_tracks_per_appearance']})" for _, c in columns],
    )
    line("unassigned tracks", fmt("unassigned_tracks", "d"))
    line("audit entries per session", [",".join(map(str, c["audit_per_session"])) for _, c in columns])
    line("RSS ready MiB", fmt("rss_ready_mb", ".0f"))
    line("peak RSS MiB", fmt("peak_rss_mb", ".0f"))


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def bottleneck(c: dict[str, Any]) -> str:
    """Which side limits a file run: the session thread (busy all the time) or detection (the thread waits)."""
    st = c["stages_ms"]
    per_frame = 1000 / c["fps"]
    waiting = st.get("main_waiting", 0.0)
    busy = {k: st.get(k, 0.0) for k in ("decode", "track", "embed", "search", "ledger", "output")}
    top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(busy.items(), key=lambda kv: -kv[1])[:3])
    if waiting > 0.25 * per_frame:
        detect = st.get("detect", 0.0)
        return f"detection ({detect:.1f} ms/frame; the session thread waited {waiting:.1f} of {per_frame:.1f} ms)"
    return f"the session thread ({per_frame - waiting:.1f} of {per_frame:.1f} ms/frame busy: {top} ms)"


def print_live(live: dict[str, Any]) -> tuple[str, bool, str]:
    """Print the live streams' figures; the target line."""
    print(f"Two live 720p MJPEG streams, one Gallery, {live['wall_s']:.1f} s:")
    ok_all = True
    for k, s in enumerate(live["streams"]):
        conns = [r for r in live["served"] if r["path"] == f"/{k}.mjpg"]
        sent, sent_s = sum(r["frames"] for r in conns), sum(r["seconds"] for r in conns)
        skipped = sum(r["skipped"] for r in conns)
        s["dropped_fraction"] = dropped = s["dropped"] / s["decoded"] if s["decoded"] else 1.0
        ok = dropped <= LIVE_MAX_DROPPED and s["latency_p95_s"] <= LIVE_MAX_P95_S and s["gaps"] == 0
        ok_all = ok_all and ok
        ms = {k: 1000 * v for k, v in s.items() if k.startswith("latency")}
        print(
            f"  stream {k}: served {sent} frames ({sent / sent_s if sent_s else 0:.1f} fps, {skipped} skipped by the "
            f"server), decoded {s['decoded']}, processed {s['processed']} ({s['fps_processed']:.1f} fps), dropped "
            f"{s['dropped']} ({100 * dropped:.1f} %), gaps {s['gaps']}, reconnects {s['reconnects']}"
        )
        print(
            f"    decode-to-tracked latency p50 {ms['latency_p50_s']:.0f} ms, p95 {ms['latency_p95_s']:.0f} ms, max "
            f"{ms['latency_max_s']:.0f} ms (p95 first third {ms['latency_p95_first_third_s']:.0f} ms, last third "
            f"{ms['latency_p95_last_third_s']:.0f} ms); tracks {s['tracks']}, candidates {s['candidates']}"
        )
        keys = ("frame_wait", "detect", "track", "embed", "search", "ledger", "main_waiting")
        print("    ms/processed frame: " + ", ".join(f"{key} {s['stages_ms'].get(key, 0.0):.1f}" for key in keys))
    roles = sorted(live["thread_cpu_s"].items(), key=lambda kv: -kv[1])
    processed = sum(s["processed"] for s in live["streams"])
    print(
        f"  CPU: {live['cpu_s']:.1f} s in {live['wall_s']:.1f} s ({live['cpu_s'] / live['wall_s']:.2f} of 2 CPUs); by "
        "thread: " + ", ".join(f"{k} {v:.1f} s" for k, v in roles)
    )
    print(
        f"  CPU ms per processed frame: {1000 * live['cpu_s'] / max(processed, 1):.1f} ("
        + ", ".join(f"{k} {1000 * v / max(processed, 1):.1f}" for k, v in roles if v > 0)
        + ")"
    )
    print(
        f"  other programs on the machine meanwhile: {live['other_cpus']:.2f} CPUs; the stream server: "
        f"{live['server_cpus']:.2f} CPUs"
    )
    errors = f"; errors: {live['errors']}" if live["errors"] else ""
    print(
        f"  audit entries: {live['audit']['entries']} ({live['audit']['by_action']}); peak RSS "
        f"{live['peak_rss_mb']:.0f} MiB{errors}"
    )
    streams = live["streams"]
    what = (
        f"two live 720p streams in real time (dropped <= {100 * LIVE_MAX_DROPPED:.0f} %, latency p95 <= "
        f"{LIVE_MAX_P95_S:g} s, no gaps)"
    )
    figure = (
        f"processed {min(s['fps_processed'] for s in streams):.1f} fps or more per stream, dropped at most "
        f"{100 * max(s['dropped_fraction'] for s in streams):.1f} %, p95 at most "
        f"{1000 * max(s['latency_p95_s'] for s in streams):.0f} ms, {sum(s['gaps'] for s in streams)} gaps"
    )
    return what, ok_all, figure


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, make the scenes, run the measurements and print the report; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--faces", type=Path, default=None, help="face folder (default: FACELEDGER_FACES or ../shared/data/faces)"
    )
    parser.add_argument("--quick", action="store_true", help="small scenes and short streams (a smoke run)")
    parser.add_argument("--seeds", type=int, default=None, help="720p scenes, seeds 0..N-1 (default 3)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each 720p scene (default 16)")
    parser.add_argument("--people", type=int, default=None, help="people per 720p scene (default 7)")
    parser.add_argument("--seconds-1080p", type=float, default=None, help="length of the 1080p scene (default 12)")
    parser.add_argument(
        "--live-seconds", type=float, default=None, help="how long both streams are watched (default 20)"
    )
    parser.add_argument(
        "--audit-seconds", type=float, default=None, help="length of the long scene (default 180; 0: skip)"
    )
    parser.add_argument("--skip-live", action="store_true", help="no live streams")
    parser.add_argument("--skip-1080p", action="store_true", help="no 1080p scene")
    parser.add_argument("--skip-files", action="store_true", help="no 720p file runs")
    parser.add_argument("--skip-workers1", action="store_true", help="no one-detection-thread comparison")
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the scenes here and reuse them (default: a temporary folder)"
    )
    parser.add_argument("--json", type=Path, default=None, dest="json_out", help="also write every figure here")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    if args.serve:
        serve_main(args.serve, 85)
        return 0
    quick = args.quick
    seeds = args.seeds if args.seeds is not None else 1 if quick else 3
    seconds = args.seconds if args.seconds is not None else 4.0 if quick else 16.0
    people = args.people if args.people is not None else 3 if quick else 7
    seconds_1080 = args.seconds_1080p if args.seconds_1080p is not None else 3.0 if quick else 12.0
    live_seconds = args.live_seconds if args.live_seconds is not None else 4.0 if quick else 20.0
    audit_seconds = args.audit_seconds if args.audit_seconds is not None else 10.0 if quick else 180.0
    if seeds < 1 or seconds <= 0 or people < 1:
        parser.error("--seeds, --seconds and --people must be positive")
    faces = (args.faces or default_faces_dir()).resolve()
    if not (faces / "manifest.csv").is_file():
        parser.error(f"{faces / 'manifest.csv'} not found; pass --faces DIR or set FACELEDGER_FACES")
    os.environ["FACELEDGER_FACES"] = str(faces)

    load_start = os.getloadavg()
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
        f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}",
        flush=True,
    )
    specs = [SceneSpec(f"720p-seed{s}-{seconds:g}s-{people}p", s, seconds, people) for s in range(seeds)]
    if not args.skip_1080p:
        specs.append(SceneSpec(f"1080p-seed0-{seconds_1080:g}s-{people}p", 0, seconds_1080, people, 1920, 1080))
    if audit_seconds > 0:
        specs.append(SceneSpec(f"long-seed0-{audit_seconds:g}s", 0, audit_seconds, 12, long=True))

    report: dict[str, Any] = {"machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_start": load_start}}
    with tempfile.TemporaryDirectory(prefix="faceledger-bench-video-") as tmp:
        work = args.work.resolve() if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print("scenes:", flush=True)
        scenes = make_scenes(specs, work, faces)
        names = [s.name for s in specs]
        seed_names = names[:seeds]

        def file_job(name: str, label: str, workers: int | None, out: bool) -> dict[str, Any]:
            scene = scenes[name]
            job = {
                "kind": "file",
                "label": label,
                "video": scene["path"],
                "enrollment": scene["enrollment"],
                "workers": workers,
                "out": out,
            }
            result = run_worker(job, work)
            print(
                f"  {label:24} {name:28} {result['fps']:6.1f} frames/s  {result['realtime']:.2f}x real time  "
                f"{result['score']['hits']}/{result['score']['watchlisted_appearances']} found  "
                f"{result['audit']['entries']} audit entries  (other programs: {result['other_cpus']:.2f} CPUs)",
                flush=True,
            )
            return result

        configs = [("720p", None, False), ("720p +out", None, True)]
        if not args.skip_workers1:
            configs.append(("720p 1 detector", 1, False))
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        print("files (one subprocess per session):", flush=True)
        for name in (
            [] if args.skip_files else seed_names
        ):  # configurations alternate scene by scene: other load falls on all of them
            for label, workers, out in configs:
                rows[label].append(file_job(name, label, workers, out))
        if not args.skip_1080p:
            rows["1080p"].append(file_job(specs[seeds].name, "1080p", None, False))
        long_result = None
        if audit_seconds > 0:
            long_result = file_job(specs[-1].name, "long scene", None, False)
            rows["long scene"].append(long_result)

        live = None
        if not args.skip_live:
            served = [scenes[seed_names[0]]["path"], scenes[seed_names[min(1, seeds - 1)]]["path"]]
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", *served],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert server.stdin is not None and server.stdout is not None
            try:
                ready = server.stdout.readline().split(maxsplit=2)
                if not ready or ready[0] != "READY":
                    raise RuntimeError("the MJPEG server did not start")
                port, jpeg_kib = int(ready[1]), json.loads(ready[2])
                enrollment = {
                    **scenes[seed_names[0]]["enrollment"],
                    **scenes[seed_names[min(1, seeds - 1)]]["enrollment"],
                }
                print(
                    f"live: 2 MJPEG streams on 127.0.0.1:{port} (JPEG quality 85, {jpeg_kib[0]:.0f} and "
                    f"{jpeg_kib[1]:.0f} KiB a frame), {live_seconds:g} s",
                    flush=True,
                )
                job = {
                    "kind": "live",
                    "urls": [f"http://127.0.0.1:{port}/{k}.mjpg" for k in range(2)],
                    "enrollment": enrollment,
                    "seconds": live_seconds,
                    "warm_up": served[0],
                }
                live = run_worker(job, work, also_ours=server.pid)
                server.stdin.write("stop\n")
                server.stdin.flush()
                live["served"] = json.loads(server.stdout.readline())
            finally:
                server.stdin.close()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
    load_end = os.getloadavg()
    report["machine"]["load_end"] = load_end

    # ---------------------------------------------------------------------------------------------- figures
    columns = [(label, aggregate(rs)) for label, rs in rows.items()]
    report["files"] = {label: c for label, c in columns}
    report["runs"] = rows
    print()
    print(
        f"Files through Gallery.watch (detect_every=1; Engine(threads=1); load average {load_start[0]:.2f} at "
        f"start, {load_end[0]:.2f} at end):"
    )
    print_table(columns)
    for label, c in columns:
        print(f"  {label}: limited by {bottleneck(c)}")
    targets: list[tuple[str, bool | None, str]] = []
    if "720p" in report["files"]:
        main720 = report["files"]["720p"]
        targets.append(
            (
                "720p 25 fps at >= 2x real time, every frame detected, ledger on, no output",
                main720["realtime"] >= 2,
                f"{main720['realtime']:.2f}x ({main720['fps']:.1f} frames/s)",
            )
        )
    if "1080p" in report["files"]:
        c = report["files"]["1080p"]
        targets.append(
            ("1080p 25 fps at >= 1x real time", c["realtime"] >= 1, f"{c['realtime']:.2f}x ({c['fps']:.1f} frames/s)")
        )
    if live is not None:
        report["live"] = live
        print()
        targets.append(print_live(live))
    if long_result is not None:
        entries = long_result["audit"]["entries"]
        minutes = long_result["video_s"] / 60
        # a session has one start and one stop entry; the rest (one per track with candidates) grows with time
        fixed = sum(long_result["audit"]["by_action"].get(a, 0) for a in ("watch.start", "watch.stop"))
        per3 = fixed + (entries - fixed) / minutes * 3
        label = f"{entries} in {minutes:.1f} min" + (
            "" if abs(minutes - 3) < 0.05 else f", {per3:.0f} per 3 min (extrapolated)"
        )
        s = long_result["score"]
        print()
        print(
            f"Audit volume, one session over a {long_result['video_s']:.0f} s scene ({s['appearances']} appearances, "
            f"{s['watchlisted_appearances']} of watchlisted people; {long_result['tracks']} tracks, "
            f"{long_result['candidates']} candidates): {entries} audit entries {long_result['audit']['by_action']} "
            f"for {long_result['frames']} frames"
        )
        targets.append(("audit entries per 3-minute session: tens, not thousands", per3 <= AUDIT_MAX_ENTRIES, label))
    print()
    print(
        "Targets:"
        + (
            " (--quick: scenes of a few seconds, where start-up weighs; a smoke run, not a measurement)"
            if quick
            else ""
        )
    )
    for what, ok, figure in targets:
        print(f"  {verdict(bool(ok)):8} {what}: {figure}")
    report["targets"] = [{"target": w, "met": ok, "figure": f} for w, ok, f in targets]
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
