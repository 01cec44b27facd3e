"""The REST service end to end on real photos: consent, enrollment, identification with boxes and candidates,
human review, withdrawal and erasure, audit, report; each request attributed to its key's owner and purpose. On
SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import new_database
from faceledger.gallery import Gallery
from test_api_helpers import PURPOSE, Service, b64, consent, group_photo, people, running_service

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The service on an SQLite file, then on a PostgreSQL database."""
    folder = tmp_path_factory.mktemp("flow")
    if request.param == "sqlite":
        with running_service(folder) as svc:
            yield svc
        return
    url = new_database(request.getfixturevalue("postgres_server"))
    with running_service(folder, db=url, key_file=folder / "master.key") as svc:
        yield svc


@pytest.fixture(scope="module")
def sqlite_service(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The service on an SQLite file, for the test that looks at the files the database is made of."""
    with running_service(tmp_path_factory.mktemp("files")) as svc:
        yield svc


def _entries(svc: Service, action: str) -> list[dict[str, Any]]:
    response = svc.client.get(f"/v1/audit/entries?action={action}&limit=1000", headers=svc.headers("auditor", None))
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def test_consent_enroll_identify_review_erase(service: Service, faces_dir: Path) -> None:
    photos = people(faces_dir)
    amy, raj = photos["amy"], photos["raj"]
    client = service.client

    # Enrollment without consent is refused, and says how to record one.
    refused = client.post(
        "/v1/enroll", headers=service.headers("enroller"), json={"subject": "emp-amy", "images": [b64(amy[0])]}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "consent_required"

    record = consent(service, "emp-amy")
    assert record["state"] == "valid" and record["recorded_by"] == "enroller-owner"
    consent(service, "emp-raj")

    # Multipart upload of two images; file names are how the outcomes are reported.
    files = [("images", (p.name, p.read_bytes(), "image/png")) for p in amy[:2]]
    enrolled = client.post("/v1/enroll", headers=service.headers("enroller"), data={"subject": "emp-amy"}, files=files)
    assert enrolled.status_code == 200, enrolled.text
    body = enrolled.json()
    assert body["enrolled"] == 2 and body["templates_total"] == 2 and body["created"] is True
    assert [i["source"] for i in body["images"]] == [amy[0].name, amy[1].name]
    assert body["images"][0]["sha256"] == hashlib.sha256(amy[0].read_bytes()).hexdigest()
    # The same images again (base64 JSON this time) are skipped: retrying an enrollment is safe.
    again = client.post(
        "/v1/enroll",
        headers=service.headers("enroller"),
        json={"subject": "emp-amy", "images": [b64(amy[0]), b64(amy[1])]},
    )
    assert again.status_code == 200 and again.json()["skipped"] == 2 and again.json()["templates_total"] == 2
    raj_enrolled = client.post(
        "/v1/enroll", headers=service.headers("enroller"), json={"subject": "emp-raj", "images": [b64(raj[0])]}
    )
    assert raj_enrolled.status_code == 200 and raj_enrolled.json()["enrolled"] == 1

    # A new photo of amy: one face, its box, amy as the top candidate pending review.
    found = client.post("/v1/identify", headers=service.headers("operator"), json={"image": b64(amy[3])})
    assert found.status_code == 200, found.text
    result = found.json()
    assert result["purpose"] == PURPOSE and len(result["faces"]) == 1
    face = result["faces"][0]
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 and 0 <= y1 < y2 and face["decision"] == "candidate"
    top = face["candidates"][0]
    assert top["subject"] == "emp-amy" and top["similarity"] >= result["threshold"] and top["status"] == "pending"
    assert all(c["subject"] != "emp-raj" for c in face["candidates"])

    # Someone never enrolled matches no one, and nothing about the face is kept.
    stranger = client.post("/v1/identify", headers=service.headers("operator"), json={"image": b64(photos["penny"][0])})
    assert stranger.status_code == 200
    assert all(f["decision"] == "no_match" and not f["candidates"] for f in stranger.json()["faces"])

    # 1:1 against an enrolled subject: on the ledger, refused for a subject without consent for the purpose.
    same = client.post(
        "/v1/subjects/emp-raj/verify",
        headers=service.headers("operator"),
        files={"image": ("r.png", raj[2].read_bytes())},
    )
    assert same.status_code == 200, same.text
    assert same.json()["match"] is True and same.json()["subject"] == "emp-raj"
    other = client.post("/v1/subjects/emp-raj/verify", headers=service.headers("operator"), json={"image": b64(amy[4])})
    assert other.status_code == 200 and other.json()["match"] is False
    assert other.json()["similarity"] < other.json()["threshold"] <= same.json()["similarity"]
    unknown = client.post(
        "/v1/subjects/emp-nobody/verify", headers=service.headers("operator"), json={"image": b64(amy[4])}
    )
    assert unknown.status_code == 404
    assert [e["subjects"] for e in _entries(service, "verify")] == [["emp-raj"], ["emp-raj"]]

    # The reviewer sees the candidate and confirms it.
    queue = client.get("/v1/reviews", headers=service.headers("reviewer")).json()["pending"]
    assert [c["id"] for c in queue] == [top["candidate_id"]]
    assert queue[0]["subject_id"] == "emp-amy" and queue[0]["confirmations"] == 0 and queue[0]["required"] == 1
    assert queue[0]["actor"] == "operator-owner"
    wrong_purpose = client.post(
        f"/v1/reviews/{top['candidate_id']}/confirm",
        headers=service.headers("reviewer", "marketing"),
        json={"reason": "same person"},
    )
    assert wrong_purpose.status_code == 403 and wrong_purpose.json()["error"]["code"] == "purpose_not_allowed"
    confirmed = client.post(
        f"/v1/reviews/{top['candidate_id']}/confirm",
        headers=service.headers("reviewer"),
        json={"reason": "same person: face and badge photo checked"},
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "confirmed" and confirmed.json()["review"]["reviewer"] == "reviewer-owner"
    twice = client.post(
        f"/v1/reviews/{top['candidate_id']}/reject", headers=service.headers("reviewer"), json={"reason": "no"}
    )
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "review_conflict"

    # Every request that touched people is on the ledger, attributed to its key's owner, with its purpose.
    for action, owner in (
        ("consent.add", "enroller-owner"),
        ("enroll", "enroller-owner"),
        ("identify", "operator-owner"),
        ("review.confirm", "reviewer-owner"),
    ):
        entries = _entries(service, action)
        assert entries and all(e["actor"] == owner and e["purpose"] == PURPOSE for e in entries), action
    identify_entries = _entries(service, "identify")
    assert identify_entries[0]["probe_sha256"] == hashlib.sha256(amy[3].read_bytes()).hexdigest()

    # Erasure: receipt, then the subject is gone and no longer found.
    erased = client.delete("/v1/subjects/emp-amy?reason=left%20the%20company", headers=service.headers("enroller"))
    assert erased.status_code == 200, erased.text
    receipt = erased.json()
    assert receipt["templates_destroyed"] == 2 and receipt["candidates_deleted"] == 1 and receipt["reclaimed"]
    again_found = client.post("/v1/identify", headers=service.headers("operator"), json={"image": b64(amy[3])})
    assert all(c["subject"] != "emp-amy" for f in again_found.json()["faces"] for c in f["candidates"])
    subjects = client.get("/v1/subjects", headers=service.headers("enroller")).json()["subjects"]
    assert [s["id"] for s in subjects] == ["emp-raj"]
    assert client.delete("/v1/subjects/emp-amy", headers=service.headers("enroller")).status_code == 200  # consent left
    gone = client.delete("/v1/subjects/nobody-at-all", headers=service.headers("enroller"))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"

    # Withdrawing raj's consent erases raj in the same transaction.
    withdrawn = client.post(
        "/v1/consents/withdraw", headers=service.headers("enroller"), json={"subject": "emp-raj", "reason": "asked"}
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["erasure"]["subject"] == "emp-raj"
    consents = client.get("/v1/consents?subject=emp-raj", headers=service.headers("enroller")).json()["consents"]
    assert [c["state"] for c in consents] == ["withdrawn"]

    # The chain verifies, against the head anchored now too; export and report work.
    head = client.get("/v1/audit/head", headers=service.headers("auditor", None)).json()
    verified = client.get(
        f"/v1/audit/verify?expected_seq={head['seq']}&expected_hash={head['hash']}",
        headers=service.headers("auditor", None),
    ).json()
    assert verified["ok"] is True and verified["head"] == head
    exported = client.get("/v1/audit/export", headers=service.headers("auditor", "audit")).json()
    assert exported["entries"][-1]["action"] == "audit.export" and exported["entries"][-1]["purpose"] == "audit"
    assert exported["head"]["seq"] == head["seq"] + 1
    report = client.get("/v1/report?period=year", headers=service.headers("auditor", "audit"))
    assert report.status_code == 200, report.text
    totals = report.json()["totals"]
    assert totals["templates_added"] == 3 and totals["searches"] >= 3 and totals["confirmed"] == 1
    markdown = client.get("/v1/report", headers=service.headers("auditor", "audit", Accept="text/markdown"))
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# Transparency report")
    with Gallery.open(service.db, key_file=service.key_file) as g:
        assert g.audit_verify().ok


def test_group_photo_gives_a_box_per_face_and_detect_verify_work(service: Service, faces_dir: Path) -> None:
    photos = people(faces_dir)
    group = group_photo(faces_dir)
    client = service.client
    detected = client.post(
        "/v1/detect", headers=service.headers("operator", None), files={"image": (group.name, group.read_bytes())}
    )
    assert detected.status_code == 200, detected.text
    faces = detected.json()["faces"]
    assert len(faces) >= 5
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in faces]
    assert areas == sorted(areas, reverse=True) and all(len(f["landmarks"]) == 5 for f in faces)
    identified = client.post(
        "/v1/identify",
        headers=service.headers("operator"),
        files={"image": (group.name, group.read_bytes(), "image/jpeg")},
        data={"top_k": "2"},
    )
    assert identified.status_code == 200, identified.text
    assert len(identified.json()["faces"]) == len(faces)
    assert [f["box"] for f in identified.json()["faces"]] == [f["box"] for f in faces]

    same = client.post(
        "/v1/verify",
        headers=service.headers("operator"),
        json={"image_a": b64(photos["howard"][0]), "image_b": b64(photos["howard"][2])},
    ).json()
    other = client.post(
        "/v1/verify",
        headers=service.headers("operator"),
        files={
            "image_a": ("a.png", photos["howard"][0].read_bytes()),
            "image_b": ("b.png", photos["sheldon"][0].read_bytes()),
        },
    ).json()
    assert same["match"] is True and other["match"] is False
    assert same["similarity"] > other["similarity"] and same["threshold"] == other["threshold"]
    assert same["purpose"] == PURPOSE
    assert other["audit_seq"] > same["audit_seq"] > 0, "every verification is on the ledger"


def test_purpose_is_required_checked_by_policy_and_refusals_recorded(service: Service, faces_dir: Path) -> None:
    image = b64(people(faces_dir)["leonard"][0])
    client = service.client
    missing = client.post("/v1/identify", headers=service.headers("operator", None), json={"image": image})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "purpose_required"
    conflict = client.post(
        "/v1/identify", headers=service.headers("operator"), json={"image": image, "purpose": "something-else"}
    )
    assert conflict.status_code == 400 and conflict.json()["error"]["code"] == "purpose_conflict"
    in_body = client.post(
        "/v1/identify", headers=service.headers("operator", None), json={"image": image, "purpose": PURPOSE}
    )
    assert in_body.status_code == 200
    refused = client.post("/v1/identify", headers=service.headers("operator", "marketing"), json={"image": image})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "purpose_not_allowed"
    last = _entries(service, "identify.refused")[-1]
    assert last["actor"] == "operator-owner" and last["purpose"] == "marketing"
    consent_purpose = client.post(
        "/v1/consents",
        headers=service.headers("enroller", "marketing"),
        json={"subject": "x-1", "collected_by": "d", "legal_basis": "b", "evidence_ref": "e"},
    )
    assert consent_purpose.status_code == 403


def test_nothing_uploaded_touches_the_disk(
    sqlite_service: Service, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = sqlite_service
    """Multipart parts stay in memory even when large (Starlette would spool parts over 1 MiB to a temporary
    file); unmatched probes leave nothing in the database."""
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert len(data) > 1024 * 1024

    def no_disk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an upload was written to a temporary file")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_disk)
    response = service.client.post(
        "/v1/identify", headers=service.headers("operator"), files={"image": ("noise.png", data, "image/png")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["faces"] == []
    probe = people(faces_dir)["stuart"][0].read_bytes()
    assert (
        service.client.post(
            "/v1/identify", headers=service.headers("operator"), files={"image": ("s.png", probe)}
        ).status_code
        == 200
    )
    stored = b"".join(p.read_bytes() for p in service.db.parent.iterdir() if p.name.startswith(service.db.name))
    assert probe[200:264] not in stored and data[5000:5064] not in stored
    assert sorted(p.name for p in service.db.parent.iterdir()) <= sorted(
        [
            service.db.name,
            f"{service.db.name}.key",
            f"{service.db.name}.signing.key",
            f"{service.db.name}-wal",
            f"{service.db.name}-shm",
        ]
    )
