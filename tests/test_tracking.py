"""FaceTracker on synthetic walkers: boxes moving at constant speed, with misses, score dips, jitter and crossings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceledger.vision.detection import Detections
from faceledger.vision.tracking import FaceTracker, TrackState, TrackUpdate

IMAGE = (720, 1280)


@dataclass
class Walker:
    """A face from ``start`` to ``end`` (inclusive), centre moving ``velocity`` px a frame, size ``size0 -> size1``."""

    start: int
    end: int
    centre: tuple[float, float]
    velocity: tuple[float, float]
    size0: float = 60.0
    size1: float | None = None
    missed: set[int] = field(default_factory=set)
    scores: dict[int, float] = field(default_factory=dict)

    def box(self, frame: int) -> np.ndarray:
        t = frame - self.start
        span = max(self.end - self.start, 1)
        size = self.size0 + ((self.size1 or self.size0) - self.size0) * t / span
        cx, cy = self.centre[0] + self.velocity[0] * t, self.centre[1] + self.velocity[1] * t
        return np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)

    def seen(self, frame: int) -> bool:
        return self.start <= frame <= self.end and frame not in self.missed


def detections(boxes: list[np.ndarray], scores: list[float]) -> Detections:
    if not boxes:
        return Detections.empty(IMAGE)
    b = np.stack(boxes).astype(np.float32)
    return Detections(b, np.array(scores, np.float32), np.zeros((len(b), 5, 2), np.float32), image_size=IMAGE)


def run(
    walkers: list[Walker], frames: range, tracker: FaceTracker | None = None, jitter: float = 0.0, seed: int = 0,
    extra: dict[int, tuple[np.ndarray, float]] | None = None,
) -> tuple[dict[tuple[int, int], int], list[TrackUpdate], list[TrackState]]:
    """Feed the walkers' detections; returns ``{(walker, frame): id}``, every update, and every ended track."""
    tracker = tracker or FaceTracker()
    rng = np.random.default_rng(seed)
    ids: dict[tuple[int, int], int] = {}
    updates, ended = [], []
    for f in frames:
        who = [i for i, w in enumerate(walkers) if w.seen(f)]
        boxes = [walkers[i].box(f) + rng.normal(0, jitter, 4).astype(np.float32) for i in who]
        scores = [walkers[i].scores.get(f, 0.9) for i in who]
        if extra and f in extra:
            boxes.append(extra[f][0])
            scores.append(extra[f][1])
        update = tracker.update(detections(boxes, scores), f)
        assert update.ids.dtype == np.int64 and len(update.ids) == len(boxes)
        ids.update({(i, f): int(update.ids[k]) for k, i in enumerate(who)})
        updates.append(update)
        ended += update.ended
    ended += tracker.finish()
    return ids, updates, ended


def walker_ids(ids: dict[tuple[int, int], int], walker: int) -> set[int]:
    return {v for (w, _), v in ids.items() if w == walker}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return float(inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter))


def test_one_walker_is_one_track() -> None:
    ids, updates, ended = run([Walker(0, 99, (100, 360), (10, 0.5))], range(100))
    assert walker_ids(ids, 0) == {1}
    assert all(len(u.active) == 1 and u.active[0].matched and u.active[0].confirmed for u in updates)
    assert [(t.id, t.first_frame, t.last_frame, t.hits, t.confirmed) for t in ended] == [(1, 0, 99, 100, True)]


def test_occlusion_coasts_on_the_prediction() -> None:
    gap = set(range(45, 60))  # 15 frames without a detection
    walker = Walker(0, 99, (100, 360), (10, 1.0), size0=50, missed=gap)
    ids, updates, ended = run([walker], range(100), jitter=3.0)
    assert walker_ids(ids, 0) == {1}
    overlaps = []
    for f in sorted(gap):
        (state,) = updates[f].active
        assert not state.matched and state.last_frame == 44
        overlaps.append(iou(state.box, walker.box(f)))
    assert np.mean(np.array(overlaps) > 0.3) >= 0.8, overlaps
    assert len(ended) == 1 and ended[0].hits == 100 - len(gap)


