"""SQLite store: migrations, transactions, concurrency, the audit chain and its tamper detection, API keys."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from conftest import GalleryLocation, is_postgres, raw_sql
from faceledger.ledger import (
    AccessDenied,
    AuditDraft,
    AuditHead,
    SQLiteStore,
    StoreError,
    authenticate,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    verify_audit,
)
from faceledger.ledger.audit import PURGE_ACTION, sha256_hex
from faceledger.ledger.store import Store, migrations, open_store


def _append(store: SQLiteStore, n: int, *, start_day: int = 1) -> None:
    for i in range(n):
        with store.write() as tx:
            tx.append_audit(
                AuditDraft(
                    action="identify",
                    actor=f"operator{i}",
                    purpose="access-control",
                    gallery="staff",
                    probe_sha256=sha256_hex(f"probe{i}"),
                    subjects=(f"s{i}",),
                    threshold=0.4,
                    policy_hash="p" * 64,
                    details={"faces": 1},
                ),
                f"2024-01-{start_day + i:02d}T00:00:00.000000Z",
            )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore.open(tmp_path / "ledger.db", create=True)
    yield s
    s.close()


@pytest.fixture
def location(gallery_location: GalleryLocation) -> str:
    """For the tamper tests: an SQLite file, then a PostgreSQL database."""
    return gallery_location.location


@pytest.fixture
def any_store(location: str) -> Store:
    s = open_store(location, create=True)
    yield s
    s.close()


def _verify(path: Path | str, expected: AuditHead | None = None):  # type: ignore[no-untyped-def]
    with open_store(path) as s, s.read() as tx:
        return verify_audit(tx, expected)


class _Rows(list):  # type: ignore[type-arg]
    def fetchone(self) -> tuple[object, ...] | None:
        return self[0] if self else None


class _Raw:
    """A tamperer's connection to either backend (``?`` placeholders); the append-only trigger dropped first."""

    def __init__(self, location: str) -> None:
        self.location = location
        drop = "DROP TRIGGER IF EXISTS audit_append_only" + (" ON audit" if is_postgres(location) else "")
        raw_sql(location, drop)

    def execute(self, statement: str, params: tuple[object, ...] = ()) -> _Rows:
        return _Rows(raw_sql(self.location, statement, *params))


def _raw(path: Path | str) -> _Raw:
    return _Raw(str(path))


def test_schema_is_migrated_in_wal_mode_with_foreign_keys(store: SQLiteStore, tmp_path: Path) -> None:
    assert store.schema_version() == len(migrations()) >= 1
    conn = sqlite3.connect(tmp_path / "ledger.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "subjects",
        "consents",
        "templates",
        "subject_keys",
        "galleries",
        "candidates",
        "reviews",
        "audit",
        "api_keys",
        "meta",
        "policies",
        "schema_migrations",
    } <= tables
    assert (tmp_path / "ledger.db").stat().st_mode & 0o077 == 0
    conn.close()
    # reopening applies nothing new
    SQLiteStore.open(tmp_path / "ledger.db").close()


def test_missing_database_and_newer_schema_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="init"):
        SQLiteStore.open(tmp_path / "nope.db")
    SQLiteStore.open(tmp_path / "x.db", create=True).close()
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'now')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore.open(tmp_path / "x.db")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE invoices (id INTEGER)")
    other.commit()
    other.close()
    with pytest.raises(StoreError, match="something else"):
        SQLiteStore.open(tmp_path / "other.db", create=True)
    untouched = sqlite3.connect(tmp_path / "other.db")
    assert [r[0] for r in untouched.execute("SELECT name FROM sqlite_master")] == ["invoices"]
    assert untouched.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    untouched.close()
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a faceledger database"):
        SQLiteStore.open(tmp_path / "junk.db")


def test_failed_transaction_leaves_nothing(store: SQLiteStore) -> None:
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.append_audit(AuditDraft(action="x", actor="a", purpose="p"), "2024-01-01T00:00:00.000000Z")
        tx.set_meta("half", "done")
        raise RuntimeError("crash in the middle")
    with store.read() as tx:
        assert tx.get_meta("half") is None
        assert tx.audit_head() is None
        assert list(tx.audit_rows()) == []


def test_audit_chain_verifies_and_update_is_blocked(store: SQLiteStore, tmp_path: Path) -> None:
    _append(store, 5)
    result = _verify(tmp_path / "ledger.db")
    assert result.ok and result.entries == 5 and result.head is not None and result.head.seq == 5
    conn = sqlite3.connect(tmp_path / "ledger.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET actor = 'x' WHERE seq = 2")
    conn.close()
    entries = store.read().__enter__().audit_entries()
    body = json.loads(entries[1].body)
    assert body["seq"] == 2 and body["prev"] == entries[0].hash
    assert entries[1].body == json.dumps(body, sort_keys=True, separators=(",", ":"))


