"""Five-point face alignment to the standard 112x112 ArcFace template."""

from __future__ import annotations

import cv2
import numpy as np

#: Reference positions of the five landmarks in a 112x112 aligned face (InsightFace / ArcFace convention).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def similarity_transform(landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """2x3 similarity (rotation, uniform scale, translation) mapping ``landmarks (5, 2)`` onto the template.

    Least squares (Umeyama), so all five points count; unlike RANSAC/LMEDS it is deterministic.
    """
    dst = ARCFACE_TEMPLATE * (size / 112.0)
    src = landmarks.astype(np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var = (src_c**2).sum() / len(src)
    scale = (d * sign).sum() / var if var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix.astype(np.float32)


def align_faces(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Aligned crops ``(N, size, size, 3)`` uint8 for ``landmarks (N, 5, 2)`` in ``image``."""
    out = np.empty((len(landmarks), size, size, 3), np.uint8)
    for i, points in enumerate(landmarks):
        matrix = similarity_transform(points, size)
        out[i] = cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
    return out
