"""Faces in video: detect every frame, track faces across frames, and gather the evidence for one decision per track.

A person walking through a camera's view is one track. Instead of identifying every face in every frame (thousands
of searches, each a chance of a false match), :class:`TrackPipeline` keeps the few best faces of each track (by the
quality score: size, sharpness, pose, detector score), embeds only those, fuses them into one quality-weighted
vector, and says when a track has enough evidence to be searched (:class:`TrackEvidence`): after a few good faces
or a fraction of a second, and again only if a clearly better face arrives. What the search does with it is the
gallery's business (:mod:`faceledger.gallery.video`); this layer knows nothing about people.

>>> from faceledger import Engine
>>> from faceledger.vision.video import open_video
>>> with open_video("clip.mp4") as frames:
...     for event in Engine().track(frames):
...         print(event.to_dict())            # one per finished track

:class:`AnonymizedOutput` writes the frames with every face blurred, including the frames just before the
detector first saw a face (it holds a short buffer and fills the track backwards), so no face flashes through.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np

from faceledger.engine.evidence import FaceCrops, face_crops
from faceledger.engine.video_output import AnonymizedOutput
from faceledger.errors import ModelError
from faceledger.vision.alignment import align_faces
from faceledger.vision.detection import Detections
from faceledger.vision.quality import assess_quality
from faceledger.vision.tracking import FaceTracker

__all__ = [
    "AnonymizedOutput",
    "FrameResult",
    "TrackEvidence",
    "TrackOptions",
    "TrackPipeline",
    "TrackSummary",
    "track_events",
]

if TYPE_CHECKING:
    from faceledger.engine import Engine
    from faceledger.vision.video import Frame


@dataclass(frozen=True)
class TrackOptions:
    """How faces in video are found, tracked and chosen for embedding.

    * ``detect_size``: the longer side each frame is detected at; by default ``detect_scale`` of the frame's longer
      side, kept between 640 and 1280 pixels (0.6 keeps a 35-pixel face of a 1280×720 frame at 21 pixels, where
      YuNet still finds it, at a third of the cost of full resolution; 1080p is detected at 1152);
    * ``detect_every``: detect every n-th frame (1: every frame; the tracker predicts the frames between);
    * ``low_score``: detections down to this score may continue an existing track (ByteTrack's second stage), but
      only faces at the engine's ``score_threshold`` start tracks or are embedded;
    * ``min_quality``: faces below this quality are never embedded (a track with none is "unusable");
    * ``faces_per_track``: at most this many faces of a track are kept and embedded (the best by quality);
    * ``decide_after_faces`` / ``decide_after_s``: a track is ready for its first decision when it has this many
      embedded faces or its first usable face is this old, whichever comes first;
    * ``better_margin``: a track is offered again when its best quality rose by this much since it was last offered;
    * ``max_lost_s``: a track not seen for this long ends (occlusions shorter than that keep the track);
    * ``merge_fmr``: a new track whose first embedded face matches a track lost less than ``merge_window_s`` ago,
      near where it could have walked, at the similarity of this false-match rate, continues that track (a person
      behind a pillar whose motion the tracker lost stays one track and raises no second candidate; the stricter
      rate keeps two people apart). A lost track is reported as ended only when that window has passed.
    """

    detect_size: int | None = None
    detect_scale: float = 0.6
    detect_every: int = 1
    low_score: float = 0.35
    min_quality: float = 0.2
    faces_per_track: int = 5
    decide_after_faces: int = 3
    decide_after_s: float = 0.4
    better_margin: float = 0.1
    max_offers: int = 4
    max_lost_s: float = 1.0
    min_embed_gap: int = 2
    merge_fmr: float | None = 1e-4
    merge_window_s: float = 3.0


@dataclass(frozen=True)
class TrackEvidence:
    """A track ready to be searched: the fused embedding of its best faces so far, and where the best one was.

    ``crops`` are the best face's pictures, cut from its frame when it was seen (the aligned crop and the context
    crop with the frame's other faces blurred: :class:`~faceledger.engine.evidence.FaceCrops`), for a reviewer;
    nothing keeps them unless the search raises a candidate.
    """

    track: int
    frame: int
    time: float
    best_frame: int
    best_time: float
    box: np.ndarray
    quality: float
    faces: int
    embedding: np.ndarray
    frame_sha256: str  # SHA-256 of the decoded pixels of the best face's frame (what a ledger entry may name)
    first_frame: int = 0
    first_time: float = 0.0
    crops: FaceCrops | None = None


@dataclass(frozen=True)
class TrackSummary:
    """A finished track. ``usable`` is False when no face of it was good enough to embed (nothing was searched)."""

    track: int
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    best_frame: int
    box: list[float]
    quality: float
    faces: int
    usable: bool

    def to_dict(self, decision: str | None = None, candidates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The ``track`` event of ``faceledger watch --json``; without a gallery, ``decision`` is ``unusable`` or
        ``not_searched``."""
        return {
            "event": "track",
            "track": self.track,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "best_frame": self.best_frame,
            "box": [round(v, 1) for v in self.box],
            "decision": decision or ("not_searched" if self.usable else "unusable"),
            "candidates": candidates or [],
            "first_time": round(self.first_time, 3),
            "last_time": round(self.last_time, 3),
            "quality": round(self.quality, 4),
            "faces_embedded": self.faces,
        }


@dataclass(frozen=True)
class FrameResult:
    """What one frame gave: its faces (with track ids), every box to hide (faces the detector missed this frame but
    a track still covers included), tracks ready to be searched, and tracks that ended."""

    frame: Frame
    detections: Detections
    hide: np.ndarray
    hide_tracks: np.ndarray
    evidence: list[TrackEvidence]
    ended: list[TrackSummary]


class _Face(NamedTuple):
    """One embedded face of a track (``crops`` only for a face that was the track's best when it was seen)."""

    quality: float
    frame: int
    time: float
    box: np.ndarray
    embedding: np.ndarray
    digest: str  # SHA-256 of the frame's decoded pixels
    crops: FaceCrops | None


@dataclass
class _Track:
    id: int
    first_frame: int
    first_time: float
    last_frame: int = -1
    last_time: float = 0.0
    kept: list[_Face] = field(default_factory=list)  # the best faces
    last_embed: int = -(10**9)
    first_usable_time: float | None = None
    offered_quality: float | None = None
    offers: int = 0
    best_any: tuple[float, int, np.ndarray] | None = None  # quality, frame, box of the best face seen at all

    def fused(self) -> np.ndarray:
        weights = np.array([max(k.quality, 1e-3) for k in self.kept], np.float32)
        vectors = np.stack([k.embedding for k in self.kept])
        v = (weights[:, None] * vectors).sum(axis=0)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    def best(self) -> _Face:
        return max(self.kept, key=lambda k: k.quality)

    def best_quality(self) -> float:
        return max((k.quality for k in self.kept), default=float("-inf"))


class TrackPipeline:
    """Frame-by-frame face tracking with bounded embedding work (see the module docstring).

    ``fps`` converts the time-based options to frames (default 25 when the source does not say). Feed frames to
    :meth:`process` in decode order; call :meth:`finish` at the end for the tracks still open.
    """

    def __init__(self, engine: Engine, *, fps: float | None = None, options: TrackOptions | None = None) -> None:
        self.engine = engine
        self.options = options or TrackOptions()
        self.fps = fps if fps and fps > 0 else 25.0
        o = self.options
        self.tracker = FaceTracker(
            high_threshold=engine.score_threshold,
            low_threshold=min(o.low_score, engine.score_threshold),
            max_lost=max(1, round(o.max_lost_s * self.fps)),
        )
        self._tracks: dict[int, _Track] = {}
        self._alias: dict[int, int] = {}  # tracker id -> the track it continues (after a merge)
        self._members: dict[int, set[int]] = {}  # track -> tracker ids still alive in it
        self._lost: dict[int, _Track] = {}  # tracks the tracker ended, kept for a merge until the window passes
        self._merge_similarity = _merge_similarity(engine, o.merge_fmr)
        self.merged = 0
        self._last_time = 0.0
        self.frames = 0
        self.detected_frames = 0
        self.embedded_faces = 0
        self.tracks_started = 0

    # ------------------------------------------------------------------------------------------------- frames
    def detect_side(self, shape: tuple[int, ...]) -> int:
        """The longer side a frame of ``shape`` (height, width) is detected at."""
        o = self.options
        if o.detect_size is not None:
            return max(32, o.detect_size)
        return int(min(max(round(o.detect_scale * max(shape[:2])), 640), 1280))

    def detect(self, image: np.ndarray) -> Detections:
        """Faces of one frame at the pipeline's detection size (down to ``low_score``), with quality."""
        e, o = self.engine, self.options
        found = e.detector.detect(
            image,
            score_threshold=min(o.low_score, e.score_threshold),
            min_face_size=e.min_face_size,
            base_size=self.detect_side(image.shape[:2]),
            tile=False,
            border=0.0,
            interpolation=cv2.INTER_LINEAR,
            look_again=False,  # a face too small this frame is tracked and scored in the frames where it is larger
        )
        if len(found) == 0:
            return found
        crops = align_faces(image, found.landmarks)
        quality, reasons = assess_quality(found.boxes, found.scores, found.landmarks, crops, e.quality_thresholds)
        return found.with_quality(quality, reasons)

    def wants_detection(self, frame: Frame) -> bool:
        """Whether ``frame`` is one the pipeline detects faces in (every ``detect_every``-th)."""
        return frame.index % max(1, self.options.detect_every) == 0

    def run(self, frames: Iterable[Frame], workers: int | None = None) -> Iterator[FrameResult]:
        """:meth:`process` every frame, detecting up to ``workers`` frames ahead on as many threads (onnxruntime
        releases the GIL, so detection of the next frames overlaps tracking and embedding of this one). Results
        come in frame order; :meth:`finish` is left to the caller."""
        count = workers if workers is not None else min(2, len(os.sched_getaffinity(0)))
        if count <= 1:
            for frame in frames:
                yield self.process(frame)
            return
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="faceledger-detect") as pool:
            pending: deque[tuple[Frame, Future[Detections] | None]] = deque()
            for frame in frames:
                pending.append((frame, pool.submit(self.detect, frame.image) if self.wants_detection(frame) else None))
                if len(pending) > count:
                    ready, future = pending.popleft()
                    yield self.process(ready, None if future is None else future.result())
            while pending:
                ready, future = pending.popleft()
                yield self.process(ready, None if future is None else future.result())

    def process(self, frame: Frame, detections: Detections | None = None) -> FrameResult:
        """Detect (every ``detect_every``-th frame, unless ``detections`` of it are given), track, embed the faces
        worth it, and report evidence and ends."""
        self.frames += 1
        self._last_time = frame.time
        if detections is not None:
            dets = detections
            self.detected_frames += 1
        elif self.wants_detection(frame):
            dets = self.detect(frame.image)
            self.detected_frames += 1
        else:
            dets = Detections.empty(frame.image.shape[:2])
        update = self.tracker.update(dets, frame.index)
        dets = dets.with_tracks(self._mapped(update.ids))
        merged = self.merged
        self._embed(frame, dets)
        if self.merged != merged:  # a merge in _embed renames this frame's track too
            dets = dets.with_tracks(self._mapped(update.ids))
        evidence = self._ready(frame)
        for t in update.ended:
            self._tracker_ended(t.id)
        ended = self._expire(frame.index)
        boxes = [t.box for t in update.active]
        ids = [self._alias.get(t.id, t.id) for t in update.active]
        # detections not (yet) in a track are faces too: hide them
        for i in np.nonzero(update.ids < 0)[0]:
            boxes.append(dets.boxes[i])
            ids.append(-1)
        hide = np.asarray(boxes, np.float32).reshape(-1, 4)
        return FrameResult(frame, dets, hide, np.asarray(ids, np.int64), evidence, ended)

    def finish(self) -> tuple[list[TrackEvidence], list[TrackSummary]]:
        """End every open track: evidence for usable tracks never offered, then their summaries."""
        evidence: list[TrackEvidence] = []
        for track in self._tracks.values():
            if track.kept and track.offers == 0:
                evidence.append(self._offer(track, track.last_frame, track.last_time))
        for track in self._lost.values():
            if track.kept and track.offers == 0:
                evidence.append(self._offer(track, track.last_frame, track.last_time))
        for t in self.tracker.finish():
            self._tracker_ended(t.id)
        return evidence, self._expire(None)

    @property
    def open_tracks(self) -> int:
        """Tracks with at least one face that have not ended."""
        return len(self._tracks)

    # --------------------------------------------------------------------------------------------- internals
    def _embed(self, frame: Frame, dets: Detections) -> None:
        o = self.options
        chosen: list[int] = []
        for i in range(len(dets)):
            tid = int(dets.track_ids[i])
            if tid < 0:
                continue
            track = self._tracks.get(tid)
            if track is None:
                track = self._tracks[tid] = _Track(tid, frame.index, frame.time)
                self._members[tid] = {tid}
                self.tracks_started += 1
            track.last_frame, track.last_time = frame.index, frame.time
            q = float(dets.quality[i])
            if track.best_any is None or q > track.best_any[0]:
                track.best_any = (q, frame.index, dets.boxes[i].copy())
            usable = q >= o.min_quality and float(dets.scores[i]) >= self.engine.score_threshold
            if not usable or frame.index - track.last_embed < o.min_embed_gap:
                continue
            if len(track.kept) >= o.faces_per_track and q <= min(k.quality for k in track.kept) + 0.02:
                continue
            chosen.append(i)
        if not chosen:
            return
        sub = dets[np.asarray(chosen)]
        vectors = self.engine.embed_faces(frame.image, sub)
        self.embedded_faces += len(chosen)
        digest = hashlib.sha256(np.ascontiguousarray(frame.image).data).hexdigest()
        for j, i in enumerate(chosen):
            track = self._tracks[int(dets.track_ids[i])]
            q = float(dets.quality[i])
            # the pictures a reviewer may see, cut now (the frame is gone later), for a face that is the track's best
            crops = face_crops(frame.image, dets.boxes, dets.landmarks, i) if q >= track.best_quality() else None
            track.kept.append(_Face(q, frame.index, frame.time, dets.boxes[i].copy(), vectors[j], digest, crops))
            if len(track.kept) > o.faces_per_track:
                track.kept.remove(min(track.kept, key=lambda k: k.quality))
            track.last_embed = frame.index
            if track.first_usable_time is None:
                track.first_usable_time = frame.time
            self._merge(track, dets.boxes[i])

    def _ready(self, frame: Frame) -> list[TrackEvidence]:
        o = self.options
        out = []
        for track in self._tracks.values():
            if not track.kept or track.last_frame != frame.index or track.offers >= o.max_offers:
                continue
            best_q = track.best_quality()
            if track.offered_quality is None:
                assert track.first_usable_time is not None
                enough = len(track.kept) >= o.decide_after_faces or (
                    frame.time - track.first_usable_time >= o.decide_after_s
                )
                if enough:
                    out.append(self._offer(track, frame.index, frame.time))
            elif best_q >= track.offered_quality + o.better_margin:
                out.append(self._offer(track, frame.index, frame.time))
        return out

    def _offer(self, track: _Track, frame: int, time: float) -> TrackEvidence:
        best = track.best()
        track.offered_quality = best.quality
        track.offers += 1
        return TrackEvidence(
            track.id,
            frame,
            time,
            best.frame,
            best.time,
            best.box,
            best.quality,
            len(track.kept),
            track.fused(),
            best.digest,
            track.first_frame,
            track.first_time,
            best.crops,
        )

    def _mapped(self, ids: np.ndarray) -> np.ndarray:
        return np.array([self._alias.get(int(i), int(i)) if i >= 0 else -1 for i in ids], np.int64)

    def _merge(self, new: _Track, box: np.ndarray) -> None:
        """Continue a lost track with ``new`` if its first embedded faces are the same person, near where the lost
        one could have walked since (the tracker's motion model gave up on it, e.g. behind a pillar)."""
        if self._merge_similarity is None or len(new.kept) > self.options.decide_after_faces or new.offers:
            return
        max_gap = max(1, round(self.options.merge_window_s * self.fps))
        vector = new.fused()
        side = float(max(box[2] - box[0], box[3] - box[1]))
        centre = (box[:2] + box[2:]) / 2
        best: tuple[float, _Track] | None = None
        for old in [*self._tracks.values(), *self._lost.values()]:
            gap = new.first_frame - old.last_frame
            if old is new or not old.kept or not 0 < gap <= max_gap:
                continue
            last_box = max(old.kept, key=lambda k: k.frame).box
            distance = float(np.linalg.norm((last_box[:2] + last_box[2:]) / 2 - centre))
            if distance > side * (1.0 + 0.5 * gap):
                continue
            similarity = float(vector @ old.fused())
            if similarity >= self._merge_similarity and (best is None or similarity > best[0]):
                best = (similarity, old)
        if best is None:
            return
        old = best[1]
        old.kept = sorted(old.kept + new.kept, key=lambda k: -k.quality)[: self.options.faces_per_track]
        old.last_frame, old.last_time, old.last_embed = new.last_frame, new.last_time, new.last_embed
        if new.best_any is not None and (old.best_any is None or new.best_any[0] > old.best_any[0]):
            old.best_any = new.best_any
        if old.id in self._lost:  # back from the lost: alive again
            self._tracks[old.id] = self._lost.pop(old.id)
            self._members[old.id] = set()
        for tid in self._members.pop(new.id, set()):
            self._alias[tid] = old.id
            self._members[old.id].add(tid)
        if old.offered_quality is not None:
            old.offered_quality = -1.0  # new faces of the same person: offer the track again
        del self._tracks[new.id]
        self.tracks_started -= 1
        self.merged += 1

    def _tracker_ended(self, tid: int) -> None:
        """The tracker ended ``tid``: when no tracker id of its track is alive any more, the track is lost (and
        may still be continued by a merge until the window passes)."""
        pid = self._alias.pop(tid, tid)
        members = self._members.get(pid)
        if members is not None:
            members.discard(tid)
            if members:
                return
            del self._members[pid]
        track = self._tracks.pop(pid, None)
        if track is not None:
            self._lost[pid] = track

    def _expire(self, frame: int | None) -> list[TrackSummary]:
        """End the lost tracks whose merge window has passed at ``frame`` (all with None)."""
        window = max(1, round(self.options.merge_window_s * self.fps)) if self._merge_similarity is not None else 0
        due = [p for p, t in self._lost.items() if frame is None or not t.kept or frame - t.last_frame > window]
        return [s for s in (self._end(p) for p in sorted(due, key=lambda p: self._lost[p].last_frame)) if s]

    def _end(self, pid: int) -> TrackSummary | None:
        track = self._lost.pop(pid, None) or self._tracks.pop(pid, None)
        if track is None:  # a tentative track that never matched a face of its own
            return None
        if track.kept:
            best = track.best()
            q, best_frame, box = best.quality, best.frame, best.box
        else:
            assert track.best_any is not None
            q, best_frame, box = track.best_any
        return TrackSummary(
            track=track.id,
            first_frame=track.first_frame,
            last_frame=track.last_frame,
            first_time=track.first_time,
            last_time=track.last_time,
            best_frame=best_frame,
            box=[float(v) for v in box],
            quality=float(q),
            faces=len(track.kept),
            usable=bool(track.kept),
        )


def track_events(
    engine: Engine,
    frames: Iterable[Frame],
    *,
    fps: float | None = None,
    options: TrackOptions | None = None,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> Iterator[TrackSummary]:
    """Every finished track of ``frames``, as it ends (``on_frame`` sees each frame's result, e.g. to write it)."""
    if fps is None:
        fps = getattr(frames, "fps", None)
    pipeline = TrackPipeline(engine, fps=fps, options=options)
    for result in pipeline.run(frames):
        if on_frame is not None:
            on_frame(result)
        yield from result.ended
    _, ended = pipeline.finish()
    yield from ended


def _merge_similarity(engine: Engine, fmr: float | None) -> float | None:
    """The similarity two faces of one track must reach to be taken for the same person (None: never merge)."""
    if fmr is None:
        return None
    try:
        return float(engine.threshold_for_fmr(fmr))
    except ModelError:  # an uncalibrated recognizer: no basis for merging tracks by appearance
        return None
