"""Human review with distinct reviewers, retention (expired consent, old audit entries), report, API keys: each on
SQLite and on PostgreSQL (a real server; see tests/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import GalleryLocation
from faceledger import Engine
from faceledger.gallery import Gallery
from faceledger.ledger import (
    EXAMPLE_POLICY,
    MASTER_KEY_ENV,
    AccessDenied,
    AccountabilityError,
    PurposeError,
    ReviewError,
    UnknownSubjectError,
    parse_policy,
)

pytestmark = pytest.mark.shared_data
PURPOSE = "access-control"


class Clock:
    """A clock the test moves forward."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture(scope="module")
def engine() -> Engine:
    """The default engine: bundled models, thresholds from the bundled recognizer's calibration."""
    return Engine()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(where: GalleryLocation, engine: Engine, clock: Clock, policy: str) -> Gallery:
    return Gallery.init(
        where.location, actor="admin", engine=engine, clock=clock, policy=parse_policy(policy), key_file=where.key_file
    )


@pytest.fixture
def photos(faces_dir: Path) -> dict[str, list[Path]]:
    root = faces_dir / "face_api_js" / "examples" / "images"
    return {who: sorted((root / who).glob(f"{who}*.png")) for who in ("amy", "sheldon", "stuart")}


def consent_and_enroll(g: Gallery, subject: str, images: list[Path], expires_at: datetime | None = None) -> None:
    g.add_consent(
        subject,
        actor="desk",
        collected_by="desk",
        legal_basis="explicit consent",
        purpose=PURPOSE,
        evidence_ref="form",
        expires_at=expires_at,
    )
    assert g.enroll(subject, images, actor="desk", purpose=PURPOSE).enrolled


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    yield


