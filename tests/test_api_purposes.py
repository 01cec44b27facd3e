"""Purposes on the administrative routes: listings, the review queue, erasure, withdrawal, retention, the ledger's
export and the report accept the policy's administrative purposes and the galleries' own, and refuse any other with
403 ``purpose_not_allowed``, leaving no trace and changing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import GalleryLocation
from faceledger.examples import ASTRONAUT
from faceledger.gallery import Gallery
from faceledger.ledger import parse_policy
from test_api_helpers import Service, b64, consent, running_service

SUBJECT = "emp-1"

ROUTES: list[tuple[str, str, str, dict[str, Any] | None, str]] = [
    # method, path, role, JSON body, an administrative purpose the route accepts
    ("GET", "/v1/consents", "enroller", None, "consent administration"),
    ("GET", "/v1/subjects", "enroller", None, "audit"),
    ("GET", "/v1/reviews", "reviewer", None, "human review"),
    ("POST", "/v1/purge", "admin", None, "retention"),
    ("GET", "/v1/audit/export", "auditor", None, "ledger export"),
    ("GET", "/v1/report", "auditor", None, "transparency report"),
    ("POST", "/v1/consents/withdraw", "enroller", {"subject": SUBJECT}, "consent administration"),
    ("DELETE", f"/v1/subjects/{SUBJECT}", "enroller", None, "erasure request"),
]


@pytest.fixture
def service(tmp_path: Path, gallery_location: GalleryLocation) -> Iterator[Service]:
    """A service with one subject enrolled (the bundled photo) under a valid consent, on SQLite, then PostgreSQL."""
    where = gallery_location
    with running_service(tmp_path, db=where.location, key_file=where.key_file) as svc:
        consent(svc, SUBJECT)
        enrolled = svc.client.post(
            "/v1/enroll", headers=svc.headers("enroller"), json={"subject": SUBJECT, "images": [b64(ASTRONAUT)]}
        )
        assert enrolled.status_code == 200, enrolled.text
        yield svc


def _head(svc: Service) -> int:
    with Gallery.open(svc.db, key_file=svc.key_file) as g:
        head = g.audit_head()
    assert head is not None
    return head.seq


def _call(svc: Service, method: str, path: str, role: str, body: dict[str, Any] | None, purpose: str) -> Any:
    return svc.client.request(method, path, headers=svc.headers(role, purpose), json=body)


def _still_there(svc: Service) -> None:
    """The subject is still enrolled and its consent still valid."""
    with Gallery.open(svc.db, key_file=svc.key_file) as g:
        (subject,) = g.subjects(actor="test", purpose="audit")
        assert subject.id == SUBJECT and subject.templates == 1 and subject.consent == "valid"


@pytest.mark.parametrize(("method", "path", "role", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES])
def test_a_purpose_the_policy_does_not_allow_is_refused_and_changes_nothing(
    service: Service, method: str, path: str, role: str, body: dict[str, Any] | None, allowed: str
) -> None:
    before = _head(service)
    response = _call(service, method, path, role, body, "marketing")
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "purpose_not_allowed"
    assert "'marketing' is not allowed" in error["message"]
    assert "erasure request" in error["message"] and "access-control" in error["message"], "names what is allowed"
    assert _head(service) == before, "a refused request leaves no entry (and, for purge, no retention run)"
    _still_there(service)


@pytest.mark.parametrize(("method", "path", "role", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES])
def test_an_administrative_purpose_is_accepted_and_recorded(
    service: Service, method: str, path: str, role: str, body: dict[str, Any] | None, allowed: str
) -> None:
    before = _head(service)
    response = _call(service, method, path, role, body, allowed)
    assert 200 <= response.status_code < 300, response.text
    with Gallery.open(service.db, key_file=service.key_file) as g:
        written = g.audit_entries(after_seq=before)
    assert written and all(e.data["purpose"] == allowed for e in written)
    assert all(e.data["actor"] == f"{role}-owner" for e in written)


def test_the_gallery_purpose_is_accepted_too(service: Service) -> None:
    for method, path, role, body, _ in ROUTES:
        response = _call(service, method, path, role, body, "access-control")
        assert 200 <= response.status_code < 300, (path, response.text)


def test_erasure_of_an_unknown_subject_with_a_refused_purpose_is_a_403_not_a_404(service: Service) -> None:
    refused = _call(service, "DELETE", "/v1/subjects/nobody", "enroller", None, "marketing")
    assert refused.status_code == 403, "whether a subject exists is not told to a purpose the policy refuses"
    assert _call(service, "DELETE", "/v1/subjects/nobody", "enroller", None, "erasure request").status_code == 404


def test_a_gallery_scoped_call_accepts_only_that_gallery_purposes(service: Service) -> None:
    with Gallery.open(service.db, key_file=service.key_file) as g:
        text = g.policy.text + '\n[[galleries]]\nname = "visitors"\npurposes = ["visitor-log"]\n'
        g.set_policy(parse_policy(text), actor="setup")
    visitors = service.headers("enroller", "visitor-log")
    assert service.client.get("/v1/subjects?gallery=visitors", headers=visitors).json() == {"subjects": []}
    assert [s["id"] for s in service.client.get("/v1/subjects", headers=visitors).json()["subjects"]] == [SUBJECT]
    refused = service.client.get("/v1/subjects?gallery=staff", headers=visitors)
    assert refused.status_code == 403 and "gallery 'staff'" in refused.json()["error"]["message"]
    # erasure and withdrawal are about the subject's gallery: another gallery's purpose is refused
    assert service.client.delete(f"/v1/subjects/{SUBJECT}", headers=visitors).status_code == 403
    withdraw = service.client.post("/v1/consents/withdraw", headers=visitors, json={"subject": SUBJECT})
    assert withdraw.status_code == 403
    assert service.client.get(f"/v1/consents?subject={SUBJECT}", headers=visitors).status_code == 403
    _still_there(service)


# ---------------------------------------------------------------------------------------------- audited reads
def _reads(svc: Service, after: int) -> list[dict[str, Any]]:
    with Gallery.open(svc.db, key_file=svc.key_file) as g:
        return [e.data for e in g.audit_entries(after_seq=after, action="records.read")]


def test_reading_the_audit_entries_is_one_records_read_entry_naming_the_caller(service: Service) -> None:
    before = _head(service)
    page = service.client.get("/v1/audit/entries?limit=3&action=enroll", headers=service.headers("auditor", None))
    assert page.status_code == 200, page.text
    assert [e["action"] for e in page.json()["entries"]] == ["enroll"], "the read's own entry is not in the page"
    (read,) = _reads(service, before)
    assert read["actor"] == "auditor-owner" and read["purpose"] == "audit", "no purpose given: audit"
    assert read["details"] == {
        "kind": "audit entries",
        "filters": {"after_seq": 0, "limit": 3, "action": "enroll"},
        "count": 1,
    }
    assert _head(service) == before + 1, "exactly one entry"

    named = service.client.get("/v1/audit/entries", headers=service.headers("admin", "transparency report"))
    assert named.status_code == 200 and _reads(service, before + 1)[0]["purpose"] == "transparency report"
    refused = service.client.get("/v1/audit/entries", headers=service.headers("auditor", "marketing"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "purpose_not_allowed"
    assert _head(service) == before + 2
