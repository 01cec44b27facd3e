"""The video layer of the engine: one decision's worth of evidence per track, bounded embedding work, tracks that
continue across an occlusion by appearance, and anonymized output that hides a face from its first frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceledger import Engine
from faceledger.engine.video import AnonymizedOutput, FrameResult, TrackOptions, TrackPipeline
from faceledger.evaluate.scenes import make_scene
from faceledger.evaluate.video_score import score_tracks
from faceledger.vision.detection import Detections
from faceledger.vision.quality import QualityThresholds
from faceledger.vision.video import Frame, open_video


class FakeEngine:
    """Just enough of :class:`Engine` for the pipeline: embeddings chosen by the test (a face's identity is
    encoded in its box's height, so two people at one spot can look different)."""

    score_threshold = 0.6
    min_face_size = 0.0
    quality_thresholds = QualityThresholds()

    def __init__(self, people: dict[int, np.ndarray]) -> None:
        self.people = people
        self.embedded = 0

    def embed_faces(self, image: np.ndarray, dets: Detections) -> np.ndarray:
        self.embedded += len(dets)
        return np.stack([self.people[round(float(b[3] - b[1]))] for b in dets.boxes])

    def threshold_for_fmr(self, fmr: float) -> float:
        return 0.45


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def faces(*boxes: tuple[float, float, float, float], score: float = 0.9, quality: float = 0.8) -> Detections:
    b = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(b)
    return Detections(
        b,
        np.full(n, score, np.float32),
        np.zeros((n, 5, 2), np.float32),
        np.full(n, quality, np.float32),
        tuple(() for _ in range(n)),
        (480, 640),
    )


def frame(i: int) -> Frame:
    return Frame(i, i / 25, np.zeros((480, 640, 3), np.uint8), 0.0)


def run(pipeline: TrackPipeline, plan: dict[int, Detections], frames: int) -> tuple[list[FrameResult], list]:  # type: ignore[type-arg]
    results = [pipeline.process(frame(i), plan.get(i, faces())) for i in range(frames)]
    _, ended = pipeline.finish()
    return results, [s for r in results for s in r.ended] + ended


def test_one_track_one_offer_and_bounded_embeddings() -> None:
    engine = FakeEngine({60: unit(1)})
    pipeline = TrackPipeline(engine, fps=25)  # type: ignore[arg-type]
    plan = {i: faces((100 + 3 * i, 100, 160 + 3 * i, 160)) for i in range(100)}
    results, ended = run(pipeline, plan, 100)
    offers = [e for r in results for e in r.evidence]
    assert len(ended) == 1 and ended[0].first_frame == 0 and ended[0].last_frame == 99
    # one offer once enough faces are in (quality does not rise, so no second one); at most five kept
    assert len(offers) == 1 and offers[0].faces == 3 and offers[0].frame <= 10
    assert ended[0].faces == 5 and engine.embedded <= 8  # a better face is embedded, not every frame's face
    assert np.allclose(offers[0].embedding, unit(1), atol=1e-5)


def test_a_clearly_better_face_is_offered_again() -> None:
    engine = FakeEngine({60: unit(1)})
    pipeline = TrackPipeline(engine, fps=25)  # type: ignore[arg-type]
    plan = {i: faces((100 + 3 * i, 100, 160 + 3 * i, 160), quality=0.3 if i < 40 else 0.9) for i in range(80)}
    results, _ = run(pipeline, plan, 80)
    offers = [e for r in results for e in r.evidence]
    assert len(offers) == 2 and offers[1].quality == pytest.approx(0.9) and offers[1].frame >= 40


def test_a_face_lost_behind_a_pillar_continues_its_track_by_appearance() -> None:
    # person A walks right, vanishes for 14 frames and reappears 150 px further on (the tracker's motion model
    # cannot bridge that); person B (other face) shows up at the same spot later: a track of their own
    engine = FakeEngine({60: unit(1), 64: unit(2)})
    pipeline = TrackPipeline(engine, fps=25)  # type: ignore[arg-type]
    plan = {i: faces((100 + 4 * i, 100, 160 + 4 * i, 160)) for i in range(30)}
    plan |= {i: faces((400 + 4 * i, 100, 460 + 4 * i, 160)) for i in range(44, 70)}
    plan |= {i: faces((400 + 4 * i, 100, 460 + 4 * i, 164)) for i in range(80, 90)}
    results, ended = run(pipeline, plan, 95)
    assert pipeline.merged == 1
    assert [(s.first_frame, s.last_frame) for s in sorted(ended, key=lambda s: s.first_frame)] == [(0, 69), (80, 89)]
    ids = {int(t) for r in results[44:70] for t in r.detections.track_ids}
    assert ids == {int(results[0].detections.track_ids[0])}, "after the merge the frames carry the first id"
    # without appearance, the same walk is two tracks
    engine2 = FakeEngine({60: unit(1), 64: unit(2)})
    _, ended2 = run(TrackPipeline(engine2, fps=25, options=TrackOptions(merge_fmr=None)), plan, 95)  # type: ignore[arg-type]
    assert len(ended2) == 3


def test_two_people_who_look_different_are_not_merged() -> None:
    engine = FakeEngine({60: unit(1), 64: unit(2)})
    pipeline = TrackPipeline(engine, fps=25)  # type: ignore[arg-type]
    plan = {i: faces((100 + 4 * i, 100, 160 + 4 * i, 160)) for i in range(30)}
    plan |= {i: faces((400 + 4 * i, 100, 460 + 4 * i, 164)) for i in range(44, 70)}
    _, ended = run(pipeline, plan, 75)
    assert pipeline.merged == 0 and len(ended) == 2


class Recorder:
    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.closed = False

    def write(self, image: np.ndarray) -> None:
        self.images.append(image)

    def close(self) -> None:
        self.closed = True


def test_output_hides_a_face_before_the_detector_first_found_it() -> None:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    box = np.array([200, 150, 280, 250], np.float32)
    writer = Recorder()
    with AnonymizedOutput(writer, delay=12, draw=False) as out:
        for i in range(30):
            found = i >= 10  # the detector finds the face from frame 10 on; it was there from frame 0
            out.add(
                FrameResult(
                    Frame(i, i / 25, texture.copy(), 0.0),
                    faces(),
                    box.reshape(1, 4) if found else np.zeros((0, 4), np.float32),
                    np.array([7] if found else [], np.int64),
                    [],
                    [],
                )
            )
    assert writer.closed and len(writer.images) == 30
    region = (slice(150, 250), slice(200, 280))
    changed = [float(np.abs(img[region].astype(int) - texture[region].astype(int)).mean()) for img in writer.images]
    assert all(c > 20 for c in changed[0:30]), "every frame hides the face, the ten before its detection too"
    outside = writer.images[0][0:100, 0:100]
    assert np.array_equal(outside, texture[0:100, 0:100]), "the rest of the frame is untouched"


@pytest.mark.shared_data
@pytest.mark.slow
def test_engine_track_on_a_scene(tmp_path: Path, faces_dir: Path) -> None:
    scene = make_scene(
        tmp_path / "walk.mp4", seed=3, seconds=6, people=4, watchlisted=0, width=960, height=540, faces_root=faces_dir
    )
    engine = Engine()
    seen = []
    with open_video(scene.path) as video:
        events = [s.to_dict() for s in engine.track(video, on_frame=lambda r: seen.append(r.frame.index))]
    assert seen == list(range(scene.frames)), "every frame of a file, in order"
    score = score_tracks(scene, events, watchlist={})
    assert score.unassigned_tracks == 0 and score.tracks_per_appearance <= 1.5, score.summary()
    assert all(e["decision"] in ("not_searched", "unusable") for e in events)


class Broken(Recorder):
    def write(self, image: np.ndarray) -> None:
        raise OSError("disk full")


def test_an_output_that_cannot_be_written_says_so() -> None:
    writer = Broken()
    image = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(OSError, match="disk full"), AnonymizedOutput(writer, delay=0) as out:
        for i in range(20):  # the error comes back at a later frame or at close, never lost
            out.add(
                FrameResult(
                    Frame(i, i / 25, image, 0.0), faces(), np.zeros((0, 4), np.float32), np.zeros(0, np.int64), [], []
                )
            )
    assert writer.closed and not writer.images
