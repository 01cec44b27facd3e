"""The image arguments of the commands that take images: files, folders (``--recursive``) and ``-`` (stdin).

``detect``, ``embed``, ``anonymize``, ``identify`` and ``enroll`` take IMAGE...; ``verify`` takes two. Each
argument becomes one or more :class:`ImageArg`, in the order given:

* a file is itself, whatever its suffix (the loader says when it is not an image, and the commands add a hint for
  a video);
* ``-`` is one image read from standard input, read once and named ``<stdin>`` in every output (at most one ``-``
  per command);
* a folder, with ``--recursive``, is the image files inside it and inside its subfolders, sorted by path. Only
  files whose suffix is an image's (:data:`IMAGE_SUFFIXES`) are taken; hidden files and folders (names starting
  with ``.``) are left out, and so are video files, each with a note (``watch`` and ``anonymize`` take videos).
  Without ``--recursive`` a folder is reported (``a folder: use --recursive``) and skipped, the rest processed.

An argument that cannot be used carries its ``problem``; the commands report it like an image that failed.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from faceledger.evaluate.datasets import IMAGE_SUFFIXES
from faceledger.imageio import DEFAULT_MAX_BYTES, ENV_MAX_BYTES
from faceledger.interfaces.cli.render import warn

__all__ = [
    "IMAGE_SUFFIXES",
    "STDIN",
    "STDIN_NAME",
    "VIDEO_SUFFIXES",
    "ImageArg",
    "expand",
    "recursive_option",
]

STDIN = "-"
"""The argument that stands for standard input."""

STDIN_NAME = "<stdin>"
"""What outputs call the image read from standard input."""

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mjpeg", ".mjpg"})
"""Suffixes of the video files the image commands point to ``watch``, ``track`` and ``anonymize`` for."""

FOLDER = "a folder: use --recursive for the images inside it"
NO_IMAGES = "a folder with no image files (" + ", ".join(sorted(IMAGE_SUFFIXES)) + ")"
EMPTY_STDIN = "nothing on standard input: pipe or redirect an image in (`- < photo.jpg`)"
VIDEO_NOTE = (
    "a video, skipped: `faceledger watch` identifies the faces of a video, `faceledger anonymize VIDEO --out FILE` "
    "hides them"
)

recursive_option = click.option(
    "--recursive",
    "-r",
    is_flag=True,
    help="A folder among the images stands for the image files inside it and its subfolders (sorted; hidden files "
    "and videos left out). Without it a folder is reported and skipped.",
)
"""``--recursive`` (parameter ``recursive``) of the commands that take image paths."""


@dataclass(frozen=True)
class ImageArg:
    """One image to process: a path as given, or the bytes read from standard input."""

    name: str
    """How outputs name it: the path as given (or found in a folder), or ``<stdin>``."""
    data: bytes | None = None
    """The bytes read from standard input (None for a path)."""
    problem: str | None = None
    """Why it is not processed (a folder without ``--recursive``, a folder without images)."""

    def source(self) -> Any:
        """What to hand the engine or the gallery: the path, or a fresh in-memory stream of stdin's bytes named
        ``<stdin>`` (so their messages and results name it so)."""
        if self.data is None:
            return self.name
        stream = io.BytesIO(self.data)
        stream.name = STDIN_NAME
        return stream


def expand(args: Sequence[str | os.PathLike[str]], *, recursive: bool = False, folders: bool = True) -> list[ImageArg]:
    """The images the arguments stand for (see the module); a usage error for ``-`` given twice, or ``-`` with
    nothing piped in. ``folders=False``: a command that takes no folder (``verify``) gets a folder as a path, for
    the loader to refuse."""
    texts = [os.fspath(arg) for arg in args]
    if texts.count(STDIN) > 1:
        raise click.UsageError("- (standard input) can be given only once")
    found: list[ImageArg] = []
    for text in texts:
        if text == STDIN:
            data = _read_stdin()
            found.append(ImageArg(STDIN_NAME, data=data, problem=None if data else EMPTY_STDIN))
        elif not folders or not os.path.isdir(text):
            found.append(ImageArg(text))
        elif not recursive:
            found.append(ImageArg(text, problem=FOLDER))
        else:
            inside = _images_in(text)
            found.extend(inside or [ImageArg(text, problem=NO_IMAGES)])
    return found


def _images_in(folder: str) -> list[ImageArg]:
    """The image files under ``folder``, sorted by path; hidden entries left out, each video noted on stderr."""
    images: list[str] = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            suffix = os.path.splitext(name)[1].lower()
            path = os.path.join(top, name)
            if suffix in IMAGE_SUFFIXES and os.path.isfile(path):
                images.append(path)
            elif suffix in VIDEO_SUFFIXES:
                warn(f"{path}: {VIDEO_NOTE}")
    return [ImageArg(path) for path in sorted(images, key=lambda p: Path(p).parts)]


def _read_stdin() -> bytes:
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None or stream.isatty():
        raise click.UsageError("- reads one image from standard input: pipe or redirect one in (`< photo.jpg`)")
    # at most one byte more than the loader accepts: a larger input is refused by it without filling the memory
    return stream.read(_byte_limit() + 1)


def _byte_limit() -> int:
    raw = os.environ.get(ENV_MAX_BYTES, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_BYTES
