"""Faces rolled in the image plane or turned sideways: found, aligned upright, recognised as the same person."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ManifestRow, detector_passes, load_benchmark
from faceledger import Engine, load_image
from faceledger.evaluate.splits import is_calibration_identity
from faceledger.vision.upright import eye_roll

ROOT = Path(__file__).resolve().parents[1]


bench = load_benchmark("bench_robustness")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def one_pass() -> Engine:
    return Engine(upright="off")


@pytest.fixture(scope="module")
def portraits(manifest: list[ManifestRow]) -> list[np.ndarray]:
    """One photo per source of held-out people (not the half the threshold was calibrated on)."""
    chosen: dict[str, np.ndarray] = {}
    for row in manifest:
        if row.identity and not is_calibration_identity(row.identity) and row.source not in chosen:
            chosen[row.source] = load_image(row.path)
    wanted = [s for s in ("orl_att", "yalefaces", "dlib", "opencv_course", "face_api_js") if s in chosen]
    assert len(wanted) >= 4, f"expected held-out portraits from at least 4 sources, got {sorted(chosen)}"
    return [chosen[s] for s in wanted]


def _largest(engine: Engine, image: np.ndarray) -> np.ndarray | None:
    found = engine.detect(image)
    return engine.embed_faces(image, found[:1])[0] if len(found) else None


@pytest.mark.parametrize("angle", [30, -45, 90, -90, 180])
def test_a_rotated_face_is_found_and_matches_the_upright_one(
    engine: Engine, portraits: list[np.ndarray], angle: int
) -> None:
    threshold = engine.threshold_for_fmr(1e-3)
    for image in portraits:
        upright = _largest(engine, image)
        turned = _largest(engine, bench.rotate(image, angle))
        assert upright is not None and turned is not None
        assert float(upright @ turned) >= threshold, f"rotated by {angle}°: similarity {float(upright @ turned):.3f}"


def test_without_the_upright_search_a_face_turned_sideways_is_lost(
    one_pass: Engine, portraits: list[np.ndarray]
) -> None:
    # why the search exists: one detection pass does not recognise these faces turned by 90°
    threshold = one_pass.threshold_for_fmr(1e-3)
    matched = 0
    for image in portraits:
        upright = _largest(one_pass, image)
        turned = _largest(one_pass, bench.rotate(image, 90))
        matched += upright is not None and turned is not None and float(upright @ turned) >= threshold
    assert matched <= len(portraits) // 2


def test_landmarks_of_a_turned_face_are_mapped_back_onto_the_turned_image(
    engine: Engine, portraits: list[np.ndarray]
) -> None:
    for image in portraits:
        h, w = image.shape[:2]
        upright = engine.detect(image)
        turned = engine.detect(cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE))
        assert len(upright) and len(turned)
        # a point (x, y) of the photo is at (h - 1 - y, x) once it is turned clockwise
        expected = np.stack([h - 1 - upright.landmarks[0][:, 1], upright.landmarks[0][:, 0]], axis=1)
        eyes = float(np.linalg.norm(upright.landmarks[0][1] - upright.landmarks[0][0]))
        # within a third of the eye distance: the search settles on an orientation within about 10° of upright,
        # where YuNet's landmarks are a few pixels off; a wrong mapping would be off by the size of the face
        assert np.abs(turned.landmarks[0] - expected).max() < 0.35 * eyes
        assert abs(float(eye_roll(turned.landmarks[:1])[0]) - 90.0) < 20.0  # the eye line is vertical
        box = turned.boxes[0]
        assert box[0] <= expected[:, 0].min() and box[2] >= expected[:, 0].max()
        assert 0 <= box[0] < box[2] <= h and 0 <= box[1] < box[3] <= w


def test_a_large_photo_taken_sideways_is_turned_at_the_first_pass_size(
    engine: Engine, portraits: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from faceledger.vision import upright

    turned_sizes: list[tuple[int, ...]] = []
    turn_image = upright._turn_image

    def recording(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
        turned_sizes.append(image.shape[:2])
        return turn_image(image, angle)

    monkeypatch.setattr(upright, "_turn_image", recording)
    zoom = 2400 / max(portraits[-1].shape[:2])
    image = cv2.resize(portraits[-1], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)  # megapixels
    h, w = image.shape[:2]
    assert max(h, w) > 1500
    upright_face = engine.detect(image)
    assert turned_sizes == [], "an upright face needs no turned copy of the photo"
    sideways = engine.detect(cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE))
    assert len(upright_face) and len(sideways)
    # whole-photo turns are made of the photo shrunk to the first pass's 640 px, not of its megapixels
    assert turned_sizes and max(max(size) for size in turned_sizes) <= 640
    # and what they find is mapped back onto the full-resolution photo: (x, y) is at (h - 1 - y, x) turned clockwise
    marks = upright_face.landmarks[0]
    expected = np.stack([h - 1 - marks[:, 1], marks[:, 0]], axis=1)
    eyes = float(np.linalg.norm(marks[1] - marks[0]))
    assert np.abs(sideways.landmarks[0] - expected).max() < 0.35 * eyes


@pytest.mark.parametrize("angle", [30, -30])
def test_a_rolled_face_is_aligned_upright(
    engine: Engine, one_pass: Engine, portraits: list[np.ndarray], angle: int
) -> None:
    # YuNet's own landmarks hide most of a 30° roll; after the search the eye line follows the face (to within the
    # search's resolution: the orientation with the best detector score is 10-15° off for some faces). The check
    # turns each face one way only, towards the side its landmarks lean to: both sides must be found.
    errors, one_pass_errors = [], []
    for image in portraits:
        base = float(eye_roll(one_pass.detect(image).landmarks[:1])[0])
        rolled = bench.rotate(image, angle)  # counter-clockwise on screen: the eye line turns by -angle
        for found, out in ((engine.detect(rolled), errors), (one_pass.detect(rolled), one_pass_errors)):
            assert len(found)
            out.append(abs(float(eye_roll(found.landmarks[:1])[0]) - (base - angle)))
    assert max(errors) < 16.0, errors
    assert np.mean(errors) < 0.5 * np.mean(one_pass_errors), (errors, one_pass_errors)


def _detector_passes(engine: Engine, image: np.ndarray) -> list[tuple[int, ...]]:
    """The input sizes of the detector network's runs while detecting the one face of ``image``."""
    with detector_passes(engine) as sizes:
        assert len(engine.detect(image)) == 1
    return sizes


