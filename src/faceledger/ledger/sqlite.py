"""The SQLite store: one file in WAL mode, safe for several processes.

Write transactions start with ``BEGIN IMMEDIATE``, so two processes writing at once queue on the busy timeout
instead of failing halfway; schema migrations are numbered ``.sql`` files in ``faceledger/ledger/migrations/sqlite``.
It implements :class:`faceledger.ledger.store.Store` and :class:`~faceledger.ledger.store.Transaction`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from faceledger.ledger.errors import DatabaseMissingError, StoreError
from faceledger.ledger.sql_base import DEFAULT_BUSY_TIMEOUT_S, migrations
from faceledger.ledger.sql_tx import SQLTransaction

if TYPE_CHECKING:
    from faceledger.ledger.store import Transaction


def _statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (triggers included)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise StoreError(f"incomplete SQL statement in migration: {buffer.strip()[:60]}...")
    return statements


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SQLiteStore:
    """One SQLite file in WAL mode. Safe for several processes; within a process, transactions are serialised.

    Open with :meth:`open`. ``busy_timeout``: how long a writer waits for another process's write.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, busy_timeout: float) -> None:
        self.path = path
        self.location = str(path)
        self._conn = conn
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._depth = 0
        self._writing = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> SQLiteStore:
        """Open (and with ``create``, create) a database and bring its schema up to date."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise DatabaseMissingError(f"{path}: no faceledger database here; initialise one first", str(path))
            if not path.parent.is_dir():
                raise StoreError(f"{path}: folder {path.parent} does not exist")
            # The database holds personal data: readable by its owner only.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        elif path.is_dir():
            raise StoreError(f"{path}: is a folder; give the path of a database file")
        try:
            conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open database: {exc}") from None
        store = cls(path, conn, busy_timeout)
        try:
            store._refuse_foreign()
            store._configure()
            store._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_busy(exc):
                raise StoreError(f"{path}: database stayed locked for {busy_timeout:.0f} s; retry") from None
            raise StoreError(f"{path}: not a faceledger database or damaged: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return store

    def _refuse_foreign(self) -> None:
        """Refuse an SQLite file that holds tables of another application (before changing anything in it)."""
        tables = {
            r[0]
            for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        }
        if tables and "schema_migrations" not in tables:
            names = ", ".join(sorted(tables)[:3])
            raise StoreError(
                f"{self.path}: an SQLite database of something else (tables: {names}); "
                "give faceledger its own database file"
            )

    def _configure(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL mode (journal_mode={mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")

    def _migrate(self) -> None:
        conn = self._conn
        known = migrations()
        latest = known[-1][0]
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if exists:
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            if current > latest:
                raise StoreError(
                    f"{self.path}: schema version {current} is newer than this faceledger knows ({latest}); "
                    "upgrade faceledger"
                )
            if current == latest:
                return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            for version, name, sql in known:
                if version <= current:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    (version, name),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        """The highest applied migration."""
        with self._lock:
            return int(self._conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])

    @contextmanager
    def _transaction(self, begin: str, writing: bool) -> Iterator[Transaction]:
        with self._lock:
            if self._depth:
                if writing and not self._writing:
                    raise StoreError("a write transaction cannot start inside a read transaction")
                self._depth += 1
                try:
                    yield cast("Transaction", SQLTransaction(self._conn))
                finally:
                    self._depth -= 1
                return
            try:
                self._conn.execute(begin)
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise StoreError(
                        f"{self.path}: another process held the database for more than "
                        f"{self._busy_timeout:.0f} s; retry"
                    ) from None
                raise
            self._depth, self._writing = 1, writing
            try:
                yield cast("Transaction", SQLTransaction(self._conn))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth, self._writing = 0, False

    def read(self) -> Any:
        """Context manager: a read transaction over a consistent snapshot."""
        return self._transaction("BEGIN DEFERRED", writing=False)

    def write(self) -> Any:
        """Context manager: a write transaction (``BEGIN IMMEDIATE``), committed when the block ends."""
        return self._transaction("BEGIN IMMEDIATE", writing=True)

    def reclaim(self, attempts: int = 20) -> bool:
        """Overwrite deleted data: checkpoint the WAL into the database, VACUUM, and truncate the WAL to zero.

        ``secure_delete`` (always on) zeroes deleted cells; VACUUM rebuilds the file without free pages; the
        checkpoint with TRUNCATE empties the WAL so no old page versions remain in it. Returns False when
        another process kept a read transaction open through every attempt (the WAL could not be emptied);
        call again later.
        """
        with self._lock:
            if self._depth:
                raise StoreError("reclaim() cannot run inside a transaction")
            # A checkpoint waits for readers through the busy handler: with the writers' timeout (30 s) each of the
            # attempts below could wait that long behind one reader, so reclaiming waits briefly per attempt.
            self._conn.execute("PRAGMA busy_timeout = 100")
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                for attempt in range(attempts):
                    try:
                        self._conn.execute("VACUUM")
                        break
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc) or attempt == attempts - 1:
                            raise StoreError(f"{self.path}: VACUUM failed: {exc}") from None
                        time.sleep(0.1)
                for _ in range(attempts):
                    busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                    if busy == 0:
                        return True
                    time.sleep(0.1)
                return False
            finally:
                self._conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
