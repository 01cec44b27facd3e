"""The gallery's subjects: ``enroll``, ``enroll-batch``, ``subjects`` and ``erase``."""

from __future__ import annotations

import csv
from pathlib import Path

import click

from faceledger.errors import FaceledgerError
from faceledger.gallery import Gallery
from faceledger.interfaces.cli.inputs import expand, recursive_option
from faceledger.interfaces.cli.options import (
    PEOPLE,
    Call,
    describe,
    executor_options,
    gallery_command,
    open_executor,
    recognizer_option,
    registrar,
)
from faceledger.interfaces.cli.render import progress

__all__ = ["enroll_batch_command", "enroll_command", "erase_command", "register", "subjects_command"]


@click.command("enroll")
@click.argument("subject")
@click.argument("images", nargs=-1, required=True)
@recursive_option
@click.option("--consent", "consent_id", help="Consent record to rely on (default: the valid one for --purpose).")
@click.option("--face", "face_index", type=int, help="Face to enroll when an image has several (0 = largest).")
@click.option("--gallery", help="Gallery (default: the policy's only gallery).")
@recognizer_option
@gallery_command(who=PEOPLE)
def enroll_command(
    g: Gallery,
    call: Call,
    subject: str,
    images: tuple[str, ...],
    recursive: bool,
    consent_id: str | None,
    face_index: int | None,
    gallery: str | None,
) -> None:
    """Enroll SUBJECT from one or more IMAGES (one transaction; needs a valid consent).

    IMAGES are image files, - for one image read from standard input (named <stdin>), or folders with
    --recursive. Each image must show exactly one usable face (or use --face). Images already enrolled are
    skipped, so rerunning resumes. Exit code 1 when an image was rejected (named on stderr) or consent is
    missing. With --json, an argument that was not enrolled from (a folder without --recursive) is
    {"image", "error"}, before the enrollment's own object.
    """
    items = expand(images, recursive=recursive)
    for item in items:
        if item.problem:
            call.out.failed_image(item.name, item.problem)
    usable = [item.source() for item in items if not item.problem]
    if not usable:
        raise SystemExit(1)
    result = g.enroll(
        subject,
        usable,
        actor=call.actor,
        purpose=call.purpose,
        gallery=gallery,
        consent_id=consent_id,
        face_index=face_index,
    )
    call.out.show(result)
    if result.rejected or len(usable) < len(items):
        raise SystemExit(1)


def _manifest(ctx: click.Context, param: click.Parameter, manifest: Path) -> dict[str, list[Path]]:
    """The images of each subject in a ``subject,image`` CSV (relative paths are relative to the CSV)."""
    groups: dict[str, list[Path]] = {}
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"subject", "image"} <= set(reader.fieldnames):
            raise click.BadParameter(f"{manifest}: needs the columns subject,image", param_hint="MANIFEST")
        for row in reader:
            image = Path(row["image"])
            groups.setdefault(row["subject"].strip(), []).append(
                image if image.is_absolute() else manifest.parent / image
            )
    return groups


@click.command("enroll-batch")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), callback=_manifest)
@click.option("--gallery", help="Gallery (default: the policy's only gallery).")
@recognizer_option
@executor_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@gallery_command(who=PEOPLE)
def enroll_batch_command(
    g: Gallery,
    call: Call,
    manifest: dict[str, list[Path]],
    gallery: str | None,
    executor: str,
    ray_address: str | None,
    workers: int | None,
    quiet: bool,
) -> None:
    """Enroll many subjects from a CSV with columns ``subject,image`` (paths relative to the CSV).

    One transaction per subject: an interruption leaves no half-enrolled subject, and running the same
    command again resumes where it stopped. The image work runs on --workers threads, or with --executor ray
    on Ray workers, which must see the same image paths; they return embeddings, and this process encrypts
    and commits them.
    """
    failed = False
    with open_executor(executor, g.engine, workers, ray_address) as run:
        results = g.enroll_batch(
            manifest.items(), actor=call.actor, purpose=call.purpose, gallery=gallery, executor=run
        )
        for subject, outcome in progress(results, "enrolling", quiet, total=len(manifest), unit="subject"):
            if isinstance(outcome, FaceledgerError):
                failed = True
                message = describe(outcome)
                call.out.failed(f"{subject}: {message}", {"subject": subject, "error": message})
                continue
            failed = failed or bool(outcome.rejected)
            call.out.show(outcome)
    if failed:
        raise SystemExit(1)


@click.command("subjects")
@click.option("--gallery", help="Only this gallery.")
@gallery_command(who=PEOPLE)
def subjects_command(g: Gallery, call: Call, gallery: str | None) -> None:
    """List enrolled subjects with their template count and consent state."""
    call.out.rows(g.subjects(actor=call.actor, purpose=call.purpose, gallery=gallery))


@click.command("erase")
@click.argument("subject")
@click.option("--reason", default="erasure request", show_default=True)
@gallery_command(who=PEOPLE, unknown="`faceledger subjects` lists them")
def erase_command(g: Gallery, call: Call, subject: str, reason: str) -> None:
    """Erase SUBJECT: templates and data key destroyed, space reclaimed, receipt on the ledger."""
    call.out.show(g.erase(subject, actor=call.actor, purpose=call.purpose, reason=reason))


register = registrar(enroll_command, enroll_batch_command, subjects_command, erase_command)