def test_the_check_of_an_upright_face_costs_at_most_two_small_passes(
    engine: Engine, one_pass: Engine, portraits: list[np.ndarray]
) -> None:
    # the ±30° check tries the crop turned towards the eye line's lean, then the crop as it is only when the turned
    # one scores within CHECK_MARGIN of the face: upright faces cost one or two small passes, never the three of
    # checking both sides; small: the face resampled to 48 px in a crop twice its size, so at most 96x96
    extra = []
    for image in portraits:
        first, passes = len(_detector_passes(one_pass, image)), _detector_passes(engine, image)
        extra.append(len(passes) - first)
        assert all(max(size) <= 96 for size in passes[first:]), passes
    assert all(1 <= n <= 2 for n in extra), extra
    assert 1 in extra, extra  # some faces are settled by the turned crop alone


def test_images_without_a_face_stay_empty(engine: Engine) -> None:
    rng = np.random.default_rng(0)
    for image in (np.full((480, 640, 3), 128, np.uint8), rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)):
        assert len(engine.detect(image)) == 0


def test_the_upright_mode_is_checked(engine: Engine) -> None:
    assert engine.upright == "auto"
    with pytest.raises(ValueError, match="upright"):
        engine.detector.detect(np.zeros((64, 64, 3), np.uint8), upright="sideways")


def test_benchmark_degradations_are_deterministic_and_sized() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (112, 92, 3), dtype=np.uint8)
    box = np.array([20, 30, 70, 90], np.float32)
    assert bench.rotate(image, 90).shape == (92, 112, 3)
    assert bench.rotate(image, 45).shape[0] > 112
    for layer in bench.LAYERS:
        a, b = bench.degrade(image, box, layer, 3), bench.degrade(image, box, layer, 3)
        assert np.array_equal(a, b), layer
        if layer.startswith("tiny") or layer == "cctv":
            assert a.shape == (720, 1280, 3)
    assert bench.degrade(image, box, "dark", 0).mean() < 0.35 * image.mean()


@pytest.fixture(scope="module")
def whole_photo_faces(manifest: list[ManifestRow], one_pass: Engine) -> list[tuple[np.ndarray, np.ndarray]]:
    """Held-out ORL photos (a face and little else, 92x112 px) with their face box."""
    out = []
    for row in manifest:
        if row.source == "orl_att" and row.identity and not is_calibration_identity(row.identity):
            image = load_image(row.path)
            found = one_pass.detect(image)
            if len(found):
                out.append((image, found.boxes[0]))
    assert len(out) >= 40, f"expected at least 40 held-out ORL photos with a face, got {len(out)}"
    return out[:60]


def test_a_small_face_with_no_margin_is_found_by_the_second_look(
    engine: Engine, whole_photo_faces: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    """A photo that is all face, shrunk so the face is 40 px in a 1280x720 frame: YuNet scores some of them under
    the threshold at that size; the second look at twice the size finds them, where they are."""
    detector = engine.detector
    lost, found_again = 0, 0
    for i, (image, box) in enumerate(whole_photo_faces):
        frame = bench.in_frame(image, box, 40, np.random.default_rng(i))
        once = detector.detect(frame, look_again=False)
        twice = detector.detect(frame)
        assert len(twice) >= len(once), f"photo {i}: the second look lost a face"
        if not len(once):
            lost += 1
            found_again += len(twice) == 1
            if len(twice):
                b = twice.boxes[0]
                assert 25 <= max(b[2] - b[0], b[3] - b[1]) <= 60, f"photo {i}: a box of {b} is not the 40 px face"
        assert len(twice) <= 1, f"photo {i}: {len(twice)} faces in a frame with one"
    assert lost >= 1, "no face was lost at 40 px without the second look: this test no longer tests it"
    assert found_again == lost, f"the second look found {found_again} of the {lost} faces one look missed"


def test_the_second_look_ignores_leads_off_the_image(engine: Engine) -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    leads = np.array([[120, 120, 140, 140], [-50, -50, -30, -30], [90, 40, 130, 70]], np.float32)
    scores = np.full(3, 0.3, np.float32)
    b, s, k = engine.detector._look_again(image, leads, scores, np.zeros((3, 5, 2), np.float32), 0.6, 0.3)
    assert b.shape == (0, 4) and s.shape == (0,) and k.shape == (0, 5, 2)  # a black image has no face to find
