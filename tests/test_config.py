"""One place resolves where the database and the master key are: paths, sqlite:/// URLs, the environment, and clear
refusals for what faceledger cannot open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faceledger import Gallery, config
from faceledger.config import ConfigError, database, key_file
from faceledger.ledger.errors import AlreadyInitialisedError, DatabaseMissingError, NotInitialisedError
from faceledger.ledger.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("staff.db", Path("staff.db")),
        ("/var/lib/faceledger/staff.db", Path("/var/lib/faceledger/staff.db")),
        ("sqlite:///staff.db", Path("staff.db")),
        ("sqlite:///data/staff.db", Path("data/staff.db")),
        ("sqlite:////var/lib/faceledger/staff.db", Path("/var/lib/faceledger/staff.db")),
        ("SQLite:///staff.db", Path("staff.db")),
        (Path("x/y.db"), Path("x/y.db")),
    ],
)
def test_database_locations(given: str | Path, path: Path) -> None:
    db = database(given, environ={})
    assert db.backend == "sqlite" and db.path == path and str(db) == str(given)


def test_default_and_environment() -> None:
    assert database(None, environ={}).path == Path("faceledger.db")
    assert database(None, environ={config.DB_ENV: "sqlite:////srv/g.db"}).path == Path("/srv/g.db")
    assert database("own.db", environ={config.DB_ENV: "other.db"}).path == Path("own.db")  # an argument wins


def test_key_file_precedence() -> None:
    assert key_file("sqlite:////srv/g.db", environ={}) == Path("/srv/g.db.key")
    assert key_file("g.db", environ={config.KEY_FILE_ENV: "/keys/g.key"}) == Path("/keys/g.key")
    assert key_file("g.db", "mine.key", environ={config.KEY_FILE_ENV: "/keys/g.key"}) == Path("mine.key")
    assert key_file(None, environ={config.DB_ENV: "d/e.db"}) == Path("d/e.db.key")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "empty"),
        ("sqlite://staff.db", "three slashes"),
        ("sqlite:///", "three slashes"),
        ("mysql://root@localhost/faces", "'mysql' is not supported"),
    ],
)
def test_refusals_say_what_is_expected(given: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        database(given, environ={})


def test_a_password_in_a_url_is_not_repeated() -> None:
    with pytest.raises(ConfigError) as caught:
        database("mysql://faceledger:s3cret@db.example/gallery", environ={})
    assert "s3cret" not in str(caught.value) and "faceledger:***@" in str(caught.value)
    server = database("postgresql://faceledger:s3cret@db.example/gallery", environ={})
    assert server.backend == "postgresql" and server.url == "postgresql://faceledger:s3cret@db.example/gallery"
    assert str(server) == "postgresql://faceledger:***@db.example/gallery" and server.path is None


def test_a_server_database_needs_its_key_file_named() -> None:
    url = "postgres://faceledger@db.example/gallery"  # libpq's short scheme is accepted too
    assert database(url, environ={}).backend == "postgresql"
    with pytest.raises(ConfigError, match="FACELEDGER_KEY_FILE"):
        key_file(url, environ={})
    assert key_file(url, "/etc/faceledger/master.key", environ={}) == Path("/etc/faceledger/master.key")
    assert key_file(url, environ={"FACELEDGER_KEY_FILE": "k.key"}) == Path("k.key")
    with pytest.raises(ConfigError, match="not a file"):
        os.fspath(database(url, environ={}))
    with pytest.raises(ConfigError, match="DATABASE"):
        database("postgresql://", environ={})


def test_gallery_opens_a_url_and_the_path_alike(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/g.db"  # tmp_path is absolute, so this is sqlite:////tmp/...
    Gallery.init(url, actor="admin").close()
    assert (tmp_path / "g.db").is_file() and (tmp_path / "g.db.key").is_file()
    with Gallery.open(tmp_path / "g.db") as g:
        assert isinstance(g.store.inner, SQLiteStore) and g.key_file == tmp_path / "g.db.key"
        assert g.audit_verify().ok
    with pytest.raises(AlreadyInitialisedError) as again:
        Gallery.init(url, actor="admin")
    assert again.value.location == url


def test_missing_and_uninitialised_databases_are_typed(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissingError) as missing:
        Gallery.open(tmp_path / "none.db")
    assert missing.value.location == str(tmp_path / "none.db") and "--" not in str(missing.value)
    SQLiteStore.open(tmp_path / "empty.db", create=True).close()
    with pytest.raises(NotInitialisedError, match="not initialised"):
        Gallery.open(tmp_path / "empty.db")
