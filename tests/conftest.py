"""Shared fixtures: where the real face photos are, and a manifest reader.

The development face set lives outside the repository (``../shared/data/faces`` from the project root, or the folder
named by ``FACELEDGER_FACES``). Tests that need it use the ``faces_dir`` fixture: they skip on a developer machine
without the folder, but in CI (``CI=true``) a missing folder is an error, so CI never passes by skipping them.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _faces_path() -> Path:
    env = os.environ.get("FACELEDGER_FACES")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "faces"


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class ManifestRow:
    """One row of ``manifest.csv``: absolute path, identity ('' when unlabeled), source, expected face count."""

    path: Path
    identity: str
    source: str
    n_faces: int


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The shared face photo folder; fails in CI when missing, skips elsewhere."""
    path = _faces_path()
    if not (path / "manifest.csv").is_file():
        message = f"shared face data not found at {path} (set FACELEDGER_FACES)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def manifest(faces_dir: Path) -> list[ManifestRow]:
    """All rows of the shared manifest, paths made absolute."""
    with open(faces_dir / "manifest.csv", newline="") as handle:
        return [
            ManifestRow(faces_dir / row["path"], row["identity"], row["source"], int(row["n_faces_expected"]))
            for row in csv.DictReader(handle)
        ]
