"""Models are data: a model card (TOML) next to each ONNX file, and a router that picks the wrapper.

* :func:`load_detector` / :func:`load_recognizer` return the bundled defaults (no argument) or load a user file.
* :func:`load_model` routes any ONNX file by its input/output signature, as InsightFace's model zoo does.
* :class:`ModelCard` holds what a user needs to trust a model: source, SHA-256, licence, input spec, calibration.
"""

from faceledger.models.cards import Calibration, ModelCard, bundled_card, bundled_dir
from faceledger.models.router import load_detector, load_model, load_recognizer, make_session

__all__ = [
    "Calibration",
    "ModelCard",
    "bundled_card",
    "bundled_dir",
    "load_detector",
    "load_model",
    "load_recognizer",
    "make_session",
]
