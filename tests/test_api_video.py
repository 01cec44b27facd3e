"""The video routes of the REST service: who may record, list, change and end deployments, how their bodies are
checked, credentials kept out of answers and the ledger, missing and ended deployments answered as such, and video
sessions of a watch run listed with their state and counts. No shared data: the video is the bundled example photo
crossing the frame."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import GalleryLocation
from faceledger.gallery import Gallery
from faceledger.interfaces.api import ServiceSettings, create_app
from faceledger.ledger import EXAMPLE_POLICY, ROLES, parse_policy
from faceledger.vision.video import VideoWriter
from test_api_helpers import shared_engine

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "src" / "faceledger" / "examples" / "astronaut.jpg"
_COMMENTED = (
    '# [[galleries]]\n# name = "missing-persons"\n# purposes = ["locate-missing-person"]\n# [galleries.watchlist]\n'
    '# legal_bases = ["court order", "missing-person report"]\n# categories = ["missing person", "vulnerable adult"]\n'
    "# max_entry_days = 30\n"
)
WATCHLIST_POLICY = EXAMPLE_POLICY.replace(_COMMENTED, _COMMENTED.replace("# ", ""))
GALLERY, PURPOSE = "missing-persons", "locate-missing-person"
ROUTES = {
    ("GET", "/v1/deployments"): {"admin", "operator", "auditor"},
    ("POST", "/v1/deployments"): {"admin"},
    ("PATCH", "/v1/deployments/{name}"): {"admin"},
    ("POST", "/v1/deployments/{name}/end"): {"admin"},
    ("GET", "/v1/sessions"): {"admin", "operator", "auditor"},
}


@dataclass
class Service:
    client: TestClient
    gallery: Gallery
    """The app's own gallery (the one its routes call)."""
    tokens: dict[str, str]
    folder: Path

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(self, role: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.request(method, path, headers=self.headers(role), json=body)

    def audit(self, action: str) -> list[dict[str, Any]]:
        response = self.call("auditor", "GET", f"/v1/audit/entries?action={action}&limit=1000")
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, module_gallery_location: GalleryLocation) -> Iterator[Service]:
    """The module's tests on SQLite, then on PostgreSQL."""
    folder = tmp_path_factory.mktemp("video-api")
    db, key_file = module_gallery_location.location, module_gallery_location.key_file
    tokens = {}
    with Gallery.init(db, key_file=key_file, actor="setup", policy=parse_policy(WATCHLIST_POLICY)) as g:
        for role in ROLES:
            tokens[role] = g.create_api_key(f"{role}-owner", role, actor="setup")[1]
    settings = ServiceSettings(db=db, key_file=key_file, purge_interval=0, rate_limit=0)
    app = create_app(settings, engine=shared_engine())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Service(client, app.state.service.gallery, tokens, folder)


def _later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def _body(deployment: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": deployment,
        "gallery": GALLERY,
        "search_purpose": PURPOSE,
        "legal_basis": "court order",
        "location": "Central station, hall B",
        "sources": ["/footage/*.mp4"],
        "authorised_by": "Supt. A. Example",
        "authorisation_ref": "AUTH-2026-014",
        "valid_to": _later(hours=8),
        "max_watchlist": 3,
    }
    body.update(over)
    return body


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    return message


def _clip(path: Path, face_frames: int = 25, empty_frames: int = 50) -> Path:
    """The example photo crossing a grey frame for ``face_frames``, then an empty frame (the track ends)."""
    photo = cv2.imread(str(EXAMPLE))
    assert photo is not None
    face = cv2.resize(photo, (240, 240))
    writer = VideoWriter(path, fps=25, size=(640, 360))
    for f in range(face_frames + empty_frames):
        frame = np.full((360, 640, 3), 96, np.uint8)
        if f < face_frames:
            x = 40 + 8 * f
            frame[60:300, x : x + 240] = face
        writer.write(frame)
    writer.close()
    return path


# ---------------------------------------------------------------------------------------------- roles, documents
def test_the_video_routes_are_documented_with_their_roles(service: Service) -> None:
    spec = service.client.get("/openapi.json").json()
    for (method, path), roles in ROUTES.items():
        operation = spec["paths"][path][method.lower()]
        assert set(operation["x-roles"]) == roles, path
        assert operation["description"].startswith("Roles: "), path
        assert set(operation["description"].split("\n")[0].removeprefix("Roles: ").rstrip(".").split(", ")) == roles
        assert {"401", "403", "404", "409", "422"} <= set(operation["responses"]), path
        assert operation["tags"] == ["video"]
    assert spec["paths"]["/v1/deployments"]["post"]["responses"]["201"]
    body = spec["components"]["schemas"]["DeploymentIn"]
    assert {"name", "search_purpose", "legal_basis", "location", "sources", "authorised_by"} <= set(body["required"])
    assert {"authorisation_ref", "valid_to", "max_watchlist"} <= set(body["required"])


