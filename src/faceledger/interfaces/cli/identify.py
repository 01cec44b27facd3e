"""Searches: ``identify`` (1:N against the gallery) and ``verify-subject`` (1:1 against one enrolled subject)."""

from __future__ import annotations

from pathlib import Path

import click

from faceledger.errors import FaceledgerError, ImageError, NoFaceError
from faceledger.gallery import Gallery
from faceledger.interfaces.cli.engine import video_hint
from faceledger.interfaces.cli.inputs import expand, recursive_option
from faceledger.interfaces.cli.options import PEOPLE, Call, describe, gallery_command, recognizer_option, registrar
from faceledger.interfaces.cli.render import progress, reason_of
from faceledger.ledger.errors import AccountabilityError, PurposeError

__all__ = ["identify_command", "register", "verify_subject_command"]


@click.command("identify")
@click.argument("images", nargs=-1, required=True)
@recursive_option
@click.option("--gallery", help="Gallery to search (default: the policy's only gallery).")
@click.option("--top-k", type=click.IntRange(1, 100), help="Candidates per face (default: the policy's top_k).")
@recognizer_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@gallery_command(who=PEOPLE)
def identify_command(
    g: Gallery,
    call: Call,
    images: tuple[str, ...],
    recursive: bool,
    gallery: str | None,
    top_k: int | None,
    quiet: bool,
) -> None:
    """Search every face of each IMAGE against the gallery (1:N).

    IMAGES are image files, - for one image read from standard input (named <stdin>), or folders with
    --recursive. Per face: its box and the candidates at or above the policy threshold (``subject``,
    ``similarity``), pending human review. Faces that match no one are discarded and leave no trace. An image
    that failed is named on stderr and, with --json, is {"image", "faces": [], "error"}.
    """
    failed = False
    for item in progress(expand(images, recursive=recursive), "identifying", quiet):
        try:
            if item.problem:
                raise ImageError(item.name, item.problem)
            result = g.identify(item.source(), actor=call.actor, purpose=call.purpose, gallery=gallery, top_k=top_k)
        except (AccountabilityError, PurposeError):
            raise  # the same for every image: a usage error
        except (FaceledgerError, OSError) as exc:
            failed = True
            about_image = isinstance(exc, ImageError | NoFaceError | OSError)
            error = reason_of(exc, item.name) if about_image else describe(exc)
            call.out.failed_image(item.name, error, video_hint(item.name), faces=[])
            continue
        call.out.show(result)
    if failed:
        raise SystemExit(1)


@click.command("verify-subject")
@click.argument("subject")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gallery", help="Gallery of the subject (default: the policy's only gallery).")
@recognizer_option
@gallery_command(who=PEOPLE)
def verify_subject_command(g: Gallery, call: Call, subject: str, image: Path, gallery: str | None) -> None:
    """1:1: is the largest face in IMAGE the enrolled SUBJECT? (recorded on the ledger)"""
    call.out.show(g.verify_subject(subject, image, actor=call.actor, purpose=call.purpose, gallery=gallery))


register = registrar(identify_command, verify_subject_command)