def test_edit_of_body_is_named(any_store: Store, location: str) -> None:
    _append(any_store, 6)
    conn = _raw(location)
    body = conn.execute("SELECT body FROM audit WHERE seq = 3").fetchone()[0]
    conn.execute("UPDATE audit SET body = ? WHERE seq = 3", (body.replace("operator2", "someone"),))
    result = _verify(location)
    assert not result.ok and result.bad_seq == 3 and "altered" in (result.problem or "")


def test_edit_of_body_with_rehash_is_named(any_store: Store, location: str) -> None:
    _append(any_store, 6)
    conn = _raw(location)
    body = conn.execute("SELECT body FROM audit WHERE seq = 3").fetchone()[0].replace("operator2", "someone")
    conn.execute("UPDATE audit SET body = ?, hash = ?, actor = 'someone' WHERE seq = 3", (body, sha256_hex(body)))
    result = _verify(location)
    # the edited entry, not its successor (which committed to the entry's old hash)
    assert not result.ok and result.bad_seq == 3 and "re-hashed" in (result.problem or ""), result


def test_edit_of_a_column_is_named(any_store: Store, location: str) -> None:
    _append(any_store, 6)
    _raw(location).execute("UPDATE audit SET actor = 'nobody' WHERE seq = 2")
    result = _verify(location)
    assert not result.ok and result.bad_seq == 2 and "actor" in (result.problem or "")


def test_deletions_are_named(any_store: Store, location: str) -> None:
    _append(any_store, 6)
    path = location
    _raw(path).execute("DELETE FROM audit WHERE seq = 4")
    result = _verify(path)
    assert not result.ok and result.bad_seq == 4 and "removed" in (result.problem or "")


def test_deletion_of_first_and_last_entries_is_named(tmp_path: Path) -> None:
    for seq, name in ((1, "first.db"), (6, "last.db")):
        path = tmp_path / name
        with SQLiteStore.open(path, create=True) as s:
            _append(s, 6)
        _raw(path).execute("DELETE FROM audit WHERE seq = ?", (seq,))
        result = _verify(path)
        assert not result.ok and result.bad_seq == seq and "removed" in (result.problem or ""), result


def test_reorder_is_named(any_store: Store, location: str) -> None:
    _append(any_store, 6)
    conn = _raw(location)
    rows = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT seq, ts, action, actor, purpose, gallery, body, prev_hash, hash FROM audit WHERE seq IN (3, 4)"
        )
    }
    for seq, other in ((3, 4), (4, 3)):
        conn.execute(
            "UPDATE audit SET ts=?, action=?, actor=?, purpose=?, gallery=?, body=?, prev_hash=?, hash=? WHERE seq = ?",
            (*rows[other], seq),
        )
    result = _verify(location)
    assert not result.ok and result.bad_seq == 3, result


def test_insertions_are_named(any_store: Store, location: str) -> None:
    _append(any_store, 5)
    path = location
    conn = _raw(path)
    # a forged entry appended with a correct link and hash: caught by the head recorded with the last append
    _, head_hash = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    body = json.loads(conn.execute("SELECT body FROM audit WHERE seq = 5").fetchone()[0])
    body.update(seq=6, prev=head_hash, actor="forger")
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    conn.execute(
        "INSERT INTO audit VALUES (6, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            body["ts"],
            body["action"],
            "forger",
            body["purpose"],
            body["gallery"],
            text,
            head_hash,
            sha256_hex(text),
        ),
    )
    result = _verify(path)
    assert not result.ok and result.bad_seq == 6 and "inserted" in (result.problem or "")

    # an entry inserted in the middle by renumbering the ones after it
    conn.execute("DELETE FROM audit WHERE seq = 6")
    for seq in range(5, 2, -1):
        conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq + 1, seq))
    conn.execute(
        "INSERT INTO audit SELECT 3, ts, action, 'forger', purpose, gallery, body, prev_hash, hash "
        "FROM audit WHERE seq = 2"
    )
    result = _verify(path)
    assert not result.ok and result.bad_seq == 3, result


def test_anchored_head_detects_a_rewritten_chain(any_store: Store, location: str) -> None:
    _append(any_store, 3)
    with any_store.read() as tx:
        anchor = tx.audit_head()
    assert anchor is not None
    _append(any_store, 2, start_day=10)
    assert _verify(location, anchor).ok
    assert not _verify(location, AuditHead(anchor.seq, "0" * 64)).ok


def test_retention_purge_keeps_the_chain_verifiable(any_store: Store, location: str) -> None:
    _append(any_store, 8)
    policy_hash = _retention_policy(any_store)
    for _round in range(2):
        with any_store.write() as tx:
            cutoff = "2024-01-04T00:00:00.000000Z" if _round == 0 else "2024-01-07T00:00:00.000000Z"
            purged = tx.purge_audit_before(cutoff)
            assert purged is not None
            first, last, last_hash = purged
            tx.append_audit(
                AuditDraft(
                    action=PURGE_ACTION,
                    actor="retention",
                    purpose="retention",
                    policy_hash=policy_hash,
                    details={"purged_from_seq": first, "purged_to_seq": last, "last_hash": last_hash, "cutoff": cutoff},
                ),
                "2024-02-01T00:00:00.000000Z",
            )
        result = _verify(location)
        assert result.ok, result
    assert result.first_seq == 7
    # deleting more old entries without a checkpoint is caught
    _raw(location).execute("DELETE FROM audit WHERE seq = 7")
    bad = _verify(location)
    assert not bad.ok and bad.bad_seq == 7, bad


