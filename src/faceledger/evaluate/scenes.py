"""Surveillance-style test videos built from real photos, with the true face box of every frame.

Each person's head and shoulders are cut from a real photo (the largest face YuNet finds, a generous region around
it, a soft elliptical alpha so the cut adds no edge a detector could take for structure), put on a drawn body and
moved over a drawn corridor: left to right, right to left, diagonally, or approaching the camera so the face grows.
People enter and leave the frame, overlap in time and depth, and pass behind a foreground pillar. A sprite is only
scaled and moved, so the true face box in a frame is the photo's detected box under that scale and translation;
it is written beside the video as ``<video>.truth.json``. Only identities with two or more photos whose face is at
least :data:`MIN_PHOTO_FACE` px high (and no other face inside the cut) are used; grayscale ones only when the
colour ones run out.

>>> scene = make_scene("scene.mp4", seed=1, people=6)   # people of make_watchlist_split(1, 4, 2)
>>> scene.enrollment                                       # watchlisted person -> the other photo to enrol
>>> scene.appearances[0].boxes                             # one true box per frame, NaN rows where not visible
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from av.video.stream import VideoStream

from faceledger.engine import Engine
from faceledger.evaluate.datasets import load_manifest
from faceledger.evaluate.scene_drawing import MIN_VISIBLE, Placer, Sprite, corridor, cut_sprite, pillar, visible_box

__all__ = [
    "MIN_PHOTO_FACE",
    "MIN_VISIBLE",
    "MOTIONS",
    "Appearance",
    "PersonPlan",
    "Scene",
    "SplitPerson",
    "WatchlistSplit",
    "default_faces_root",
    "load_scene",
    "make_scene",
    "make_watchlist_split",
    "truth_path",
]

#: Smallest face (box height, pixels) a photo needs to be cut into a scene: faces are shown at up to ~130 px, and
#: a face upscaled more than about twice looks like a blur, not a person.
MIN_PHOTO_FACE = 60
#: How a person crosses the scene.
MOTIONS = ("ltr", "rtl", "diagonal", "approach")


def default_faces_root() -> Path:
    """The development face set: ``FACELEDGER_FACES`` if set, else ``<project root>/../shared/data/faces``."""
    env = os.environ.get("FACELEDGER_FACES")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data" / "faces"


def truth_path(video: str | os.PathLike[str]) -> Path:
    """Where the ground truth of ``video`` is kept: ``<video>.truth.json``."""
    return Path(f"{os.fspath(video)}.truth.json")


# ----------------------------------------------------------------------------------------------------- ground truth
@dataclass(frozen=True, eq=False)
class Appearance:
    """One person crossing the scene once.

    ``boxes`` has one row per frame from ``first_frame`` to ``last_frame`` (the frames where any of the person is in
    view): the true face box ``x1, y1, x2, y2`` in frame pixels, clipped to the frame, or NaN where less than
    :data:`MIN_VISIBLE` of the face is visible (out of frame, behind the pillar or behind a nearer person).
    ``visibility`` is, per frame, the fraction of the face box in view and uncovered (all ones when not given).
    """

    person: str
    photo: str
    first_frame: int
    last_frame: int
    boxes: np.ndarray
    visibility: np.ndarray | None = None

    def box(self, frame: int, min_visibility: float = 0.0) -> np.ndarray | None:
        """The true face box at ``frame``, or ``None`` outside the appearance, where the face is not visible, or
        where less than ``min_visibility`` of it is."""
        if not self.first_frame <= frame <= self.last_frame:
            return None
        row = self.boxes[frame - self.first_frame]
        seen = 1.0 if self.visibility is None else float(self.visibility[frame - self.first_frame])
        return None if np.isnan(row).any() or seen < min_visibility else row


@dataclass(frozen=True, eq=False)
class Scene:
    """A generated video and its truth; ``enrollment`` maps each watchlisted person to their enrollment photo."""

    path: str
    width: int
    height: int
    fps: float
    frames: int
    appearances: list[Appearance]
    enrollment: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready truth (boxes rounded to 0.01 px, ``null`` rows where the face is not visible)."""
        rows = [
            {
                "person": a.person,
                "photo": a.photo,
                "first_frame": a.first_frame,
                "last_frame": a.last_frame,
                "boxes": [None if np.isnan(r).any() else [round(float(v), 2) for v in r] for r in a.boxes],
                "visibility": None if a.visibility is None else [round(float(v), 3) for v in a.visibility],
            }
            for a in self.appearances
        ]
        return {
            "version": 1,
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frames": self.frames,
            "enrollment": dict(self.enrollment),
            "appearances": rows,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scene:
        """Inverse of :meth:`to_json`."""
        appearances = [
            Appearance(
                a["person"],
                a["photo"],
                int(a["first_frame"]),
                int(a["last_frame"]),
                np.array([[np.nan] * 4 if r is None else r for r in a["boxes"]], np.float64).reshape(-1, 4),
                None if a.get("visibility") is None else np.array(a["visibility"], np.float64),
            )
            for a in data["appearances"]
        ]
        return cls(
            data["path"],
            int(data["width"]),
            int(data["height"]),
            float(data["fps"]),
            int(data["frames"]),
            appearances,
            dict(data.get("enrollment", {})),
        )


def load_scene(path: str | os.PathLike[str]) -> Scene:
    """Read a scene from its video path or its ``.truth.json``; a moved video is found beside its truth file."""
    p = Path(path)
    truth = p if p.name.endswith(".truth.json") else truth_path(p)
    data = json.loads(truth.read_text(encoding="utf-8"))
    beside = truth.with_name(truth.name.removesuffix(".truth.json"))
    if not Path(data["path"]).exists() and beside.exists():
        data["path"] = str(beside)
    return Scene.from_json(data)


# ------------------------------------------------------------------------------------------------- choosing people
@dataclass(frozen=True)
class SplitPerson:
    """A person of a scene: the photo their face is cut from and, if watchlisted, the other photo they are enrolled
    from (``None`` for a bystander)."""

    person: str
    scene_photo: str
    enroll_photo: str | None = None


@dataclass(frozen=True)
class WatchlistSplit:
    """Who is watchlisted and who is a bystander (never enrolled)."""

    watchlisted: tuple[SplitPerson, ...]
    bystanders: tuple[SplitPerson, ...]

    @property
    def people(self) -> tuple[SplitPerson, ...]:
        """Watchlisted people first, then bystanders."""
        return self.watchlisted + self.bystanders

    @property
    def enrollment(self) -> dict[str, str]:
        """Person → enrollment photo, for the watchlisted people."""
        return {p.person: p.enroll_photo for p in self.watchlisted if p.enroll_photo}

    @property
    def sources(self) -> list[str]:
        """The manifest sources the people come from."""
        return sorted({p.person.split(":")[0] for p in self.people})


@lru_cache(maxsize=1)
def _engine() -> Engine:
    # one engine per process: loading the models costs more than detecting the faces of a few hundred photos
    return Engine()


def _faces(image: np.ndarray) -> np.ndarray:
    """Face boxes ``(N, 4)`` of ``image`` in its pixels, largest first."""
    # at most ~1280 px: plenty for faces of 60 px and more, and a 3200-px poster costs no tiling pass
    k = min(1.0, 1280 / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else image
    return _engine().detect(small).boxes.astype(np.float64).reshape(-1, 4) / k


@lru_cache(maxsize=8)
def _survey(root: str, grayscale: bool) -> dict[str, list[str]]:
    """Identity → its photos (colour, or grayscale ones) usable for a sprite, for identities with two or more."""
    found: dict[str, list[str]] = defaultdict(list)
    for sample in load_manifest(Path(root) / "manifest.csv").samples:
        if not sample.identity or not sample.path.is_file():
            continue
        image = _engine().load(sample.path)
        if (np.abs(np.diff(image[::4, ::4].astype(np.int16), axis=2)).mean() < 1.5) != grayscale:
            continue
        boxes = _faces(image)
        if len(boxes) == 0 or boxes[0, 3] - boxes[0, 1] < MIN_PHOTO_FACE:
            continue
        b, w, h = boxes[0], boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]
        x1, y1, x2, y2 = b[0] - 0.8 * w, b[1] - 0.8 * h, b[2] + 0.8 * w, b[3] + 1.4 * h  # the cut of cut_sprite
        # another face inside the cut would be a face in the video without truth
        if not any(o[0] < x2 and o[2] > x1 and o[1] < y2 and o[3] > y1 for o in boxes[1:]):
            found[sample.identity].append(str(sample.path.resolve()))
    return {p: sorted(photos) for p, photos in sorted(found.items()) if len(photos) >= 2}


def _mixed(people: list[str], rng: np.random.Generator) -> list[str]:
    """``people`` shuffled, sources taken in turn: six people should not be five from one source."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for i in rng.permutation(len(people)):
        by_source[people[i].split(":")[0]].append(people[i])
    queues = [by_source[s] for s in sorted(by_source)]
    queues = [queues[i] for i in rng.permutation(len(queues))]
    order: list[str] = []
    while any(queues):
        order += [q.pop(0) for q in queues if q]
    return order


def make_watchlist_split(
    seed: int,
    n_watchlisted: int,
    n_bystanders: int,
    faces_root: str | os.PathLike[str] | None = None,
    *,
    exclude_photos: tuple[str, ...] | list[str] = (),
) -> WatchlistSplit:
    """Choose people deterministically from ``seed``, as a deployment meets them.

    Watchlisted people get an enrollment photo and a *different* scene photo; bystanders only a scene photo.
    ``exclude_photos`` are never scene photos. Raises ``ValueError`` when the face set has too few people.
    """
    root = Path(faces_root) if faces_root is not None else default_faces_root()
    if not (root / "manifest.csv").is_file():
        raise FileNotFoundError(f"{root / 'manifest.csv'}: face set not found (set FACELEDGER_FACES or faces_root)")
    excluded = {str(Path(p).resolve()) for p in exclude_photos}
    rng = np.random.default_rng(seed)
    pool = dict(_survey(str(root.resolve()), False))
    order = _mixed(list(pool), rng)
    if len(order) < n_watchlisted + n_bystanders:  # grayscale people look odd in colour: only when needed
        gray = {p: f for p, f in _survey(str(root.resolve()), True).items() if p not in pool}
        order += _mixed(list(gray), rng)
        pool.update(gray)
    watchlisted: list[SplitPerson] = []
    bystanders: list[SplitPerson] = []
    for person in order:
        shuffled = [pool[person][i] for i in rng.permutation(len(pool[person]))]
        scene_photos = [p for p in shuffled if p not in excluded]
        if len(watchlisted) < n_watchlisted:
            enroll = next((p for p in shuffled if scene_photos and p != scene_photos[0]), None)
            if enroll is not None:
                watchlisted.append(SplitPerson(person, scene_photos[0], enroll))
        elif len(bystanders) < n_bystanders and scene_photos:
            bystanders.append(SplitPerson(person, scene_photos[0]))
    if len(watchlisted) < n_watchlisted or len(bystanders) < n_bystanders:
        raise ValueError(
            f"{root}: only {len(pool)} usable identities; asked for {n_watchlisted} watchlisted and "
            f"{n_bystanders} bystanders"
        )
    return WatchlistSplit(tuple(watchlisted), tuple(bystanders))


# ---------------------------------------------------------------------------------------------------------- motion
@dataclass(frozen=True)
class PersonPlan:
    """How one person crosses the scene.

    ``motion`` is one of :data:`MOTIONS`; ``start`` and ``duration`` (seconds) run from entering to having left;
    ``sizes`` are the face heights (pixels) when entering and when leaving; ``height`` is the face centre's height,
    as a fraction of the frame, where the path starts; ``mirror`` makes diagonal and approach paths enter from the
    right.
    """

    person: str
    photo: str
    motion: str = "ltr"
    start: float = 0.0
    duration: float = 5.0
    sizes: tuple[float, float] = (60.0, 60.0)
    height: float = 0.4
    mirror: bool = False


def _path(plan: PersonPlan, width: int, height: int, fps: float, frames: int) -> tuple[int, np.ndarray]:
    """First frame and one (face centre x, y, face height) row per frame of the plan that lies within the video."""
    if plan.motion not in MOTIONS or plan.duration <= 0:
        raise ValueError(f"{plan.motion!r} for {plan.duration} s: expected one of {', '.join(MOTIONS)} for a while")
    (s0, s1), y0 = plan.sizes, plan.height * height
    m0, m1 = 1.3 * s0 + 8, 1.3 * s1 + 8  # beyond the edge by half a sprite: wholly out of view
    # keyframes: (fraction of the duration, face centre x, y, face height)
    if plan.motion in ("ltr", "rtl"):
        keys = [(0.0, -m0, y0, s0), (1.0, width + m1, y0 + 0.5 * (s1 - s0), s1)]
    elif plan.motion == "diagonal":
        keys = [(0.0, -m0, y0, s0), (1.0, width + m1, min(y0 + 0.3 * height, height - s1), s1)]
    else:  # approach: in from a side while far, towards the camera, out under it at the bottom
        keys = [
            (0.0, -m0, y0, s0),
            (0.4, 0.35 * width, y0 + 0.08 * height, s0 + 0.35 * (s1 - s0)),
            (0.85, 0.5 * width, height - 1.1 * s1, s1),
            (1.0, 0.55 * width, height + 1.5 * s1, s1),
        ]
    if plan.motion == "rtl" or (plan.mirror and plan.motion in ("diagonal", "approach")):
        keys = [(t, width - x, y, s) for t, x, y, s in keys]
    table = np.array(keys)
    first, last = max(0, round(plan.start * fps)), min(frames - 1, round((plan.start + plan.duration) * fps))
    frame = np.arange(first, last + 1)
    t = (frame / fps - plan.start) / plan.duration
    states = np.stack([np.interp(t, table[:, 0], table[:, i]) for i in (1, 2, 3)], axis=1).reshape(-1, 3)
    states[:, 1] -= 0.05 * states[:, 2] * np.abs(np.sin(2 * np.pi * frame / fps))  # the head bobs with each step
    return first, states


def _default_plans(
    people: tuple[SplitPerson, ...], width: int, seconds: float, face_sizes: tuple[float, float], seed: int
) -> list[PersonPlan]:
    rng = np.random.default_rng(seed + 7919)  # its own stream: the split draws from the seed itself
    lo, hi = face_sizes
    motions = [MOTIONS[i % len(MOTIONS)] for i in rng.permutation(max(len(people), len(MOTIONS)))]
    plans = []
    for person, motion in zip(people, motions, strict=False):
        if motion in ("ltr", "rtl"):
            s0 = float(rng.uniform(lo, lo + 0.7 * (hi - lo)))
            s1 = s0 * float(rng.uniform(0.9, 1.1))
        elif motion == "diagonal":
            s0 = float(rng.uniform(lo, (lo + hi) / 2))
            s1 = min(hi, s0 * 1.5)
        else:
            s0, s1 = float(rng.uniform(lo, lo + 10)), float(rng.uniform(hi - 10, hi))
        # nearer people are lower in the frame (the camera looks down on them) and cross it faster
        frac = 0.25 + 0.3 * ((s0 + s1) / 2 - lo) / max(hi - lo, 1) + float(rng.uniform(-0.04, 0.04))
        if motion == "approach":
            frac, duration = 0.25, float(rng.uniform(4.0, 6.0))
        else:
            duration = (width + 1.3 * (s0 + s1) + 16) / float(np.clip((s0 + s1) / 2 * rng.uniform(2.5, 4.5), 150, 450))
        duration = min(duration, seconds)
        start = float(rng.uniform(0, max(0.0, seconds - duration)))
        mirror = bool(rng.random() < 0.5)
        plans.append(PersonPlan(person.person, person.scene_photo, motion, start, duration, (s0, s1), frac, mirror))
    return plans


def make_scene(
    out_path: str | os.PathLike[str],
    appearances_plan: list[PersonPlan] | None = None,
    *,
    width: int = 1280,
    height: int = 720,
    fps: float = 25.0,
    seconds: float = 12.0,
    people: int = 6,
    watchlisted: int | None = None,
    face_sizes: tuple[float, float] = (35, 130),
    seed: int = 0,
    faces_root: str | os.PathLike[str] | None = None,
    exclude_photos: tuple[str, ...] | list[str] = (),
    codec: str = "libx264",
    crf: int = 23,
    noise: bool = True,
    occlusion: bool = True,
) -> Scene:
    """Write a scene video to ``out_path`` (yuv420p; H.264 by default) and its truth to ``<out_path>.truth.json``.

    Without ``appearances_plan``, ``people`` people come from :func:`make_watchlist_split` with this ``seed`` and
    ``exclude_photos`` (``watchlisted`` of them, default two thirds, the rest bystanders), on varied paths; their
    enrollment photos are in ``Scene.enrollment``. ``occlusion`` stands a foreground pillar in the scene that hides
    passing faces for a moment; ``noise`` adds sensor noise and a slight brightness flicker.
    """
    if width % 2 or height % 2:
        raise ValueError(f"{width}x{height}: width and height must be even for yuv420p")
    root = Path(faces_root) if faces_root is not None else default_faces_root()
    frames = round(seconds * fps)
    enrollment: dict[str, str] = {}
    if appearances_plan is None:
        n_watch = people - people // 3 if watchlisted is None else watchlisted
        split = make_watchlist_split(seed, n_watch, people - n_watch, root, exclude_photos=exclude_photos)
        enrollment = split.enrollment
        appearances_plan = _default_plans(split.people, width, seconds, face_sizes, seed)
    rng = np.random.default_rng(seed + 104729)
    cut: dict[str, Sprite] = {}
    paths, placers = [], []
    for plan in appearances_plan:
        photo = str(Path(plan.photo).resolve())
        if photo not in cut:
            image = _engine().load(photo)
            faces = _faces(image)
            if len(faces) == 0:
                raise ValueError(f"{photo}: no face found to cut into the scene")
            cut[photo] = cut_sprite(image, faces[0], rng)
        first, states = _path(plan, width, height, fps, frames)
        paths.append((photo, first, states))
        placers.append(Placer(cut[photo], float(states[:, 2].max()) if len(states) else 1.0))
    background = corridor(width, height, rng)
    left, pillar_w = round(rng.uniform(0.3, 0.7) * width), round(0.085 * width)
    span = (left, min(width, left + pillar_w)) if occlusion else None
    slab = pillar(height, pillar_w)
    # a few frames of noise drawn once and reused: 2.7 million normals a frame would cost more than all the rest
    normals = [rng.standard_normal((height, width, 3), np.float32) * 2.5 for _ in range(3 if noise else 0)]
    bank = [(np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)) for n in normals]
    boxes = [np.full((len(states), 4), np.nan) for _, _, states in paths]
    seen = [np.zeros(len(states)) for _, _, states in paths]
    drawn: list[list[int]] = [[] for _ in paths]  # frames where any of the person is in view
    with av.open(os.fspath(out_path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        if not isinstance(stream, VideoStream):
            raise ValueError(f"{codec}: not a video codec")
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_type = "AUTO"
        if codec in ("libx264", "libx265"):
            stream.options = {"preset": "veryfast", "crf": str(crf)}
        for f in range(frames):
            frame = background.copy()
            active = [i for i, (_, first, states) in enumerate(paths) if first <= f < first + len(states)]
            active.sort(key=lambda i: paths[i][2][f - paths[i][1], 2])  # far (small) first, the near drawn over
            placed = []
            for i in active:
                box, cover = placers[i].place(frame, *paths[i][2][f - paths[i][1]])
                placed.append((i, box, cover))
                if cover[2] is not None:
                    drawn[i].append(f)
            if span is not None:
                frame[:, span[0] : span[1]] = slab[:, : span[1] - span[0]]
            for n, (i, box, _) in enumerate(placed):
                covers = [c for _, _, c in placed[n + 1 :]]
                boxes[i][f - paths[i][1]], seen[i][f - paths[i][1]] = visible_box(box, covers, span, width, height)
            if noise:
                gain = 1 + 0.015 * math.sin(2 * math.pi * 0.7 * f / fps) + float(rng.normal(0, 0.003))
                pos, neg = bank[int(rng.integers(len(bank)))]
                frame = cv2.subtract(cv2.addWeighted(frame, gain, pos, 1.0, 0.0), neg)
            # OpenCV's BT.601 conversion is the one swscale would apply, at a third of its cost
            yuv = np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    appearances = []
    for i, plan in enumerate(appearances_plan):
        if drawn[i]:
            first, a, b = paths[i][1], drawn[i][0], drawn[i][-1]
            rows = slice(a - first, b - first + 1)
            appearances.append(Appearance(plan.person, paths[i][0], a, b, boxes[i][rows], seen[i][rows]))
    appearances.sort(key=lambda x: x.first_frame)
    scene = Scene(str(Path(out_path).resolve()), width, height, float(fps), frames, appearances, enrollment)
    truth_path(out_path).write_text(json.dumps(scene.to_json()), encoding="utf-8")
    return scene
