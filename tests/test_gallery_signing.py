"""The gallery's signed ledger, tried as a careful database administrator would: the signing key lives beside the
master key (never in the database), init and every retention run write a signed checkpoint, and the attacks that a
bare hash chain let through are named: old entries deleted behind a fake retention checkpoint (even with the true
head anchored), a wiped ledger, a copy of the database checked against a published head."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import GalleryLocation, drop_append_only, new_database, raw_sql, stored_bytes
from faceledger.gallery import Gallery
from faceledger.interfaces.cli import main
from faceledger.ledger import AuditDraft, AuditHead
from faceledger.ledger.signing import SignedHead, signing_key_file

EXAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "src" / "faceledger" / "examples" / "astronaut.jpg"


@pytest.fixture
def gallery(gallery_location: GalleryLocation) -> Gallery:
    """About 50 entries on SQLite, then on PostgreSQL."""
    g = Gallery.init(gallery_location.location, key_file=gallery_location.key_file, actor="setup")
    for i in range(45):  # about 50 entries, as in the trials
        g.create_api_key(f"key-{i}", "auditor", actor="setup")
    yield g
    g.close()


def _sql(g: Gallery, statement: str, *params: object) -> list[tuple[object, ...]]:
    return raw_sql(g.store.location, statement, *params)


def test_init_keeps_the_signing_key_outside_the_database_and_signs_a_first_checkpoint(gallery: Gallery) -> None:
    key_file = signing_key_file(gallery.key_file)  # type: ignore[arg-type]
    assert key_file.exists() and (os.stat(key_file).st_mode & 0o777) == 0o600
    actions = [e.data["action"] for e in gallery.audit_entries()[:3]]
    assert actions == ["ledger.init", "ledger.signing_key", "audit.checkpoint"]
    secret = key_file.read_text().strip()
    assert secret.encode() not in stored_bytes(gallery.store.location)
    assert gallery.audit_verify().ok


def test_old_entries_deleted_behind_a_fake_retention_checkpoint_are_named(gallery: Gallery) -> None:
    true_head = gallery.audit_head()
    assert true_head is not None and true_head.seq > 40
    ((last_hash,),) = _sql(gallery, "SELECT hash FROM audit WHERE seq = 29")
    _sql(gallery, "DELETE FROM audit WHERE seq <= 29")
    # The administrator appends the checkpoint a retention run would have written, through the store itself.
    with gallery.store.write() as tx:
        tx.append_audit(
            AuditDraft(
                action="audit.purge", actor="retention", purpose="retention",
                details={"purged_from_seq": 1, "purged_to_seq": 29, "last_hash": last_hash},
            ),
            "2026-12-02T00:00:00.000000Z",
        )  # fmt: skip
    for expected in (None, true_head):
        result = gallery.audit_verify(expected)
        assert not result.ok, result
        assert "no signing key" in (result.problem or "") or "not signed" in (result.problem or ""), result


def test_a_wiped_ledger_is_an_error(gallery: Gallery) -> None:
    _sql(gallery, "DELETE FROM audit")
    _sql(gallery, "DELETE FROM meta WHERE key = 'audit_head'")
    result = gallery.audit_verify()
    assert not result.ok and result.bad_seq == 1, result


def test_retention_without_the_signing_key_does_not_purge_the_ledger(
    tmp_path: Path, gallery_location: GalleryLocation
) -> None:
    from faceledger.ledger import EXAMPLE_POLICY

    policy = tmp_path / "p.toml"
    policy.write_text(EXAMPLE_POLICY.replace("# audit_days = 2190", "audit_days = 1"), encoding="utf-8")
    db, key_file = gallery_location.location, gallery_location.key_file
    from datetime import UTC, datetime, timedelta

    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    with Gallery.init(db, key_file=key_file, actor="setup", policy=policy, clock=lambda: moment[0]) as g:
        g.create_api_key("k", "auditor", actor="setup")
    signing_key_file(key_file).rename(tmp_path / "elsewhere.key")
    moment[0] += timedelta(days=10)
    with Gallery.open(db, key_file=key_file, clock=lambda: moment[0]) as g:
        report = g.purge()
        assert report.audit_entries_purged == 0 and report.checkpoint_seq is None
        assert any("signing key" in note for note in report.notes)
        assert g.audit_entries()[0].seq == 1
    (tmp_path / "elsewhere.key").rename(signing_key_file(key_file))
    with Gallery.open(db, key_file=key_file, clock=lambda: moment[0]) as g:
        report = g.purge()
        assert report.audit_entries_purged > 0 and report.checkpoint_seq is not None
        result = g.audit_verify()
        assert result.ok and result.first_seq is not None and result.first_seq > 1, result


def test_a_copy_of_the_database_is_checked_against_a_published_head(
    gallery: Gallery, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db, key_file = gallery.store.location, str(gallery.key_file)
    runner = CliRunner()
    printed = runner.invoke(main, ["audit", "head", "--signed", "--db", db, "--key-file", key_file,
                                   "--actor", "auditor-1"])  # fmt: skip
    assert printed.exit_code == 0, printed.output
    published = SignedHead.from_dict(json.loads(printed.output))
    assert published.valid()
    head_file = tmp_path / "published.json"
    head_file.write_text(printed.output, encoding="utf-8")
    if GalleryLocation(db, Path()).postgres:  # a copy made by the server (nobody may be connected to the source)
        gallery.close()
        copy = new_database(request.getfixturevalue("postgres_server"), template=db)
        gallery = Gallery.open(db, key_file=key_file)
        request.addfinalizer(gallery.close)
    else:
        copy = str(tmp_path / "copy.db")
        with sqlite3.connect(db) as source, sqlite3.connect(copy) as target:
            source.backup(target)
    # The auditor has the copy and the published head (with its public key), not the key files.
    ok = runner.invoke(main, ["audit", "verify", "--db", copy, "--expect-signed", str(head_file),
                              "--key-file", str(tmp_path / "no.key")])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    drop_append_only(copy)
    raw_sql(copy, "UPDATE audit SET body = replace(body, ?, ?) WHERE seq = 12", '"setup"', '"someone"')
    bad = runner.invoke(main, ["audit", "verify", "--db", copy, "--expect-signed", str(head_file),
                               "--key-file", str(tmp_path / "no.key")])  # fmt: skip
    assert bad.exit_code == 1 and "entry 12" in bad.output
    forged = {**published.to_dict(), "seq": published.seq - 1}
    head_file.write_text(json.dumps(forged), encoding="utf-8")
    refused = runner.invoke(main, ["audit", "verify", "--db", db, "--key-file", key_file,
                                   "--expect-signed", str(head_file)])  # fmt: skip
    assert refused.exit_code == 1 and "valid signature" in refused.output
    assert gallery.audit_verify(AuditHead(published.seq, published.hash)).ok


def test_a_policy_changed_in_the_database_is_refused_not_used(
    tmp_path: Path, gallery_location: GalleryLocation
) -> None:
    from faceledger.ledger import EXAMPLE_POLICY, StoreError
    from faceledger.ledger.audit import sha256_hex

    db, key_file = gallery_location.location, gallery_location.key_file
    Gallery.init(db, key_file=key_file, actor="setup").close()
    ((active,),) = raw_sql(db, "SELECT value FROM meta WHERE key = 'policy_hash'")
    loose = EXAMPLE_POLICY.replace("target_fmr = 1e-3", "target_fmr = 1e-1")
    assert loose != EXAMPLE_POLICY
    # The text rewritten in place (target FMR 1e-3 to 1e-1), as in the trials: refused, naming the policy.
    raw_sql(db, "UPDATE policies SET body = ? WHERE hash = ?", loose, active)
    with Gallery.open(
        db, key_file=key_file
    ) as g:  # it opens (the ledger can be verified, a policy set again), but is not used
        assert g.audit_verify().ok
        with pytest.raises(StoreError, match="changed outside faceledger"):
            g.identify(EXAMPLE_IMAGE, actor="door", purpose="access-control")
    # Another policy inserted with its right hash and marked active: the ledger put a different one in force.
    raw_sql(db, "UPDATE policies SET body = ? WHERE hash = ?", EXAMPLE_POLICY, active)
    swapped = sha256_hex(loose)
    raw_sql(db, "INSERT INTO policies VALUES (?, ?, '2026-01-01T00:00:00Z', 'dba')", swapped, loose)
    raw_sql(db, "UPDATE meta SET value = ? WHERE key = 'policy_hash'", swapped)
    with Gallery.open(db, key_file=key_file) as g, pytest.raises(StoreError, match="swapped outside faceledger"):
        g.identify(EXAMPLE_IMAGE, actor="door", purpose="access-control")
    # Replaced the proper way, by putting a policy in force again: used.
    strict = tmp_path / "strict.toml"
    strict.write_text(EXAMPLE_POLICY.replace("top_k = 5", "top_k = 3"), encoding="utf-8")
    with Gallery.open(db, key_file=key_file) as g:
        g.set_policy(strict, actor="setup")
    with Gallery.open(db, key_file=key_file) as g:
        assert g.policy.policy.identification.top_k == 3


def _retention_gallery(tmp_path: Path, where: GalleryLocation, days: int) -> tuple[str, list]:
    from datetime import UTC, datetime

    from faceledger.ledger import EXAMPLE_POLICY

    policy = tmp_path / "p.toml"
    policy.write_text(EXAMPLE_POLICY.replace("# audit_days = 2190", f"audit_days = {days}"), encoding="utf-8")
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    with Gallery.init(where.location, key_file=where.key_file, actor="setup", policy=policy,
                      clock=lambda: moment[0]) as g:  # fmt: skip
        g.create_api_key("k", "auditor", actor="setup")
    return where.location, moment


def test_a_signed_retention_checkpoint_the_policy_did_not_allow_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gallery_location: GalleryLocation
) -> None:
    from datetime import timedelta

    from faceledger.gallery import retention
    from faceledger.ledger.retention import cutoffs

    db, moment = _retention_gallery(tmp_path, gallery_location, days=30)
    moment[0] += timedelta(days=10)  # nothing is 30 days old yet
    # a service build that purges with its own cut-off (a bug, or someone holding the keys): it signs the checkpoint
    monkeypatch.setattr(retention, "cutoffs", lambda policy, now: replace_audit(cutoffs(policy, now), now))
    with Gallery.open(db, key_file=gallery_location.key_file, clock=lambda: moment[0]) as g:
        report = g.purge()
        assert report.audit_entries_purged > 0
        result = g.audit_verify()
        (seq,) = [e.seq for e in g.audit_entries(action="audit.purge")]
    assert not result.ok and result.bad_seq == seq, result
    assert "(audit_days = 30) allowed only entries before 2025-12-12" in (result.problem or ""), result


def replace_audit(cut: object, now: object) -> object:
    from dataclasses import replace

    from faceledger.ledger.timeutil import to_text

    return replace(cut, audit=to_text(now))  # type: ignore[arg-type,type-var]


def test_a_retention_checkpoint_within_the_policy_verifies(tmp_path: Path, gallery_location: GalleryLocation) -> None:
    from datetime import timedelta

    db, moment = _retention_gallery(tmp_path, gallery_location, days=5)
    moment[0] += timedelta(days=10)
    with Gallery.open(db, key_file=gallery_location.key_file, clock=lambda: moment[0]) as g:
        assert g.purge().audit_entries_purged > 0
        assert g.audit_verify().ok
