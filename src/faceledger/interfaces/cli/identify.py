"""Searches: ``identify`` (1:N against the gallery) and ``verify-subject`` (1:1 against one enrolled subject)."""

from __future__ import annotations

from pathlib import Path

import click

from faceledger.errors import FaceledgerError, ImageError, NoFaceError
from faceledger.gallery import Gallery
from faceledger.interfaces.cli.engine import video_hint
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
from faceledger.interfaces.cli.render import progress, reason_of

__all__ = ["identify_command", "register", "verify_subject_command"]


@click.command("identify")
@click.argument("images", nargs=-1, required=True)
@recursive_option
@click.option("--gallery", help="Gallery to search (default: the policy's only gallery).")
@click.option("--top-k", type=click.IntRange(1, 100), help="Candidates per face (default: the policy's top_k).")
@recognizer_option
@executor_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@gallery_command(who=PEOPLE)
def identify_command(
    g: Gallery,
    call: Call,
    images: tuple[str, ...],
    recursive: bool,
    gallery: str | None,
    top_k: int | None,
    executor: str,
    ray_address: str | None,
    workers: int | None,
    quiet: bool,
) -> None:
    """Search every face of each IMAGE against the gallery (1:N).

    IMAGES are image files, - for one image read from standard input (named <stdin>), or folders with
    --recursive. Per face: its box and the candidates at or above the policy threshold (``subject``,
    ``similarity``), pending human review. Faces that match no one are discarded and leave no trace. An image
    that failed is named on stderr and, with --json, is {"image", "faces": [], "error"}. The image work runs on
    --workers threads, or with --executor ray on Ray workers that see the same paths; each search and its
    ledger entry are made here, one per image, in the order given.
    """
    items = expand(images, recursive=recursive)
    if executor == "ray" and any(item.data is not None for item in items):
        raise click.UsageError("--executor ray reads images by path: standard input (-) cannot be sent to workers")
    failed = False
    with open_executor(executor, g.engine, workers, ray_address) as run:
        usable = (item.source() for item in items if not item.problem)
        results = g.identify_batch(
            usable, actor=call.actor, purpose=call.purpose, gallery=gallery, top_k=top_k, executor=run
        )
        for item in progress(items, "identifying", quiet):
            if item.problem:
                failed = True
                call.out.failed_image(item.name, item.problem, video_hint(item.name), faces=[])
                continue
            _, result = next(results)  # a purpose the policy refuses raises here, before any image is read
            if isinstance(result, FaceledgerError):
                failed = True
                about_image = isinstance(result, ImageError | NoFaceError)
                error = reason_of(result, item.name) if about_image else describe(result)
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
