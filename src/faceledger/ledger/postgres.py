"""The PostgreSQL store: one server database shared by every process and host of a deployment (psycopg 3 and its
connection pool; ``pip install 'faceledger[postgresql]'``).

It keeps the SQLite store's guarantees, by other means:

- **One linear audit chain with writers on several hosts.** Every write transaction takes one transaction-level
  advisory lock (``pg_advisory_xact_lock``) before its first statement, in the same transaction as its effect and
  its audit entry. Writers queue on it as SQLite's ``BEGIN IMMEDIATE`` writers queue on the file lock; the lock
  goes with the commit or the rollback. Writes run at READ COMMITTED, so once the lock is held every statement sees
  what the previous writer committed (the head of the chain included).
- **Reads see one consistent snapshot**: ``REPEATABLE READ, READ ONLY`` (a read transaction cannot write).
- **Every process's search index sees a change before its next search**: the same ``data_version`` counter as on
  SQLite, bumped in the transaction of every enrollment, erasure and consent change and read before each search.
- **Erasure**: the rows and the subject's key are deleted in one transaction. :meth:`PostgresStore.reclaim` runs
  ``VACUUM`` on the tables that held them, which makes the dead row versions free space for new rows; PostgreSQL
  does not overwrite them at once, and the WAL, replicas and base backups keep them until they are recycled.
  What makes an erasure provable there is crypto-shredding: the subject key is gone, so no copy decrypts.

Within a process, each thread has its own connection and transaction (nested ``read()``/``write()`` blocks of one
thread share it), so threads of a service read in parallel and write one at a time, like processes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from faceledger.config import Database
from faceledger.ledger.errors import DatabaseMissingError, StoreError
from faceledger.ledger.sql_base import DEFAULT_BUSY_TIMEOUT_S, migrations
from faceledger.ledger.sql_tx import SQLTransaction

if TYPE_CHECKING:
    from faceledger.ledger.sql_base import Cursor
    from faceledger.ledger.store import Transaction

WRITE_LOCK = 0x46414345_4C454447 & 0x7FFF_FFFF_FFFF_FFFF
"""The advisory lock every write transaction holds ("FACELEDG" in ASCII; one database, one chain)."""
MIGRATE_LOCK = WRITE_LOCK - 1
"""Held while the schema is brought up to date, so two processes starting at once migrate once."""
RECLAIM_TABLES = ("templates", "subject_keys", "reference_faces", "evidence", "candidates", "reviews", "subjects")
"""The tables erasure, rejection and retention delete from; :meth:`PostgresStore.reclaim` vacuums them."""
DEFAULT_POOL_SIZE = 8


def _psycopg() -> Any:
    try:
        import psycopg  # optional dependency, imported when a PostgreSQL URL is opened
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise StoreError("a PostgreSQL database needs psycopg: pip install 'faceledger[postgresql]'") from None
    return psycopg


@functools.lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    """``?`` parameters (the statements are shared with SQLite) as psycopg's ``%s``; a literal ``%`` doubled.

    The statements put no ``?`` or ``%`` inside string literals (values always travel as parameters), so a plain
    replacement is exact."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A psycopg connection seen as a :class:`faceledger.ledger.sql_base.Connection` (``?`` parameters)."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        if not parameters:
            return cast("Cursor", self.raw.execute(sql))
        return cast("Cursor", self.raw.execute(_placeholders(sql), parameters))

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> None:
        """One statement for many rows: psycopg sends them in pipeline mode, one round trip for all."""
        with self.raw.cursor() as cursor:
            cursor.executemany(_placeholders(sql), seq_of_parameters)


