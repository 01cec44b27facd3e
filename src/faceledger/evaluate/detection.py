"""Detection metrics: faces found against the number expected per image (missed and false detections)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class DetectionResult:
    """Face-count based detection figures over images with a known number of faces (no boxes needed).

    ``found`` counts, per image, ``min(detected, expected)``; ``false_detections`` counts faces detected
    beyond the expected number (on images with 0 expected faces, every detection). Recall is ``found /
    expected``.
    """

    images: int
    expected_faces: int
    found: int
    false_detections: int
    exact_count_images: int
    missed_faces: int

    @property
    def recall(self) -> float:
        """Fraction of expected faces that were found (NaN with no expected faces)."""
        return self.found / self.expected_faces if self.expected_faces else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form with stable keys."""
        return {
            "images": self.images,
            "expected_faces": self.expected_faces,
            "found": self.found,
            "missed_faces": self.missed_faces,
            "recall": self.recall,
            "false_detections": self.false_detections,
            "exact_count_images": self.exact_count_images,
        }


def detection_metrics(expected: npt.ArrayLike, detected: npt.ArrayLike) -> DetectionResult:
    """Detection recall and false detections from per-image expected and detected face counts.

    Images whose expected count is negative (unknown) are ignored.
    """
    e = np.asarray(expected, dtype=np.int64).reshape(-1)
    d = np.asarray(detected, dtype=np.int64).reshape(-1)
    if e.shape != d.shape:
        raise ValueError("expected and detected must have one count per image")
    known = e >= 0
    e, d = e[known], d[known]
    found = np.minimum(e, d)
    return DetectionResult(
        images=int(e.size),
        expected_faces=int(e.sum()),
        found=int(found.sum()),
        false_detections=int(np.maximum(d - e, 0).sum()),
        exact_count_images=int(np.count_nonzero(e == d)),
        missed_faces=int((e - found).sum()),
    )
