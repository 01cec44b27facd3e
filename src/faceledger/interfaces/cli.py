"""The ``faceledger`` command line.

Engine commands live here (``detect``, ``embed``, ``verify``, ``anonymize``, ``demo``); the gallery, evaluation and
service commands register themselves from their own modules. Conventions for every command: ``--help``; ``--json``
prints one JSON object per line with stable keys; a progress bar on stderr for many files; exit code 0 on success,
1 when some inputs failed (each named on stderr, the rest processed), 2 on a usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np
from tqdm import tqdm

from faceledger import __version__
from faceledger.errors import FaceledgerError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON object on one line of stdout."""
    click.echo(json.dumps(obj, ensure_ascii=False, allow_nan=False))


def warn(message: str) -> None:
    """Print a message for a person on stderr."""
    click.echo(message, err=True)


def progress(items: Sequence[Any], label: str) -> Iterator[Any]:
    """Iterate with a progress bar on stderr when there are several items and stderr is a terminal."""
    return iter(
        tqdm(items, desc=label, unit="img", disable=None if len(items) > 1 else True, file=sys.stderr)
    )


def run_many(engine: Any, func: Any, paths: Sequence[str], label: str) -> Iterator[tuple[str, Any]]:
    """``(path, result)`` for each path, computed on the engine's worker threads, with a progress bar.

    A :class:`FaceledgerError` (bad image, no face) is returned as the result, for the caller to report; any other
    exception is a bug and is raised.
    """
    results = engine.map(func, paths)
    for path in progress(paths, label):
        result = next(results)
        if isinstance(result, BaseException) and not isinstance(result, FaceledgerError):
            raise result
        yield path, result


