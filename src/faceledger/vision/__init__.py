"""Pure computation on image arrays: detection, alignment, quality, embedding, anonymization.

Nothing here opens files, touches a database or knows about policy. Images are ``(H, W, 3)`` uint8 BGR arrays.
"""

from faceledger.vision.alignment import ARCFACE_TEMPLATE, align_faces
from faceledger.vision.anonymize import anonymize
from faceledger.vision.detection import Detections, Face, YuNetDetector
from faceledger.vision.embedding import ArcFaceRecognizer
from faceledger.vision.quality import QualityThresholds, assess_quality

__all__ = [
    "ARCFACE_TEMPLATE",
    "ArcFaceRecognizer",
    "Detections",
    "Face",
    "QualityThresholds",
    "YuNetDetector",
    "align_faces",
    "anonymize",
    "assess_quality",
]
