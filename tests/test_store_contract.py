"""The store contract, run against both backends: SQLite (a file) and PostgreSQL (a real server, tests/postgres.py).

Everything here must hold on both; what only one of them has (SQLite's WAL file and its permissions, raw-file
tampering) is tested in tests/test_ledger_store.py. The PostgreSQL cases fail, not skip, when CI=true and no
server can be started.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import threading
from pathlib import Path

import pytest

from faceledger.ledger import AuditDraft, StoreError, verify_audit
from faceledger.ledger.errors import DatabaseMissingError, DuplicateError
from faceledger.ledger.records import Consent, Subject, SubjectKey, TemplateRecord
from faceledger.ledger.sql_base import migrations
from faceledger.ledger.store import Store, open_store

T0 = "2024-01-01T00:00:00.000000Z"
CONSENT = Consent("c1", "s1", "staff", "desk", "explicit consent", "access-control", "form.pdf", T0, None, None, None,
                  T0, "test")  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A location where no faceledger database exists yet, for each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "contract.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(location: str) -> Store:
    s = open_store(location, create=True)
    yield s
    s.close()


def _draft(i: int, actor: str = "operator") -> AuditDraft:
    return AuditDraft(action="identify", actor=f"{actor}{i}", purpose="access-control", gallery="staff")


def _enroll_rows(store: Store, subject: str, n_templates: int = 2) -> None:
    with store.write() as tx:
        tx.ensure_gallery("staff", T0)
        tx.add_subject(Subject(subject, "staff", T0, "test"))
        tx.add_subject_key(SubjectKey(f"k-{subject}", subject, b"\x00wrapped\xff" * 4, "mk", T0))
        for i in range(n_templates):
            tx.add_template(
                TemplateRecord(
                    f"t-{subject}-{i}",
                    subject,
                    f"k-{subject}",
                    "sface",
                    128,
                    bytes(12),
                    bytes(range(256)) * 2,
                    f"src{i}",
                    0,
                    0.875,
                    T0,
                )
            )
        tx.bump_data_version()


def test_schema_is_created_once_and_reopening_applies_nothing(store: Store, location: str) -> None:
    dialect = "postgresql" if location.startswith("postgresql") else "sqlite"
    assert store.schema_version() == len(migrations(dialect)) == len(migrations("sqlite"))
    with store.write() as tx:
        tx.set_meta("marker", "kept")
    again = open_store(location)
    try:
        with again.read() as tx:
            assert tx.get_meta("marker") == "kept"
        assert again.schema_version() == store.schema_version()
    finally:
        again.close()


def test_missing_database_is_named(location: str) -> None:
    with pytest.raises(DatabaseMissingError, match="initialise"):
        open_store(location)


def test_committed_values_round_trip_exactly(store: Store) -> None:
    _enroll_rows(store, "s1")
    with store.write() as tx:
        tx.add_consent(CONSENT)
    with store.read() as tx:
        [t0, t1] = tx.templates_of("s1")
        assert t0.ciphertext == bytes(range(256)) * 2 and isinstance(t0.ciphertext, bytes)
        assert t0.nonce == bytes(12) and t0.quality == 0.875 and t0.dim == 128 and t1.source_sha256 == "src1"
        key = tx.get_subject_key("s1")
        assert key is not None and key.wrapped == b"\x00wrapped\xff" * 4
        assert tx.template_counts() == {"s1": 2}
        assert tx.get_consent("c1") == CONSENT
        assert tx.data_version() == 1


def test_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.append_audit(_draft(0), T0)
        tx.set_meta("half", "done")
        raise RuntimeError("crash in the middle")
    with store.read() as tx:
        assert tx.get_meta("half") is None and tx.audit_head() is None and list(tx.audit_rows()) == []


def test_a_duplicate_is_refused_and_the_transaction_goes_on(store: Store) -> None:
    _enroll_rows(store, "s1", n_templates=1)
    with store.write() as tx:
        with pytest.raises(DuplicateError, match="already exists"):
            tx.add_subject(Subject("s1", "staff", T0, "test"))
        tx.set_meta("after", "the duplicate")  # PostgreSQL would have aborted the transaction without a savepoint
        tx.append_audit(_draft(1), T0)
    with store.read() as tx:
        assert tx.get_meta("after") == "the duplicate" and tx.audit_head() is not None


def test_a_read_transaction_cannot_write(store: Store) -> None:
    with store.read() as tx, pytest.raises(StoreError, match="inside a read"), store.write():
        pass
    with store.write() as outer:
        outer.set_meta("a", "1")
        with store.write() as inner:  # nested blocks of one thread share the transaction
            inner.set_meta("b", "2")
            assert inner.get_meta("a") == "1"
    with store.read() as tx:
        assert (tx.get_meta("a"), tx.get_meta("b")) == ("1", "2")


def test_erasure_deletes_templates_and_key_together(store: Store) -> None:
    _enroll_rows(store, "s1")
    _enroll_rows(store, "s2")
    with store.write() as tx:
        tx.delete_subject("s1")
        tx.bump_data_version()
    with store.read() as tx:
        assert tx.templates_of("s1") == [] and tx.get_subject_key("s1") is None and tx.get_subject("s1") is None
        assert [r.subject_id for r in tx.template_refs()] == ["s2", "s2"] and tx.data_version() == 3
    assert store.reclaim() is True


def test_audit_chain_verifies_and_its_rows_cannot_be_updated(store: Store) -> None:
    with store.write() as tx:
        for i in range(5):
            tx.append_audit(_draft(i), T0)
    with store.read() as tx:
        result = verify_audit(tx)
        entries = tx.audit_entries()
        assert [e.seq for e in tx.audit_entries(after_seq=2, limit=2)] == [3, 4]
    assert result.ok and result.entries == 5 and result.head is not None and result.head.seq == 5
    assert json.loads(entries[1].body)["prev"] == entries[0].hash
    with pytest.raises(Exception, match="append-only"), store.write() as tx:
        tx._c.execute("UPDATE audit SET actor = ? WHERE seq = ?", ("someone else", 2))  # type: ignore[attr-defined]


def test_listings_are_in_byte_order(store: Store) -> None:
    """Both databases order text the same way (PostgreSQL's columns use the "C" collation, whatever the locale)."""
    names = ["b", "B", "a", "_x", "é", "Z"]
    for name in names:
        _enroll_rows(store, name, n_templates=0)
    with store.read() as tx:
        assert [s.id for s in tx.list_subjects()] == sorted(names)


def _writer(location: str, who: int, n: int) -> None:
    with open_store(location) as s:
        for i in range(n):
            with s.write() as tx:
                tx.append_audit(AuditDraft(action="test", actor=f"p{who}", purpose="concurrency", details={"i": i}), T0)
                tx.bump_data_version()


def test_writers_in_several_processes_and_threads_make_one_chain(store: Store, location: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(location, who, 40)) for who in range(2)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_writer, args=(location, 10 + who, 20)) for who in range(2)]
    for t in threads:
        t.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    for t in threads:
        t.join(120)
    with store.read() as tx:
        result = verify_audit(tx)
        assert tx.data_version() == 120
        actors = [json.loads(e.body)["actor"] for e in tx.audit_entries()]
    assert result.ok and result.entries == 120
    assert sorted(set(actors)) == ["p0", "p1", "p10", "p11"] and actors.count("p0") == 40


