"""Exceptions raised by faceledger.

Every error names what it is about (a file, a field, a subject) and says what to do next.
All of them derive from :class:`FaceledgerError`, so callers can catch one type.
"""

from __future__ import annotations


class FaceledgerError(Exception):
    """Base class of every error faceledger raises on purpose."""


class ImageError(FaceledgerError, ValueError):
    """An image could not be read: corrupt, truncated, not an image, empty, or too large.

    ``source`` names the file (or ``<bytes>``, ``<array>``, ``<stream>``) and ``reason`` says why.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")

    def __reduce__(self) -> tuple[type[ImageError], tuple[str, str]]:
        # pickled with its two fields (a batch worker returns it to the caller), not with the joined message
        return (type(self), (self.source, self.reason))


class VideoError(FaceledgerError, ValueError):
    """A video source or file cannot be opened, read or written; the message names it without credentials."""


class ModelError(FaceledgerError):
    """A model file is missing, damaged, or has a signature faceledger does not know how to run."""


class NoFaceError(FaceledgerError):
    """An operation needed a face and the image had none that passed the detector."""
