"""Where faceledger finds its database and its master key, and which environment variables it reads.

This is the one place that resolves configuration; the gallery, the command line and the REST service all ask
it. A database location is a URL or a plain path:

>>> database("staff.db").path
PosixPath('staff.db')
>>> database("sqlite:///var/lib/faceledger/staff.db").path      # relative: sqlite:///PATH (three slashes)
PosixPath('var/lib/faceledger/staff.db')
>>> database("sqlite:////var/lib/faceledger/staff.db").path     # absolute: four slashes, as in SQLAlchemy
PosixPath('/var/lib/faceledger/staff.db')

SQLite is the embedded default. A PostgreSQL server is named by its URL (libpq's form, read by psycopg), and its
master key file must then be named too, since there is no database file to keep it beside:

>>> database("postgresql://faceledger@db.example/faceledger").backend
'postgresql'
>>> str(database("postgresql://faceledger:secret@db.example/faceledger"))   # shown in messages without the password
'postgresql://faceledger:***@db.example/faceledger'

Other URLs are refused with a clear error. This module imports nothing of faceledger but its errors, so every layer
may use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from faceledger.errors import FaceledgerError

DB_ENV = "FACELEDGER_DB"
"""Environment variable naming the database (a path or a URL; default ``./faceledger.db``)."""
KEY_FILE_ENV = "FACELEDGER_KEY_FILE"
"""Environment variable naming the master key file (default: the database file plus ``.key``)."""
MASTER_KEY_ENV = "FACELEDGER_MASTER_KEY"
"""Environment variable holding the master key itself (takes precedence over any key file)."""
ACTOR_ENV = "FACELEDGER_ACTOR"
"""Environment variable naming who acts, for the command line."""
PURPOSE_ENV = "FACELEDGER_PURPOSE"
"""Environment variable naming why, for the command line."""
DETECTOR_ENV = "FACELEDGER_DETECTOR"
RECOGNIZER_ENV = "FACELEDGER_RECOGNIZER"
THREADS_ENV = "FACELEDGER_THREADS"

DEFAULT_DB = "faceledger.db"
"""The database used when neither an argument nor ``FACELEDGER_DB`` names one (in the working folder)."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
_ALIASES = {"postgres": "postgresql"}


class ConfigError(FaceledgerError, ValueError):
    """A database location or another setting cannot be understood; the message says what was expected."""


@dataclass(frozen=True)
class Database:
    """A parsed database location: which backend, and for SQLite the file.

    ``text`` is what the caller gave, ``url`` the normalised form (``sqlite:///PATH``, or the PostgreSQL URL as
    given); ``str()`` is what messages show (a PostgreSQL URL without its password). ``path`` is None for
    PostgreSQL.
    """

    backend: str
    text: str
    path: Path | None

    @property
    def url(self) -> str:
        """``sqlite:///`` followed by the path (a relative path stays relative), or the server's URL."""
        return f"sqlite:///{self.path}" if self.path is not None else self.text

    @property
    def file(self) -> Path:
        """The SQLite file; a :class:`ConfigError` for a server database, which has none."""
        if self.path is None:
            raise ConfigError(f"{self}: a {_BACKENDS[self.backend]} database is not a file")
        return self.path

    def __str__(self) -> str:
        return _redact(self.text)

    def __fspath__(self) -> str:
        return os.fspath(self.file)


def database(
    value: str | os.PathLike[str] | Database | None = None, environ: Mapping[str, str] | None = None
) -> Database:
    """The database to use: ``value``, else ``FACELEDGER_DB``, else ``./faceledger.db``.

    ``value`` is a path or a URL (``sqlite:///relative.db``, ``sqlite:////absolute.db``). Raises
    :class:`ConfigError` for an empty value or a backend faceledger does not have.
    """
    if isinstance(value, Database):
        return value
    env = os.environ if environ is None else environ
    text = os.fspath(value) if value is not None else (env.get(DB_ENV) or DEFAULT_DB)
    if not text.strip():
        raise ConfigError("the database location is empty: give a path or a URL such as sqlite:///faceledger.db")
    match = _SCHEME.match(text)
    if match is None:
        return Database("sqlite", text, Path(text))
    scheme = _ALIASES.get(match.group(1).lower(), match.group(1).lower())
    if scheme not in _BACKENDS:
        raise ConfigError(
            f"{_redact(text)}: database backend {scheme!r} is not supported; use a path, sqlite:///PATH or "
            "postgresql://USER@HOST/DATABASE"
        )
    rest = text[match.end() :]
    if scheme == "postgresql":
        if not rest.strip("/"):
            raise ConfigError(f"{_redact(text)}: a PostgreSQL URL is postgresql://USER@HOST[:PORT]/DATABASE")
        return Database(scheme, text, None)
    if not rest.startswith("/") or len(rest) < 2:
        raise ConfigError(f"{text}: an SQLite URL is sqlite:///PATH (three slashes, then the file)")
    return Database(scheme, text, Path(rest[1:]))


def key_file(
    db: str | os.PathLike[str] | Database | None = None,
    value: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The master key file: ``value``, else ``FACELEDGER_KEY_FILE``, else the database file plus ``.key``.

    (``FACELEDGER_MASTER_KEY``, when set, is used instead of any file: see :mod:`faceledger.ledger.crypto`.)
    """
    if value is not None:
        return Path(value)
    env = os.environ if environ is None else environ
    if env.get(KEY_FILE_ENV):
        return Path(env[KEY_FILE_ENV])
    location = database(db, env)
    if location.path is None:
        raise ConfigError(
            f"{location}: a server database has no file beside which to keep the master key; "
            f"give the key file (--key-file PATH) or set {KEY_FILE_ENV}"
        )
    return Path(os.fspath(location.path) + ".key")


def _redact(text: str) -> str:
    """A URL without its password (user:secret@host becomes user:***@host)."""
    return re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", text)