def test_a_change_in_one_process_is_seen_by_the_next_read_of_another(store: Store, location: str) -> None:
    other = open_store(location)
    try:
        with other.read() as tx:
            seen = tx.data_version()
        _enroll_rows(store, "s1")
        with other.read() as tx:
            assert tx.data_version() == seen + 1 and [r.subject_id for r in tx.template_refs()] == ["s1", "s1"]
    finally:
        other.close()


def test_a_database_of_something_else_is_refused(location: str, tmp_path: Path) -> None:
    if location.startswith("postgresql"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER)")
    else:
        import sqlite3

        with sqlite3.connect(location) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="something else"):
        open_store(location, create=True)


def test_counts_are_made_by_the_database(store: Store) -> None:
    _enroll_rows(store, "s1")
    _enroll_rows(store, "s2", n_templates=1)
    cases = [  # (given, expires, withdrawn): valid at 2024-06-01 or not
        ("2024-01-01T00:00:00.000000Z", None, None),
        ("2024-01-01T00:00:00.000000Z", "2025-01-01T00:00:00.000000Z", None),
        ("2024-01-01T00:00:00.000000Z", "2024-03-01T00:00:00.000000Z", None),  # expired
        ("2024-01-01T00:00:00.000000Z", None, "2024-02-01T00:00:00.000000Z"),  # withdrawn
        ("2024-07-01T00:00:00.000000Z", None, None),  # not yet valid
    ]
    with store.write() as tx:
        for i, (given, expires, withdrawn) in enumerate(cases):
            tx.add_consent(
                Consent(f"c{i}", "s1", "staff", "desk", "consent", "access-control", "f", given, expires, withdrawn,
                        None, T0, "test")
            )  # fmt: skip
    with store.read() as tx:
        counts = tx.counts("2024-06-01T00:00:00.000000Z")
    assert counts == {"subjects": 2, "templates": 3, "valid_consents": 2, "pending_reviews": 0}


