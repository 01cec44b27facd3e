"""Signed heads: an Ed25519 key outside the database signs checkpoints and retention checkpoints; verification checks
every signature against the key file's (or a published) public key, so a rebuilt chain, a forged checkpoint or a
hand-made retention checkpoint is named even when every hash in it is consistent."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from faceledger.ledger import AuditDraft, SQLiteStore, verify_audit
from faceledger.ledger.audit import sha256_hex
from faceledger.ledger.errors import MasterKeyError
from faceledger.ledger.signing import (
    CHECKPOINT_ACTION,
    PURGE_ACTION,
    SIGNING_KEY_ACTION,
    SignedHead,
    SigningKey,
    create_signing_key_file,
    load_signing_key,
    purge_statement,
    sign_head,
    signing_key_file,
)


def _entry(store: SQLiteStore, action: str, day: int, details: dict[str, object] | None = None) -> tuple[int, str]:
    with store.write() as tx:
        entry = tx.append_audit(
            AuditDraft(action=action, actor="a", purpose="p", details=details or {"n": day}),
            f"2024-01-{day:02d}T00:00:00.000000Z",
        )
    return entry.seq, entry.hash


def _register(store: SQLiteStore, key: SigningKey, day: int = 1) -> None:
    _entry(store, SIGNING_KEY_ACTION, day, {"key_id": key.id, "public_key": key.public_b64})


def _checkpoint(store: SQLiteStore, key: SigningKey, day: int) -> SignedHead:
    with store.read() as tx:
        head = tx.audit_head()
    assert head is not None
    signed = sign_head(key, head.seq, head.hash, f"2024-01-{day:02d}T00:00:00.000000Z")
    details = {k: v for k, v in signed.to_dict().items() if k not in ("kind", "public_key")}
    _entry(store, CHECKPOINT_ACTION, day, details)
    return signed


def _verify(path: Path, public: bytes | None = None):  # type: ignore[no-untyped-def]
    with SQLiteStore.open(path) as s, s.read() as tx:
        return verify_audit(tx, public_key=public)


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[SQLiteStore, SigningKey, Path]:
    path = tmp_path / "ledger.db"
    store = SQLiteStore.open(path, create=True)
    key = create_signing_key_file(tmp_path / "ledger.db.signing.key")
    _register(store, key)
    for day in range(2, 8):
        _entry(store, "identify", day)
    _checkpoint(store, key, 8)
    for day in range(9, 12):
        _entry(store, "identify", day)
    yield store, key, path
    store.close()


def _retention_policy(store: SQLiteStore) -> str:
    """A policy keeping audit entries 20 days, in the store's policy history (retention checkpoints must name one)."""
    from faceledger.ledger import EXAMPLE_POLICY, parse_policy

    loaded = parse_policy(EXAMPLE_POLICY.replace("# audit_days = 2190", "audit_days = 20"))
    with store.write() as tx:
        tx.put_policy(loaded.hash, loaded.text, "2024-01-01T00:00:00.000000Z", "test")
    return loaded.hash


