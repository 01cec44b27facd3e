"""What the SQL of both stores (SQLite and PostgreSQL) runs on: a connection with ``execute`` and ``?`` parameters.

:class:`SQLQueries` is the base of the query mixins and of :class:`~faceledger.ledger.sql_tx.SQLTransaction`. The
statements are written once, in the subset both databases understand; the two things that differ are here as
hooks: which exception a broken constraint raises, and what a failed INSERT leaves of the transaction (SQLite
carries on; PostgreSQL aborts the transaction, so its store runs such INSERTs inside a savepoint).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from typing import Any, Protocol, cast

from faceledger.ledger.errors import StoreError

DEFAULT_BUSY_TIMEOUT_S = 30.0


_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
    """The bundled migrations of a dialect (``sqlite`` or ``postgresql``) as ``(version, name, sql)``, in order."""
    folder = resources.files("faceledger.ledger").joinpath("migrations", dialect)
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"bundled {dialect} migrations are not numbered 1..n: {versions}")
    return found


class Cursor(Protocol):
    """The part of a DB-API cursor the queries use."""

    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection that runs one statement with ``?`` parameters (sqlite3's own; an adapter for psycopg)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any: ...


class SQLQueries:
    """The connection of an open transaction, and the few helpers every query uses."""

    def __init__(self, conn: Connection | sqlite3.Connection) -> None:
        self._c = cast("Connection", conn)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self._c.execute(sql, params).fetchone()
        return cast("tuple[Any, ...] | None", row)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._c.execute(sql, params).fetchall())

    def _insert(self, sql: str, params: Sequence[Any]) -> str | None:
        """Run an INSERT that may break a constraint: None when it went in, else the database's message (the
        transaction stays usable either way)."""
        try:
            self._c.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            return str(exc)
        return None

    def _insert_many(self, batches: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> str | None:
        """Run INSERTs of many rows each (``(sql, rows)`` in order), all of them or none: None when every row went
        in, else the database's message, and none of them is left (the transaction stays usable either way)."""
        self._c.execute("SAVEPOINT faceledger_bulk")
        try:
            for sql, rows in batches:
                if rows:
                    self._c.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            self._c.execute("ROLLBACK TO SAVEPOINT faceledger_bulk")
            self._c.execute("RELEASE SAVEPOINT faceledger_bulk")
            return str(exc)
        self._c.execute("RELEASE SAVEPOINT faceledger_bulk")
        return None
