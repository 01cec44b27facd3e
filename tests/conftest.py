"""Shared fixtures: where the real face photos are, a manifest reader, and a PostgreSQL server.

The development face set lives outside the repository (``../shared/data/faces`` from the project root, or the folder
named by ``FACELEDGER_FACES``). Tests that need it use the ``faces_dir`` fixture: they skip on a developer machine
without the folder, but in CI (``CI=true``) a missing folder is an error, so CI never passes by skipping them.
The same holds for PostgreSQL: ``postgres_url`` is a fresh database on a real server (see tests/postgres.py).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
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
        if _ci():
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


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server for the session: ``FACELEDGER_TEST_POSTGRES`` (``.ci/run`` starts one), else a
    scratch server started here (tests/postgres.py). Without PostgreSQL it fails in CI and skips elsewhere."""
    given = os.environ.get("FACELEDGER_TEST_POSTGRES")
    if given:
        yield given
        return
    import postgres

    if postgres.binaries() is None:
        message = "PostgreSQL is not installed (apt-get install postgresql), and FACELEDGER_TEST_POSTGRES is not set"
        if _ci():
            pytest.fail(message)
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="faceledger-pg-"))
    try:
        yield postgres.start(folder)
    finally:
        postgres.stop(folder)


def new_database(server: str) -> str:
    """The URL of a new, empty database on the PostgreSQL ``server``."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's PostgreSQL server, for one test."""
    return new_database(postgres_server)


@dataclass(frozen=True)
class GalleryLocation:
    """Where a test's gallery lives (an SQLite file, or a new database on the PostgreSQL server) and its master key."""

    location: str
    key_file: Path


@pytest.fixture(params=["sqlite", "postgresql"])
def gallery_location(request: pytest.FixtureRequest, tmp_path: Path) -> GalleryLocation:
    """Each test that takes it runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return GalleryLocation(str(tmp_path / "g.db"), tmp_path / "g.db.key")
    return GalleryLocation(str(request.getfixturevalue("postgres_url")), tmp_path / "master.key")