def test_low_score_keeps_a_track_but_starts_none() -> None:
    dip = {f: 0.4 for f in range(30, 45)}
    far = {f: (np.array([900, 100, 960, 160], np.float32), 0.45) for f in range(20, 60)}
    ids, updates, ended = run([Walker(0, 79, (100, 400), (8, 0), scores=dip)], range(80), extra=far)
    assert walker_ids(ids, 0) == {1}
    assert all(u.ids[-1] == -1 for u in updates[20:60])  # the far low-score detection stays off any track
    assert {t.id for u in updates for t in u.active} == {1} and len(ended) == 1
    assert all(updates[f].active[0].matched for f in dip)
    # without the second stage the dip's detections go unassigned and the track only coasts on its prediction
    ids, updates, _ = run([Walker(0, 79, (100, 400), (8, 0), scores=dip)], range(80), FaceTracker(low_threshold=0.6))
    assert all(ids[(0, f)] == -1 and not updates[f].active[0].matched for f in dip)


@pytest.mark.parametrize("occluded", [False, True])
def test_crossing_faces_keep_their_ids(occluded: bool) -> None:
    right = Walker(0, 89, (200, 350), (6, 0))
    left = Walker(0, 89, (1000, 370), (-6, 0), size0=56)
    if occluded:  # the face behind is not detected while the two overlap
        left.missed = {f for f in range(90) if iou(right.box(f), left.box(f)) > 0.1}
        assert len(left.missed) >= 5
    ids, _, ended = run([right, left], range(90), jitter=1.5)
    assert walker_ids(ids, 0) == {1} and walker_ids(ids, 1) == {2}
    assert len(ended) == 2


def test_people_entering_and_leaving_while_approaching() -> None:
    walkers = [
        Walker(0, 79, (80, 150), (12, 3), size0=40, size1=120),
        Walker(20, 119, (1200, 200), (-10, 2.5), size0=40, size1=110),
        Walker(50, 129, (300, 450), (8, -1), size0=45, size1=120),
        Walker(90, 159, (1100, 560), (-12, -2), size0=40, size1=90, missed={120, 121, 122, 140}),
    ]
    ids, _, ended = run(walkers, range(170), jitter=1.0)
    per_walker = [walker_ids(ids, i) for i in range(len(walkers))]
    assert all(len(s) == 1 for s in per_walker), per_walker
    track_of = [next(iter(s)) for s in per_walker]
    assert len(set(track_of)) == len(walkers)
    assert Counter(t.id for t in ended) == Counter(track_of)  # each ends exactly once
    by_id = {t.id: t for t in ended}
    for w, tid in zip(walkers, track_of, strict=True):
        assert (by_id[tid].first_frame, by_id[tid].last_frame, by_id[tid].confirmed) == (w.start, w.end, True)


def test_ended_is_reported_when_the_track_is_lost_for_too_long() -> None:
    walker = Walker(0, 59, (100, 360), (5, 0))
    tracker = FaceTracker(max_lost=10)
    ended_at = {}
    for f in range(80):
        update = tracker.update(detections([walker.box(f)] if f < 60 else [], [0.9] if f < 60 else []), f)
        ended_at.update({t.id: f for t in update.ended})
    assert ended_at == {1: 70} and tracker.finish() == []


def test_frame_skipping() -> None:
    # small fast faces updated every third frame move by more than their size: no overlap from step to step
    walkers = [
        Walker(0, 119, (60, 200), (12, 0), size0=35),
        Walker(10, 119, (1250, 500), (-11, 0.5), size0=40, size1=70),
    ]
    ids, _, ended = run(walkers, range(0, 120, 3), jitter=1.0)
    assert [len(walker_ids(ids, i)) for i in range(2)] == [1, 1]
    assert len(ended) == 2
    # matching by overlap alone cannot follow them
    ids, _, _ = run(walkers, range(0, 120, 3), FaceTracker(max_distance=0.0))
    assert len(walker_ids(ids, 0)) > 5


