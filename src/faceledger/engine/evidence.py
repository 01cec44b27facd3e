"""Face crops a person can look at: the aligned crop the recognizer saw and a bounded context crop around the face,
with every other face in it blurred, and their JPEG bytes.

The engine only makes the pictures; whether they are kept, for whom and how long is the gallery's business (it keeps
them, encrypted, only for faces that raised a candidate).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceledger.vision.alignment import align_faces
from faceledger.vision.anonymize import anonymize

CONTEXT_MAX_SIDE = 320
"""The longest side of a context crop, in pixels."""
CONTEXT_MARGIN = 1.0
"""How far the context crop reaches beyond the face box on each side, in box widths (heights)."""
JPEG_QUALITY = 90


@dataclass(frozen=True)
class FaceCrops:
    """The pictures of one face: ``aligned`` (112×112 BGR, what the recognizer saw) and ``context`` (BGR, the box
    enlarged by its own size on each side, clipped to the image, at most :data:`CONTEXT_MAX_SIDE` pixels on its
    longest side, every other face blurred)."""

    aligned: np.ndarray
    context: np.ndarray

    def jpeg(self, quality: int = JPEG_QUALITY) -> tuple[bytes, bytes]:
        """``(aligned, context)`` as JPEG bytes."""
        return encode_jpeg(self.aligned, quality), encode_jpeg(self.context, quality)


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of a BGR uint8 image."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV encodes any non-empty uint8 image
        raise ValueError(f"cannot encode an image of shape {image.shape} as JPEG")
    return bytes(data.tobytes())


def context_box(box: np.ndarray, shape: tuple[int, ...], margin: float = CONTEXT_MARGIN) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` in pixels: ``box`` grown by ``margin`` of its size on each side, clipped to the image."""
    h, w = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
    right, bottom = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
    return left, top, max(left + 1, right), max(top + 1, bottom)


def context_crop(
    image: np.ndarray,
    boxes: np.ndarray,
    index: int,
    *,
    max_side: int = CONTEXT_MAX_SIDE,
    margin: float = CONTEXT_MARGIN,
) -> np.ndarray:
    """The context of face ``index`` of ``boxes (N, 4)`` in ``image``: cropped (see :func:`context_box`), scaled down
    to at most ``max_side`` on its longest side, every other face of ``boxes`` blurred (:func:`anonymize`)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    left, top, right, bottom = context_box(boxes[index], image.shape, margin)
    crop = image[top:bottom, left:right]
    scale = min(1.0, max_side / max(crop.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    shifted = (boxes - np.array([left, top, left, top], np.float64)) * scale
    keep = np.zeros(len(boxes), bool)
    keep[index] = True
    # anonymize copies: the caller's image is never changed
    return anonymize(np.ascontiguousarray(crop), shifted, keep)


def face_crops(
    image: np.ndarray,
    boxes: np.ndarray,
    landmarks: np.ndarray,
    index: int,
    *,
    max_side: int = CONTEXT_MAX_SIDE,
) -> FaceCrops:
    """The aligned and the context crop of face ``index`` (``boxes (N, 4)`` and ``landmarks (N, 5, 2)`` of every
    face found in ``image``: the others are blurred in the context)."""
    aligned = align_faces(image, np.asarray(landmarks)[index : index + 1])[0]
    return FaceCrops(aligned, context_crop(image, boxes, index, max_side=max_side))