class PostgresTransaction(SQLTransaction):
    """:class:`SQLTransaction` on PostgreSQL: an INSERT that breaks a constraint runs in a savepoint, since a failed
    statement would otherwise abort the whole transaction (SQLite lets the transaction go on)."""

    def _insert(self, sql: str, params: Sequence[Any]) -> str | None:
        psycopg = _psycopg()
        self._c.execute("SAVEPOINT faceledger_insert")
        try:
            self._c.execute(sql, params)
        except psycopg.errors.IntegrityError as exc:
            self._c.execute("ROLLBACK TO SAVEPOINT faceledger_insert")
            return str(exc).strip()
        self._c.execute("RELEASE SAVEPOINT faceledger_insert")
        return None

    def _insert_many(self, batches: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> str | None:
        psycopg = _psycopg()
        self._c.execute("SAVEPOINT faceledger_bulk")
        try:
            for sql, rows in batches:
                if rows:
                    self._c.executemany(sql, rows)
        except psycopg.errors.IntegrityError as exc:
            self._c.execute("ROLLBACK TO SAVEPOINT faceledger_bulk")
            self._c.execute("RELEASE SAVEPOINT faceledger_bulk")
            return str(exc).strip()
        self._c.execute("RELEASE SAVEPOINT faceledger_bulk")
        return None

    def _json_int(self, key: str) -> str:
        return f"COALESCE((body::jsonb #>> '{{details,{key}}}')::bigint, 0)"

    def _json_text(self, key: str) -> str:
        return f"(body::jsonb #>> '{{details,{key}}}')"

    def _json_length(self, key: str) -> str:
        return f"COALESCE(jsonb_array_length(body::jsonb #> '{{details,{key}}}'), 0)"


class _Local(threading.local):
    conn: Any = None
    depth: int = 0
    writing: bool = False


class PostgresStore:
    """A faceledger database on a PostgreSQL server. Open with :meth:`open`.

    ``busy_timeout``: how long a writer waits for the write lock (and a caller for a pooled connection) before
    the operation fails with a message saying so.
    """

    def __init__(self, database: Database, pool: Any, busy_timeout: float) -> None:
        self.database = database
        self.location = str(database)  # the URL without its password
        self.path = None
        self._pool = pool
        self._busy_timeout = busy_timeout
        self._local = _Local()

    @classmethod
    def open(
        cls,
        database: Database,
        *,
        create: bool = False,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> PostgresStore:
        """Connect, and bring the schema up to date (with ``create``, make it in an empty database)."""
        psycopg = _psycopg()
        from psycopg_pool import ConnectionPool

        try:  # one connection first: a wrong URL, a missing database or a server down is said at once, with the cause
            psycopg.connect(database.text, connect_timeout=max(1, int(min(busy_timeout, 10.0)))).close()
        except psycopg.Error as exc:
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"{database}: cannot connect to PostgreSQL: {cause}") from None

        def configure(conn: Any) -> None:
            conn.execute(f"SET lock_timeout = {int(busy_timeout * 1000)}")

        pool = ConnectionPool(
            database.text,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(busy_timeout))},
            configure=configure,
            timeout=busy_timeout,
            open=False,
            name="faceledger",
        )
        try:
            pool.open(wait=True, timeout=min(busy_timeout, 10.0))
        except psycopg.Error as exc:
            pool.close()
            raise StoreError(f"{database}: cannot connect to PostgreSQL: {exc}") from None
        except Exception as exc:  # psycopg_pool.PoolTimeout: the server did not answer
            pool.close()
            raise StoreError(f"{database}: cannot connect to PostgreSQL ({exc}); is the server running?") from None
        store = cls(database, pool, busy_timeout)
        try:
            with pool.connection() as conn:
                store._migrate(conn, create)
        except psycopg.Error as exc:
            pool.close()
            raise StoreError(f"{database}: {exc}".strip()) from None
        except BaseException:
            pool.close()
            raise
        return store

    def _tables(self, conn: Any) -> set[str]:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
        return {r[0] for r in rows}

    def _migrate(self, conn: Any, create: bool) -> None:
        known = migrations("postgresql")
        latest = known[-1][0]
        tables = self._tables(conn)
        if tables and "schema_migrations" not in tables:
            names = ", ".join(sorted(tables)[:3])
            raise StoreError(
                f"{self.location}: a database of something else (tables: {names}); give faceledger its own database "
                "(or schema)"
            )
        if not tables and not create:
            raise DatabaseMissingError(
                f"{self.location}: no faceledger database here; initialise one first", self.location
            )
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                '(version BIGINT PRIMARY KEY, name TEXT COLLATE "C" NOT NULL, applied_at TEXT COLLATE "C" NOT NULL)'
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            if current > latest:
                raise StoreError(
                    f"{self.location}: schema version {current} is newer than this faceledger knows ({latest}); "
                    "upgrade faceledger"
                )
            for version, name, sql in known:
                if version <= current:
                    continue
                conn.execute(sql)  # the whole file: no parameters, so psycopg sends it as one multi-statement query
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    "VALUES (%s, %s, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))",
                    (version, name),
                )

    def schema_version(self) -> int:
        """The highest applied migration."""
        with self.read() as tx:
            row = cast("Any", tx)._one("SELECT MAX(version) FROM schema_migrations")
            return int(row[0])

    @contextmanager
    def _transaction(self, writing: bool) -> Iterator[Transaction]:
        local = self._local
        if local.depth:
            if writing and not local.writing:
                raise StoreError("a write transaction cannot start inside a read transaction")
            local.depth += 1
            try:
                yield cast("Transaction", PostgresTransaction(_Connection(local.conn)))
            finally:
                local.depth -= 1
            return
        psycopg = _psycopg()
        try:
            conn = self._pool.getconn()
        except Exception as exc:  # PoolTimeout, or the server went away
            raise StoreError(
                f"{self.location}: no database connection within {self._busy_timeout:.0f} s: {exc}"
            ) from None
        try:
            if writing:
                conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                try:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                except psycopg.errors.LockNotAvailable:
                    conn.execute("ROLLBACK")
                    raise StoreError(
                        f"{self.location}: another process held the write lock for more than "
                        f"{self._busy_timeout:.0f} s; retry"
                    ) from None
            else:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            local.conn, local.depth, local.writing = conn, 1, writing
            try:
                yield cast("Transaction", PostgresTransaction(_Connection(conn)))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.location}: the database connection failed: {exc}".strip()) from None
        finally:
            local.conn, local.depth, local.writing = None, 0, False
            self._pool.putconn(conn)  # the pool rolls back what a failure left open, or replaces a broken one

    def read(self) -> Any:
        """Context manager: a read transaction over a consistent snapshot."""
        return self._transaction(writing=False)

    def write(self) -> Any:
        """Context manager: a write transaction holding the write lock, committed when the block ends."""
        return self._transaction(writing=True)

    def take_request(self, key: str, per_minute: int, now: float) -> float | None:
        """Take one request from ``key``'s token bucket, shared by every process on this database: None when
        allowed, else the seconds to wait. ``per_minute`` requests at once, refilled evenly (``now``: epoch
        seconds). Its own short transaction, locking the key's row only: not the ledger's write lock."""
        rate = per_minute / 60.0
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO rate_buckets (key, tokens, counted) VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING",
                (key, float(per_minute), now),
            )
            tokens, counted = conn.execute(
                "SELECT tokens, counted FROM rate_buckets WHERE key = %s FOR UPDATE", (key,)
            ).fetchone()
            tokens = min(float(per_minute), tokens + max(0.0, now - counted) * rate)
            allowed = tokens >= 1.0
            conn.execute(
                "UPDATE rate_buckets SET tokens = %s, counted = %s WHERE key = %s",
                (tokens - 1.0 if allowed else tokens, max(now, counted), key),
            )
        return None if allowed else (1.0 - tokens) / rate

    def reclaim(self) -> bool:
        """``VACUUM`` the tables erasure deletes from: their dead row versions become free space for new rows.

        It does not overwrite them, and WAL segments, replicas and backups keep their own copies until recycled:
        on a server, what makes erased templates unreadable is that their subject key was destroyed with them
        (crypto-shredding). Returns True once VACUUM ran (there is no "another reader kept old pages" case to
        report, as on SQLite)."""
        if self._local.depth:
            raise StoreError("reclaim() cannot run inside a transaction")
        with self._pool.connection() as conn:
            conn.execute(f"VACUUM {', '.join(RECLAIM_TABLES)}")
        return True

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
