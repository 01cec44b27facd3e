"""``faceledger demo``: the whole job on the bundled example photo, each step printed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import click
import cv2

from faceledger.interfaces.cli.engine import draw_faces
from faceledger.interfaces.cli.options import registrar

__all__ = ["demo", "example_path", "register"]


def example_path(name: str = "astronaut.jpg") -> Path:
    """Path of an image shipped with the package (see ``faceledger/examples/README.md``)."""
    return Path(str(resources.files("faceledger") / "examples" / name))


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="faceledger-demo",
    show_default=True,
    help="Folder for the demo's images and its SQLite database (replaced on each run).",
)
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
    click.echo(
        f"files in {out}/: detected.jpg, transformed.jpg, anonymized.jpg, demo.db (+ demo.db.key, demo.db.signing.key)"
    )


def _demo_gallery(engine: Any, out: Path, photo: Path, probe: Path) -> None:
    """The accountable half of the demo: every step below is an entry on the audit chain."""
    from faceledger.gallery import Gallery

    db = out / "demo.db"
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.key"), Path(f"{db}.signing.key")):
        stale.unlink(missing_ok=True)
    # Its own key file beside its own database, whatever FACELEDGER_KEY_FILE names: the demo touches nothing else.
    with Gallery.init(db, actor="demo-admin", engine=engine, key_file=Path(f"{db}.key")) as gallery:
        policy = gallery.policy.policy
        place = policy.galleries[0]
        purpose = place.purposes[0]
        click.echo(
            f"init       {db} (policy {gallery.policy.hash[:12]}..., gallery {place.name!r}, "
            f"threshold {gallery.threshold():.3f} for FMR {policy.identification.target_fmr:g})"
        )
        consent = gallery.add_consent(
            "eileen-collins",
            actor="demo-enroller",
            collected_by="front desk",
            legal_basis="explicit consent",
            purpose=purpose,
            evidence_ref="form-0001 (signed, kept on paper)",
            gallery=place.name,
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
                candidate.candidate_id,
                reviewer="demo-reviewer",
                decision="confirm",
                reason="same person as the enrollment photo",
                purpose=purpose,
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


register = registrar(demo)
