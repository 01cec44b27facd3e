"""A cache of detections and embeddings, so each image of a dataset is embedded once.

One ``.npz`` file per image and pipeline: ``<cache dir>/<image sha256>-<pipeline id>.npz``. The pipeline id is
a short hash of the recognizer's name and SHA-256 (the float and the int8 SFace never share entries), the
detector's SHA-256, the engine settings that change which
faces are found or how they are embedded, and the pipeline's source code; change any of them and the old
entries are simply not used. Entries
hold every face of the image (largest first): boxes, detector scores, quality and embedding vectors. Nothing
but these arrays is stored (no image pixels), and the cache can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CACHE_FORMAT",
    "CachedFaces",
    "EmbeddingCache",
    "code_fingerprint",
    "default_cache_dir",
    "pipeline_id",
]

#: Bumped when the stored layout changes.
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$FACELEDGER_CACHE`` or ``$XDG_CACHE_HOME/faceledger/embeddings`` (``~/.cache/...`` by default)."""
    env = os.environ.get("FACELEDGER_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceledger" / "embeddings"


#: Modules whose code decides which faces are found and how they are embedded.
#: (Video decoding and tracking are not among them: they never touch a still image.)
_PIPELINE_MODULES = (
    "engine/__init__.py",
    "imageio.py",
    "imageconvert.py",
    "vision/alignment.py",
    "vision/detection.py",
    "vision/embedding.py",
    "vision/quality.py",
    "vision/upright.py",
    "models",
)


def code_fingerprint() -> str:
    """SHA-256 over the Python source of the image pipeline (decoding, detection, alignment, embedding).

    Part of the pipeline id, so entries made by an older version of that code are not reused.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in _PIPELINE_MODULES:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            try:
                digest.update(file.relative_to(root).as_posix().encode())
                digest.update(file.read_bytes())
            except OSError:
                continue
    return digest.hexdigest()


def pipeline_id(engine: Any) -> str:
    """Short id of everything that decides the faces and vectors an engine produces for an image.

    Covers the recognizer's name and SHA-256, the detector's SHA-256, the engine settings (score threshold, minimum
    face size, upscaling, tiles, upright detection, flip, pixel limit) and :func:`code_fingerprint`.
    """
    recognizer = getattr(engine.recognizer, "card", None)
    detector = getattr(getattr(engine, "detector", None), "card", None)
    settings = {
        "format": CACHE_FORMAT,
        "recognizer": getattr(recognizer, "sha256", None),
        "recognizer_name": getattr(recognizer, "name", None),
        "detector": getattr(detector, "sha256", None),
        "score_threshold": getattr(engine, "score_threshold", None),
        "min_face_size": getattr(engine, "min_face_size", None),
        "upscale_small": getattr(engine, "upscale_small", None),
        "upright": getattr(engine, "upright", None),
        "tile": getattr(engine, "tile", None),
        "flip": getattr(engine.recognizer, "flip", None),
        "max_pixels": getattr(engine, "max_pixels", None),
        "code": code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CachedFaces:
    """All faces of one image: ``boxes (N,4)``, ``scores (N,)``, ``quality (N,)``, ``vectors (N,D)``
    float32."""

    boxes: np.ndarray
    scores: np.ndarray
    quality: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)


class EmbeddingCache:
    """Reads and writes :class:`CachedFaces` by image SHA-256 for one pipeline id; ``directory=None`` disables
    it."""

    def __init__(self, directory: Path | None, pipeline: str) -> None:
        self.directory = directory
        self.pipeline = pipeline
        self.hits = 0
        self.misses = 0

    def _path(self, image_sha256: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{image_sha256}-{self.pipeline}.npz"

    def get(self, image_sha256: str) -> CachedFaces | None:
        """The cached faces of the image with this SHA-256, or None (a damaged entry counts as missing)."""
        if self.directory is None:
            return None
        path = self._path(image_sha256)
        try:
            with np.load(path, allow_pickle=False) as data:
                faces = CachedFaces(
                    data["boxes"].astype(np.float32),
                    data["scores"].astype(np.float32),
                    data["quality"].astype(np.float32),
                    data["vectors"].astype(np.float32),
                )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
            self.misses += 1
            return None
        self.hits += 1
        return faces

    def put(self, image_sha256: str, faces: CachedFaces) -> None:
        """Store the faces of an image (atomically: a crash never leaves a half-written entry)."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    boxes=faces.boxes,
                    scores=faces.scores,
                    quality=faces.quality,
                    vectors=faces.vectors,
                )
            os.replace(tmp, self._path(image_sha256))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