def test_a_server_that_cannot_be_reached_is_named_at_once(postgres_server: str) -> None:
    base = postgres_server.rsplit("/", 1)[0]
    with pytest.raises(StoreError, match='database "no_such_db" does not exist'):
        open_store(f"{base}/no_such_db")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as caught:
        open_store(f"postgresql://faceledger:s3cret@127.0.0.1:{port}/x", busy_timeout=2)
    assert "s3cret" not in str(caught.value) and "faceledger:***@" in str(caught.value)


def test_audit_activity_is_counted_by_the_database(store: Store) -> None:
    entries = [  # (ts, action, gallery, details)
        ("2024-01-01T08:00:00.000000Z", "enroll", "staff", {"templates_added": 2}),
        ("2024-01-01T09:00:00.000000Z", "enroll", "staff", {"templates_added": 0}),
        ("2024-01-01T10:00:00.000000Z", "identify", "staff", {"faces": 3, "matched_faces": 1, "candidates": [{}, {}]}),
        ("2024-01-01T11:00:00.000000Z", "identify", "staff", {"faces": 2, "matched_faces": 0, "candidates": []}),
        ("2024-01-02T08:00:00.000000Z", "review.confirm", "staff", {"status_after": "confirmed"}),
        ("2024-01-02T09:00:00.000000Z", "review.reject", "staff", {"status_after": "pending"}),
        ("2024-01-02T10:00:00.000000Z", "consent.withdraw", "staff", {"consent_ids": ["a", "b", "c"]}),
        ("2024-01-02T11:00:00.000000Z", "ledger.init", None, {}),
        ("2024-01-03T08:00:00.000000Z", "identify", "staff", {"faces": 7}),
    ]
    with store.write() as tx:
        for ts, action, gallery, details in entries:
            tx.append_audit(AuditDraft(action, "ops", "access-control", gallery, details=details), ts)
    with store.read() as tx:
        rows, first, last = tx.audit_activity("2024-01-01T09:30:00.000000Z", "2024-01-03T00:00:00.000000Z")
        everything = tx.audit_activity()
    assert (first, last) == ("2024-01-01T10:00:00.000000Z", "2024-01-02T11:00:00.000000Z")
    by_key = {(r.day, r.gallery, r.action): r for r in rows}
    assert len(rows) == 5 and by_key[("2024-01-02", "-", "ledger.init")].entries == 1
    searches = by_key[("2024-01-01", "staff", "identify")]
    assert (searches.entries, searches.faces, searches.matched_faces, searches.candidates) == (2, 5, 1, 2)
    assert (
        by_key[("2024-01-02", "staff", "review.confirm")].confirmed,
        by_key[("2024-01-02", "staff", "review.reject")].rejected,
    ) == (1, 0)
    assert by_key[("2024-01-02", "staff", "consent.withdraw")].consent_ids == 3
    enrolled = next(r for r in everything[0] if r.action == "enroll")
    assert (enrolled.entries, enrolled.with_templates, enrolled.templates_added) == (2, 1, 2)
    assert sum(r.entries for r in everything[0]) == len(entries) and everything[1:] == (entries[0][0], entries[-1][0])