def _retention_policy(store: Store) -> str:
    """A policy keeping audit entries 20 days, in the store's policy history (retention checkpoints must name one)."""
    from faceledger.ledger import EXAMPLE_POLICY, parse_policy

    loaded = parse_policy(EXAMPLE_POLICY.replace("# audit_days = 2190", "audit_days = 20"))
    with store.write() as tx:
        tx.put_policy(loaded.hash, loaded.text, "2024-01-01T00:00:00.000000Z", "test")
    return loaded.hash


def _writer(path: str, who: int, n: int) -> None:
    with SQLiteStore.open(path) as s:
        for i in range(n):
            with s.write() as tx:
                tx.append_audit(
                    AuditDraft(action="test", actor=f"p{who}", purpose="concurrency", details={"i": i}),
                    f"2024-01-01T00:00:{i % 60:02d}.000000Z",
                )
                tx.bump_data_version()


def test_two_processes_appending_at_once_lose_nothing(store: SQLiteStore, tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, who, 40)) for who in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    result = _verify(Path(path))
    assert result.ok and result.entries == 80
    with store.read() as tx:
        assert tx.data_version() == 80


def test_api_keys(store: SQLiteStore) -> None:
    with store.write() as tx:
        record, token = create_api_key(tx, owner="alice", role="reviewer", created_by="admin", now="2024-01-01Z")
        assert token.startswith("flk_") and record.secret_sha256 != token
        assert authenticate(tx, token).id == record.id
        with pytest.raises(AccessDenied):
            authenticate(tx, token[:-1] + ("A" if token[-1] != "A" else "B"))
        with pytest.raises(AccessDenied):
            authenticate(tx, "garbage")
        with pytest.raises(ValueError, match="role"):
            create_api_key(tx, owner="x", role="root", created_by="admin", now="2024-01-01Z")
        revoke_api_key(tx, record.id, now="2024-01-02Z")
        with pytest.raises(AccessDenied, match="revoked"):
            authenticate(tx, token)
        keys = list_api_keys(tx)
        assert [k.id for k in keys] == [record.id] and not keys[0].active
        assert "secret_sha256" not in keys[0].to_dict()


def _forge(conn: _Raw, seq: int, prev: str, template_seq: int, actor: str) -> None:
    """Insert a well-formed entry at ``seq`` following ``prev`` (content copied from ``template_seq``)."""
    body = json.loads(conn.execute("SELECT body FROM audit WHERE seq = ?", (template_seq,)).fetchone()[0])
    body.update(seq=seq, prev=prev, actor=actor)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    conn.execute(
        "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, body["ts"], body["action"], actor, body["purpose"], body["gallery"], text, prev, sha256_hex(text)),
    )


def test_a_well_formed_entry_slipped_in_by_renumbering_is_named(any_store: Store, location: str) -> None:
    _append(any_store, 50)
    path = location
    conn = _raw(path)
    for seq in range(50, 24, -1):
        conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq + 1, seq))
    prev = conn.execute("SELECT hash FROM audit WHERE seq = 24").fetchone()[0]
    _forge(conn, 25, prev, 24, "forger")
    result = _verify(path)
    assert not result.ok and result.bad_seq == 25 and "inserted" in (result.problem or ""), result


def test_a_removal_with_renumbering_is_named(any_store: Store, location: str) -> None:
    _append(any_store, 30)
    path = location
    conn = _raw(path)
    conn.execute("DELETE FROM audit WHERE seq = 20")
    for seq in range(21, 31):
        conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq - 1, seq))
    result = _verify(path)
    assert not result.ok and result.bad_seq == 20 and "removed" in (result.problem or ""), result


def test_a_wiped_ledger_is_named_from_its_first_entry(tmp_path: Path) -> None:
    from faceledger.gallery import Gallery
    from faceledger.ledger import verify_audit

    db = tmp_path / "g.db"
    with Gallery.init(db, actor="setup") as g:
        for i in range(5):
            g.create_api_key(f"k{i}", "auditor", actor="setup")
    conn = _raw(db)
    conn.execute("DELETE FROM audit")
    result = _verify(db)
    assert not result.ok and result.bad_seq == 1 and "1..8 removed" in (result.problem or ""), result
    # Also without the recorded head: an initialised gallery with an empty ledger is not "ok".
    conn.execute("DELETE FROM meta WHERE key = 'audit_head'")
    with SQLiteStore.open(db) as s, s.read() as tx:
        wiped = verify_audit(tx)
    assert not wiped.ok and wiped.bad_seq == 1 and "initialised" in (wiped.problem or ""), wiped
