"""The system of record behind one narrow interface, and its SQLite implementation.

Use cases open a transaction, do everything an operation needs (including its audit entry) inside it, and
commit once, so an operation either happened completely, with its audit entry, or not at all::

    with store.write() as tx:
        tx.add_template(...)
        tx.append_audit(AuditDraft(...), ts)

:class:`Store` and :class:`Transaction` are the interface a PostgreSQL implementation will provide too.
:class:`SQLiteStore` keeps one file in WAL mode; write transactions start with ``BEGIN IMMEDIATE`` so two
processes writing at once queue on the busy timeout instead of failing halfway, and schema migrations are
numbered ``.sql`` files in ``faceledger/ledger/migrations``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, cast

from faceledger.config import Database, database
from faceledger.ledger.audit import (
    GENESIS_HASH,
    AuditDraft,
    AuditEntry,
    AuditHead,
    StoredAuditRow,
    VerifyResult,
    build_entry,
    verify_chain,
)
from faceledger.ledger.errors import DatabaseMissingError, DuplicateError, StoreError
from faceledger.ledger.records import (
    ApiKey,
    CandidateRecord,
    CandidateStatus,
    Consent,
    ReviewRecord,
    Subject,
    SubjectKey,
    TemplateRecord,
    TemplateRef,
)

DEFAULT_BUSY_TIMEOUT_S = 30.0


class Transaction(Protocol):
    """Operations available inside one transaction. Every method is a small, single-purpose query."""

    # meta
    def get_meta(self, key: str) -> str | None:
        """A value from the meta table, or None."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Insert or replace a meta value."""
        ...

    def data_version(self) -> int:
        """Counter bumped by every change to the set of templates (search indexes compare it)."""
        ...

    def bump_data_version(self) -> int:
        """Increment and return the data version."""
        ...

    # policies and galleries
    def put_policy(self, policy_hash: str, body: str, created_at: str, created_by: str) -> None:
        """Record a policy text by its hash (no-op if already recorded)."""
        ...

    def get_policy(self, policy_hash: str) -> str | None:
        """The text of a recorded policy."""
        ...

    def ensure_gallery(self, name: str, created_at: str) -> None:
        """Create the gallery row if missing."""
        ...

    def gallery_names(self) -> list[str]:
        """All gallery names."""
        ...

    # subjects and keys
    def add_subject(self, subject: Subject) -> None:
        """Insert a subject; raises DuplicateError if the id exists."""
        ...

    def get_subject(self, subject_id: str) -> Subject | None:
        """A subject by id."""
        ...

    def list_subjects(self, gallery: str | None = None) -> list[Subject]:
        """Subjects, ordered by id."""
        ...

    def template_counts(self) -> dict[str, int]:
        """Number of templates per subject id."""
        ...

    def delete_subject(self, subject_id: str) -> None:
        """Delete a subject, its data key and templates (cascade)."""
        ...

    def add_subject_key(self, key: SubjectKey) -> None:
        """Store a subject's wrapped data key."""
        ...

    def get_subject_key(self, subject_id: str) -> SubjectKey | None:
        """A subject's wrapped data key."""
        ...

    def list_subject_keys(self) -> list[SubjectKey]:
        """Every wrapped data key (for master key rotation)."""
        ...

    def rewrap_subject_key(self, key_id: str, wrapped: bytes, master_key_id: str) -> None:
        """Replace a data key's wrapping (same data key, new master key)."""
        ...

    # consents
    def add_consent(self, consent: Consent) -> None:
        """Insert a consent record."""
        ...

    def get_consent(self, consent_id: str) -> Consent | None:
        """A consent record by id."""
        ...

    def list_consents(self, subject_id: str | None = None, gallery: str | None = None) -> list[Consent]:
        """Consent records, oldest first."""
        ...

    def end_consent(self, consent_id: str, withdrawn_at: str | None, reason: str) -> None:
        """Mark a consent as ended (withdrawn at a time, or expired when ``withdrawn_at`` is None)."""
        ...

    def delete_consent(self, consent_id: str) -> None:
        """Delete a consent record (retention)."""
        ...

    # templates
    def add_template(self, template: TemplateRecord) -> None:
        """Insert an encrypted template; raises DuplicateError for the same subject, image and face."""
        ...

    def template_refs(self) -> list[TemplateRef]:
        """Id, subject and model of every template, without ciphertext."""
        ...

    def get_templates(self, template_ids: Sequence[str]) -> list[TemplateRecord]:
        """Templates by id (missing ids are skipped)."""
        ...

    def templates_of(self, subject_id: str) -> list[TemplateRecord]:
        """All templates of a subject."""
        ...

    def sources_of(self, source_sha256: str) -> list[tuple[str, int]]:
        """``(subject_id, face_index)`` of the templates made from an image with this SHA-256."""
        ...

    def templates_created_before(self, cutoff: str) -> list[TemplateRef]:
        """Templates older than a timestamp."""
        ...

    def delete_template(self, template_id: str) -> None:
        """Delete one template."""
        ...

    # candidates and reviews
    def add_candidate(self, candidate: CandidateRecord) -> None:
        """Insert a candidate awaiting review."""
        ...

    def get_candidate(self, candidate_id: str) -> CandidateRecord | None:
        """A candidate by id."""
        ...

    def list_candidates(
        self, status: CandidateStatus | None = None, gallery: str | None = None, subject_id: str | None = None
    ) -> list[CandidateRecord]:
        """Candidates, oldest first."""
        ...

    def pending_candidates(self, gallery: str | None = None) -> list[tuple[CandidateRecord, int]]:
        """Pending candidates, oldest first, each with its number of distinct confirming reviewers."""
        ...

    def set_candidate_status(self, candidate_id: str, status: CandidateStatus, decided_at: str | None) -> None:
        """Record a candidate's review outcome."""
        ...

    def delete_candidates_of(self, subject_id: str) -> int:
        """Delete a subject's candidates and their reviews; returns how many candidates."""
        ...

    def delete_candidates_before(self, cutoff: str) -> int:
        """Delete candidates (and reviews) created before a timestamp; returns how many."""
        ...

    def add_review(self, review: ReviewRecord) -> None:
        """Insert a review; raises DuplicateError if this reviewer already reviewed this candidate."""
        ...

    def reviews_of(self, candidate_id: str) -> list[ReviewRecord]:
        """Reviews of a candidate, oldest first."""
        ...

    # audit
    def append_audit(self, draft: AuditDraft, ts: str) -> AuditEntry:
        """Append an entry after the current head, in this transaction."""
        ...

    def audit_head(self) -> AuditHead | None:
        """The head the store recorded with the last append (None for an empty ledger)."""
        ...

    def audit_rows(self) -> Iterator[StoredAuditRow]:
        """Every stored audit row in storage order, as is (for verification)."""
        ...

    def audit_entries(
        self, after_seq: int = 0, limit: int | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """Entries with ``seq > after_seq``, optionally of one action."""
        ...

    def purge_audit_before(self, cutoff: str) -> tuple[int, int, str] | None:
        """Delete the oldest entries with ``ts < cutoff``; returns ``(first_seq, last_seq, last_hash)``."""
        ...

    # api keys
    def add_api_key(self, key: ApiKey) -> None:
        """Insert an API key record."""
        ...

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """An API key record by id."""
        ...

    def list_api_keys(self) -> list[ApiKey]:
        """All API key records, oldest first."""
        ...

    def revoke_api_key(self, key_id: str, revoked_at: str) -> None:
        """Mark an API key revoked."""
        ...


class Store(Protocol):
    """A database holding one faceledger deployment."""

    location: str

    def read(self) -> Any:
        """Context manager yielding a :class:`Transaction` over a consistent snapshot (no writes)."""
        ...

    def write(self) -> Any:
        """Context manager yielding a :class:`Transaction` holding the write lock; commits on success."""
        ...

    def reclaim(self) -> bool:
        """Make deleted data unrecoverable from the database files; True if fully done."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


# SQLite

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """The bundled migrations as ``(version, name, sql)``, in order."""
    folder = resources.files("faceledger.ledger").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"bundled migrations are not numbered 1..n: {versions}")
    return found


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
                    yield cast(Transaction, _SQLiteTx(self._conn))
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
                yield cast(Transaction, _SQLiteTx(self._conn))
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

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _consent(row: sqlite3.Row | tuple[Any, ...]) -> Consent:
    return Consent(*row)


_CONSENT_COLS = (
    "id, subject_id, gallery, collected_by, legal_basis, purpose, evidence_ref, given_at, expires_at, "
    "withdrawn_at, ended_reason, recorded_at, recorded_by"
)
_TEMPLATE_COLS = "id, subject_id, key_id, model, dim, nonce, ciphertext, source_sha256, face_index, quality, created_at"
_CANDIDATE_COLS = (
    "id, search_id, audit_seq, gallery, purpose, actor, probe_sha256, face_index, box, subject_id, "
    "similarity, rank, threshold, policy_hash, status, created_at, decided_at"
)
_AUDIT_COLS = "seq, ts, action, actor, purpose, gallery, body, prev_hash, hash"
_API_COLS = "id, owner, role, secret_sha256, created_at, created_by, revoked_at"


def _candidate(row: tuple[Any, ...]) -> CandidateRecord:
    values = list(row)
    values[8] = json.loads(values[8])
    return CandidateRecord(*values)


class _SQLiteTx:
    """:class:`Transaction` over an open SQLite transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self._c.execute(sql, params).fetchone()
        return cast("tuple[Any, ...] | None", row)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._c.execute(sql, params).fetchall())

    # meta
    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._c.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def data_version(self) -> int:
        return int(self.get_meta("data_version") or 0)

    def bump_data_version(self) -> int:
        version = self.data_version() + 1
        self.set_meta("data_version", str(version))
        return version

    # policies and galleries
    def put_policy(self, policy_hash: str, body: str, created_at: str, created_by: str) -> None:
        self._c.execute(
            "INSERT INTO policies (hash, body, created_at, created_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (hash) DO NOTHING",
            (policy_hash, body, created_at, created_by),
        )

    def get_policy(self, policy_hash: str) -> str | None:
        row = self._one("SELECT body FROM policies WHERE hash = ?", (policy_hash,))
        return None if row is None else str(row[0])

    def ensure_gallery(self, name: str, created_at: str) -> None:
        self._c.execute(
            "INSERT INTO galleries (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, created_at),
        )

    def gallery_names(self) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM galleries ORDER BY name")]

    # subjects and keys
    def add_subject(self, subject: Subject) -> None:
        try:
            self._c.execute(
                "INSERT INTO subjects (id, gallery, created_at, created_by) VALUES (?, ?, ?, ?)",
                (subject.id, subject.gallery, subject.created_at, subject.created_by),
            )
        except sqlite3.IntegrityError:
            raise DuplicateError(f"subject {subject.id!r} already exists") from None

    def get_subject(self, subject_id: str) -> Subject | None:
        row = self._one("SELECT id, gallery, created_at, created_by FROM subjects WHERE id = ?", (subject_id,))
        return None if row is None else Subject(*row)

    def list_subjects(self, gallery: str | None = None) -> list[Subject]:
        sql = "SELECT id, gallery, created_at, created_by FROM subjects"
        params: tuple[Any, ...] = ()
        if gallery is not None:
            sql += " WHERE gallery = ?"
            params = (gallery,)
        return [Subject(*r) for r in self._all(sql + " ORDER BY id", params)]

    def template_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._all("SELECT subject_id, COUNT(*) FROM templates GROUP BY subject_id")}

    def delete_subject(self, subject_id: str) -> None:
        self._c.execute("DELETE FROM templates WHERE subject_id = ?", (subject_id,))
        self._c.execute("DELETE FROM subject_keys WHERE subject_id = ?", (subject_id,))
        self._c.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))

    def add_subject_key(self, key: SubjectKey) -> None:
        self._c.execute(
            "INSERT INTO subject_keys (id, subject_id, wrapped, master_key_id, created_at) VALUES (?, ?, ?, ?, ?)",
            (key.id, key.subject_id, key.wrapped, key.master_key_id, key.created_at),
        )

    def get_subject_key(self, subject_id: str) -> SubjectKey | None:
        row = self._one(
            "SELECT id, subject_id, wrapped, master_key_id, created_at FROM subject_keys WHERE subject_id = ?",
            (subject_id,),
        )
        return None if row is None else SubjectKey(row[0], row[1], bytes(row[2]), row[3], row[4])

    def list_subject_keys(self) -> list[SubjectKey]:
        rows = self._all("SELECT id, subject_id, wrapped, master_key_id, created_at FROM subject_keys ORDER BY id")
        return [SubjectKey(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def rewrap_subject_key(self, key_id: str, wrapped: bytes, master_key_id: str) -> None:
        self._c.execute(
            "UPDATE subject_keys SET wrapped = ?, master_key_id = ? WHERE id = ?", (wrapped, master_key_id, key_id)
        )

    # consents
    def add_consent(self, consent: Consent) -> None:
        try:
            self._c.execute(
                f"INSERT INTO consents ({_CONSENT_COLS}) VALUES ({', '.join('?' * 13)})",
                (
                    consent.id,
                    consent.subject_id,
                    consent.gallery,
                    consent.collected_by,
                    consent.legal_basis,
                    consent.purpose,
                    consent.evidence_ref,
                    consent.given_at,
                    consent.expires_at,
                    consent.withdrawn_at,
                    consent.ended_reason,
                    consent.recorded_at,
                    consent.recorded_by,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateError(f"consent {consent.id!r} cannot be recorded: {exc}") from None

    def get_consent(self, consent_id: str) -> Consent | None:
        row = self._one(f"SELECT {_CONSENT_COLS} FROM consents WHERE id = ?", (consent_id,))
        return None if row is None else _consent(row)

    def list_consents(self, subject_id: str | None = None, gallery: str | None = None) -> list[Consent]:
        clauses, params = [], []
        if subject_id is not None:
            clauses.append("subject_id = ?")
            params.append(subject_id)
        if gallery is not None:
            clauses.append("gallery = ?")
            params.append(gallery)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return [
            _consent(r)
            for r in self._all(f"SELECT {_CONSENT_COLS} FROM consents{where} ORDER BY recorded_at, id", params)
        ]

    def end_consent(self, consent_id: str, withdrawn_at: str | None, reason: str) -> None:
        self._c.execute(
            "UPDATE consents SET withdrawn_at = COALESCE(?, withdrawn_at), ended_reason = ? WHERE id = ?",
            (withdrawn_at, reason, consent_id),
        )

    def delete_consent(self, consent_id: str) -> None:
        self._c.execute("DELETE FROM consents WHERE id = ?", (consent_id,))

    # templates
    def add_template(self, template: TemplateRecord) -> None:
        try:
            self._c.execute(
                f"INSERT INTO templates ({_TEMPLATE_COLS}) VALUES ({', '.join('?' * 11)})",
                (
                    template.id,
                    template.subject_id,
                    template.key_id,
                    template.model,
                    template.dim,
                    template.nonce,
                    template.ciphertext,
                    template.source_sha256,
                    template.face_index,
                    template.quality,
                    template.created_at,
                ),
            )
        except sqlite3.IntegrityError:
            raise DuplicateError(
                f"subject {template.subject_id!r} already has a template from this image (face {template.face_index})"
            ) from None

    def template_refs(self) -> list[TemplateRef]:
        return [TemplateRef(*r) for r in self._all("SELECT id, subject_id, model FROM templates ORDER BY id")]

    def get_templates(self, template_ids: Sequence[str]) -> list[TemplateRecord]:
        out: list[TemplateRecord] = []
        ids = list(template_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._all(
                f"SELECT {_TEMPLATE_COLS} FROM templates WHERE id IN ({', '.join('?' * len(chunk))})", chunk
            )
            out.extend(_template(r) for r in rows)
        return out

    def templates_of(self, subject_id: str) -> list[TemplateRecord]:
        rows = self._all(
            f"SELECT {_TEMPLATE_COLS} FROM templates WHERE subject_id = ? ORDER BY created_at, id",
            (subject_id,),
        )
        return [_template(r) for r in rows]

    def sources_of(self, source_sha256: str) -> list[tuple[str, int]]:
        rows = self._all("SELECT subject_id, face_index FROM templates WHERE source_sha256 = ?", (source_sha256,))
        return [(r[0], int(r[1])) for r in rows]

    def templates_created_before(self, cutoff: str) -> list[TemplateRef]:
        rows = self._all("SELECT id, subject_id, model FROM templates WHERE created_at < ? ORDER BY id", (cutoff,))
        return [TemplateRef(*r) for r in rows]

    def delete_template(self, template_id: str) -> None:
        self._c.execute("DELETE FROM templates WHERE id = ?", (template_id,))

    # candidates and reviews
    def add_candidate(self, candidate: CandidateRecord) -> None:
        values = list(candidate.__dict__.values())
        values[8] = json.dumps(candidate.box)
        self._c.execute(f"INSERT INTO candidates ({_CANDIDATE_COLS}) VALUES ({', '.join('?' * 17)})", values)

    def get_candidate(self, candidate_id: str) -> CandidateRecord | None:
        row = self._one(f"SELECT {_CANDIDATE_COLS} FROM candidates WHERE id = ?", (candidate_id,))
        return None if row is None else _candidate(row)

    def list_candidates(
        self, status: CandidateStatus | None = None, gallery: str | None = None, subject_id: str | None = None
    ) -> list[CandidateRecord]:
        clauses, params = [], []
        for column, value in (("status", status), ("gallery", gallery), ("subject_id", subject_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._all(f"SELECT {_CANDIDATE_COLS} FROM candidates{where} ORDER BY created_at, rank, id", params)
        return [_candidate(r) for r in rows]

    def pending_candidates(self, gallery: str | None = None) -> list[tuple[CandidateRecord, int]]:
        where, params = ("status = 'pending' AND gallery = ?", [gallery]) if gallery else ("status = 'pending'", [])
        rows = self._all(
            f"SELECT {_CANDIDATE_COLS}, (SELECT COUNT(DISTINCT reviewer) FROM reviews r "
            f"WHERE r.candidate_id = candidates.id AND r.decision = 'confirm') "
            f"FROM candidates WHERE {where} ORDER BY created_at, rank, id",
            params,
        )
        return [(_candidate(r[:-1]), int(r[-1])) for r in rows]

    def set_candidate_status(self, candidate_id: str, status: CandidateStatus, decided_at: str | None) -> None:
        self._c.execute(
            "UPDATE candidates SET status = ?, decided_at = ? WHERE id = ?",
            (status, decided_at, candidate_id),
        )

    def delete_candidates_of(self, subject_id: str) -> int:
        return self._c.execute("DELETE FROM candidates WHERE subject_id = ?", (subject_id,)).rowcount

    def delete_candidates_before(self, cutoff: str) -> int:
        return self._c.execute("DELETE FROM candidates WHERE created_at < ?", (cutoff,)).rowcount

    def add_review(self, review: ReviewRecord) -> None:
        try:
            self._c.execute(
                "INSERT INTO reviews (id, candidate_id, reviewer, decision, reason, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    review.id,
                    review.candidate_id,
                    review.reviewer,
                    review.decision,
                    review.reason,
                    review.created_at,
                ),
            )
        except sqlite3.IntegrityError:
            raise DuplicateError(
                f"reviewer {review.reviewer!r} already reviewed candidate {review.candidate_id}; "
                "another reviewer must decide"
            ) from None

    def reviews_of(self, candidate_id: str) -> list[ReviewRecord]:
        rows = self._all(
            "SELECT id, candidate_id, reviewer, decision, reason, created_at FROM reviews "
            "WHERE candidate_id = ? ORDER BY created_at, id",
            (candidate_id,),
        )
        return [ReviewRecord(*r) for r in rows]

    # audit
    def append_audit(self, draft: AuditDraft, ts: str) -> AuditEntry:
        # The head recorded by the previous append is the source of truth: if rows were deleted from the end
        # behind the store's back, the next entry still follows the recorded head and the gap stays visible.
        recorded = self.audit_head()
        if recorded is not None:
            seq, prev = recorded.seq + 1, recorded.hash
        else:
            last = self._one("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            seq, prev = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
        entry = build_entry(draft, seq=seq, prev_hash=prev, ts=ts)
        data = entry.data
        self._c.execute(
            f"INSERT INTO audit ({_AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.seq,
                data["ts"],
                data["action"],
                data["actor"],
                data["purpose"],
                data["gallery"],
                entry.body,
                entry.prev_hash,
                entry.hash,
            ),
        )
        self.set_meta("audit_head", f"{entry.seq}:{entry.hash}")
        return entry

    def audit_head(self) -> AuditHead | None:
        value = self.get_meta("audit_head")
        if not value:
            return None
        seq, _, digest = value.partition(":")
        return AuditHead(int(seq), digest)

    def audit_rows(self) -> Iterator[StoredAuditRow]:
        for row in self._c.execute(f"SELECT {_AUDIT_COLS} FROM audit ORDER BY seq"):
            yield StoredAuditRow(*row)

    def audit_entries(
        self, after_seq: int = 0, limit: int | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        sql = "SELECT seq, body, prev_hash, hash FROM audit WHERE seq > ?"
        params: list[Any] = [after_seq]
        if action is not None:
            sql += " AND (action = ? OR action LIKE ?)"
            params += [action, f"{action}.%"]
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [AuditEntry(int(r[0]), r[1], r[2], r[3]) for r in self._all(sql, params)]

    def purge_audit_before(self, cutoff: str) -> tuple[int, int, str] | None:
        last = self._one("SELECT MAX(seq) FROM audit WHERE ts < ?", (cutoff,))
        if last is None or last[0] is None:
            return None
        first = self._one("SELECT MIN(seq) FROM audit")
        last_row = self._one("SELECT hash FROM audit WHERE seq = ?", (last[0],))
        assert first is not None and last_row is not None
        self._c.execute("DELETE FROM audit WHERE seq <= ?", (last[0],))
        return int(first[0]), int(last[0]), str(last_row[0])

    # api keys
    def add_api_key(self, key: ApiKey) -> None:
        try:
            self._c.execute(
                f"INSERT INTO api_keys ({_API_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.owner,
                    key.role,
                    key.secret_sha256,
                    key.created_at,
                    key.created_by,
                    key.revoked_at,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateError(f"API key {key.id!r} cannot be stored: {exc}") from None

    def get_api_key(self, key_id: str) -> ApiKey | None:
        row = self._one(f"SELECT {_API_COLS} FROM api_keys WHERE id = ?", (key_id,))
        return None if row is None else ApiKey(*row)

    def list_api_keys(self) -> list[ApiKey]:
        return [ApiKey(*r) for r in self._all(f"SELECT {_API_COLS} FROM api_keys ORDER BY created_at, id")]

    def revoke_api_key(self, key_id: str, revoked_at: str) -> None:
        self._c.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (revoked_at, key_id))


def _template(row: tuple[Any, ...]) -> TemplateRecord:
    values = list(row)
    values[5] = bytes(values[5])
    values[6] = bytes(values[6])
    return TemplateRecord(*values)


def verify_audit(tx: Transaction, expected_head: AuditHead | None = None) -> VerifyResult:
    """Verify the audit chain stored behind ``tx`` against the head recorded with the last append.

    ``expected_head`` is a head published earlier (``faceledger audit head``); the chain must extend it.
    """
    return verify_chain(tx.audit_rows(), recorded_head=tx.audit_head(), expected_head=expected_head)


def open_store(
    location: str | os.PathLike[str] | Database | None = None,
    *,
    create: bool = False,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
) -> Store:
    """Open the store at a database location (a path or a URL, see :func:`faceledger.config.database`;
    None: ``FACELEDGER_DB`` or ``./faceledger.db``). The one place that maps a location to a backend."""
    db = database(location)
    if db.backend == "sqlite":
        return SQLiteStore.open(db.path, create=create, busy_timeout=busy_timeout)
    raise StoreError(f"{db}: no store for backend {db.backend!r}")  # config.database refuses these already
