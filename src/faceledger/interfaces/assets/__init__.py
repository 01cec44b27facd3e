"""Static files the service serves at ``/assets``, shipped in the package so that nothing is fetched from the
internet at run time.

``vendor/`` holds third-party browser assets copied unmodified from their npm packages (Swagger UI and ReDoc
for ``/docs`` and ``/redoc``, htmx for the web UI), each with its licence; ``vendor/VENDORED.md`` lists their
versions and SHA-256. ``scripts/vendor_assets.py`` reproduces them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["ASSETS_DIR", "assets_dir"]


def assets_dir() -> Path:
    """The folder of this package on disk (the service mounts it at ``/assets``)."""
    folder = files(__name__)
    if not isinstance(folder, Path):
        raise RuntimeError(f"faceledger's assets are not a folder on disk ({folder}); install the package unzipped")
    return folder


ASSETS_DIR = assets_dir()