def test_key_file_is_private_and_named_beside_the_master_key(tmp_path: Path) -> None:
    assert signing_key_file(tmp_path / "walk.db.key") == tmp_path / "walk.db.signing.key"
    key = create_signing_key_file(tmp_path / "s.key")
    assert (os.stat(tmp_path / "s.key").st_mode & 0o777) == 0o600
    assert load_signing_key(tmp_path / "s.key").id == key.id  # type: ignore[union-attr]
    with pytest.raises(MasterKeyError, match="already exists"):
        create_signing_key_file(tmp_path / "s.key")
    os.chmod(tmp_path / "s.key", 0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_signing_key(tmp_path / "s.key")
    assert load_signing_key(tmp_path / "none.key") is None
    created = load_signing_key(tmp_path / "new.key", create=True)
    assert created is not None and (tmp_path / "new.key").exists()


def test_a_signed_head_round_trips_and_any_change_breaks_it(tmp_path: Path) -> None:
    key = create_signing_key_file(tmp_path / "s.key")
    head = sign_head(key, 42, "ab" * 32, "2026-12-02T00:00:00Z")
    assert head.valid() and head.valid(key.public)
    again = SignedHead.from_dict(head.to_dict())
    assert again == head and again.valid()
    for field, value in (("seq", 43), ("hash", "cd" * 32), ("ts", "2026-12-03T00:00:00Z")):
        forged = SignedHead.from_dict({**head.to_dict(), field: value})
        assert not forged.valid(), field
    other = create_signing_key_file(tmp_path / "other.key")
    assert not head.valid(other.public)
    with pytest.raises(ValueError, match="needs seq"):
        SignedHead.from_dict({"seq": 1})


def test_a_signed_ledger_verifies_with_the_key_files_public_key(ledger: tuple[SQLiteStore, SigningKey, Path]) -> None:
    _, key, path = ledger
    assert _verify(path).ok
    assert _verify(path, key.public).ok


def test_a_chain_rebuilt_by_someone_without_the_key_is_named(
    ledger: tuple[SQLiteStore, SigningKey, Path], tmp_path: Path
) -> None:
    _, key, path = ledger
    # The administrator rewrites entry 3 and re-hashes every entry after it, and the recorded head: every hash and
    # link is consistent again, but the checkpoint at entry 8 signed the old hash of entry 7.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_append_only")
    rows = conn.execute("SELECT seq, body FROM audit ORDER BY seq").fetchall()
    prev = conn.execute("SELECT hash FROM audit WHERE seq = 2").fetchone()[0]
    import json

    for seq, body in rows[2:]:
        data = json.loads(body)
        if seq == 3:
            data["actor"] = "someone else"
        data["prev"] = prev
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = sha256_hex(text)
        conn.execute(
            "UPDATE audit SET body = ?, prev_hash = ?, hash = ?, actor = ? WHERE seq = ?",
            (text, prev, digest, data["actor"], seq),
        )
        prev = digest
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{rows[-1][0]}:{prev}",))
    result = _verify(path, key.public)
    assert not result.ok and result.bad_seq == 7 and "signed checkpoint" in (result.problem or ""), result


def test_a_forged_checkpoint_or_key_is_named(ledger: tuple[SQLiteStore, SigningKey, Path], tmp_path: Path) -> None:
    store, key, path = ledger
    forger = create_signing_key_file(tmp_path / "forger.key")
    _checkpoint(store, forger, 20)  # a checkpoint signed with another key
    result = _verify(path, key.public)
    assert not result.ok and "is not signed by signing key" in (result.problem or ""), result
    # Registering the forger's key on the ledger does not help against the real public key.
    _register(store, forger, 21)
    result = _verify(path, key.public)
    assert not result.ok and "not the one given" in (result.problem or ""), result


def test_a_ledger_with_no_key_recorded_fails_against_a_given_key(tmp_path: Path) -> None:
    store = SQLiteStore.open(tmp_path / "plain.db", create=True)
    _entry(store, "identify", 1)
    store.close()
    key = create_signing_key_file(tmp_path / "s.key")
    assert _verify(tmp_path / "plain.db").ok  # unsigned, and nobody claims otherwise
    result = _verify(tmp_path / "plain.db", key.public)
    assert not result.ok and "records no signing key" in (result.problem or "")


def test_a_hand_made_retention_checkpoint_is_named(ledger: tuple[SQLiteStore, SigningKey, Path]) -> None:
    store, key, path = ledger
    policy_hash = _retention_policy(store)
    with store.write() as tx:
        first, last, last_hash = tx.purge_audit_before("2024-01-05T00:00:00.000000Z")  # type: ignore[misc]
    # Signed by the key: valid.
    ts = "2024-02-01T00:00:00.000000Z"
    signature = key.sign(purge_statement(last, last_hash, ts))
    with store.write() as tx:
        tx.append_audit(
            AuditDraft(
                action=PURGE_ACTION, actor="retention", purpose="retention", policy_hash=policy_hash,
                details={"purged_from_seq": first, "purged_to_seq": last, "last_hash": last_hash,
                         "signature": signature, "key_id": key.id, "public_key": key.public_b64,
                         "cutoff": "2024-01-05T00:00:00.000000Z"},
            ),
            ts,
        )  # fmt: skip
    assert _verify(path, key.public).ok
    # Without the signature (an administrator deleting old entries by hand): named.
    with store.write() as tx:
        first, last, last_hash = tx.purge_audit_before("2024-01-07T00:00:00.000000Z")  # type: ignore[misc]
        tx.append_audit(
            AuditDraft(
                action=PURGE_ACTION, actor="retention", purpose="retention",
                details={"purged_from_seq": first, "purged_to_seq": last, "last_hash": last_hash},
            ),
            "2024-02-02T00:00:00.000000Z",
        )  # fmt: skip
    result = _verify(path, key.public)
    assert not result.ok and "retention checkpoint" in (result.problem or "") and "not signed" in (result.problem or "")
