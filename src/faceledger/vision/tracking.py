"""Face tracking across video frames: one id per person walking through the picture.

ByteTrack-style association (Zhang et al., 2022) on a constant-velocity Kalman filter per track. It is written here
rather than taken from ``trackers`` or ``supervision`` because both require ``opencv-python``, which conflicts with
the ``opencv-python-headless`` faceledger depends on.

Each :meth:`FaceTracker.update` takes one frame's :class:`Detections` and its frame index (frames may be skipped: the
tracks are predicted forward by the number of frames elapsed) and matches in two stages:

1. detections scoring at least ``high_threshold`` against every live track, the tracks matched at the previous
   update first (by overlap only, after DeepSORT's matching cascade), so that where one face passes in front of
   another, the hidden face's track, whose prediction overlaps the visible face as well, cannot take its detection;
2. the remaining detections scoring at least ``low_threshold`` against the tracks still unmatched, so a face whose
   score dips (blur, a turned head, partial occlusion) keeps its track, while a low-score detection alone never
   starts one.

Unmatched high-score detections start tracks. A detection matches a track when it overlaps the track's predicted
box by ``match_iou`` or more, or else when its centre lies within ``max_distance`` face sizes of the predicted centre,
the face size widened by how far off the prediction may be: a small fast face seen every third frame may not overlap
its previous box, and a track just born (velocity unknown) or coasting through a gap may be some way off. Pairs are
assigned greedily, lowest cost first (any overlap before any distance); a frame holds a handful of faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceledger.vision.detection import Detections, box_iou

# Kalman noise, as fractions of the face height (the ByteTrack convention: a larger face moves and jitters more pixels)
_STD_POSITION = 1 / 20  # measurement noise, and process noise of the box per frame
_STD_VELOCITY = 1 / 160  # process noise of the velocity per frame: walkers keep their speed
_STD_VELOCITY_BORN = 1 / 2  # velocity of a new track, per frame: unknown; walkers move about 0.4 face sizes a frame
_MAX_SIZE_RATIO = 2.0  # a match by distance only between faces whose sizes differ less than this


def _to_cxcywh(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)])


def _to_box(state: np.ndarray) -> np.ndarray:
    cx, cy = state[0], state[1]
    w, h = max(float(state[2]), 1.0), max(float(state[3]), 1.0)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


class _Kalman:
    """Constant velocity on ``(cx, cy, w, h)``: state ``(cx, cy, w, h, vcx, vcy, vw, vh)`` in pixels and pixels per
    frame. Width and height are filtered apart, so a face growing as its person approaches is predicted too."""

    _H = np.eye(4, 8)

    def __init__(self, box: np.ndarray) -> None:
        z = _to_cxcywh(box)
        self.x = np.concatenate([z, np.zeros(4)])
        h = z[3]
        pos = 2 * _STD_POSITION * h
        born = _STD_VELOCITY_BORN * h
        self.P = np.diag(np.square([pos, pos, pos, pos, born, born, 10 * _STD_VELOCITY * h, 10 * _STD_VELOCITY * h]))

    def predict(self, frames: int) -> None:
        """Move forward by ``frames`` frames."""
        if frames <= 0:
            return
        f = np.eye(8)
        f[:4, 4:] = frames * np.eye(4)
        h = max(float(self.x[3]), 1.0)
        q = np.square([_STD_POSITION * h] * 4 + [_STD_VELOCITY * h] * 4) * frames
        self.x = f @ self.x
        self.P = f @ self.P @ f.T + np.diag(q)
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)

    def update(self, box: np.ndarray) -> None:
        """Correct with a measured box."""
        z = _to_cxcywh(box)
        r = np.diag(np.square([_STD_POSITION * z[3]] * 4))
        s = self._H @ self.P @ self._H.T + r
        k = np.linalg.solve(s, self._H @ self.P).T  # P H^T S^-1, S symmetric
        self.x = self.x + k @ (z - self._H @ self.x)
        self.P = (np.eye(8) - k @ self._H) @ self.P

    @property
    def box(self) -> np.ndarray:
        return _to_box(self.x)

    @property
    def centre_sigmas(self) -> tuple[float, float]:
        """Standard deviations of the centre (pixels) and of its velocity (pixels per frame)."""
        return float(np.sqrt((self.P[0, 0] + self.P[1, 1]) / 2)), float(np.sqrt((self.P[4, 4] + self.P[5, 5]) / 2))


@dataclass(frozen=True)
class TrackState:
    """A live track as of the last update.

    ``box`` ``(4,)`` float32 ``x1, y1, x2, y2``: the filtered detection when ``matched`` (detected in this frame),
    else the prediction. ``hits`` counts the frames it was matched in, from ``first_frame`` to ``last_frame`` (the
    last frame it was matched in). ``confirmed``: matched in ``min_hits`` consecutive updates (or born at the first
    update); a track that never was is most likely a false detection.
    """

    id: int
    box: np.ndarray
    matched: bool
    hits: int
    first_frame: int
    last_frame: int
    confirmed: bool


@dataclass(frozen=True)
class TrackUpdate:
    """What one :meth:`FaceTracker.update` found.

    ``ids (N,)`` int64: the track of each detection passed in, in their order, ``-1`` for a detection on no track (a
    low-score one matching none, or one below ``low_threshold``). ``active``: every live track, matched or coasting
    through missed detections (to draw, and to blur faces the detector missed in this frame). ``ended``: the tracks
    that ended at this update, with their state as of their last match (``box`` is the box of ``last_frame``).
    """

    ids: np.ndarray
    active: list[TrackState]
    ended: list[TrackState]


class _Track:
    def __init__(self, track_id: int, box: np.ndarray, frame: int, confirmed: bool) -> None:
        self.id = track_id
        self.kalman = _Kalman(box)
        self.hits = 1
        self.first_frame = frame
        self.last_frame = frame
        self.confirmed = confirmed
        self.matched = True
        self.last_box = self.kalman.box
        self.sigmas = self.kalman.centre_sigmas

    def matched_at(self, frame: int) -> None:
        self.hits += 1
        self.last_frame = frame
        self.matched = True
        self.last_box = self.kalman.box
        self.sigmas = self.kalman.centre_sigmas

    def spread(self, frame: int) -> float:
        """How far off its predicted centre may be at ``frame``, in pixels: the centre's uncertainty at the last match
        plus the velocity's times the frames since. (The filter's own covariance, whose process noise keeps the box
        smooth, would widen this to several face sizes for a track coasting a second, enough to take a stranger.)"""
        position, velocity = self.sigmas
        return position + velocity * (frame - self.last_frame)

    def state(self, *, final: bool = False) -> TrackState:
        box = self.last_box if final else self.kalman.box
        return TrackState(
            self.id, box, self.matched and not final, self.hits, self.first_frame, self.last_frame, self.confirmed
        )


class FaceTracker:
    """Tracks faces through a video, one :meth:`update` per frame processed, :meth:`finish` at the end.

    Defaults, for faces of 35-130 pixels detected by YuNet at 25 frames per second, every frame or every few:

    * ``high_threshold=0.6``: YuNet's own detection threshold; above it a detection may start a track;
    * ``low_threshold=0.3``: below it YuNet's output is mostly background; between the two a detection only keeps an
      existing track alive (ByteTrack's second stage);
    * ``match_iou=0.2``: the same face a frame (or three) later overlaps its predicted box by far more (0.6-0.9 while
      the track is established); 0.2 still matches through a size change or a shaky prediction after a gap;
    * ``max_distance=1.0``: a match without that overlap needs the centres within one face size plus the
      uncertainty of the prediction; walkers move about 0.4 face sizes a frame whatever their distance to the
      camera, and a new track's first step (velocity unknown) is followed up to a jog (0.7) with detection every
      third frame, a walk with every sixth, while a face one lane over (two face sizes) is not taken;
    * ``max_lost=25``: a track coasts on its prediction through up to one second of missed detections (a passer-by
      in front, a turned head) and ends after;
    * ``min_hits=2``: a track is confirmed when matched in two consecutive updates; a detection seen once (a false
      detection, a face-like poster in one frame) ends unconfirmed: a track not yet confirmed ends at its first miss
      (and is reported in ``ended`` with ``confirmed=False``, for the caller to blur or drop).

    Track ids start at 1 and are never reused. A track whose prediction leaves the image (known from the
    detections' ``image_size``) ends then, without coasting on outside it.
    """

    def __init__(
        self,
        *,
        high_threshold: float = 0.6,
        low_threshold: float = 0.3,
        match_iou: float = 0.2,
        max_distance: float = 1.0,
        max_lost: int = 25,
        min_hits: int = 2,
    ) -> None:
        if not 0 <= low_threshold <= high_threshold:
            raise ValueError(f"need 0 <= low_threshold <= high_threshold, got {low_threshold} and {high_threshold}")
        if max_lost < 0 or min_hits < 1:
            raise ValueError(f"need max_lost >= 0 and min_hits >= 1, got {max_lost} and {min_hits}")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.match_iou = match_iou
        self.max_distance = max_distance
        self.max_lost = max_lost
        self.min_hits = min_hits
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._frame: int | None = None

    def update(self, detections: Detections, frame_index: int) -> TrackUpdate:
        """Match this frame's detections to the tracks, start tracks for new faces, end lost ones."""
        if self._frame is not None and frame_index <= self._frame:
            raise ValueError(f"frame {frame_index} after frame {self._frame}: frames must come in increasing order")
        elapsed = 0 if self._frame is None else frame_index - self._frame
        first_update = self._frame is None
        self._frame = frame_index
        # missed in more than max_lost frames in between: too far off to match again
        expired = [t for t in self._tracks if frame_index - t.last_frame - 1 > self.max_lost]
        self._tracks = [t for t in self._tracks if t not in expired]
        recent = [t for t in self._tracks if t.matched]  # matched at the previous update
        for track in self._tracks:
            track.kalman.predict(elapsed)
            track.matched = False

        boxes = np.asarray(detections.boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(detections.scores, np.float64).reshape(-1)
        ids = np.full(len(boxes), -1, np.int64)
        high = np.nonzero(scores >= self.high_threshold)[0]
        low = np.nonzero((scores >= self.low_threshold) & (scores < self.high_threshold))[0]
        # stage 1 in two steps, first by overlap the tracks seen at the previous update (after DeepSORT's cascade):
        # where a face passes in front of another, the hidden one's prediction overlaps the visible face as much as
        # the visible face's own track does, and must not take its detection; then every track still unmatched
        unmatched_high = self._assign(recent, high, boxes, frame_index, ids, by_distance=False)
        unmatched_high = self._assign(self._unmatched(), unmatched_high, boxes, frame_index, ids)
        self._assign(self._unmatched(), low, boxes, frame_index, ids)  # stage 2

        ended = expired + [t for t in self._unmatched() if self._is_over(t, frame_index, detections.image_size)]
        self._tracks = [t for t in self._tracks if t not in ended]
        for d in unmatched_high:
            track = _Track(self._next_id, boxes[d], frame_index, confirmed=first_update or self.min_hits <= 1)
            self._next_id += 1
            self._tracks.append(track)
            ids[d] = track.id
        return TrackUpdate(ids, [t.state() for t in self._tracks], [t.state(final=True) for t in ended])

    def finish(self) -> list[TrackState]:
        """End every live track (the video is over) and return their final states, as in ``TrackUpdate.ended``."""
        ended = [t.state(final=True) for t in self._tracks]
        self._tracks = []
        return ended

    def _unmatched(self) -> list[_Track]:
        return [t for t in self._tracks if not t.matched]

    def _assign(
        self, tracks: list[_Track], dets: np.ndarray, boxes: np.ndarray, frame: int, ids: np.ndarray,
        *, by_distance: bool = True,
    ) -> np.ndarray:
        """Match detections ``dets`` (indices into ``boxes``) to ``tracks``, update those matched, write their ids
        into ``ids``; returns the detections left unmatched."""
        pairs = self._match(tracks, boxes[dets], frame, by_distance)
        for ti, di in pairs:
            track, d = tracks[ti], int(dets[di])
            track.kalman.update(boxes[d])
            track.matched_at(frame)
            track.confirmed = track.confirmed or track.hits >= self.min_hits
            ids[d] = track.id
        taken = {di for _, di in pairs}
        return np.array([d for i, d in enumerate(dets) if i not in taken], np.int64)

    def _is_over(self, track: _Track, frame: int, image_size: tuple[int, int]) -> bool:
        """An unmatched track ends when not yet confirmed, when lost for more than ``max_lost`` frames, or when its
        prediction has left the image."""
        if not track.confirmed or frame - track.last_frame > self.max_lost:
            return True
        h, w = image_size
        if h <= 0 or w <= 0:
            return False
        x1, y1, x2, y2 = track.kalman.box
        return bool(x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h)

    def _match(self, tracks: list[_Track], boxes: np.ndarray, frame: int, by_distance: bool) -> list[tuple[int, int]]:
        """Greedy assignment, lowest cost first: ``1 - IoU`` for overlapping pairs, ``1 + distance`` for pairs
        matched by distance only (when ``by_distance``). Returns ``(track index, box index)`` pairs."""
        if not tracks or len(boxes) == 0:
            return []
        predicted = np.stack([t.kalman.box for t in tracks]).astype(np.float64)
        iou = box_iou(predicted, boxes)
        p_size = (predicted[:, 2:] - predicted[:, :2]).mean(axis=1)
        d_size = np.maximum((boxes[:, 2:] - boxes[:, :2]).mean(axis=1), 1.0)
        sigma = np.array([t.spread(frame) for t in tracks])
        p_centre = (predicted[:, :2] + predicted[:, 2:]) / 2
        d_centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        dist = np.linalg.norm(p_centre[:, None, :] - d_centre[None, :, :], axis=2)
        scale = (p_size[:, None] + d_size[None, :]) / 2 + sigma[:, None]
        norm_dist = dist / scale
        ratio = np.maximum(p_size[:, None] / d_size[None, :], d_size[None, :] / p_size[:, None])
        near = (norm_dist < self.max_distance) & (ratio < _MAX_SIZE_RATIO) & by_distance
        cost = np.where(iou >= self.match_iou, 1 - iou, np.where(near, 1 + norm_dist, np.inf))
        pairs: list[tuple[int, int]] = []
        used_t: set[int] = set()
        used_d: set[int] = set()
        for flat in np.argsort(cost, axis=None, kind="stable"):
            ti, di = divmod(int(flat), cost.shape[1])
            if not np.isfinite(cost[ti, di]):
                break
            if ti not in used_t and di not in used_d:
                pairs.append((ti, di))
                used_t.add(ti)
                used_d.add(di)
        return pairs
