"""The recognition engine: one object that runs detect → align → quality → embed, for users who want only vision.

>>> from faceledger import Engine
>>> engine = Engine()                                   # bundled YuNet + SFace, nothing downloaded
>>> faces = engine.detect("group.jpg")                  # boxes, scores, landmarks, quality
>>> result = engine.verify("a.jpg", "b.jpg")            # similarity, match, threshold, fmr

The engine never stores anything and knows nothing about people: enrolling, searching and auditing live in
:mod:`faceledger.gallery`, which uses this engine.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from faceledger.engine.video import FrameResult, TrackOptions, TrackSummary, track_events
from faceledger.errors import ModelError, NoFaceError
from faceledger.imageio import load_image
from faceledger.models.cards import Calibration, FmrEstimate, file_sha256
from faceledger.models.router import load_detector, load_recognizer
from faceledger.vision.alignment import align_faces
from faceledger.vision.anonymize import anonymize as _anonymize
from faceledger.vision.detection import UPRIGHT_MODES, Detections
from faceledger.vision.quality import QualityThresholds, assess_quality

if TYPE_CHECKING:
    from faceledger.vision.video import Frame

ImageInput = Any  # path, bytes, file object or numpy array; see faceledger.imageio.load_image
T = TypeVar("T")


@dataclass(frozen=True)
class Embeddings:
    """Faces of one image and their embeddings: ``vectors[i]`` belongs to ``detections[i]`` (largest face first)."""

    detections: Detections
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True)
class Verification:
    """Result of a 1:1 comparison.

    ``similarity`` is the cosine similarity of the two faces (-1..1), ``match`` whether it reaches ``threshold``,
    ``fmr`` the false-match rate that threshold corresponds to in the recognizer's calibration (``None`` for an
    uncalibrated model).
    """

    similarity: float
    match: bool
    threshold: float
    fmr: float | None
    faces: tuple[int, int] | None = None
    """How many faces each image had (only the largest of each was compared); None for two embeddings."""
    estimate: FmrEstimate | None = None
    """What the calibration says of the false-match rate at the threshold: measured with its 95 % interval, or
    only a bound beyond the calibration's ends (then ``fmr`` is None rather than an invented number)."""

    @property
    def fmr_text(self) -> str:
        """The false-match rate at the threshold in words ("" for an uncalibrated model)."""
        return "" if self.estimate is None else self.estimate.describe()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary with the stable keys similarity, match, threshold, fmr (and ``faces``: how many
        faces each image had, when two images were compared)."""
        out: dict[str, Any] = {
            "similarity": round(self.similarity, 6),
            "match": self.match,
            "threshold": round(self.threshold, 6),
            "fmr": self.fmr,
        }
        if self.estimate is not None:
            out["fmr_interval"] = [self.estimate.low, self.estimate.high]
            out["fmr_state"] = self.estimate.state
        if self.faces is not None:
            out["faces"] = list(self.faces)
        return out


class Engine:
    """Detect, align, embed, verify and anonymize faces on the CPU.

    Parameters:
        detector: path to a YuNet-compatible ONNX file; ``None`` for the bundled YuNet 2023mar.
        recognizer: path to an ArcFace-family ONNX file (N x 3 x 112 x 112 → N x D), or a bundled one by name:
            ``None`` for the default ``"sface_2021dec_int8"`` (int8 computation), ``"sface_2021dec"`` for the float32
            one (results identical to earlier releases; each has its own threshold table).
        score_threshold: detector confidence below which a candidate box is discarded.
        min_face_size: faces whose shorter side is smaller (pixels) are not returned. Above 48 the tile pass runs at
            the scale that makes such a face 48 pixels (half resolution for 96: a 12-megapixel photo in about a
            third of the time), or not at all when the first pass sees it that large.
        threads: onnxruntime threads per model (default: ``FACELEDGER_THREADS`` or 1; use :meth:`map` for many images).
        flip: average each embedding with the one of the mirrored face (about twice the embedding cost).
        quality: thresholds behind the per-face quality reasons.
        max_pixels: images with more pixels are refused as possible decompression bombs.
        upscale_small: also look for faces in small images at twice their size (more faces of about 10 pixels,
            and more false detections: off by default, see the README's figures).
        tile: search images larger than 640 pixels at full resolution in tiles as well (finds 20-pixel faces in
            large photos; costs about 0.1 s of one CPU per megapixel: 0.39 s at 4, 1.6 s at 23). Off gives one pass
            at 640 pixels.
        upright: faces rolled in the image plane. ``"auto"`` (default) checks each face on a crop turned by 30°,
            detects a tilted one again upright and, when an image has no face, tries it turned by 90°, 270°, 180°
            and ±45° (phone photos without EXIF orientation); ``"tilted"`` only the first; ``"off"`` neither. See
            :meth:`faceledger.vision.detection.YuNetDetector.detect` and benchmarks/README.md for the cost.
    """

    def __init__(
        self,
        detector: str | os.PathLike[str] | None = None,
        recognizer: str | os.PathLike[str] | None = None,
        *,
        score_threshold: float = 0.6,
        min_face_size: float = 0.0,
        threads: int | None = None,
        flip: bool = False,
        quality: QualityThresholds | None = None,
        max_pixels: int | None = None,
        upscale_small: bool = False,
        tile: bool = True,
        upright: str = "auto",
    ) -> None:
        self._paths = (_given(detector), _given(recognizer), threads)
        self.detector = load_detector(detector, threads)
        self.recognizer = load_recognizer(recognizer, threads)
        self.recognizer.flip = flip
        self.score_threshold = score_threshold
        self.min_face_size = min_face_size
        self.quality_thresholds = quality or QualityThresholds()
        self.max_pixels = max_pixels
        self.upscale_small = upscale_small
        self.tile = tile
        if upright not in UPRIGHT_MODES:
            raise ValueError(f"upright must be one of {', '.join(UPRIGHT_MODES)}, got {upright!r}")
        self.upright = upright

    # ------------------------------------------------------------------ pickling
    @property
    def recipe(self) -> EngineRecipe:
        """What builds this engine again in another process (see :class:`EngineRecipe`)."""
        detector, recognizer, threads = self._paths
        options = {
            "score_threshold": self.score_threshold,
            "min_face_size": self.min_face_size,
            "threads": threads,
            "flip": self.recognizer.flip,
            "quality": self.quality_thresholds,
            "max_pixels": self.max_pixels,
            "upscale_small": self.upscale_small,
            "tile": self.tile,
            "upright": self.upright,
        }
        # each card holds the SHA-256 of the file loaded, checked or computed on load: no second read of the models
        models = ((detector, self.detector.card), (recognizer, self.recognizer.card))
        files = {path: card.sha256 for path, card in models if path is not None and Path(path).is_file()}
        return EngineRecipe(detector, recognizer, options, files)

    def __reduce__(self) -> tuple[Any, ...]:
        # onnxruntime sessions cannot be pickled: an engine travels as its recipe and is built again on arrival
        return (EngineRecipe.build, (self.recipe,))

    # ------------------------------------------------------------------ images
    def load(self, image: ImageInput) -> np.ndarray:
        """Decode and validate an image (path, bytes, file object or array) into an ``(H, W, 3)`` BGR array."""
        return load_image(image, max_pixels=self.max_pixels)

    # --------------------------------------------------------------- detection
    def detect(self, image: ImageInput) -> Detections:
        """Faces in ``image``, largest first, with boxes, scores, five landmarks and a quality score with reasons."""
        array = self.load(image)
        found = self.detector.detect(
            array,
            score_threshold=self.score_threshold,
            min_face_size=self.min_face_size,
            upscale_small=self.upscale_small,
            tile=self.tile,
            upright=self.upright,
        )
        if len(found) == 0:
            return found
        crops = align_faces(array, found.landmarks)
        quality, reasons = assess_quality(found.boxes, found.scores, found.landmarks, crops, self.quality_thresholds)
        return found.with_quality(quality, reasons)

    def align(self, image: ImageInput, detections: Detections | None = None) -> np.ndarray:
        """Aligned 112x112 BGR crops ``(N, 112, 112, 3)`` of the faces in ``image`` (detected if not given)."""
        array = self.load(image)
        found = detections if detections is not None else self.detect(array)
        return align_faces(array, found.landmarks)

    # --------------------------------------------------------------- embedding
    def embed_faces(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        """Embeddings ``(N, D)`` float32, L2-normalised, of the given faces of an already decoded image."""
        return self.recognizer.embed(align_faces(image, detections.landmarks))

    def embed(self, image: ImageInput) -> Embeddings:
        """Detect every face in ``image`` and embed them all in one batch."""
        array = self.load(image)
        found = self.detect(array)
        return Embeddings(found, self.embed_faces(array, found))

    def embed_many(self, images: Sequence[ImageInput]) -> list[Embeddings]:
        """Embed the faces of several images with one recognizer pass over all their faces."""
        arrays = [self.load(image) for image in images]
        found = [self.detect(array) for array in arrays]
        crops = [align_faces(array, dets.landmarks) for array, dets in zip(arrays, found, strict=True)]
        all_crops = np.concatenate(crops) if crops else np.zeros((0, 112, 112, 3), np.uint8)
        vectors = self.recognizer.embed(all_crops)
        out, start = [], 0
        for dets in found:
            out.append(Embeddings(dets, vectors[start : start + len(dets)]))
            start += len(dets)
        return out

    def embed_each(
        self, images: Iterable[ImageInput], *, workers: int | None = None, group: int = 4
    ) -> Iterator[Embeddings | BaseException]:
        """``map(engine.embed, images)``, with the faces of ``group`` consecutive images embedded in one recognizer
        pass: the recognizer costs less per face in batches (int8 SFace at one thread: 7.1 ms per face alone, 6.0 in
        fours; bf16: 5.0 and 3.1), and most photos hold one face. Results come in input order, an exception in place
        of an image that failed (its group's other images are unaffected). Each image is decoded, detected and
        aligned, then only its 112-pixel crops are kept until the group's pass.
        """
        if group < 1:
            raise ValueError(f"group must be at least 1, not {group}")

        def run(chunk: list[ImageInput]) -> list[Embeddings | BaseException]:
            found: list[Detections | BaseException] = []
            crops: list[np.ndarray] = []
            for image in chunk:
                try:
                    array = self.load(image)
                    dets = self.detect(array)
                    crops.append(align_faces(array, dets.landmarks))
                    found.append(dets)
                    del array  # only the crops wait for the group's pass
                except Exception as exc:  # returned in the image's place, as map does
                    found.append(exc)
            try:
                vectors = self.recognizer.embed(np.concatenate(crops)) if crops else None
            except Exception as exc:
                return [exc] * len(chunk)
            out: list[Embeddings | BaseException] = []
            start = 0
            for entry in found:
                if isinstance(entry, BaseException):
                    out.append(entry)
                    continue
                assert vectors is not None  # a detected image put its crops in
                out.append(Embeddings(entry, vectors[start : start + len(entry)]))
                start += len(entry)
            return out

        for result in ordered_map(run, _chunks(images, group), workers or _default_workers()):
            if isinstance(result, BaseException):  # run returns its failures; this is a bug in it
                raise result
            yield from result

    def map(
        self,
        func: Callable[[ImageInput], T],
        images: Iterable[ImageInput],
        *,
        workers: int | None = None,
    ) -> Iterator[T | BaseException]:
        """Apply ``func`` (e.g. ``engine.detect`` or ``engine.embed``) to many images on ``workers`` threads.

        Results come back in input order; an image whose call raised yields the exception instead, so one bad file
        never stops a batch. onnxruntime releases the GIL, so with one onnxruntime thread per session (the default)
        two workers keep two cores busy on different images: on a small image that is faster than two threads
        sharing one image's convolutions (see the README's performance section). ``workers`` defaults to
        ``FACELEDGER_WORKERS`` or the CPUs this process may use.
        """
        return ordered_map(func, images, workers or _default_workers())

    # ------------------------------------------------------------ verification
    @property
    def calibration(self) -> Calibration | None:
        """The recognizer's calibration (threshold ↔ false-match rate), if its model card has one."""
        card = self.recognizer.card
        return getattr(card, "calibration", None)

    def _require_calibration(self) -> Calibration:
        calibration = self.calibration
        if calibration is None:
            name = getattr(self.recognizer.card, "name", "this recognizer")
            raise ModelError(
                f"{name} has no calibration, so no threshold can be derived from a false-match rate: run "
                "`faceledger calibrate` on your data to write one into a model card beside the file, or pass an "
                "explicit threshold"
            )
        return calibration

    def threshold_for_fmr(self, fmr: float) -> float:
        """Similarity threshold whose measured false-match rate is at most ``fmr``."""
        return self._require_calibration().threshold_for_fmr(fmr)

    def fmr_at(self, threshold: float) -> float:
        """False-match rate measured at a similarity ``threshold`` (clamped at the calibration's ends; see
        :meth:`fmr_estimate`)."""
        return self._require_calibration().fmr_at(threshold)

    def fmr_estimate(self, threshold: float) -> FmrEstimate:
        """The false-match rate at ``threshold`` with its 95 % interval, or the bound beyond the calibration."""
        return self._require_calibration().estimate(threshold)

    @property
    def default_threshold(self) -> float:
        """Threshold at the calibration's default false-match rate."""
        calibration = self._require_calibration()
        return calibration.threshold_for_fmr(calibration.default_fmr)

    def largest_face_embedding(self, image: ImageInput) -> np.ndarray:
        """Embedding of the largest face in ``image``; raises :class:`NoFaceError` when there is none."""
        return self._largest(image)[0]

    def _largest(self, image: ImageInput) -> tuple[np.ndarray, int]:
        array = self.load(image)
        found = self.detect(array)
        if len(found) == 0:
            raise NoFaceError(f"{_name(image)}: no face found")
        return self.embed_faces(array, found[:1])[0], len(found)

    def verify(
        self, a: ImageInput, b: ImageInput, *, threshold: float | None = None, fmr: float | None = None
    ) -> Verification:
        """Compare the largest face of ``a`` with the largest face of ``b``.

        The decision threshold is ``threshold`` if given, else the one for the false-match rate ``fmr``, else the
        calibration's default FMR.
        """
        ea, na = self._largest(a)
        eb, nb = self._largest(b)
        return replace(self.compare(ea, eb, threshold=threshold, fmr=fmr), faces=(na, nb))

    def compare(
        self, a: np.ndarray, b: np.ndarray, *, threshold: float | None = None, fmr: float | None = None
    ) -> Verification:
        """Verification of two embeddings (see :meth:`verify` for how the threshold is chosen)."""
        similarity = float(np.dot(a, b))
        calibration = self.calibration
        if threshold is None:
            threshold = self.threshold_for_fmr(fmr) if fmr is not None else self.default_threshold
        estimate = calibration.estimate(threshold) if calibration is not None else None
        at = None if estimate is None else estimate.fmr
        return Verification(similarity, similarity >= threshold, float(threshold), at, estimate=estimate)

    # ------------------------------------------------------------------- video
    def track(
        self,
        frames: Iterable[Frame],
        *,
        fps: float | None = None,
        options: TrackOptions | None = None,
        on_frame: Callable[[FrameResult], None] | None = None,
    ) -> Iterator[TrackSummary]:
        """Track the faces of a video (frames from :func:`faceledger.vision.video.open_video`) and yield each track
        when it ends: frames, best face, box, quality. ``on_frame`` receives every frame's
        :class:`~faceledger.engine.video.FrameResult` (faces with track ids, boxes to hide, evidence), e.g. to
        write an anonymized copy with :class:`~faceledger.engine.video.AnonymizedOutput`."""
        return track_events(self, frames, fps=fps, options=options, on_frame=on_frame)

    # ----------------------------------------------------------- anonymization
    def anonymize(
        self,
        image: ImageInput,
        keep: Sequence[int] | np.ndarray | None = None,
        method: str = "blur",
        detections: Detections | None = None,
    ) -> np.ndarray:
        """A copy of ``image`` with every face hidden except those in ``keep`` (indices or a boolean mask)."""
        array = self.load(image)
        found = detections if detections is not None else self.detect(array)
        mask = np.zeros(len(found), bool)
        if keep is not None:
            keep_arr = np.asarray(keep)
            if keep_arr.dtype == bool:
                mask = keep_arr
            elif len(keep_arr):
                mask[keep_arr.astype(int)] = True
        return _anonymize(array, found.boxes, mask, method)


@dataclass(frozen=True)
class EngineRecipe:
    """A picklable description of an :class:`Engine`: model names or paths, options, and the SHA-256 of each model
    file given by path. :meth:`build` makes the engine in the process that runs it (a worker of a batch job), and
    refuses when a path there holds another file than the one the recipe was taken from."""

    detector: str | None
    recognizer: str | None
    options: dict[str, Any]
    files: dict[str, str]

    def build(self) -> Engine:
        """The engine, with its models loaded in this process."""
        for path, digest in self.files.items():
            if not Path(path).is_file():
                raise ModelError(f"{path}: model file not found in this process (the engine was described with it)")
            if file_sha256(Path(path)) != digest:
                raise ModelError(f"{path}: another file than the one the engine was described with (SHA-256 differs)")
        return Engine(self.detector, self.recognizer, **self.options)


def ordered_map(func: Callable[[Any], T], items: Iterable[Any], workers: int) -> Iterator[T | BaseException]:
    """``func`` over ``items`` on ``workers`` threads, results in input order, an exception in place of the result
    of a call that raised; at most twice as many calls queued as workers (a long input is never read all ahead)."""
    window = 2 * workers

    def safe(item: Any) -> T | BaseException:
        try:
            return func(item)
        except Exception as exc:  # returned to the caller, who names the file
            return exc

    if workers == 1:
        yield from (safe(item) for item in items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceledger") as pool:
        pending: deque[Future[T | BaseException]] = deque()
        for item in items:
            pending.append(pool.submit(safe, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        for future in pending:
            yield future.result()


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter), read lazily."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _given(model: str | os.PathLike[str] | None) -> str | None:
    """A model as the recipe names it: a bundled name as given, a file by its absolute path (a batch worker may run
    in another working directory)."""
    if model is None:
        return None
    given = os.fspath(model)
    return os.path.abspath(given) if Path(given).is_file() else given


def _default_workers() -> int:
    env = os.environ.get("FACELEDGER_WORKERS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _name(image: ImageInput) -> str:
    if isinstance(image, str | os.PathLike):
        return os.fspath(image)
    return "<image>"