def test_jitter_and_a_false_detection_make_no_extra_confirmed_track() -> None:
    false = {40: (np.array([700, 300, 760, 360], np.float32), 0.95)}
    ids, updates, ended = run([Walker(0, 99, (100, 360), (7, 0))], range(100), jitter=3.0, seed=1, extra=false)
    assert walker_ids(ids, 0) == {1}
    assert updates[40].ids[-1] == 2  # a tentative track ...
    assert [(t.id, t.confirmed, t.hits) for t in ended] == [(2, False, 1), (1, True, 100)]  # ... that ends unconfirmed
    assert all(not t.confirmed for u in updates for t in u.active if t.id != 1)


def test_ids_start_at_one_and_are_never_reused() -> None:
    tracker = FaceTracker(max_lost=2)
    seen = []
    for f in range(0, 40, 10):  # the same spot, but long apart: a new track each time
        update = tracker.update(detections([np.array([10, 10, 60, 60], np.float32)], [0.9]), f)
        seen.append(int(update.ids[0]))
    assert seen == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="increasing"):
        tracker.update(Detections.empty(IMAGE), 30)


def test_a_track_leaving_the_image_ends_there() -> None:
    walker = Walker(0, 20, (1100, 360), (12, 0))  # its last box reaches x = 1370, right of the 1280-px image
    tracker = FaceTracker(max_lost=25)
    for f in range(40):
        update = tracker.update(detections([walker.box(f)] if f <= 20 else [], [0.9] if f <= 20 else []), f)
        if update.ended:
            assert f < 30 and update.ended[0].last_frame == 20
            break
    else:
        pytest.fail("the track coasted on outside the image")


def test_detections_carry_track_ids() -> None:
    boxes = np.array([[0, 0, 50, 50], [10, 10, 30, 30], [100, 100, 140, 140]], np.float32)
    dets = Detections(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.zeros((3, 5, 2), np.float32), image_size=IMAGE)
    assert dets.track_ids.tolist() == [-1, -1, -1] and Detections.empty().track_ids.dtype == np.int64
    assert "track" not in dets[0].to_dict()  # still images: output unchanged
    tracked = dets.with_tracks([7, -1, 3])
    assert tracked.track_ids.dtype == np.int64
    assert tracked[np.array([2, 0])].track_ids.tolist() == [3, 7]
    assert tracked[1:].track_ids.tolist() == [-1, 3]
    assert tracked.sorted_by_area().track_ids.tolist() == [7, 3, -1]
    assert tracked.with_quality(np.ones(3), [()] * 3).track_ids.tolist() == [7, -1, 3]
    assert tracked[0].track == 7 and tracked[0].to_dict()["track"] == 7
    assert "track" not in tracked[1].to_dict() and [("track" in d) for d in tracked.to_dicts()] == [True, False, True]
    with pytest.raises(ValueError):
        dets.with_tracks([1, 2])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),  # start
            st.integers(15, 60),  # duration
            st.floats(-12, 12),  # horizontal speed
            st.floats(35, 100),  # size
            st.sets(st.integers(10, 70), max_size=15),  # missed frames (relative), not the first ten
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([1, 2, 3]),
)
def test_property_walkers_in_lanes_keep_one_id_each(walkers: list, step: int) -> None:
    people = [
        Walker(s, s + d, (640 - v * d / 2, 90 + 170 * i), (v, 0), size0=size, missed={s + m for m in miss})
        for i, (s, d, v, size, miss) in enumerate(walkers)
    ]
    ids, updates, ended = run(people, range(0, 110, step))
    for u in updates:  # no id on two faces at once, every assigned id is a live track matched in that frame
        assigned = [i for i in u.ids.tolist() if i >= 0]
        assert len(assigned) == len(set(assigned))
        assert set(assigned) <= {t.id for t in u.active if t.matched}
    per_walker = [walker_ids(ids, i) for i in range(len(people))]
    for ws in per_walker:
        assert len(ws) <= 1 and -1 not in ws
    flat = [i for ws in per_walker for i in ws]
    assert len(flat) == len(set(flat))
    assert len(ended) == len({t.id for t in ended})