def test_only_admins_record_change_and_end_deployments(service: Service) -> None:
    for role in sorted(set(ROLES) - {"admin"}):
        refused = service.call(role, "POST", "/v1/deployments", _body(f"by-{role}"))
        assert role in _error(refused, 403, "forbidden")
        for method, path, body in (
            ("PATCH", "/v1/deployments/roles", {"reason": "r", "max_watchlist": 2}),
            ("POST", "/v1/deployments/roles/end", {"reason": "r"}),
        ):
            _error(service.call(role, method, path, body), 403, "forbidden")
    assert service.client.post("/v1/deployments", json=_body("anonymous")).status_code == 401
    created = service.call("admin", "POST", "/v1/deployments", _body("roles"))
    assert created.status_code == 201, created.text
    record = created.json()
    assert (record["name"], record["state"], record["created_by"]) == ("roles", "active", "admin-owner")
    assert record["gallery"] == GALLERY and record["purpose"] == PURPOSE and record["ended_at"] is None
    names = {d.name for d in service.gallery.deployments()}
    assert "roles" in names and not any(n.startswith("by-") for n in names), "refused requests recorded nothing"
    for role in ROLES:
        for path in ("/v1/deployments", "/v1/sessions"):
            response = service.call(role, "GET", path)
            if role in ROUTES[("GET", path)]:
                assert response.status_code == 200, (role, path, response.text)
            else:
                _error(response, 403, "forbidden")
    listed = service.call("auditor", "GET", "/v1/deployments").json()["deployments"]
    assert {"name": "roles", "state": "active"}.items() <= next(d for d in listed if d["name"] == "roles").items()


# ---------------------------------------------------------------------------------------------- bodies
def test_deployment_bodies_are_checked(service: Service) -> None:
    for missing in ("legal_basis", "authorised_by", "valid_to", "max_watchlist", "sources"):
        body = _body("checked")
        del body[missing]
        message = _error(service.call("admin", "POST", "/v1/deployments", body), 422, "validation_error")
        assert missing in message
    for field, value in (("sources", []), ("max_watchlist", 0), ("name", "two words"), ("surprise", 1)):
        _error(
            service.call("admin", "POST", "/v1/deployments", _body("checked", **{field: value})),
            422,
            "validation_error",
        )
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    message = _error(
        service.call("admin", "POST", "/v1/deployments", _body("checked", valid_to=past)), 422, "invalid_value"
    )
    assert "valid_to must be later than valid_from and now" in message
    message = _error(
        service.call("admin", "POST", "/v1/deployments", _body("checked", valid_to="soon")), 422, "invalid_value"
    )
    assert "valid_to" in message and "soon" in message
    message = _error(
        service.call("admin", "POST", "/v1/deployments", _body("checked", search_purpose="marketing")),
        403,
        "purpose_not_allowed",
    )
    assert "marketing" in message
    assert all(d.name != "checked" for d in service.gallery.deployments()), "nothing recorded"
    assert service.call("admin", "POST", "/v1/deployments", _body("twice")).status_code == 201
    message = _error(service.call("admin", "POST", "/v1/deployments", _body("twice")), 409, "duplicate")
    assert "twice" in message


def test_credentials_in_sources_are_removed_from_answers_and_the_ledger(service: Service) -> None:
    sources = ["rtsp://cam-user:hunter2@10.0.0.7:554/hall-b", "http://cctv-viewer9:pa55w0rd@10.0.0.8/mjpeg"]
    created = service.call("admin", "POST", "/v1/deployments", _body("hall-b", sources=sources))
    assert created.status_code == 201, created.text
    assert created.json()["sources"] == ["rtsp://***@10.0.0.7:554/hall-b", "http://***@10.0.0.8/mjpeg"]
    changed = service.call(
        "admin",
        "PATCH",
        "/v1/deployments/hall-b",
        {"reason": "camera moved", "sources": ["rtsp://cam-user:hunter2@10.0.0.9:554/hall-b"]},
    )
    assert changed.status_code == 200 and changed.json()["sources"] == ["rtsp://***@10.0.0.9:554/hall-b"]
    listed = service.call("operator", "GET", "/v1/deployments")
    entries = service.audit("deployment.add") + service.audit("deployment.change")
    assert any(e["details"]["deployment"] == "hall-b" for e in entries)
    for text in (created.text, changed.text, listed.text, str(entries)):
        for secret in ("hunter2", "cam-user", "pa55w0rd", "cctv-viewer9"):
            assert secret not in text, secret