def engine_options(func: Any) -> Any:
    """Options shared by the commands that run the engine."""
    options = [
        click.option(
            "--detector",
            type=click.Path(dir_okay=False),
            envvar="FACELEDGER_DETECTOR",
            help="YuNet-compatible ONNX detector file (default: bundled YuNet 2023mar).",
        ),
        click.option(
            "--recognizer",
            type=click.Path(dir_okay=False),
            envvar="FACELEDGER_RECOGNIZER",
            help="ArcFace-family ONNX recognizer file (default: bundled SFace 2021dec).",
        ),
        click.option(
            "--min-face",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="Ignore faces whose shorter side is smaller than this many pixels.",
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
    for option in reversed(options):
        func = option(func)
    return func


def make_engine(
    detector: str | None,
    recognizer: str | None,
    min_face: float,
    score_threshold: float,
    max_pixels: int | None,
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
        warn(f"error: {exc}")
        sys.exit(EXIT_USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceledger")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="Gallery database for the commands that use one (default: $FACELEDGER_DB or ./faceledger.db).")
def main(db: str | None) -> None:
    """faceledger: face recognition with consent, review, an audit ledger and provable erasure.

    Start with `faceledger demo`, then `faceledger detect IMAGE...` and `faceledger verify A B`.
    """


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout.")
@click.option(
    "--draw",
    type=click.Path(file_okay=False),
    default=None,
    help="Write a copy of each image with boxes and landmarks drawn into this folder.",
)
@engine_options
def detect(images: tuple[str, ...], as_json: bool, draw: str | None, **engine_kw: Any) -> None:
    """Find faces in IMAGES: boxes, detector scores, five landmarks and a quality score.

    JSON per image: {"image", "faces": [{"box": [x1,y1,x2,y2], "score", "landmarks": [[x,y] x5], "quality",
    "quality_reasons"}], "error"}.
    """
    engine = make_engine(**engine_kw)
    failed = 0

    def load_and_detect(path: str) -> tuple[np.ndarray | None, Any]:
        array = engine.load(path)
        return (array if draw else None), engine.detect(array)

    for path, result in run_many(engine, load_and_detect, images, "detect"):
        if isinstance(result, FaceledgerError):
            exc = result
            failed += 1
            warn(f"error: {exc}")
            if as_json:
                emit({"image": path, "faces": [], "error": str(getattr(exc, "reason", exc))})
            continue
        array, faces = result
        if as_json:
            emit({"image": path, "faces": faces.to_dicts(), "error": None})
        else:
            click.echo(f"{path}: {len(faces)} face(s)")
            for i, face in enumerate(faces):
                x1, y1, x2, y2 = (int(round(v)) for v in face.box)
                why = f"  ({', '.join(face.reasons)})" if face.reasons else ""
                click.echo(
                    f"  #{i} box=({x1},{y1},{x2},{y2}) score={face.score:.2f} quality={face.quality:.2f}{why}"
                )
        if draw and array is not None:
            out = Path(draw)
            out.mkdir(parents=True, exist_ok=True)
            target = out / (Path(path).stem + ".detected.jpg")
            cv2.imwrite(str(target), draw_faces(array, faces))
    sys.exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def draw_faces(image: np.ndarray, faces: Any) -> np.ndarray:
    """A copy of ``image`` with each face's box, index and landmarks drawn."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 200, 0), thickness)
        cv2.putText(
            out,
            f"#{i} {face.score:.2f}",
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            (0, 200, 0),
            thickness,
        )
        for x, y in face.landmarks:
            cv2.circle(out, (int(round(x)), int(round(y))), thickness + 1, (0, 0, 255), -1)
    return out


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per image on stdout (the only format)."
)
@engine_options
def embed(images: tuple[str, ...], as_json: bool, **engine_kw: Any) -> None:
    """Embeddings of every face in IMAGES (largest face first), as JSON lines.

    JSON per image: {"image", "faces": [{"box", "score", "landmarks", "quality", "embedding": [float...]}], "error"}.
    Embeddings are L2-normalised, so the similarity of two faces is their dot product.
    """
    engine = make_engine(**engine_kw)
    failed = 0
    for path, result in run_many(engine, engine.embed, images, "embed"):
        if isinstance(result, FaceledgerError):
            exc = result
            failed += 1
            warn(f"error: {exc}")
            emit({"image": path, "faces": [], "error": str(getattr(exc, "reason", exc))})
            continue
        faces = result.detections.to_dicts()
        for face, vector in zip(faces, result.vectors, strict=True):
            face["embedding"] = [float(v) for v in np.round(vector, 7)]
        emit({"image": path, "faces": faces, "error": None})
    sys.exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@main.command()
@click.argument("image_a", type=click.Path())
@click.argument("image_b", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
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

    JSON: {"similarity", "match", "threshold", "fmr"}; fmr is the false-match rate the threshold corresponds to.
    Exit code 0 when the comparison ran (match or not), 1 when an image could not be read or has no face.
    """
    engine = make_engine(**engine_kw)
    try:
        result = engine.verify(image_a, image_b, threshold=threshold, fmr=fmr)
    except FaceledgerError as exc:
        warn(f"error: {exc}")
        if as_json:
            emit({"similarity": None, "match": None, "threshold": threshold, "fmr": fmr, "error": str(exc)})
        sys.exit(EXIT_SOME_FAILED)
    if as_json:
        emit(result.to_dict())
    else:
        verdict = "same person" if result.match else "different people"
        fmr_text = f" (false-match rate {result.fmr:.1e})" if result.fmr is not None else ""
        click.echo(
            f"{verdict}: similarity {result.similarity:.3f}, threshold {result.threshold:.3f}{fmr_text}"
        )


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the anonymized copies (created; originals are never modified).",
)
@click.option("--method", type=click.Choice(["blur", "pixelate", "fill"]), default="blur", show_default=True)
@click.option(
    "--keep",
    "keep",
    multiple=True,
    type=click.IntRange(min=0),
    help="Index of a face to leave visible (largest face is 0); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout.")
@engine_options
def anonymize(
    images: tuple[str, ...], out_dir: str, method: str, keep: tuple[int, ...], as_json: bool, **engine_kw: Any
) -> None:
    """Blur, pixelate or fill every face in IMAGES and write the copies to --out."""
    engine = make_engine(**engine_kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in progress(images, "anonymize"):
        try:
            array = engine.load(path)
            faces = engine.detect(array)
            kept = [i for i in keep if i < len(faces)]
            hidden = engine.anonymize(array, keep=kept, method=method, detections=faces)
        except FaceledgerError as exc:
            failed += 1
            warn(f"error: {exc}")
            if as_json:
                emit({"image": path, "output": None, "faces": 0, "hidden": 0, "error": str(exc)})
            continue
        target = out / (Path(path).stem + ".anonymized" + _suffix(path))
        if not cv2.imwrite(str(target), hidden):
            failed += 1
            warn(f"error: {target}: could not write the anonymized image")
            continue
        record = {
            "image": path,
            "output": str(target),
            "faces": len(faces),
            "hidden": len(faces) - len(kept),
            "error": None,
        }
        if as_json:
            emit(record)
        else:
            click.echo(f"{path}: {record['hidden']} of {len(faces)} face(s) hidden -> {target}")
    sys.exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def _suffix(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return suffix if suffix in {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"} else ".png"


def example_path(name: str = "astronaut.jpg") -> Path:
    """Path of an image shipped with the package (see ``faceledger/examples/README.md``)."""
    return Path(str(resources.files("faceledger") / "examples" / name))


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="faceledger-demo", show_default=True,
              help="Folder for the demo's images and its SQLite database (replaced on each run).")
def demo(out_dir: str) -> None:
    """Run the whole job on the bundled example photo, printing each step.

    Engine: detect, draw, verify against a transformed copy, anonymize. Gallery on an embedded SQLite database
    in --out: consent, enrollment, an identification, its human review, the audit chain's verification, erasure.
    """
    from faceledger.engine import Engine

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine()
    photo = example_path()
    image = engine.load(photo)
    faces = engine.detect(image)
    click.echo(f"detect     {photo.name}: {len(faces)} face(s)")
    for face in faces:
        click.echo(f"           box={[int(v) for v in face.box]} score={face.score:.2f} quality={face.quality:.2f}")
    cv2.imwrite(str(out / "detected.jpg"), draw_faces(image, faces))
    # the same person in a different picture: mirrored, rotated, rescaled, darker
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 12, 0.8)
    other = cv2.convertScaleAbs(cv2.warpAffine(image[:, ::-1], matrix, (w, h), borderValue=(40, 40, 40)), alpha=0.7)
    probe = out / "transformed.jpg"
    cv2.imwrite(str(probe), other)
    same = engine.verify(image, other)
    click.echo(
        f"verify     astronaut vs transformed copy: similarity {same.similarity:.3f} -> "
        f"{'match' if same.match else 'no match'} (threshold {same.threshold:.3f}, FMR {same.fmr:.0e})"
    )
    hidden = engine.anonymize(image, detections=faces)
    cv2.imwrite(str(out / "anonymized.jpg"), hidden)
    check = engine.compare(engine.embed_faces(image, faces[:1])[0], engine.embed_faces(hidden, faces[:1])[0])
    click.echo(f"anonymize  {len(faces)} face(s) blurred; blurred vs original similarity {check.similarity:.3f}")
    _demo_gallery(engine, out, photo, probe)
    click.echo(f"files in {out}/: detected.jpg, transformed.jpg, anonymized.jpg, demo.db (+ demo.db.key)")


def _demo_gallery(engine: Any, out: Path, photo: Path, probe: Path) -> None:
    """The accountable half of the demo: every step below is an entry on the audit chain."""
    from faceledger.gallery import Gallery

    db = out / "demo.db"
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.key")):
        stale.unlink(missing_ok=True)
    with Gallery.init(db, actor="demo-admin", engine=engine) as gallery:
        policy = gallery.policy.policy
        place = policy.galleries[0]
        purpose = place.purposes[0]
        click.echo(
            f"init       {db} (policy {gallery.policy.hash[:12]}..., gallery {place.name!r}, "
            f"threshold {gallery.threshold():.3f} for FMR {policy.identification.target_fmr:g})"
        )
        consent = gallery.add_consent(
            "eileen-collins", actor="demo-enroller", collected_by="front desk", legal_basis="explicit consent",
            purpose=purpose, evidence_ref="form-0001 (signed, kept on paper)", gallery=place.name,
        )
        click.echo(f"consent    eileen-collins for {purpose!r} recorded ({consent.id})")
        enrolled = gallery.enroll(
            "eileen-collins", [str(photo)], actor="demo-enroller", purpose=purpose, gallery=place.name
        )
        click.echo(f"enroll     eileen-collins: {enrolled.templates_total} encrypted template(s)")
        found = gallery.identify(str(probe), actor="demo-operator", purpose=purpose, gallery=place.name)
        candidate = None
        for face in found.faces:
            names = ", ".join(f"{c.subject} ({c.similarity:.3f})" for c in face.candidates) or "nobody (discarded)"
            click.echo(f"identify   face at {[int(v) for v in face.box]}: {names}")
            candidate = candidate or (face.candidates[0] if face.candidates else None)
        if candidate is not None:
            outcome = gallery.review(
                candidate.candidate_id, reviewer="demo-reviewer", decision="confirm",
                reason="same person as the enrollment photo", purpose=purpose,
            )
            click.echo(
                f"review     confirmed by demo-reviewer ({outcome.confirmations}/{outcome.required} "
                f"reviewer(s)): status {outcome.candidate.status}"
            )
        receipt = gallery.erase("eileen-collins", actor="demo-admin", purpose=purpose, reason="demo finished")
        click.echo(
            f"erase      {receipt.templates_destroyed} template(s) and the subject key destroyed; "
            f"receipt = audit entry {receipt.audit_seq}"
        )
        again = gallery.identify(str(probe), actor="demo-operator", purpose=purpose, gallery=place.name)
        click.echo(f"identify   after erasure: {sum(len(f.candidates) for f in again.faces)} candidate(s)")
        verified = gallery.audit_verify()
        head = verified.head
        click.echo(
            f"audit      {verified.entries} entries, chain {'verifies' if verified.ok else 'BROKEN'}; "
            f"head {head.hash[:16] if head else '-'}... (`faceledger audit head --db {db}` prints it)"
        )


def _register_extensions() -> None:
    """Add the command groups that live in their own modules."""
    from faceledger.interfaces import cli_evaluate, cli_gallery, cli_serve

    cli_gallery.register(main)
    cli_evaluate.register(main)
    cli_serve.register(main)


_register_extensions()


if __name__ == "__main__":  # pragma: no cover
    main()
