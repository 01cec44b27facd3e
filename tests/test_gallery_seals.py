"""The records the ledger describes, tampered with as a careful database administrator would (raw SQL, no master
key): a withdrawn consent revived, an expiry extended, a key promoted or inserted, a candidate confirmed without a
review, a review slipped in, a template deleted, a deployment extended, an account promoted, rows deleted. Each is
refused where it is used, with an error or a report naming it, and ``audit verify`` lists every one."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import GalleryLocation, new_database, raw_sql
from faceledger.gallery import Gallery
from faceledger.interfaces.cli import main
from faceledger.ledger import EXAMPLE_POLICY, parse_policy
from faceledger.ledger.errors import AccessDenied, ConsentError, StoreError, TamperedRecordError

EXAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "src" / "faceledger" / "examples" / "astronaut.jpg"
TWO_REVIEWERS = EXAMPLE_POLICY.replace("reviewers_required = 1", "reviewers_required = 2")
PURPOSE = "access-control"


@pytest.fixture(scope="module")
def made(module_gallery_location: GalleryLocation) -> GalleryLocation:
    """A gallery with one enrolled subject, a candidate awaiting its second review, keys, a user, a deployment;
    on SQLite, then on PostgreSQL."""
    assert TWO_REVIEWERS != EXAMPLE_POLICY
    db = module_gallery_location.location
    g = Gallery.init(db, key_file=module_gallery_location.key_file, actor="admin", policy=parse_policy(TWO_REVIEWERS))
    purpose = g.policy.policy.galleries[0].purposes[0]
    assert purpose == PURPOSE
    for subject in ("ana", "ben"):
        g.add_consent(subject, actor="desk", collected_by="desk", legal_basis="consent", purpose=PURPOSE,
                      evidence_ref=f"form-{subject}")  # fmt: skip
    g.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
    g.withdraw_consent("ben", actor="desk", purpose=PURPOSE)
    found = g.identify(EXAMPLE_IMAGE, actor="op", purpose=PURPOSE)
    assert found.faces[0].candidates, "the example face must find ana"
    g.review(found.faces[0].candidates[0].candidate_id, reviewer="rita", decision="confirm", reason="same face")
    g.create_api_key("door", "operator", actor="admin")
    g.add_user("rev", role="reviewer", password="correct horse battery", actor="admin")
    g.close()
    return module_gallery_location


@pytest.fixture
def gallery(made: GalleryLocation, tmp_path: Path, request: pytest.FixtureRequest) -> Gallery:
    """A fresh copy of the made gallery (database and key files) for one trial."""
    for file in made.key_file.parent.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
        (tmp_path / file.name).chmod(file.stat().st_mode & 0o777)
    if made.postgres:
        location = new_database(request.getfixturevalue("postgres_server"), template=made.location)
    else:
        location = str(tmp_path / Path(made.location).name)
    g = Gallery.open(location, key_file=tmp_path / made.key_file.name)
    yield g
    g.close()


def _sql(g: Gallery, statement: str, *params: object) -> None:
    raw_sql(g.store.location, statement, *params)


def _one(g: Gallery, query: str, *params: object) -> object:
    return raw_sql(g.store.location, query, *params)[0][0]


def _verified_records(g: Gallery) -> tuple[str, ...]:
    result = g.audit_verify()
    assert result.records_checked
    assert result.ok == (not result.records), result
    return result.records


def test_an_untouched_gallery_verifies_with_every_record_checked(gallery: Gallery) -> None:
    result = gallery.audit_verify()
    assert result.ok and result.records_checked and result.records == (), result
    assert gallery.readiness(models=False)["records"] == "ok"


def test_a_withdrawn_consent_set_back_to_valid_is_refused_and_named(gallery: Gallery) -> None:
    consent_id = _one(gallery, "SELECT id FROM consents WHERE subject_id = 'ben'")
    _sql(gallery, "UPDATE consents SET withdrawn_at = NULL, ended_reason = NULL WHERE id = ?", consent_id)
    with pytest.raises(ConsentError):  # enrolling ben again would need that consent
        gallery.enroll("ben", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
    assert f"consent:{consent_id}" in gallery.context.tampered
    assert "degraded" in gallery.readiness(models=False)["records"]
    (line,) = _verified_records(gallery)
    assert line.startswith(f"consent {consent_id!r}") and "changed outside faceledger" in line


def test_an_extended_expiry_and_an_inserted_consent_are_left_out(gallery: Gallery) -> None:
    ana = _one(gallery, "SELECT id FROM consents WHERE subject_id = 'ana'")
    _sql(gallery, "UPDATE consents SET expires_at = '2099-01-01T00:00:00.000000Z' WHERE id = ?", ana)
    _sql(gallery, "INSERT INTO consents SELECT 'forged', 'carl', gallery, collected_by, legal_basis, purpose, "
                  "evidence_ref, given_at, NULL, NULL, NULL, recorded_at, recorded_by, category FROM consents "
                  "WHERE id = ?", ana)  # fmt: skip
    shown = gallery.consents(actor="dpo", purpose="administration")
    assert {c.id for c in shown} == {_one(gallery, "SELECT id FROM consents WHERE subject_id = 'ben'")}
    # ana's consent no longer counts: she is not searched (refused, not silently searched on a forged expiry)
    found = gallery.identify(EXAMPLE_IMAGE, actor="op", purpose=PURPOSE)
    assert all(not face.candidates for face in found.faces)
    lines = _verified_records(gallery)
    assert any(line.startswith(f"consent {ana!r}") and "changed" in line for line in lines), lines
    assert any(line.startswith("consent 'forged'") and "no seal" in line for line in lines), lines


def test_a_promoted_and_an_inserted_admin_key_are_refused(gallery: Gallery) -> None:
    _record, token = gallery.create_api_key("cam", "operator", actor="admin")
    key_id = token.split("_")[1]
    assert gallery.authenticate(token).role == "operator"
    _sql(gallery, "UPDATE api_keys SET role = 'admin' WHERE id = ?", key_id)
    with pytest.raises(AccessDenied, match=f"API key {key_id} is refused.*changed outside faceledger"):
        gallery.authenticate(token)
    # an inserted key: the administrator knows its token, since they chose its hash
    import hashlib

    forged = "flk_abcdef012345_" + "x" * 43
    _sql(gallery, "INSERT INTO api_keys VALUES ('abcdef012345', 'mallory', 'admin', ?, '2026-01-01T00:00:00.000000Z', "
                  "'admin', NULL)", hashlib.sha256(forged.encode()).hexdigest())  # fmt: skip
    with pytest.raises(AccessDenied, match=r"abcdef012345 is refused.*inserted outside faceledger"):
        gallery.authenticate(forged)
    lines = _verified_records(gallery)
    assert {line.split(":")[0] for line in lines} == {f"api key {key_id!r}", "api key 'abcdef012345'"}


def test_a_candidate_confirmed_without_its_second_review_is_refused(gallery: Gallery) -> None:
    candidate = _one(gallery, "SELECT id FROM candidates")
    _sql(gallery, "UPDATE candidates SET status = 'confirmed', decided_at = created_at WHERE id = ?", candidate)
    with pytest.raises(TamperedRecordError, match=f"candidate {candidate!r} does not match the ledger"):
        gallery.review(candidate, reviewer="dana", decision="confirm", reason="looks right")
    assert gallery.candidates(actor="dpo", purpose="administration") == []
    (line,) = _verified_records(gallery)
    assert line.startswith(f"candidate {candidate!r}")


def test_a_review_slipped_in_is_not_counted(gallery: Gallery) -> None:
    candidate = _one(gallery, "SELECT id FROM candidates")
    _sql(gallery, "INSERT INTO reviews VALUES (?, ?, 'ghost', 'confirm', 'ok', '2026-01-01T00:00:00.000000Z')",
         uuid.uuid4().hex, candidate)  # fmt: skip
    (pending,) = gallery.pending_reviews(actor="rita", purpose=PURPOSE)
    assert pending.confirmations == 1  # rita's only
    outcome = gallery.review(candidate, reviewer="dana", decision="confirm", reason="same face")
    assert outcome.confirmations == 2 and outcome.status == "confirmed"  # rita and dana, not the ghost
    (line,) = _verified_records(gallery)
    assert line.startswith("review ") and "no seal" in line


def test_a_deleted_template_leaves_its_subject_out_of_the_search_and_is_named(gallery: Gallery) -> None:
    template = _one(gallery, "SELECT id FROM templates")
    _sql(gallery, "DELETE FROM templates WHERE id = ?", template)
    found = gallery.identify(EXAMPLE_IMAGE, actor="op", purpose=PURPOSE)
    assert all(not face.candidates for face in found.faces)
    checks = gallery.readiness()
    assert "degraded" in checks["records"] and "subject 'ana'" in checks["records"], checks
    lines = _verified_records(gallery)
    assert lines == (f"subject 'ana': does not match the seal of entry {_seal_seq(gallery, 'subject', 'ana')}: "
                     "changed outside faceledger",)  # fmt: skip


def _seal_seq(g: Gallery, kind: str, key: str) -> int:
    return int(_one(g, "SELECT seq FROM seals WHERE kind = ? AND key = ?", kind, key))  # type: ignore[call-overload]


def test_deleted_rows_are_named_by_verify(gallery: Gallery) -> None:
    candidate = _one(gallery, "SELECT id FROM candidates")
    _sql(gallery, "DELETE FROM candidates WHERE id = ?", candidate)
    _sql(gallery, "DELETE FROM users WHERE name = 'rev'")
    lines = _verified_records(gallery)
    assert f"candidate {candidate!r}: deleted outside faceledger" in " ".join(lines)
    assert any(line.startswith("user 'rev': deleted outside faceledger") for line in lines), lines


def test_a_promoted_account_cannot_sign_in(gallery: Gallery) -> None:
    assert (
        gallery.sign_in(address="127.0.0.1", name="rev", password="correct horse battery").principal.role == "reviewer"
    )
    _sql(gallery, "UPDATE users SET role = 'admin' WHERE name = 'rev'")
    with pytest.raises(AccessDenied):
        gallery.sign_in(address="127.0.0.1", name="rev", password="correct horse battery")
    assert "user:rev" in gallery.context.tampered


def test_a_seal_moved_to_another_record_does_not_fit_it(gallery: Gallery) -> None:
    ana = _one(gallery, "SELECT id FROM consents WHERE subject_id = 'ana'")
    ben = _one(gallery, "SELECT id FROM consents WHERE subject_id = 'ben'")
    _sql(gallery, "UPDATE seals SET mac = (SELECT mac FROM seals WHERE key = ?) WHERE key = ?", ben, ana)
    with pytest.raises(TamperedRecordError, match=str(ana)):
        gallery.context.store.read().__enter__().get_consent(ana)


def test_the_seal_marker_removed_refuses_every_write(gallery: Gallery) -> None:
    _sql(gallery, "DELETE FROM meta WHERE key = 'sealed_at'")
    _sql(gallery, "DELETE FROM seals")
    with pytest.raises(StoreError, match=r"seal marker .* is gone.*entry 1 of the ledger"):
        gallery.add_consent("dora", actor="desk", collected_by="desk", legal_basis="consent", purpose=PURPOSE,
                            evidence_ref="form-dora")  # fmt: skip


def test_rotating_the_master_key_keeps_every_seal_and_a_tampered_record_refused(gallery: Gallery) -> None:
    _sql(gallery, "UPDATE users SET role = 'admin' WHERE name = 'rev'")
    gallery.rotate_master_key(actor="admin")
    lines = _verified_records(gallery)
    assert len(lines) == 1 and lines[0].startswith("user 'rev'"), lines  # the rest re-sealed, rev not laundered
    assert gallery.authenticate(gallery.create_api_key("x", "auditor", actor="admin")[1]).role == "auditor"


def test_a_database_made_before_seals_is_sealed_on_its_first_write(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faceledger.ledger import seals

    # stand in for a database of schema 4: no seals, no marker, a ledger that never mentioned them
    _sql(gallery, "DELETE FROM meta WHERE key IN ('sealed_at', 'seals_set', 'seals_tag')")
    _sql(gallery, "DELETE FROM seals")
    monkeypatch.setattr(seals, "ledger_sealed_at", lambda tx: None)
    gallery.create_api_key("after", "auditor", actor="admin")
    (entry,) = gallery.audit_entries(action="state.seal")
    assert {_seal_seq(gallery, "consent", c.id) for c in gallery.consents(actor="dpo", purpose="audit")} == {entry.seq}
    counts = entry.data["details"]["sealed"]
    assert counts["consent"] == 2 and counts["subject"] == 1 and counts["candidate"] == 1 and counts["user"] == 1
    assert _verified_records(gallery) == ()


def test_verify_on_the_command_line_lists_each_record(gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    from faceledger.interfaces.cli import audit as audit_cli

    _sql(gallery, "UPDATE users SET role = 'admin' WHERE name = 'rev'")
    _sql(gallery, "UPDATE api_keys SET role = 'admin' WHERE owner = 'door'")
    gallery.close()
    key_file = str(gallery.key_file)
    result = CliRunner().invoke(main, ["audit", "verify", "--db", gallery.store.location, "--key-file", key_file])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()  # one message a line, each record on its own
    assert lines[0].startswith("faceledger: 2 record(s) do not match the ledger") and lines[0].endswith(":")
    assert sorted(line.split("'")[0] for line in lines[1:]) == ["faceledger:   api key ", "faceledger:   user "]
    assert "user 'rev': does not match the seal" in result.stderr
    monkeypatch.setattr(audit_cli, "RECORDS_SHOWN", 1)  # a gallery altered in bulk: the first ones, then a count
    result = CliRunner().invoke(main, ["audit", "verify", "--db", gallery.store.location, "--key-file", key_file])
    lines = result.stderr.splitlines()
    assert result.exit_code == 1 and len(lines) == 3 and lines[0].endswith("; the first 1:")
    assert lines[2] == "faceledger:   ... and 1 more (`faceledger audit verify --json` lists every one)"


def test_without_the_master_key_verify_says_records_were_not_checked(gallery: Gallery, tmp_path: Path) -> None:
    db = gallery.store.location
    gallery.close()
    assert gallery.key_file is not None
    Path(gallery.key_file).rename(tmp_path / "elsewhere.key")
    result = CliRunner().invoke(main, ["audit", "verify", "--db", db, "--key-file", str(gallery.key_file)])
    assert result.exit_code == 0, result.output
    assert "records not checked (no master key)" in result.output


def test_a_record_deleted_with_its_seal_or_put_back_from_an_earlier_copy_is_noticed(gallery: Gallery) -> None:
    # a revoked key put back as it was before its revocation, with the seal it had then
    record, _token = gallery.create_api_key("van", "operator", actor="admin")
    (before,) = raw_sql(
        gallery.store.location, "SELECT seq, mac FROM seals WHERE kind = 'api_key' AND key = ?", record.id
    )
    gallery.revoke_api_key(record.id, actor="admin")
    assert _verified_records(gallery) == ()
    _sql(gallery, "UPDATE api_keys SET revoked_at = NULL WHERE id = ?", record.id)
    _sql(gallery, "UPDATE seals SET seq = ?, mac = ? WHERE kind = 'api_key' AND key = ?", *before, record.id)
    (line,) = _verified_records(gallery)
    assert "put back from an earlier copy" in line
    # and a key deleted together with its seal
    _sql(gallery, "DELETE FROM seals WHERE kind = 'api_key' AND key = ?", record.id)
    _sql(gallery, "DELETE FROM api_keys WHERE id = ?", record.id)
    (line,) = _verified_records(gallery)
    assert "deleted together with its seal" in line


def test_every_write_keeps_the_set_of_seals_bound_to_the_head(gallery: Gallery) -> None:
    for i in range(3):
        gallery.create_api_key(f"k{i}", "auditor", actor="admin")
        gallery.identify(EXAMPLE_IMAGE, actor="op", purpose=PURPOSE)
    gallery.purge()
    assert gallery.audit_verify().ok


def test_a_deployment_extended_or_given_another_source_authorises_nothing(gallery: Gallery) -> None:
    from datetime import timedelta

    from faceledger.gallery.deployments import authorise
    from faceledger.ledger.errors import DeploymentError

    now = gallery.now()
    gallery.add_deployment(
        "door", actor="chief", purpose="administration", gallery=None, search_purpose=PURPOSE,
        legal_basis="consent", location="front door", sources=["/footage/door-*.mp4"], authorised_by="A. Example",
        authorisation_ref="AUTH-1", valid_to=now + timedelta(hours=1), max_watchlist=10,
    )  # fmt: skip
    ctx = gallery.context
    with ctx.store.read() as tx:
        assert authorise(ctx, tx, "door", "/footage/door-1.mp4", gallery.now())[0].name == "door"
    _sql(gallery, "UPDATE deployments SET valid_to = '2099-01-01T00:00:00.000000Z', sources = '[\"*\"]'")
    later = now + timedelta(days=2)
    with ctx.store.read() as tx, pytest.raises(TamperedRecordError, match="deployment 'door' does not match"):
        authorise(ctx, tx, "door", "/elsewhere/cam.mp4", later)
    with ctx.store.read() as tx, pytest.raises(DeploymentError, match="no deployment active now covers"):
        authorise(ctx, tx, None, "/elsewhere/cam.mp4", later)  # left out when the deployment is not named
    (line,) = _verified_records(gallery)
    assert line.startswith("deployment 'door'")


def test_every_kind_of_change_through_faceledger_keeps_the_records_matching_the_ledger(
    gallery_location: GalleryLocation,
) -> None:
    from datetime import UTC, datetime, timedelta

    moment = [datetime(2026, 3, 1, 9, 0, tzinfo=UTC)]
    policy = EXAMPLE_POLICY.replace("# templates_days = 365", "templates_days = 20")
    assert policy != EXAMPLE_POLICY
    g = Gallery.init(gallery_location.location, key_file=gallery_location.key_file, actor="admin",
                     policy=parse_policy(policy), clock=lambda: moment[0])  # fmt: skip
    for subject, days in (("ana", 100), ("ben", 10)):
        g.add_consent(subject, actor="desk", collected_by="desk", legal_basis="consent", purpose=PURPOSE,
                      evidence_ref="f", expires_at=moment[0] + timedelta(days=days))  # fmt: skip
    g.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
    found = g.identify(EXAMPLE_IMAGE, actor="op", purpose=PURPOSE)
    for match in found.faces[0].candidates:
        g.review(match.candidate_id, reviewer="rita", decision="reject", reason="not the same")
    key, _ = g.create_api_key("door", "operator", actor="admin")
    g.revoke_api_key(key.id, actor="admin")
    g.add_user("rev", role="reviewer", password="correct horse battery", actor="admin")
    g.disable_user("rev", actor="admin")
    g.add_deployment(
        "door", actor="chief", purpose="administration", gallery=None, search_purpose=PURPOSE, legal_basis="consent",
        location="front door", sources=["/footage/*.mp4"], authorised_by="A. Example", authorisation_ref="AUTH-1",
        valid_to=moment[0] + timedelta(days=5), max_watchlist=10,
    )  # fmt: skip
    longer = moment[0] + timedelta(days=6)
    g.change_deployment("door", actor="chief", purpose="administration", reason="longer", valid_to=longer)
    g.end_deployment("door", actor="chief", purpose="administration", reason="done")
    assert g.stats()["templates"] == 1
    moment[0] += timedelta(days=30)  # ben's consent expires, ana's templates pass their retention
    report = g.purge()
    assert report.consents_expired and report.templates_deleted == 1, report
    g.rotate_master_key(actor="admin")
    result = g.audit_verify()
    assert result.ok and result.records_checked and result.records == (), result
    g.close()
