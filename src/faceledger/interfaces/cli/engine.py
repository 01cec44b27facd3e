"""Engine commands, no database involved: ``detect``, ``embed``, ``verify``, ``anonymize``.

IMAGE arguments are files, ``-`` (one image from standard input, named ``<stdin>``) or, with ``--recursive``,
folders (:mod:`.inputs`). ``--json`` prints one JSON object per image with stable keys; an image that failed is
``{"image", ..., "error"}`` with the command's other keys empty and ``error`` the reason, and is named on stderr
(``faceledger: IMAGE: REASON``). A progress bar on stderr for many files on a terminal; exit code 0 on success,
1 when some inputs failed (the rest processed), 2 on a usage error (a bad option or model file).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

from faceledger import config
from faceledger.errors import FaceledgerError, ImageError
from faceledger.interfaces.cli.inputs import (
    STDIN_NAME,
    VIDEO_SUFFIXES,
    ImageArg,
    expand,
    recursive_option,
)
from faceledger.interfaces.cli.options import EXIT_FAILED, EXIT_OK, EXIT_USAGE, json_option, registrar
from faceledger.interfaces.cli.render import Output, emit, fail, progress, reason_of, warn
from faceledger.interfaces.cli.views import Anonymized, Compared, Detected

__all__ = ["anonymize", "detect", "draw_faces", "embed", "register", "verify"]


def engine_options(func: Any = None, *, recognizer: bool = True) -> Any:
    """Options shared by the commands that run the engine (``recognizer=False``: a command that embeds no face,
    such as ``detect``, does not offer ``--recognizer``)."""
    if func is None:
        return lambda f: engine_options(f, recognizer=recognizer)
    options = [
        click.option(
            "--detector",
            type=click.Path(dir_okay=False),
            envvar=config.DETECTOR_ENV,
            help="YuNet-compatible ONNX detector file (default: bundled YuNet 2023mar).",
        ),
        click.option(
            "--recognizer",
            type=click.Path(dir_okay=False),
            envvar=config.RECOGNIZER_ENV,
            help="ArcFace-family ONNX recognizer file, or a bundled one by name (default: sface_2021dec_int8; "
            "sface_2021dec computes in float32, as earlier releases; sface_2021dec_bf16 in bfloat16 on OpenVINO, "
            "about twice as fast on CPUs with bf16 units, needs faceledger[openvino]).",
        ),
        click.option(
            "--min-face",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="Ignore faces whose shorter side is smaller than this many pixels. Above 48 it also makes large "
            "photos faster: the search for small faces runs at the scale where such a face is 48 pixels (at half "
            "resolution for 96), or not at all when the first pass sees them that large.",
        ),
        click.option(
            "--score-threshold",
            type=click.FloatRange(0, 1),
            default=0.6,
            show_default=True,
            help="Detector confidence below which a candidate face is dropped.",
        ),
        click.option(
            "--max-pixels",
            type=click.IntRange(min=1),
            default=None,
            envvar="FACELEDGER_MAX_PIXELS",
            help="Refuse images with more pixels than this (decompression-bomb guard).",
        ),
    ]
    if not recognizer:
        del options[1]
    for option in reversed(options):
        func = option(func)
    return func


def make_engine(
    detector: str | None,
    min_face: float,
    score_threshold: float,
    max_pixels: int | None,
    recognizer: str | None = None,
) -> Any:
    """Build the engine or exit 2 with the reason (a bad model path is a usage error)."""
    from faceledger.engine import Engine

    try:
        return Engine(
            detector,
            recognizer,
            min_face_size=min_face,
            score_threshold=score_threshold,
            max_pixels=max_pixels,
        )
    except FaceledgerError as exc:
        fail(str(exc), EXIT_USAGE)


def run_many(
    engine: Any, func: Any, items: Sequence[ImageArg], label: str, *, grouped: bool = False
) -> Iterator[tuple[ImageArg, Any]]:
    """``(item, result)`` for each image, ``func`` computed on the engine's worker threads, with a progress bar.
    ``grouped`` (``func`` is ``engine.embed``): :meth:`Engine.embed_each`, the faces of consecutive images embedded
    in one recognizer pass.

    A :class:`FaceledgerError` (bad image, no face, an argument that is not usable) is returned as the result,
    for the caller to report; any other exception is a bug and is raised.
    """

    def call(item: ImageArg) -> Any:
        if item.problem:
            raise ImageError(item.name, item.problem)
        return func(item.source())

    if grouped:
        embedded = engine.embed_each(item.source() for item in items if not item.problem)
        results = (ImageError(item.name, item.problem) if item.problem else next(embedded) for item in items)
    else:
        results = engine.map(call, items)
    for item in progress(items, label):
        result = next(results)
        if isinstance(result, BaseException) and not isinstance(result, FaceledgerError):
            raise result
        yield item, result


def _finish(failed: int) -> None:
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


def _failed(out: Output, item: ImageArg, exc: BaseException, **empty: Any) -> None:
    """Report ``item``'s failure: its name and the reason on stderr (with a hint for a video), the record in JSON."""
    out.failed_image(item.name, reason_of(exc, item.name), video_hint(item.name), **empty)


