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

from typing import TYPE_CHECKING, Any

from faceledger.engine import Embeddings, Engine, Verification
from faceledger.errors import FaceledgerError, ImageError, ModelError, NoFaceError
from faceledger.imageio import load_image
from faceledger.vision.detection import Detections, Face

if TYPE_CHECKING:
    from faceledger.gallery import Gallery, GallerySession

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``Gallery`` and ``GallerySession`` on first use: the gallery brings the ledger, cryptography and pydantic,
    which engine-only callers (``import faceledger`` for detection) should not pay for at import."""
    if name in ("Gallery", "GallerySession"):
        from faceledger import gallery

        return getattr(gallery, name)
    raise AttributeError(f"module 'faceledger' has no attribute {name!r}")

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
