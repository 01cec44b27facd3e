"""Face quality: a score in [0, 1] per face and the reasons that lowered it.

Four measurable things make a face unfit for recognition: it is small, blurred, turned away, or the detector is unsure
of it. Each yields a factor in [0, 1] (1 from twice its threshold up, 0.5 at its threshold); the score is their
product. A factor below its threshold adds a reason, and a score below ``min_quality`` (as low as one factor at its
threshold) with no such reason names the factors that brought it down together, so no low score goes unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class QualityThresholds:
    """Where each factor starts to count as a problem.

    * ``min_size``: shorter box side in pixels below which a face is "too small";
    * ``min_sharpness``: variance of the Laplacian of the aligned 112x112 grey crop below which it is "blurred";
    * ``max_yaw``: nose offset from the eye midline, as a fraction of the eye distance, above which it is
      "turned away" (0 frontal, about 0.5 at a half profile);
    * ``min_score``: detector confidence below which the score is "low detector score";
    * ``min_quality``: score below which a face is unfit even when no single factor is past its threshold.
    """

    min_size: float = 32.0
    min_sharpness: float = 40.0
    max_yaw: float = 0.45
    min_score: float = 0.75
    min_quality: float = 0.5


def yaw_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Horizontal offset of the nose from the eyes' midpoint, relative to the eye distance, per face."""
    eyes = landmarks[:, :2]
    mid = eyes.mean(axis=1)
    axis = eyes[:, 1] - eyes[:, 0]
    dist = np.linalg.norm(axis, axis=1)
    unit = axis / np.maximum(dist, 1e-6)[:, None]
    offset = ((landmarks[:, 2] - mid) * unit).sum(axis=1)
    return np.abs(offset) / np.maximum(dist, 1e-6)


def sharpness(crops: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each aligned crop's central region (higher is sharper)."""
    values = np.empty(len(crops), np.float32)
    for i, crop in enumerate(crops):
        grey = cv2.cvtColor(crop[16:100, 16:96], cv2.COLOR_BGR2GRAY)
        values[i] = cv2.Laplacian(grey, cv2.CV_32F).var()
    return values


def assess_quality(
    boxes: np.ndarray,
    scores: np.ndarray,
    landmarks: np.ndarray,
    crops: np.ndarray,
    thresholds: QualityThresholds | None = None,
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Quality ``(N,)`` in [0, 1] and reasons per face, from boxes, detector scores, landmarks and aligned crops."""
    t = thresholds or QualityThresholds()
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.float32), []
    size = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    sharp = sharpness(crops)
    yaw = yaw_ratio(landmarks)
    f_size = np.clip(size / (2 * t.min_size), 0, 1)
    f_sharp = np.clip(sharp / (2 * t.min_sharpness), 0, 1)
    f_yaw = np.clip(1 - yaw / (2 * t.max_yaw), 0, 1)
    f_score = np.clip(scores / t.min_score, 0, 1)
    quality = (f_size * f_sharp * f_yaw * f_score).astype(np.float32)
    reasons: list[tuple[str, ...]] = []
    for i in range(n):
        why = []
        if size[i] < t.min_size:
            why.append("too small")
        if sharp[i] < t.min_sharpness:
            why.append("blurred")
        if yaw[i] > t.max_yaw:
            why.append("turned away")
        if scores[i] < t.min_score:
            why.append("low detector score")
        if not why and quality[i] < t.min_quality:
            factors = {"size": f_size[i], "sharpness": f_sharp[i], "pose": f_yaw[i], "detector score": f_score[i]}
            weak = [name for name, value in sorted(factors.items(), key=lambda kv: kv[1]) if value < 1.0]
            why.append("several weak factors: " + ", ".join(weak))
        reasons.append(tuple(why))
    return quality, reasons