@click.command("detect")
@click.argument("images", nargs=-1, required=True)
@recursive_option
@json_option("One JSON object per image on stdout.")
@click.option(
    "--draw",
    type=click.Path(file_okay=False),
    default=None,
    help="Write a copy of each image with boxes and landmarks drawn into this folder.",
)
@engine_options(recognizer=False)
def detect(images: tuple[str, ...], recursive: bool, as_json: bool, draw: str | None, **engine_kw: Any) -> None:
    """Find faces in IMAGES: boxes, detector scores, five landmarks and a quality score.

    IMAGES are image files, - for one image read from standard input (named <stdin> in the output), or folders
    with --recursive.

    JSON per image: {"image", "faces": [{"box": [x1,y1,x2,y2], "score", "landmarks": [[x,y] x5], "quality",
    "quality_reasons"}], "error"}; an image that failed has "faces": [] and "error" the reason, and is named on
    stderr ("faceledger: IMAGE: REASON").
    """
    engine = make_engine(**engine_kw)
    items = expand(images, recursive=recursive)
    out = Output(as_json)
    failed = 0
    names = OutputNames()

    def load_and_detect(source: Any) -> tuple[np.ndarray | None, Any]:
        array = engine.load(source)
        return (array if draw else None), engine.detect(array)

    for item, result in run_many(engine, load_and_detect, items, "detect"):
        if isinstance(result, FaceledgerError):
            failed += 1
            _failed(out, item, result, faces=[])
            continue
        array, faces = result
        out.show(Detected(item.name, faces))
        if draw and array is not None:
            folder = Path(draw)
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(names.next(folder, item.name, ".detected", ".jpg")), draw_faces(array, faces))
    _finish(failed)


class OutputNames:
    """Names for the files a command writes into one folder, unique within the run: ``a/1.jpg`` and ``b/1.jpg``
    become ``1.detected.jpg`` and ``1-2.detected.jpg`` instead of the second overwriting the first."""

    def __init__(self) -> None:
        self._used: set[Path] = set()

    def next(self, folder: Path, source: str, tag: str, suffix: str) -> Path:
        stem = "stdin" if source == STDIN_NAME else Path(source).stem
        target, n = folder / f"{stem}{tag}{suffix}", 1
        while target in self._used:
            n += 1
            target = folder / f"{stem}-{n}{tag}{suffix}"
        self._used.add(target)
        return target


