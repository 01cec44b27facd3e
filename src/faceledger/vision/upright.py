"""Faces rolled in the image plane or turned sideways: found again upright, landmarks mapped back.

:meth:`faceledger.vision.detection.YuNetDetector.detect` calls :func:`upright_faces` when ``upright`` is not
``"off"``; it is kept here, beside the detector, because it is a search strategy around it, not part of it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from faceledger.vision.detection import Detections, scaled

if TYPE_CHECKING:
    from faceledger.vision.detection import YuNetDetector

# ------------------------------------------------------------------------------------------ in-plane rotation
#: A face is searched again upright when its eye line is rolled by more than this (degrees) ...
ROLL_TRIGGER = 5.0
#: ... or its detector score is below this (a rolled face scores lower; upright faces of the development set score
#: 0.9 or more in 96 % of cases).
SCORE_TRIGGER = 0.9
#: A face found only in a turned copy of the image is kept when, searched upright, it scores at least this.
TURNED_MIN_SCORE = 0.8
#: At most this many faces of one image are searched again (the largest), to bound the cost on crowds.
MAX_SEARCHED = 16
# YuNet scores a face turned sideways or upside down at 0.8-0.87 with landmarks drawn as if it were upright, so the
# search covers the whole circle: every 45°, then ±20° and ±10° around the best
_COARSE = (0.0, 45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0)
_REFINE = (20.0, 10.0)
# YuNet's landmarks hide most of a roll up to about 30° (and its score barely drops), so every face is checked on a
# crop turned by 30° towards the side its eye line leans to (the side YuNet's landmarks show a hidden roll on: 144 of
# 147 faces of the development set rolled by ±30° that the check turned upright); only when that crop scores better
# than the crop as it is does the search go on
_CHECK_TURN = 30.0
#: ... and when the turned crop scores this much below the face's own score, the face is left as it is without
#: trying the crop as it is: upright faces score at least 0.05 lower turned by 30° in 63 % of cases, faces hiding a
#: 30° roll more in about 2 % (measured on the development set and on it rolled by 15° and ±30°)
CHECK_MARGIN = 0.05
_CHECK_SIDE = 48.0  # the face is resampled to at most this many pixels in the check's crops, ...
_SEARCH_SIDE = 64.0  # ... in the search crops ...
_LANDMARK_SIDE = 112.0  # ... and to this many for the landmarks of the orientation chosen
_WHOLE_TURNS = (90.0, -90.0, 180.0, 45.0, -45.0)


def eye_roll(landmarks: np.ndarray) -> np.ndarray:
    """Angle of the line from the first eye to the second, degrees, per face (0 upright; ``(N, 5, 2)`` input)."""
    v = landmarks[:, 1] - landmarks[:, 0]
    return np.degrees(np.arctan2(v[:, 1], v[:, 0]))


def rotation_matrix(center: np.ndarray, angle: float, scale: float, out_center: np.ndarray) -> np.ndarray:
    """2x3 affine turning the image by ``angle`` degrees (counter-clockwise on screen, as OpenCV) and scaling by
    ``scale`` about ``center``, which it moves to ``out_center``."""
    matrix = np.asarray(cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle, scale), np.float64)
    matrix[:, 2] += np.asarray(out_center, np.float64) - np.asarray(center, np.float64)
    return matrix


def _map_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _turned_box(matrix_back: np.ndarray, box: np.ndarray, angle: float) -> np.ndarray:
    """The box in the original image of a box found in a turned image: same size (sides swapped near a quarter
    turn), centred on the mapped centre."""
    centre = _map_points(matrix_back, ((box[:2] + box[2:]) / 2)[None])[0]
    scale = float(np.hypot(matrix_back[0, 0], matrix_back[0, 1]))
    w, h = (box[2] - box[0]) * scale, (box[3] - box[1]) * scale
    if 45.0 < abs(angle) % 180.0 < 135.0:
        w, h = h, w
    return np.array([centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2], np.float32)


def _search_face(
    detector: YuNetDetector,
    image: np.ndarray,
    box: np.ndarray,
    threshold: float,
    check: tuple[float, float] | None,
) -> tuple[float, np.ndarray, np.ndarray, float] | None:
    """Detect one face again on crops around it turned to several angles; the best-scoring orientation as
    ``(score, box, landmarks, angle)`` in the original image, or None when no crop holds a face. With ``check``,
    the face's ``(score, eye roll)``, first only the crop turned by 30° to the side of the roll, then the crop as it
    is: None (nothing to change) unless the turned one scores better than both ``score - CHECK_MARGIN`` and the crop
    as it is."""
    size = float(max(box[2] - box[0], box[3] - box[1], 1.0))
    centre = (box[:2] + box[2:]) / 2
    tried: dict[float, tuple[float, np.ndarray, np.ndarray, np.ndarray] | None] = {}

    def run(angle: float, face_side: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray] | None:
        shown = min(size, face_side)  # the face's side in the crop; size * scale can be a hair over (66.02 px)
        scale = shown / size
        side = max(32, int(math.ceil(2.0 * shown / 32.0)) * 32)
        matrix = rotation_matrix(centre, angle, scale, np.array([side / 2, side / 2]))
        crop = cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        b, s, k = detector.run_once(crop, threshold)
        if len(s):
            near = np.linalg.norm((b[:, :2] + b[:, 2:]) / 2 - side / 2, axis=1) < 0.3 * side
            if near.any():
                i = int(np.flatnonzero(near)[np.argmax(s[near])])
                return float(s[i]), b[i], k[i], cv2.invertAffineTransform(matrix)
        return None

    def attempt(angle: float) -> None:
        angle = (angle + 180.0) % 360.0 - 180.0
        if angle not in tried:
            tried[angle] = run(angle, _SEARCH_SIDE)

    def best() -> float:
        return max(tried, key=lambda a: -1.0 if tried[a] is None else tried[a][0])  # type: ignore[index]

    if check is not None:
        score, roll = check
        turn = math.copysign(_CHECK_TURN, roll)
        turned = run(turn, _CHECK_SIDE)
        if turned is None or turned[0] < score - CHECK_MARGIN:
            return None
        upright = run(0.0, _CHECK_SIDE)
        if upright is not None and upright[0] >= turned[0]:
            return None
    for angle in _COARSE:
        attempt(angle)
    for step in _REFINE:
        top = best()
        attempt(top - step)
        attempt(top + step)
    top = best()
    hit = tried[top]
    if hit is None:
        return None
    if size > _SEARCH_SIDE:  # the landmarks of the chosen orientation at a finer scale
        hit = run(top, _LANDMARK_SIDE) or hit
    s, b, k, back = hit
    return s, _turned_box(back, b, top), _map_points(back, k), top


def upright_faces(
    detector: YuNetDetector,
    image: np.ndarray,
    found: Detections,
    *,
    turn: bool,
    options: dict[str, Any],
) -> Detections:
    """``found`` with tilted faces re-detected upright, and (``turn``) faces searched in turned copies of the image
    when there were none.

    Each face (the :data:`MAX_SEARCHED` largest) is detected again on a crop around it, the face resampled to at most
    48 pixels, turned by 30° to the side its eye line leans to and, unless that scores :data:`CHECK_MARGIN` below the
    face, as it is; a face whose eye line is rolled by more than :data:`ROLL_TRIGGER` degrees, whose score is below
    :data:`SCORE_TRIGGER`, or whose turned crop scores better is then searched (at 64 pixels) every 45° round the
    circle, then ±20° and ±10° around the best. The orientation with the best detector score gives the face's score
    and landmarks (found again at 112 pixels), mapped back to ``image``; alignment then removes the roll. Measured
    at one thread on the development set (AMD EPYC): 2.3 ms per photo on average, the check 1.0 and the searches it
    starts 1.2, about 10 ms per searched face; BENCHMARKS.md and benchmarks/README.md have the figures.
    With ``turn`` and no face found, the whole image is detected again turned by 90°, -90°, 180°, 45° and -45°
    (stopping at the first that finds a face, whose faces are then searched as above and kept when they score at
    least :data:`TURNED_MIN_SCORE`): up to five one-pass detections at 640 pixels (no tiles), paid only by images
    without a face.
    """
    h, w = image.shape[:2]
    turned = False
    if len(found) == 0 and turn:
        # one pass each, without tiles or upscaling: a photo taken sideways has a large face, and the search must
        # stay cheap on the images that really have no face
        quick = dict(options, tile=False, upscale_small=False, look_again=False)
        # the copies are turned at the size that pass sees, not at full resolution: turning a 12-megapixel photo
        # five times cost 0.7 s
        view, factor = _shrunk(image, int(options["base_size"]), options["interpolation"])
        for angle in _WHOLE_TURNS:
            rotated, back = _turn_image(view, angle)
            faces = detector._detect(rotated, **quick)
            if len(faces):
                boxes = np.stack([_turned_box(back, b, angle) for b in faces.boxes]) / np.tile(factor, 2)
                marks = np.stack([_map_points(back, k) for k in faces.landmarks]) / factor
                found = Detections(boxes, faces.scores, marks, image_size=(h, w))
                turned = True
                break
    if len(found) == 0:
        return found
    boxes, scores, marks = found.boxes.copy(), found.scores.copy(), found.landmarks.copy()
    roll = eye_roll(marks)
    threshold = min(float(options["score_threshold"]), 0.5)
    for i in range(min(len(found), MAX_SEARCHED)):  # found is largest first
        tilted = abs(roll[i]) > ROLL_TRIGGER or scores[i] < SCORE_TRIGGER
        check = None if tilted else (float(scores[i]), float(roll[i]))
        hit = _search_face(detector, image, boxes[i], threshold, check)
        if hit is not None and hit[0] >= scores[i]:
            scores[i], boxes[i], marks[i] = hit[0], hit[1], hit[2]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    out = Detections(boxes, scores, marks, image_size=(h, w))
    if turned:  # turned copies of a photo without a face show cats' faces at 0.65-0.7; upright faces score 0.8+
        out = out[out.scores >= TURNED_MIN_SCORE]
    return out.sorted_by_area()


def _shrunk(image: np.ndarray, longest: int, interpolation: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with its longer side at most ``longest`` pixels, and the scale of each axis (x, y) from ``image``."""
    h, w = image.shape[:2]
    view = scaled(image, longest / max(h, w), interpolation)
    return view, np.array([view.shape[1] / w, view.shape[0] / h], np.float32)


def _turn_image(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned by ``angle`` degrees (counter-clockwise on screen) on a canvas that holds all of it, and
    the 2x3 affine mapping the turned image's pixels back to ``image``'s."""
    h, w = image.shape[:2]
    rad = math.radians(angle)
    c, s = abs(math.cos(rad)), abs(math.sin(rad))
    nw, nh = int(round(h * s + w * c)), int(round(h * c + w * s))
    matrix = rotation_matrix(np.array([(w - 1) / 2, (h - 1) / 2]), angle, 1.0, np.array([(nw - 1) / 2, (nh - 1) / 2]))
    if angle % 90.0 == 0:
        code = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
        turned = cv2.rotate(image, code[int(angle % 360)])
    else:
        turned = cv2.warpAffine(image, matrix, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return turned, cv2.invertAffineTransform(matrix)
