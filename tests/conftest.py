"""Shared fixtures: where the real face photos are, a manifest reader, and a PostgreSQL server.

The development face set lives outside the repository (``../shared/data/faces`` from the project root, or the folder
named by ``FACELEDGER_FACES``). Tests that need it use the ``faces_dir`` fixture: they skip on a developer machine
without the folder, but in CI (``CI=true``) a missing folder is an error, so CI never passes by skipping them.
The same holds for PostgreSQL: ``postgres_url`` is a fresh database on a real server (see tests/postgres.py).
"""

from __future__ import annotations

import contextlib
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
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _faces_path() -> Path:
    env = os.environ.get("FACELEDGER_FACES")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "faces"


@contextlib.contextmanager
def detector_passes(engine: Any) -> Iterator[list[tuple[int, ...]]]:
    """The sizes of the images ``engine``'s detector network runs on inside the block, filled as it runs."""
    sizes: list[tuple[int, ...]] = []
    run_once = engine.detector.run_once

    def recording(crop: Any, threshold: float) -> Any:
        sizes.append(crop.shape[:2])
        return run_once(crop, threshold)

    engine.detector.run_once = recording
    try:
        yield sizes
    finally:
        del engine.detector.run_once  # the class's method again


def load_script(path: Path) -> ModuleType:
    """One of the project's scripts (``benchmarks/``, ``scripts/``: folders of scripts, not packages) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def card_threshold(name: str, fmr: float = 1e-3) -> float:
    """The threshold for ``fmr`` in the calibration of the bundled card ``name``."""
    from faceledger.models import bundled_card

    calibration = bundled_card(name).calibration
    assert calibration is not None
    return calibration.threshold_for_fmr(fmr)


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module."""
    return load_script(ROOT / "benchmarks" / f"{name}.py")


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


def new_database(server: str, template: str | None = None) -> str:
    """The URL of a new, empty database on the PostgreSQL ``server``; with ``template`` (the URL of a database on it
    that nobody is connected to), a copy of that database."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    copy = "" if template is None else f" TEMPLATE {template.rsplit('/', 1)[1]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}{copy}")
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's PostgreSQL server, for one test."""
    return new_database(postgres_server)


def is_postgres(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names a PostgreSQL database (else it is an SQLite file)."""
    return str(location).startswith(("postgresql://", "postgres://"))


def raw_sql(location: str | os.PathLike[str], statement: str, *params: object) -> list[tuple[object, ...]]:
    """Run one statement on the database at ``location`` outside faceledger, as an administrator or a tamperer
    would, in autocommit; ``?`` placeholders on both backends. Returns the rows (none for a statement without)."""
    if is_postgres(location):
        import psycopg

        with psycopg.connect(str(location), autocommit=True) as conn:
            cursor = conn.execute(statement.replace("?", "%s"), params or None)  # type: ignore[arg-type]
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    import sqlite3

    conn = sqlite3.connect(location, isolation_level=None)
    try:
        return [tuple(row) for row in conn.execute(statement, params).fetchall()]
    finally:
        conn.close()


def raw_sql_session(location: str | os.PathLike[str], *statements: str) -> None:
    """Run ``statements`` one after the other on one connection outside faceledger, in autocommit: for a setting
    that holds for the session only (foreign keys off, say) and the statements it is for."""
    if is_postgres(location):
        import psycopg

        with psycopg.connect(str(location), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]
        return
    import sqlite3

    conn = sqlite3.connect(location, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def drop_append_only(location: str | os.PathLike[str]) -> None:
    """Drop the trigger that keeps the audit table append-only (the first step of a tamperer with SQL access)."""
    raw_sql(location, "DROP TRIGGER audit_append_only" + (" ON audit" if is_postgres(location) else ""))


def stored_bytes(location: str | os.PathLike[str]) -> bytes:
    """What a database keeps of its data, for tests that look for bytes that must be gone. SQLite: the file, its WAL,
    shared-memory index and rollback journal, as on disk. PostgreSQL (whose files belong to the server, maybe on
    another host): every binary and text value of every table, what anyone with SQL access reads."""
    if not is_postgres(location):
        files = [Path(str(location) + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
        return b"".join(path.read_bytes() for path in files if path.exists())
    columns = raw_sql(location, "SELECT table_name, column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = 'public' AND data_type IN ('bytea', 'text')")  # fmt: skip
    parts = []
    for table, column, kind in columns:
        for (value,) in raw_sql(location, f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"):
            parts.append(bytes(value) if kind == "bytea" else str(value).encode())  # type: ignore[call-overload]
    return b"".join(parts)


@dataclass(frozen=True)
class GalleryLocation:
    """Where a test's gallery lives (an SQLite file, or a new database on the PostgreSQL server) and its master key."""

    location: str
    key_file: Path

    @property
    def postgres(self) -> bool:
        return is_postgres(self.location)

    def sql(self, statement: str, *params: object) -> list[tuple[object, ...]]:
        """:func:`raw_sql` on this gallery's database."""
        return raw_sql(self.location, statement, *params)

    def count(self, table: str) -> int:
        """The number of rows in ``table``."""
        return int(self.sql(f"SELECT COUNT(*) FROM {table}")[0][0])  # type: ignore[call-overload]


@pytest.fixture(params=["sqlite", "postgresql"])
def gallery_location(request: pytest.FixtureRequest, tmp_path: Path) -> GalleryLocation:
    """Each test that takes it runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return GalleryLocation(str(tmp_path / "g.db"), tmp_path / "g.db.key")
    return GalleryLocation(str(request.getfixturevalue("postgres_url")), tmp_path / "master.key")


def make_location(request: pytest.FixtureRequest, backend: str, folder: Path, name: str = "g.db") -> GalleryLocation:
    """A new gallery location in ``folder`` (``name`` on SQLite) or a new database on the session's PostgreSQL
    server (the master key in ``folder/master.key``), for fixtures of a wider scope than ``gallery_location``."""
    if backend == "sqlite":
        return GalleryLocation(str(folder / name), folder / f"{name}.key")
    return GalleryLocation(new_database(request.getfixturevalue("postgres_server")), folder / "master.key")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_gallery_location(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> GalleryLocation:
    """``gallery_location`` for a module-scoped fixture: the module's tests run on SQLite, then on PostgreSQL."""
    return make_location(request, str(request.param), tmp_path_factory.mktemp(str(request.param)))
