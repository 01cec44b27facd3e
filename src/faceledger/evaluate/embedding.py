"""Embed a dataset: every distinct image once, through the embedding cache, on an executor.

This process reads and hashes each file and looks it up in the cache; only the images not cached go to the
executor (threads here, or Ray workers: :mod:`faceledger.engine.executors`), which read the file again, check that
its SHA-256 is the one hashed here, and return all its faces. A rerun after an interruption embeds only what the
cache does not hold yet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from faceledger.errors import ImageError
from faceledger.evaluate.cache import CachedFaces, EmbeddingCache
from faceledger.evaluate.datasets import Dataset

__all__ = ["ImageOutcome", "embed_dataset", "embed_file"]


@dataclass
class ImageOutcome:
    """What the engine made of one dataset image.

    ``status`` is ``"ok"`` (at least one face), ``"no_face"`` or ``"unreadable"`` (``reason`` says why);
    ``vector`` is the embedding of the largest face; ``n_faces`` the number of faces detected.
    """

    index: int
    name: str
    status: str
    n_faces: int = 0
    vector: np.ndarray | None = None
    reason: str | None = None
    sha256: str | None = None
    cached: bool = False


def embed_dataset(
    dataset: Dataset, engine: Any, cache: EmbeddingCache, progress: bool = True, executor: Any = None
) -> list[ImageOutcome]:
    """Embed every image of ``dataset`` (each distinct file once), using and filling ``cache``; the images not
    cached are embedded on ``executor`` (default: threads of this process with ``engine``).

    A file that cannot be read or decoded becomes an ``"unreadable"`` outcome naming the reason; the rest go
    on.
    """
    root = dataset.source if dataset.source.is_dir() else dataset.source.parent
    first: dict[Path, ImageOutcome] = {}
    todo: list[tuple[int, str, Path, str]] = []  # index, name, path and SHA-256 of each image to embed
    for index, sample in enumerate(dataset.samples):
        if sample.path in first:
            continue
        name = _display_name(sample.path, root)
        try:
            digest = hashlib.sha256(sample.path.read_bytes()).hexdigest()
        except OSError as exc:
            first[sample.path] = ImageOutcome(
                index, name, "unreadable", reason=f"cannot read file: {exc.strerror or exc}"
            )
            continue
        faces = cache.get(digest)
        if faces is not None:
            first[sample.path] = _outcome(index, name, digest, faces, cached=True)
        else:
            first[sample.path] = ImageOutcome(index, name, "pending")
            todo.append((index, name, sample.path, digest))

    if todo:
        from faceledger.engine.executors import LocalExecutor  # here: importing the engine loads onnxruntime

        run = executor or LocalExecutor(engine)
        results = run.map(embed_file, ((path, digest) for _, _, path, digest in todo))
        # None: a bar only when stderr is a terminal, never in a redirected log
        bar = tqdm(
            results, total=len(todo), desc="embedding", unit="img", disable=None if progress else True, leave=False
        )
        try:
            for (index, name, path, digest), result in zip(todo, bar, strict=True):
                if isinstance(result, BaseException):  # one bad image never stops the evaluation: listed with why
                    reason = getattr(result, "reason", None) or f"{type(result).__name__}: {result}"
                    first[path] = ImageOutcome(index, name, "unreadable", reason=str(reason), sha256=digest)
                    continue
                cache.put(digest, result)
                first[path] = _outcome(index, name, digest, result, cached=False)
        finally:
            bar.close()
            if executor is None:
                run.close()
    return [
        outcome if outcome.index == index else replace(outcome, index=index)
        for index, outcome in ((i, first[s.path]) for i, s in enumerate(dataset.samples))
    ]


def embed_file(engine: Any, job: tuple[Path, str]) -> CachedFaces:
    """Every face of the image at ``path``, as an executor runs it; refuses a file whose bytes are no longer those
    hashed by the caller."""
    path, digest = job
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(str(path), f"cannot read file: {exc.strerror or exc}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ImageError(str(path), "the file changed while the dataset was being embedded")
    result = engine.embed(data)
    dets = result.detections
    n = len(dets)
    vectors = np.asarray(result.vectors, np.float32)
    return CachedFaces(
        np.asarray(dets.boxes, np.float32).reshape(n, 4),
        np.asarray(dets.scores, np.float32).reshape(n),
        np.asarray(dets.quality, np.float32).reshape(n),
        vectors.reshape(n, -1) if n else np.zeros((0, vectors.shape[-1] if vectors.ndim == 2 else 0), np.float32),
    )


def _outcome(index: int, name: str, digest: str, faces: CachedFaces, *, cached: bool) -> ImageOutcome:
    if len(faces) == 0:
        return ImageOutcome(index, name, "no_face", 0, sha256=digest, cached=cached)
    return ImageOutcome(index, name, "ok", len(faces), faces.vectors[0].copy(), sha256=digest, cached=cached)


def _display_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
