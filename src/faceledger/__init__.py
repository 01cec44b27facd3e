"""faceledger: face recognition with consent, human review, an audit ledger and provable erasure built in.

Quick start::

    from faceledger import Engine
    engine = Engine()
    faces = engine.detect("photo.jpg")       # Detections: boxes, scores, landmarks, quality
    result = engine.verify("a.jpg", "b.jpg") # Verification: similarity, match, threshold, fmr

    from faceledger import Gallery
    desk = Gallery.open("staff.db").as_actor("front-desk", purpose="access-control")
    desk.enroll("emp-001", ["a.jpg"])        # needs a consent: desk.add_consent(...)
"""

from faceledger.engine import Embeddings, Engine, Verification
from faceledger.errors import FaceledgerError, ImageError, ModelError, NoFaceError
from faceledger.gallery import Gallery, GallerySession
from faceledger.imageio import load_image
from faceledger.vision.detection import Detections, Face

__version__ = "0.1.0"

__all__ = [
    "Detections",
    "Embeddings",
    "Engine",
    "Face",
    "FaceledgerError",
    "Gallery",
    "GallerySession",
    "ImageError",
    "ModelError",
    "NoFaceError",
    "Verification",
    "__version__",
    "load_image",
]
