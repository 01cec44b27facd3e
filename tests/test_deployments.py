"""Deployments authorise identification in video; watchlists of people who did not consent take authorised,
time-limited entries. Nothing here decodes video: these are the records and the checks ``watch`` relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conftest import GalleryLocation
from faceledger.gallery import Gallery
from faceledger.gallery.deployments import authorise, source_allowed
from faceledger.ledger import EXAMPLE_POLICY, parse_policy
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import ConsentError, DeploymentError, PurposeError
from faceledger.ledger.records import Subject
from faceledger.ledger.timeutil import to_text

WATCHLIST_POLICY = EXAMPLE_POLICY.replace(
    '# [[galleries]]\n# name = "missing-persons"\n# purposes = ["locate-missing-person"]\n# [galleries.watchlist]\n'
    '# legal_bases = ["court order", "missing-person report"]\n# categories = ["missing person", "vulnerable adult"]\n'
    "# max_entry_days = 30\n",
    '[[galleries]]\nname = "missing-persons"\npurposes = ["locate-missing-person"]\n[galleries.watchlist]\n'
    'legal_bases = ["court order", "missing-person report"]\ncategories = ["missing person", "vulnerable adult"]\n'
    "max_entry_days = 30\n",
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gallery(gallery_location: GalleryLocation, clock: Clock) -> Gallery:
    """A watchlist gallery, on SQLite and on PostgreSQL in turn."""
    assert "[galleries.watchlist]\nlegal_bases" in WATCHLIST_POLICY  # the example policy still has the block
    where = gallery_location
    g = Gallery.init(
        where.location, actor="admin", clock=clock, policy=parse_policy(WATCHLIST_POLICY), key_file=where.key_file
    )
    yield g
    g.close()


def _add(g: Gallery, clock: Clock, name: str = "station", **over: object) -> object:
    fields: dict[str, object] = {
        "actor": "chief",
        "purpose": "administration",
        "gallery": "missing-persons",
        "search_purpose": "locate-missing-person",
        "legal_basis": "court order",
        "location": "Central station, hall B",
        "sources": ["rtsp://cam-user:s3cret@10.0.0.7:554/hall-b", "/footage/*.mp4"],
        "authorised_by": "Supt. A. Example",
        "authorisation_ref": "AUTH-2026-014",
        "valid_to": clock.now + timedelta(hours=8),
        "max_watchlist": 2,
    }
    fields.update(over)
    return g.add_deployment(name, **fields)


def _entry(g: Gallery, clock: Clock, subject: str, **over: object) -> object:
    fields: dict[str, object] = {
        "actor": "desk",
        "collected_by": "Judge B. Example",
        "legal_basis": "court order",
        "purpose": "locate-missing-person",
        "evidence_ref": "ORDER-77",
        "gallery": "missing-persons",
        "category": "missing person",
        "expires_at": clock.now + timedelta(days=10),
    }
    fields.update(over)
    return g.add_consent(subject, **fields)


def test_a_deployment_is_recorded_without_credentials_and_audited(gallery: Gallery, clock: Clock) -> None:
    record = _add(gallery, clock)
    assert record.sources[0] == "rtsp://***@10.0.0.7:554/hall-b"
    assert record.state(clock.now) == "active"
    entries = gallery.audit_entries(action=AuditAction.DEPLOYMENT_ADD)
    assert len(entries) == 1 and entries[0].data["details"]["authorised_by"] == "Supt. A. Example"
    assert "s3cret" not in str(entries[0].data) and "cam-user" not in str(entries[0].data)
    assert [d.name for d in gallery.deployments()] == ["station"]


def test_deployment_fields_are_checked(gallery: Gallery, clock: Clock) -> None:
    with pytest.raises(ValueError, match="valid_to must be later"):
        _add(gallery, clock, valid_to=clock.now - timedelta(minutes=1))
    with pytest.raises(ValueError, match="authorisation_ref is required"):
        _add(gallery, clock, authorisation_ref=" ")
    with pytest.raises(ValueError, match="at least one source"):
        _add(gallery, clock, sources=[])
    with pytest.raises(PurposeError, match="not allowed"):
        _add(gallery, clock, search_purpose="marketing")
    with pytest.raises(ValueError, match="name"):
        _add(gallery, clock, name="two words")
    _add(gallery, clock)
    with pytest.raises(Exception, match="station"):
        _add(gallery, clock)  # the name is taken


def test_sources_match_without_credentials_and_by_pattern(gallery: Gallery, clock: Clock) -> None:
    record = _add(gallery, clock)
    assert source_allowed(record, "rtsp://other:pw@10.0.0.7:554/hall-b")
    assert source_allowed(record, "/footage/2026-03-02.mp4")
    assert not source_allowed(record, "rtsp://10.0.0.8:554/hall-b")
    assert not source_allowed(record, "/home/me/clip.mp4")


def test_authorisation_refuses_what_the_deployment_does_not_cover(gallery: Gallery, clock: Clock) -> None:
    ctx = gallery.context
    with ctx.store.read() as tx, pytest.raises(DeploymentError, match="no deployment active now covers"):
        authorise(ctx, tx, None, "/footage/a.mp4", clock.now)
    _add(gallery, clock, valid_from=clock.now + timedelta(hours=1))
    with ctx.store.read() as tx:
        with pytest.raises(DeploymentError, match="not active now: it starts"):
            authorise(ctx, tx, "station", "/footage/a.mp4", clock.now)
        with pytest.raises(DeploymentError, match=r"does not cover /home/x\.mp4"):
            authorise(ctx, tx, "station", "/home/x.mp4", clock.now + timedelta(hours=2))
        record, size = authorise(ctx, tx, "station", "/footage/a.mp4", clock.now + timedelta(hours=2))
        assert record.name == "station" and size == 0
        with pytest.raises(DeploymentError, match="expired"):
            authorise(ctx, tx, "station", "/footage/a.mp4", clock.now + timedelta(hours=9))
        with pytest.raises(DeploymentError, match="no deployment 'nope'; deployments: station"):
            authorise(ctx, tx, "nope", "/footage/a.mp4", clock.now)


def test_ending_and_changing_a_deployment_are_audited(gallery: Gallery, clock: Clock) -> None:
    _add(gallery, clock)
    changed = gallery.change_deployment(
        "station",
        actor="chief",
        purpose="administration",
        reason="shift extended",
        valid_to=clock.now + timedelta(hours=10),
        max_watchlist=5,
    )
    assert changed.max_watchlist == 5
    entry = gallery.audit_entries(action=AuditAction.DEPLOYMENT_CHANGE)[0]
    details = entry.data["details"]
    assert details["before"]["max_watchlist"] == 2 and details["after"]["max_watchlist"] == 5
    ended = gallery.end_deployment("station", actor="chief", purpose="administration", reason="operation over")
    assert ended.state(clock.now) == "ended"
    assert gallery.audit_entries(action=AuditAction.DEPLOYMENT_END)[0].data["details"]["reason"] == "operation over"
    with gallery.context.store.read() as tx, pytest.raises(DeploymentError, match="was ended"):
        authorise(gallery.context, tx, "station", "/footage/a.mp4", clock.now)
    with pytest.raises(DeploymentError, match="ended"):
        gallery.end_deployment("station", actor="chief", purpose="administration", reason="again")


def test_watchlist_entries_need_an_accepted_basis_category_and_expiry(gallery: Gallery, clock: Clock) -> None:
    with pytest.raises(ConsentError, match="legal basis 'explicit consent' is not one the watchlist accepts"):
        _entry(gallery, clock, "w-1", legal_basis="explicit consent")
    with pytest.raises(ConsentError, match="a category is required"):
        _entry(gallery, clock, "w-1", category=None)
    with pytest.raises(ConsentError, match="given: 'suspect'"):
        _entry(gallery, clock, "w-1", category="suspect")
    with pytest.raises(ConsentError, match="an expiry is required"):
        _entry(gallery, clock, "w-1", expires_at=None)
    with pytest.raises(ConsentError, match="more than 30 days"):
        _entry(gallery, clock, "w-1", expires_at=clock.now + timedelta(days=31))
    record = _entry(gallery, clock, "w-1")
    assert record.category == "missing person"
    assert gallery.audit_entries(action=AuditAction.CONSENT_ADD)[-1].data["details"]["category"] == "missing person"
    # an ordinary gallery takes no category
    with pytest.raises(ConsentError, match="not a watchlist"):
        gallery.add_consent(
            "s-1",
            actor="desk",
            collected_by="desk",
            legal_basis="explicit consent",
            purpose="access-control",
            evidence_ref="form",
            gallery="staff",
            category="x",
        )


def test_the_watchlist_size_limit_counts_searchable_entries(gallery: Gallery, clock: Clock) -> None:
    _add(gallery, clock, max_watchlist=1, valid_to=clock.now + timedelta(days=30))
    ctx = gallery.context
    # enrolled subjects are what counts; consent records alone make no one searchable
    for subject in ("w-1", "w-2"):
        _entry(gallery, clock, subject)
    with ctx.write() as tx:
        for subject in ("w-1", "w-2"):
            tx.add_subject(Subject(subject, "missing-persons", to_text(clock.now), "desk"))
        tx.bump_data_version()
        ctx.record(tx, AuditAction.ENROLL, actor="desk", purpose="test", subjects=("w-1", "w-2"))  # seals need one
    with ctx.store.read() as tx, pytest.raises(DeploymentError, match=r"holds 2 searchable subjects.*at most 1"):
        authorise(ctx, tx, "station", "/footage/a.mp4", clock.now)
    # an expired entry leaves the search at once, and so the count
    clock.now += timedelta(days=11)
    with ctx.store.read() as tx:
        assert authorise(ctx, tx, "station", "/footage/a.mp4", clock.now)[1] == 0
