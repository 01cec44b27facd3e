"""Scene videos from real photos: the video is what the truth says it is, the watchlist split is the judge's setup,
and a run's tracks are scored the way a deployment's target counts them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from faceledger.engine import Engine
from faceledger.evaluate.scenes import (
    MIN_VISIBLE,
    Appearance,
    PersonPlan,
    Scene,
    load_scene,
    make_scene,
    make_watchlist_split,
    truth_path,
)
from faceledger.evaluate.video_score import iou, score_tracks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Scene:
    out = tmp_path_factory.mktemp("scene") / "three.mp4"
    return make_scene(out, seconds=4.0, people=3, seed=3, faces_root=faces_dir)


def _decode(path: str) -> list[np.ndarray]:
    with av.open(path) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


@pytest.mark.shared_data
def test_scene_decodes_to_its_frames_and_truth(scene: Scene) -> None:
    frames = _decode(scene.path)
    assert len(frames) == scene.frames == 100
    assert frames[0].shape == (scene.height, scene.width, 3) == (720, 1280, 3)
    assert len(scene.appearances) == 3
    loaded = load_scene(scene.path)
    assert truth_path(scene.path).is_file() and loaded.enrollment == scene.enrollment
    for a, b in zip(scene.appearances, loaded.appearances, strict=True):
        assert (a.person, a.photo, a.first_frame, a.last_frame) == (b.person, b.photo, b.first_frame, b.last_frame)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.01)
        np.testing.assert_allclose(a.visibility, b.visibility, atol=0.001)  # type: ignore[arg-type]


@pytest.mark.shared_data
def test_truth_boxes_lie_inside_the_frame(scene: Scene, faces_dir: Path) -> None:
    for a in scene.appearances:
        assert a.boxes.shape == (a.last_frame - a.first_frame + 1, 4)
        assert 0 <= a.first_frame <= a.last_frame < scene.frames
        assert Path(a.photo).is_relative_to(faces_dir.resolve()) and not Path(a.photo).is_relative_to(ROOT)
        rows = a.boxes[~np.isnan(a.boxes).any(axis=1)]
        assert len(rows) > 10
        assert (rows[:, 0] >= 0).all() and (rows[:, 1] >= 0).all()
        assert (rows[:, 2] <= scene.width).all() and (rows[:, 3] <= scene.height).all()
        assert (rows[:, 2] > rows[:, 0]).all() and (rows[:, 3] > rows[:, 1]).all()


@pytest.mark.shared_data
def test_the_detector_finds_a_face_where_the_truth_says(scene: Scene) -> None:
    engine = Engine(tile=False)
    checked = found = 0
    for f, image in enumerate(_decode(scene.path)):
        if f % 4:
            continue
        faces = None
        for a in scene.appearances:
            box = a.box(f, min_visibility=0.95)  # not hidden by the pillar or a nearer person
            # a face cut by the frame's edge is in the truth, but no detector promises to find half a face
            inside = box is not None and box[0] > 0 and box[1] > 0 and box[2] < scene.width and box[3] < scene.height
            if box is None or not inside or box[3] - box[1] < 40:
                continue
            faces = engine.detect(image) if faces is None else faces
            checked += 1
            found += any(iou(box, b) > 0.4 for b in faces.boxes)
    assert checked >= 15
    assert found >= 0.9 * checked, f"{found}/{checked}"


@pytest.mark.shared_data
def test_a_face_behind_the_pillar_is_not_in_the_truth(faces_dir: Path, tmp_path: Path) -> None:
    split = make_watchlist_split(5, 1, 0, faces_dir)
    person = split.watchlisted[0]
    plan = [PersonPlan(person.person, person.scene_photo, "ltr", 0.0, 5.0, (60, 60), 0.4)]
    scene = make_scene(
        tmp_path / "p.mp4", plan, width=640, height=360, seconds=5.0, seed=2, faces_root=faces_dir, noise=False
    )
    (a,) = scene.appearances
    assert a.visibility is not None and scene.enrollment == {}
    visible = ~np.isnan(a.boxes).any(axis=1)
    hidden = np.flatnonzero(~visible)
    # enters and leaves out of view, and a run of hidden frames in between, where the pillar stands
    assert not visible[0] and not visible[-1] and visible.sum() > 50
    inner = hidden[(hidden > np.argmax(visible)) & (hidden < len(visible) - 1 - np.argmax(visible[::-1]))]
    assert 3 <= len(inner) <= 25 and np.all(np.diff(inner) == 1)
    assert a.visibility[inner].max() < MIN_VISIBLE and a.visibility[visible].min() >= MIN_VISIBLE
    assert (a.visibility == 1).sum() > 40  # in the open the whole face is seen


@pytest.mark.shared_data
def test_watchlist_split_is_the_judges_setup(faces_dir: Path) -> None:
    split = make_watchlist_split(11, 4, 3, faces_dir)
    assert len(split.watchlisted) == 4 and len(split.bystanders) == 3
    assert all(p.enroll_photo and p.enroll_photo != p.scene_photo for p in split.watchlisted)
    assert all(p.enroll_photo is None for p in split.bystanders)
    watched = {p.person for p in split.watchlisted}
    assert watched.isdisjoint(p.person for p in split.bystanders)
    assert make_watchlist_split(11, 4, 3, faces_dir) == split
    assert make_watchlist_split(12, 4, 3, faces_dir) != split
    assert len(split.sources) >= 2  # people are mixed across sources
    excluded = make_watchlist_split(11, 4, 3, faces_dir, exclude_photos=[p.scene_photo for p in split.people])
    assert {p.scene_photo for p in excluded.people}.isdisjoint(p.scene_photo for p in split.people)


# ------------------------------------------------------------------------------------------ scoring (no photos)
def _toy_scene() -> Scene:
    """Three people crossing 50 frames: Ann and Bob watchlisted, Cy a bystander."""

    def walk(x: float) -> np.ndarray:
        return np.array([[x + 4 * t, 100, x + 4 * t + 60, 170] for t in range(50)], np.float64)

    people = [
        Appearance("src:ann", "/a.jpg", 0, 49, walk(0)),
        Appearance("src:bob", "/b.jpg", 0, 49, walk(400)),
        Appearance("src:cy", "/c.jpg", 0, 49, walk(800)),
    ]
    return Scene("/toy.mp4", 1280, 720, 25.0, 50, people)


def _event(track: int, appearance: Appearance, frame: int, *subjects: str) -> dict[str, object]:
    box = [float(v) + 2 for v in appearance.boxes[frame - appearance.first_frame]]
    candidates = [{"subject": s, "similarity": 0.6, "candidate_id": f"c{track}{s}"} for s in subjects]
    return {
        "event": "track",
        "track": track,
        "first_frame": 0,
        "last_frame": 49,
        "best_frame": frame,
        "box": box,
        "decision": "candidate" if subjects else "no_match",
        "candidates": candidates,
    }


WATCHLIST = {"src:ann": "S-ann", "src:bob": "S-bob"}


def test_a_perfect_run_scores_full_recall_and_nothing_false() -> None:
    toy = _toy_scene()
    ann, bob, cy = toy.appearances
    events = [_event(1, ann, 20, "S-ann"), _event(2, bob, 10, "S-bob"), _event(3, cy, 30), {"event": "summary"}]
    score = score_tracks(toy, events, watchlist=WATCHLIST)
    assert (score.recall, score.hits, score.watchlisted_appearances) == (1.0, 2, 2)
    assert score.wrong_subject == score.bystander_candidates == score.unassigned_tracks == 0
    assert score.tracks == 3 and score.tracks_per_appearance == 1.0 and score.max_tracks_per_appearance == 1
    assert score.meets() and score.to_dict()["meets_target"] is True
    assert "recall 2/2 (100.0%)" in score.summary()


def test_wrong_subjects_bystander_candidates_and_split_tracks_are_counted() -> None:
    toy = _toy_scene()
    ann, bob, cy = toy.appearances
    stray = {**_event(9, ann, 5, "S-bob"), "box": [600.0, 500.0, 650.0, 560.0]}  # overlaps nobody
    events = [
        _event(1, ann, 10, "S-bob"),  # Ann taken for Bob
        _event(2, ann, 40, "S-ann"),  # then found: the split track still hits
        _event(3, bob, 25),  # Bob seen, not recognised
        _event(4, cy, 30, "S-ann"),  # a bystander raised as Ann
        stray,
    ]
    score = score_tracks(toy, events, watchlist=WATCHLIST)
    assert score.hits == 1 and score.recall == 0.5 and score.missed == ("src:bob",)
    assert score.wrong_subject == 1
    assert score.bystander_candidates == 2 and score.unassigned_candidates == 1 and score.unassigned_tracks == 1
    assert score.per_appearance[0].tracks == (1, 2) and score.max_tracks_per_appearance == 2
    assert score.tracks_per_appearance == pytest.approx(4 / 3)
    assert not score.meets()
    data = score.to_dict()
    assert data["per_appearance"][0]["wrong_subjects"] == ["S-bob"] and data["recall"] == 0.5


def test_a_track_whose_box_misses_the_truth_is_unassigned() -> None:
    toy = _toy_scene()
    ann = toy.appearances[0]
    late = _event(1, ann, 10, "S-ann")
    late["best_frame"] = 45  # Ann has walked on 140 px by then: the box no longer overlaps her face
    score = score_tracks(toy, [late], watchlist=WATCHLIST)
    assert score.unassigned_tracks == 1 and score.hits == 0 and score.bystander_candidates == 1
    assert np.isnan(score_tracks(toy, [], watchlist={}).recall)