def draw_faces(image: np.ndarray, faces: Any) -> np.ndarray:
    """A copy of ``image`` with each face's box, index and landmarks drawn; labels are sized to the image (about
    2.5 % of its longer side, at least 14 pixels) and outlined, so they read on hair, skin or sky."""
    out = image.copy()
    side = max(image.shape[:2])
    thickness = max(1, round(side / 400))
    scale = max(14.0, 0.025 * side) / 22.0  # FONT_HERSHEY_SIMPLEX is about 22 pixels tall at scale 1
    weight = max(1, round(scale * 1.5))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (round(float(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 200, 0), thickness)
        label = f"#{i} {face.score:.2f}"
        (_, height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
        origin = (x1, max(height + 2, y1 - 4))
        for colour, width in (((0, 0, 0), weight + 2), ((80, 255, 80), weight)):  # dark outline, then the text
            cv2.putText(out, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, width, cv2.LINE_AA)
        for x, y in face.landmarks:
            cv2.circle(out, (round(float(x)), round(float(y))), thickness + 1, (0, 0, 255), -1)
    return out


@click.command("embed")
@click.argument("images", nargs=-1, required=True)
@recursive_option
@json_option("One JSON object per image on stdout (the only format).")
@engine_options
def embed(images: tuple[str, ...], recursive: bool, as_json: bool, **engine_kw: Any) -> None:
    """Embeddings of every face in IMAGES (largest face first), as JSON lines.

    IMAGES are image files, - for one image read from standard input (named <stdin> in the output), or folders
    with --recursive.

    JSON per image: {"image", "faces": [{"box", "score", "landmarks", "quality", "embedding": [float...]}], "error"};
    an image that failed has "faces": [] and "error" the reason. Embeddings are L2-normalised, so the similarity
    of two faces is their dot product.
    """
    engine = make_engine(**engine_kw)
    items = expand(images, recursive=recursive)
    out = Output(as_json=True)
    failed = 0
    for item, result in run_many(engine, engine.embed, items, "embed", grouped=True):
        if isinstance(result, FaceledgerError):
            failed += 1
            _failed(out, item, result, faces=[])
            continue
        faces = result.detections.to_dicts()
        for face, vector in zip(faces, result.vectors, strict=True):
            face["embedding"] = [float(v) for v in np.round(vector, 7)]
        emit({"image": item.name, "faces": faces, "error": None})
    _finish(failed)


@click.command("verify")
@click.argument("image_a")
@click.argument("image_b")
@json_option("One JSON object on stdout.")
@click.option(
    "--threshold",
    type=click.FloatRange(-1, 1),
    default=None,
    help="Decision threshold on the cosine similarity (default: from --fmr).",
)
@click.option(
    "--fmr",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Target false-match rate; the threshold comes from the recognizer's calibration "
    "(default: the calibration's default FMR).",
)
@engine_options
def verify(
    image_a: str, image_b: str, as_json: bool, threshold: float | None, fmr: float | None, **engine_kw: Any
) -> None:
    """Are the largest faces of IMAGE_A and IMAGE_B the same person?

    Either image may be - (read from standard input, named <stdin>), not both.

    JSON: {"similarity", "match", "threshold", "fmr", "faces"}; fmr is the false-match rate the threshold
    corresponds to. When an image cannot be read or has no face: {"image": the one that failed, "similarity":
    null, ..., "error": the reason}, and exit code 1 (0 when the comparison ran, match or not).
    """
    engine = make_engine(**engine_kw)
    if fmr is not None and engine.calibration is not None:
        try:  # a target the calibration cannot measure is a usage error, before any image is read
            engine.calibration.check_target(fmr)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--fmr") from None
    items = expand([image_a, image_b], folders=False)
    out = Output(as_json)
    try:
        for item in items:
            if item.problem:
                raise ImageError(item.name, item.problem)
        result = engine.verify(items[0].source(), items[1].source(), threshold=threshold, fmr=fmr)
    except FaceledgerError as exc:
        which = _failing(exc, items)
        empty = {"similarity": None, "match": None, "threshold": threshold, "fmr": fmr, "faces": None}
        _failed(out, which, exc, **empty)
        sys.exit(EXIT_FAILED)
    out.show(Compared(result))


def _failing(exc: BaseException, items: Sequence[ImageArg]) -> ImageArg:
    """Which of ``items`` ``exc`` is about: the one it names (the engine calls an input that is not a path
    ``<image>``, and only standard input is not a path here)."""
    text = str(exc)
    for item in items:
        if getattr(exc, "source", None) == item.name or text.startswith(f"{item.name}: "):
            return item
    piped = [item for item in items if item.data is not None]
    return piped[0] if piped and text.startswith("<image>: ") else items[0]


@click.command("anonymize")
@click.argument("images", nargs=-1, required=True)
@recursive_option
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(),
    help="Folder for the anonymized copies of images (created; originals are never modified), or the output file "
    "for one video.",
)
@click.option("--method", type=click.Choice(["blur", "pixelate", "fill"]), default="blur", show_default=True)
@click.option(
    "--keep",
    "keep",
    multiple=True,
    type=click.IntRange(min=0),
    help="Index of a face to leave visible (largest face is 0); repeatable.",
)
@json_option("One JSON object per image on stdout.")
@engine_options
def anonymize(
    images: tuple[str, ...],
    recursive: bool,
    out_dir: str,
    method: str,
    keep: tuple[int, ...],
    as_json: bool,
    **engine_kw: Any,
) -> None:
    """Blur, pixelate or fill every face in IMAGES and write the copies to --out.

    IMAGES are image files, - for one image read from standard input (its copy is stdin.anonymized.png), or
    folders with --recursive. JSON per image: {"image", "output", "faces", "hidden", "error"}; an image that
    failed has "output": null and "error" the reason, and is named on stderr.

    A video (`faceledger anonymize clip.mp4 --out blurred.mp4`) is written as one file with every face hidden in
    every frame: faces are tracked, so a face the detector misses for a few frames stays hidden; audio is copied.
    """
    engine = make_engine(**engine_kw)
    if _videos(images):
        from faceledger.interfaces.cli.video import anonymize_video

        if len(images) != 1 or keep:
            fail("anonymize takes one video at a time, with --out FILE and no --keep", EXIT_USAGE)
        anonymize_video(engine, images[0], out_dir, method, as_json)
        return
    items = expand(images, recursive=recursive)
    out = Output(as_json)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    failed = 0
    names = OutputNames()
    empty: dict[str, Any] = {"output": None, "faces": 0, "hidden": 0}
    for item in progress(items, "anonymize"):
        try:
            if item.problem:
                raise ImageError(item.name, item.problem)
            array = engine.load(item.source())
            faces = engine.detect(array)
            kept = [i for i in keep if i < len(faces)]
            beyond = sorted(set(keep) - set(kept))
            if beyond:
                found = f"faces 0-{len(faces) - 1}" if len(faces) else "no face"
                warn(f"{item.name}: --keep {', '.join(map(str, beyond))} ignored: {found} found")
            hidden = engine.anonymize(array, keep=kept, method=method, detections=faces)
        except FaceledgerError as exc:
            failed += 1
            _failed(out, item, exc, **empty)
            continue
        target = names.next(folder, item.name, ".anonymized", _suffix(item.name))
        if not cv2.imwrite(str(target), hidden):
            failed += 1
            out.failed_image(item.name, f"could not write its anonymized copy {target}", **empty)
            continue
        out.show(Anonymized(item.name, str(target), len(faces), len(faces) - len(kept)))
    _finish(failed)


def _videos(paths: Sequence[str]) -> bool:
    """Whether the inputs are video files (by suffix, confirmed by probing the first)."""
    if not any(Path(p).suffix.lower() in VIDEO_SUFFIXES for p in paths):
        return False
    from faceledger.vision.video import is_video_file

    return any(is_video_file(p) for p in paths if Path(p).suffix.lower() in VIDEO_SUFFIXES)


def video_hint(path: str) -> str:
    """What to run instead when an image command is given a video file ('' for anything else)."""
    if not _videos([path]):
        return ""
    return "; it is a video: `faceledger track` follows its faces, `faceledger watch` identifies them"


def _suffix(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return suffix if suffix in {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"} else ".png"


register = registrar(detect, embed, verify, anonymize)