def test_two_distinct_reviewers_are_needed(
    gallery_location: GalleryLocation, engine: Engine, clock: Clock, photos: dict
) -> None:  # type: ignore[type-arg]
    g = make(
        gallery_location, engine, clock, EXAMPLE_POLICY.replace("reviewers_required = 1", "reviewers_required = 2")
    )
    consent_and_enroll(g, "amy", photos["amy"][:1])
    consent_and_enroll(g, "sheldon", photos["sheldon"][:1])
    first = g.identify(photos["amy"][1], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    second = g.identify(photos["sheldon"][1], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    assert (first.subject, second.subject) == ("amy", "sheldon")
    assert {c.id for c in g.pending_reviews(actor="rev", purpose=PURPOSE)} == {
        first.candidate_id,
        second.candidate_id,
    }

    with pytest.raises(ReviewError, match="reason"):
        g.review(first.candidate_id, reviewer="rev-1", decision="confirm", reason=" ")
    one = g.review(first.candidate_id, reviewer="rev-1", decision="confirm", reason="same face and ears")
    assert (one.status, one.confirmations, one.required) == ("pending", 1, 2)
    with pytest.raises(ReviewError, match=r"reviewer 'rev-1' already confirmed candidate \w+ at .*; each reviewer"):
        g.review(first.candidate_id, reviewer="rev-1", decision="confirm", reason="really sure")
    with pytest.raises(ReviewError, match="already confirmed"):  # nor change their mind into a rejection
        g.review(first.candidate_id, reviewer="rev-1", decision="reject", reason="second thoughts")
    with pytest.raises(ReviewError, match=r"'door' ran the search .* people other than the one who ran the search"):
        g.review(first.candidate_id, reviewer="door", decision="confirm", reason="I know her")
    with pytest.raises(PurposeError):
        g.review(first.candidate_id, reviewer="rev-2", decision="confirm", reason="x", purpose="marketing")
    two = g.review(first.candidate_id, reviewer="rev-2", decision="confirm", reason="agree")
    assert (two.status, two.confirmations) == ("confirmed", 2)
    with pytest.raises(ReviewError, match="already confirmed"):
        g.review(first.candidate_id, reviewer="rev-3", decision="reject", reason="late")

    rejected = g.review(second.candidate_id, reviewer="rev-1", decision="reject", reason="different person")
    assert rejected.status == "rejected"
    with pytest.raises(UnknownSubjectError):
        g.review("no-such-candidate", reviewer="rev-1", decision="confirm", reason="x")
    assert g.pending_reviews(actor="rev", purpose=PURPOSE) == []
    assert g.stats() == {
        "subjects": 2,
        "templates": 2,
        "valid_consents": 2,
        "pending_reviews": 0,
        "audit_head_seq": g.audit_head().seq,  # type: ignore[union-attr]
        "templates_excluded": 0,
        "records_tampered": 0,
    }
    assert [c.subject_id for c in g.candidates(status="confirmed")] == ["amy"]

    report = g.report(actor="auditor", purpose="transparency")
    totals = report.to_dict()["totals"]
    assert totals["searches"] == 2 and totals["candidates"] == 2
    assert totals["confirmed"] == 1 and totals["rejected"] == 1 and totals["enrollments"] == 2
    markdown = report.to_markdown()
    assert "| 2025-01 | staff | access-control |" in markdown and "Transparency report" in markdown
    assert g.audit_verify().ok


def test_with_one_reviewer_the_searcher_may_review(
    gallery_location: GalleryLocation, engine: Engine, clock: Clock, photos: dict
) -> None:  # type: ignore[type-arg]
    g = make(gallery_location, engine, clock, EXAMPLE_POLICY)  # reviewers_required = 1
    consent_and_enroll(g, "amy", photos["amy"][:1])
    found = g.identify(photos["amy"][1], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    outcome = g.review(found.candidate_id, reviewer="door", decision="confirm", reason="same face")
    assert outcome.status == "confirmed" and not outcome.evidence_destroyed


def test_reads_shown_to_a_person_are_records_read_entries(
    gallery_location: GalleryLocation, engine: Engine, clock: Clock, photos: dict
) -> None:  # type: ignore[type-arg]
    g = make(gallery_location, engine, clock, EXAMPLE_POLICY)
    consent_and_enroll(g, "amy", photos["amy"][:1])
    found = g.identify(photos["amy"][1], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    g.review(found.candidate_id, reviewer="rev", decision="confirm", reason="same face")
    g.identify(photos["amy"][2], actor="door", purpose=PURPOSE)

    # Internal reads (the index, the retention scheduler, /metrics, the web UI's poller) leave no entry.
    head = g.audit_head().seq  # type: ignore[union-attr]
    assert len(g.candidates()) == 2 and g.reviews(found.candidate_id) and g.stats()["pending_reviews"] == 1
    (stamp,) = g.pending_stamps()
    assert set(stamp.to_dict()) == {"id", "created_at"}, "no subject, no score"
    assert g.audit_head().seq == head  # type: ignore[union-attr]

    head = g.audit_head().seq  # type: ignore[union-attr]
    (record,) = g.candidates(status="confirmed", subject="amy", actor="dpo", purpose="audit")
    assert record.id == found.candidate_id
    (read,) = [e.data for e in g.audit_entries(after_seq=head)]
    assert (read["action"], read["actor"], read["purpose"], read["subjects"]) == (
        "records.read",
        "dpo",
        "audit",
        ["amy"],
    )
    assert read["details"] == {"kind": "candidates", "filters": {"status": "confirmed", "subject": "amy"}, "count": 1}

    head = g.audit_head().seq  # type: ignore[union-attr]
    assert [r.reviewer for r in g.reviews(found.candidate_id, actor="dpo", purpose=PURPOSE)] == ["rev"]
    assert g.stats(actor="dpo", purpose="audit")["subjects"] == 1
    reads = [e.data for e in g.audit_entries(after_seq=head)]
    assert [(e["action"], e["details"]["kind"]) for e in reads] == [
        ("records.read", "reviews"),
        ("records.read", "stats"),
    ]
    assert reads[0]["details"]["filters"] == {"candidate_id": found.candidate_id} and reads[0]["details"]["count"] == 1
    assert "count" not in reads[1]["details"]

    with pytest.raises(PurposeError, match="not allowed to read candidates"):
        g.candidates(actor="dpo", purpose="marketing")
    with pytest.raises(AccountabilityError):
        g.reviews(found.candidate_id, actor="dpo")  # a purpose is required once the read is shown to someone
    session = g.as_actor("dpo", purpose="audit")
    head = g.audit_head().seq  # type: ignore[union-attr]
    assert len(session.candidates()) == 2
    assert [e.data["details"]["kind"] for e in session.audit_entries(after_seq=head)] == ["candidates"]
    kinds = [e.data["details"]["kind"] for e in g.audit_entries(after_seq=head)]
    assert kinds == ["candidates", "audit entries"], "a session's reads are always recorded"


def test_expired_consent_stops_search_and_purge_erases(
    gallery_location: GalleryLocation,
    engine: Engine,
    clock: Clock,
    photos: dict,  # type: ignore[type-arg]
) -> None:
    policy = EXAMPLE_POLICY.replace("consents_days = 1095", "consents_days = 30").replace(
        "# audit_days = 2190", "audit_days = 60"
    )
    g = make(gallery_location, engine, clock, policy)
    consent_and_enroll(g, "amy", photos["amy"][:1], expires_at=clock.now + timedelta(days=7))
    consent_and_enroll(g, "stuart", photos["stuart"][:1])
    assert g.identify(photos["amy"][2], actor="door", purpose=PURPOSE).faces[0].candidates

    clock.advance(days=8)
    # expired consent: no longer searched, even before the purge runs
    assert not g.identify(photos["amy"][2], actor="door", purpose=PURPOSE).faces[0].candidates
    report = g.purge()
    assert [r.subject for r in report.subjects_erased] == ["amy"] and len(report.consents_expired) == 1
    assert report.reclaimed
    with g.store.read() as tx:
        assert tx.get_subject("amy") is None and tx.templates_of("amy") == []
        assert tx.list_consents("amy")[0].ended_reason == "expired"  # kept as proof, for now
    assert g.identify(photos["stuart"][1], actor="door", purpose=PURPOSE).faces[0].candidates

    clock.advance(days=40)  # consent record past its 30-day retention; audit entries still within 60 days
    second = g.purge()
    assert second.consents_deleted == 1 and second.audit_entries_purged == 0
    with g.store.read() as tx:
        assert tx.list_consents("amy") == []

    clock.advance(days=30)  # the first entries are now older than 60 days
    third = g.purge()
    assert third.audit_entries_purged > 0
    result = g.audit_verify()
    assert result.ok and result.first_seq is not None and result.first_seq > 1, result
    checkpoint = g.audit_entries(action="audit.purge")[-1].data["details"]
    assert checkpoint["purged_to_seq"] == result.first_seq - 1


def test_api_keys_are_on_the_ledger(gallery_location: GalleryLocation, engine: Engine, clock: Clock) -> None:
    g = make(gallery_location, engine, clock, EXAMPLE_POLICY)
    record, token = g.create_api_key("svc-door", "operator", actor="admin")
    assert g.authenticate(token).role == "operator"
    g.revoke_api_key(record.id, actor="admin")
    with pytest.raises(AccessDenied, match="revoked"):
        g.authenticate(token)
    actions = [e.data["action"] for e in g.audit_entries()]
    assert actions[-2:] == ["key.create", "key.revoke"]
    assert token not in "".join(e.body for e in g.audit_entries())


def test_verify_subject_and_changes_seen_by_another_process_view(
    gallery_location: GalleryLocation,
    engine: Engine,
    clock: Clock,
    photos: dict,  # type: ignore[type-arg]
) -> None:
    g = make(gallery_location, engine, clock, EXAMPLE_POLICY)
    consent_and_enroll(g, "amy", photos["amy"][:1])
    check = g.verify_subject("amy", photos["amy"][1], actor="door", purpose=PURPOSE)
    assert check.match and check.similarity >= check.threshold
    other = g.verify_subject("amy", photos["sheldon"][0], actor="door", purpose=PURPOSE)
    assert not other.match
    with pytest.raises(UnknownSubjectError):
        g.verify_subject("nobody", photos["amy"][1], actor="door", purpose=PURPOSE)
    assert [e.data["details"]["match"] for e in g.audit_entries(action="verify")] == [True, False]

    # a second Gallery on the same file (its own connection and index, as another process would have)
    other_view = Gallery.open(gallery_location.location, key_file=gallery_location.key_file, engine=engine, clock=clock)
    assert other_view.identify(photos["amy"][2], actor="door", purpose=PURPOSE).faces[0].candidates
    consent_and_enroll(g, "stuart", photos["stuart"][:1])
    g.erase("amy", actor="dpo", purpose="erasure request")
    assert not other_view.identify(photos["amy"][2], actor="door", purpose=PURPOSE).faces[0].candidates
    found = other_view.identify(photos["stuart"][1], actor="door", purpose=PURPOSE).faces[0].candidates
    assert [c.subject for c in found] == ["stuart"]
    other_view.close()


def test_own_changes_update_the_index_without_a_full_reload(
    gallery_location: GalleryLocation,
    engine: Engine,
    clock: Clock,
    photos: dict,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
) -> None:
    from faceledger.ledger import sql_tx as store_module

    g = make(gallery_location, engine, clock, EXAMPLE_POLICY)
    consent_and_enroll(g, "amy", photos["amy"][:1])
    assert g.identify(photos["amy"][1], actor="door", purpose=PURPOSE).faces[0].candidates  # index loaded once

    def no_full_reload(self: object) -> None:
        raise AssertionError("the index reloaded every template")

    monkeypatch.setattr(store_module.SQLTransaction, "template_refs", no_full_reload)
    consent_and_enroll(g, "sheldon", photos["sheldon"][:1])
    assert g.identify(photos["sheldon"][1], actor="door", purpose=PURPOSE).faces[0].candidates[0].subject == "sheldon"
    g.erase("amy", actor="dpo", purpose="erasure request")
    assert not g.identify(photos["amy"][1], actor="door", purpose=PURPOSE).faces[0].candidates
    assert g._index is not None and len(g._index) == 1