# ---------------------------------------------------------------------------------------------- change, end
def test_change_and_end_are_audited_and_unknown_or_ended_deployments_say_so(service: Service) -> None:
    created = service.call("admin", "POST", "/v1/deployments", _body("platform-4", max_watchlist=2)).json()
    later = _later(hours=12)
    changed = service.call(
        "admin", "PATCH", "/v1/deployments/platform-4", {"reason": "extended", "valid_to": later, "max_watchlist": 4}
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["valid_to"][:16] == later[:16] and after["max_watchlist"] == 4 and after["state"] == "active"
    entry = next(e for e in service.audit("deployment.change") if e["details"]["deployment"] == "platform-4")
    assert entry["actor"] == "admin-owner" and entry["details"]["reason"] == "extended"
    assert entry["purpose"] == "administration", "administration unless X-Purpose says otherwise"
    assert entry["details"]["before"] == {"valid_to": created["valid_to"], "max_watchlist": 2}
    assert entry["details"]["after"] == {"valid_to": after["valid_to"], "max_watchlist": 4}

    patch = "/v1/deployments/platform-4"
    assert "reason" in _error(service.call("admin", "PATCH", patch, {"max_watchlist": 3}), 422, "validation_error")
    assert "nothing to change" in _error(service.call("admin", "PATCH", patch, {"reason": "x"}), 422, "invalid_value")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    message = _error(service.call("admin", "PATCH", patch, {"reason": "x", "valid_to": past}), 422, "invalid_value")
    assert "valid_to must be later" in message

    for method, path, body in (
        ("PATCH", "/v1/deployments/nope", {"reason": "x", "max_watchlist": 3}),
        ("POST", "/v1/deployments/nope/end", {"reason": "x"}),
    ):
        message = _error(service.call("admin", method, path, body), 404, "not_found")
        assert message.startswith("no deployment 'nope'; deployments: ") and "platform-4" in message

    ended = service.call("admin", "POST", "/v1/deployments/platform-4/end", {"reason": "operation over"})
    assert ended.status_code == 200, ended.text
    assert ended.json()["state"] == "ended" and ended.json()["ended_reason"] == "operation over"
    assert ended.json()["ended_by"] == "admin-owner"
    listed = service.call("auditor", "GET", "/v1/deployments").json()["deployments"]
    assert next(d for d in listed if d["name"] == "platform-4")["state"] == "ended"
    entry = next(e for e in service.audit("deployment.end") if e["details"]["deployment"] == "platform-4")
    assert entry["details"]["reason"] == "operation over"
    for method, path, body in (
        ("POST", "/v1/deployments/platform-4/end", {"reason": "again"}),
        ("PATCH", patch, {"reason": "revive", "valid_to": later}),
    ):
        assert "is ended" in _error(service.call("admin", method, path, body), 409, "deployment_closed")
    assert len([e for e in service.audit("deployment.end") if e["details"]["deployment"] == "platform-4"]) == 1


# ---------------------------------------------------------------------------------------------- sessions
def test_sessions_of_a_watch_run_are_listed_running_then_stopped(service: Service) -> None:
    clips = service.folder / "clips"
    clips.mkdir()
    clip = _clip(clips / "platform.mp4")
    assert (
        service.call("admin", "POST", "/v1/deployments", _body("cctv", sources=[f"{clips}/*.mp4"])).status_code == 201
    )
    events = service.gallery.watch(str(clip), actor="operator-owner", deployment="cctv")
    first = next(events)  # the track ends a second after the face leaves: the session is still running
    assert first["event"] == "track" and first["decision"] == "no_match", first
    running = service.call("operator", "GET", "/v1/sessions?running=true").json()["sessions"]
    assert [(s["deployment"], s["state"], s["stopped_at"]) for s in running] == [("cctv", "running", None)]
    rest = list(events)
    summary = rest[-1]
    assert summary["event"] == "summary" and summary["frames"] == 75 and summary["tracks"] == 1

    answer = service.call("auditor", "GET", "/v1/sessions")
    assert answer.status_code == 200, answer.text
    sessions = answer.json()["sessions"]
    assert len(sessions) == 1
    session = sessions[0]
    assert session["id"] == summary["session"] == running[0]["id"]
    assert (session["state"], session["deployment"], session["source"]) == ("stopped", "cctv", str(clip))
    assert (session["frames"], session["tracks"], session["candidates"], session["dropped"]) == (75, 1, 0, 0)
    assert session["stop_reason"] == "source ended" and session["stopped_at"] and session["actor"] == "operator-owner"
    assert service.call("operator", "GET", "/v1/sessions?running=true").json()["sessions"] == []
    assert service.call("operator", "GET", "/v1/sessions?running=false").json()["sessions"] == sessions
    _error(service.call("operator", "GET", "/v1/sessions?running=perhaps"), 422, "validation_error")
