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

import importlib
from typing import TYPE_CHECKING, Any

from faceledger.errors import FaceledgerError, ImageError, ModelError, NoFaceError

if TYPE_CHECKING:
    from faceledger.engine import Embeddings, Engine, Verification
    from faceledger.gallery import Gallery, GallerySession
    from faceledger.imageio import load_image
    from faceledger.vision.detection import Detections, Face

__version__ = "0.1.0"

_LAZY = {
    "Engine": "faceledger.engine",
    "Embeddings": "faceledger.engine",
    "Verification": "faceledger.engine",
    "load_image": "faceledger.imageio",
    "Detections": "faceledger.vision.detection",
    "Face": "faceledger.vision.detection",
    "Gallery": "faceledger.gallery",
    "GallerySession": "faceledger.gallery",
}


def __getattr__(name: str) -> Any:
    """The public names on first use: the engine brings onnxruntime and the models' code, the gallery the ledger,
    cryptography and pydantic; ``faceledger --version`` or a caller of only one of them should not pay for all."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faceledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

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
