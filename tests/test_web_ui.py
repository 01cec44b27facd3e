"""The web UI over HTTP (FastAPI's TestClient): sign-in by account and by API key, cookies, CSRF, roles checked
on every page, the sign-in rate limit and its audit entries, the security headers, and no external URL in any
page. The browser tests (tests/test_browser_ui.py) drive the same pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import GalleryLocation
from faceledger.interfaces.web.session import SigninLimits
from test_api_helpers import Service, running_service

PASSWORD = "correct horse battery staple"
PAGES = ("/ui/review", "/ui/subjects", "/ui/deployments", "/ui/ledger", "/ui/report")
MAY_OPEN = {
    "admin": set(PAGES),
    "reviewer": {"/ui/review"},
    "enroller": {"/ui/subjects"},
    "operator": {"/ui/deployments"},
    "auditor": {"/ui/deployments", "/ui/ledger", "/ui/report"},
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, module_gallery_location: GalleryLocation) -> Iterator[Service]:
    """The module's tests run on an SQLite file, then on a PostgreSQL database."""
    where = module_gallery_location
    with running_service(tmp_path_factory.mktemp("web"), db=where.location, key_file=where.key_file) as svc:
        for role in MAY_OPEN:
            svc.state.gallery.add_user(f"{role}-user", role=role, password=PASSWORD, actor="setup")
        yield svc


@pytest.fixture(autouse=True)
def fresh_limits(service: Service) -> None:
    """Each test starts with unused sign-in limits (they count per client address, and every test signs in)."""
    service.app.state.ui_signin_limits = SigninLimits()


def _client(svc: Service) -> TestClient:
    """A fresh browser-like client (its own cookies) on the same app."""
    return TestClient(svc.app, raise_server_exceptions=False, follow_redirects=False)


def _form_token(client: TestClient) -> str:
    page = client.get("/ui/signin")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def sign_in(svc: Service, role: str, **fields: str) -> TestClient:
    client = _client(svc)
    data = {"csrf": _form_token(client), **(fields or {"name": f"{role}-user", "password": PASSWORD})}
    response = client.post("/ui/signin", data=data)
    assert response.status_code == 303, response.text
    return client


def _csrf(client: TestClient, path: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert match
    return match.group(1)


def _entries(svc: Service, action: str) -> list[dict[str, Any]]:
    return [e.data for e in svc.state.gallery.audit_entries(action=action)]


def test_signin_sets_a_strict_httponly_session_cookie_and_goes_to_the_roles_page(service: Service) -> None:
    client = _client(service)
    assert client.get("/ui/review").status_code == 303  # not signed in: to the sign-in page, and back afterwards
    assert client.get("/ui/review").headers["location"] == "/ui/signin?next=/ui/review"
    data = {"csrf": _form_token(client), "name": "reviewer-user", "password": PASSWORD, "next": "/ui/review"}
    response = client.post("/ui/signin", data=data)
    assert response.status_code == 303 and response.headers["location"] == "/ui/review"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("faceledger_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    page = client.get("/ui/review")
    assert page.status_code == 200 and "reviewer-user" in page.text
    signin = _entries(service, "signin")[-1]
    assert signin["actor"] == "reviewer-user" and signin["details"]["role"] == "reviewer"
    # A sign-in may not send the browser to another site afterwards.
    other = _client(service)
    sent = other.post("/ui/signin", data={**data, "csrf": _form_token(other), "next": "//evil.example/x"})
    assert sent.status_code == 303 and sent.headers["location"] == "/ui/review"


def test_failed_signins_are_refused_alike_and_recorded_with_their_reason(service: Service) -> None:
    client = _client(service)
    before = len(_entries(service, "signin.failed"))
    wrong = client.post("/ui/signin", data={"csrf": _form_token(client), "name": "admin-user", "password": "x" * 12})
    unknown = client.post("/ui/signin", data={"csrf": _form_token(client), "name": "nobody", "password": "x" * 12})
    bad_key = client.post("/ui/signin", data={"csrf": _form_token(client), "token": "fl_nothing_here"})
    for response in (wrong, unknown, bad_key):
        assert response.status_code == 401 and "Sign-in failed" in response.text
        assert "faceledger_session" not in response.headers.get("set-cookie", "")
    failed = _entries(service, "signin.failed")[before:]
    assert [(e["actor"], e["details"]["reason"]) for e in failed] == [
        ("admin-user", "wrong password"),
        ("nobody", "unknown user"),
        ("api key", "malformed API key"),
    ]
    assert all(e["details"]["address"] for e in failed)


def test_signin_with_an_api_key_token(service: Service) -> None:
    client = sign_in(service, "auditor", token=service.tokens["auditor"])
    page = client.get("/ui/ledger")
    assert page.status_code == 200 and "auditor-owner" in page.text and service.key_ids["auditor"] in page.text


def test_signin_without_the_forms_token_is_refused(service: Service) -> None:
    client = _client(service)
    response = client.post("/ui/signin", data={"csrf": "forged", "name": "admin-user", "password": PASSWORD})
    assert response.status_code == 403 and "faceledger_session" not in response.headers.get("set-cookie", "")


def test_signin_attempts_are_rate_limited_per_name(service: Service) -> None:
    client = _client(service)
    statuses = []
    for _ in range(7):
        data = {"csrf": _form_token(client), "name": "operator-user", "password": "wrong password!"}
        statuses.append(client.post("/ui/signin", data=data).status_code)
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    limited = client.post(
        "/ui/signin", data={"csrf": _form_token(client), "name": "operator-user", "password": PASSWORD}
    )
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1  # even the right password waits
    reasons = [e["details"]["reason"] for e in _entries(service, "signin.failed") if e["actor"] == "operator-user"]
    assert reasons.count("too many attempts") == 3 and reasons.count("wrong password") == 5


@pytest.mark.parametrize("role", sorted(MAY_OPEN))
def test_every_page_checks_the_role_on_the_server(service: Service, role: str) -> None:
    client = sign_in(service, role)
    for path in PAGES:
        response = client.get(path)
        expected = 200 if path in MAY_OPEN[role] else 403
        assert response.status_code == expected, (role, path, response.text[:300])
        if expected == 403:
            assert f"Your role ({role}) may not" in response.text
    # The navigation offers exactly the pages the role may open.
    home = client.get("/ui", follow_redirects=True)
    offered = set(re.findall(r'<a href="(/ui/[a-z]+)"', home.text)) & set(PAGES)
    assert offered == MAY_OPEN[role]


def test_forms_without_the_sessions_csrf_token_are_refused(service: Service) -> None:
    client = sign_in(service, "admin")
    token = _csrf(client, "/ui/deployments")
    fields = {"reason": "test", "name": "x"}
    assert client.post("/ui/deployments/none/end", data=fields).status_code == 403
    assert client.post("/ui/deployments/none/end", data={**fields, "csrf": "forged"}).status_code == 403
    refused = client.post("/ui/signout", data={"csrf": token[:-1] + "x"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert client.get("/ui/ledger").status_code == 200  # still signed in
    # Another session's token does not work either.
    other = sign_in(service, "admin")
    assert client.post("/ui/signout", data={"csrf": _csrf(other, "/ui/ledger")}).status_code == 403
    assert client.post("/ui/signout", data={"csrf": token}).status_code == 303
    assert client.get("/ui/ledger").status_code == 303  # signed out: back to the sign-in page
    assert _entries(service, "signout")[-1]["actor"] == "admin-user"


def test_disabling_an_account_ends_its_sessions_at_once(service: Service) -> None:
    service.state.gallery.add_user("temp-user", role="auditor", password=PASSWORD, actor="setup")
    client = sign_in(service, "auditor", name="temp-user", password=PASSWORD)
    assert client.get("/ui/ledger").status_code == 200
    service.state.gallery.disable_user("temp-user", actor="setup")
    assert client.get("/ui/ledger").status_code == 303
    again = _client(service)
    refused = again.post("/ui/signin", data={"csrf": _form_token(again), "name": "temp-user", "password": PASSWORD})
    assert refused.status_code == 401
    assert _entries(service, "signin.failed")[-1]["details"]["reason"] == "account disabled"


def test_the_ledger_page_is_a_records_read_entry_and_the_queue_poller_leaves_none(service: Service) -> None:
    gallery = service.state.gallery
    auditor, reviewer = sign_in(service, "auditor"), sign_in(service, "reviewer")
    head = gallery.audit_head().seq
    assert auditor.get("/ui/ledger?action=signin").status_code == 200
    (read,) = [e.data for e in gallery.audit_entries(after_seq=head)]
    assert (read["action"], read["actor"], read["purpose"]) == ("records.read", "auditor-user", "audit")
    assert read["details"]["kind"] == "audit entries" and read["details"]["count"] == head
    # Polling for new candidates every 5 seconds reads only their ids and times: no entry.
    assert reviewer.get("/ui/review/new?after=9999").status_code == 204
    assert gallery.audit_head().seq == head + 1


def test_pages_carry_security_headers_and_reference_nothing_outside_the_site(service: Service) -> None:
    client = sign_in(service, "admin")
    for path in (*PAGES, "/ui/signin"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["cache-control"] == "no-store"
        references = re.findall(r'(?:src|href|action)="([^"]*)"', response.text)
        assert references, path
        outside = [r for r in references if not (r.startswith("/") or r.startswith("data:") or r.startswith("?"))]
        assert outside == [], (path, outside)
        assert "//" not in "".join(r for r in references if not r.startswith("data:")).replace("://", "")
        for asset in re.findall(r'(?:src|href)="(/(?:assets|ui/static)/[^"]+)"', response.text):
            assert client.get(asset).status_code == 200, asset


def test_users_cli_creates_lists_and_disables_accounts(gallery_location: GalleryLocation) -> None:
    from click.testing import CliRunner

    from faceledger.gallery import Gallery
    from faceledger.interfaces.cli import main

    db, key_file = gallery_location.location, gallery_location.key_file
    Gallery.init(db, actor="setup", key_file=key_file).close()
    runner = CliRunner(env={"FACELEDGER_KEY_FILE": str(key_file)})
    base = ["--db", db, "users"]
    short = runner.invoke(main, [*base, "add", "kim", "--role", "reviewer", "--password-stdin", "--actor", "a"],
                          input="short\n")  # fmt: skip
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    added = runner.invoke(main, [*base, "add", "kim", "--role", "reviewer", "--password-stdin", "--actor", "a"],
                          input=PASSWORD + "\n")  # fmt: skip
    assert added.exit_code == 0 and "user kim (reviewer) active" in added.output
    listed = runner.invoke(main, [*base, "list", "--json"])
    assert '"name":"kim"' in listed.output.replace(" ", "") and "argon2" not in listed.output
    disabled = runner.invoke(main, [*base, "disable", "kim", "--actor", "a"])
    assert disabled.exit_code == 0 and "disabled" in disabled.output
    with Gallery.open(db, key_file=key_file) as g:
        (user,) = g.users()
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        assert [e.data["action"] for e in g.audit_entries()][-2:] == ["user.add", "user.disable"]


@pytest.mark.shared_data
def test_the_review_card_and_the_api_show_the_evidence_and_apply_the_two_person_rule(
    service: Service, faces_dir: Path, tmp_path: Path
) -> None:
    import base64

    from faceledger.ledger import EXAMPLE_POLICY
    from test_api_helpers import people

    g = service.state.gallery
    photos = people(faces_dir)["leonard"]
    g.add_consent("emp-leo", actor="setup", collected_by="desk", legal_basis="explicit consent",
                  purpose="access-control", evidence_ref="f-leo")  # fmt: skip
    g.enroll("emp-leo", photos[:2], actor="setup", purpose="access-control")
    policy = tmp_path / "two.toml"
    policy.write_text(EXAMPLE_POLICY.replace("reviewers_required = 1 ", "reviewers_required = 2 "), encoding="utf-8")
    previous = g.policy.text
    g.set_policy(policy, actor="setup")
    try:
        # The reviewer ran this search themselves (under another role's key, say): with two reviewers required,
        # the card says why they may not review it, and a forged decision is refused by the gallery.
        found = g.identify(photos[3], actor="reviewer-user", purpose="access-control")
        (match,) = [m for f in found.faces for m in f.candidates if m.subject == "emp-leo"]
        client = sign_in(service, "reviewer")
        card = client.get(f"/ui/review/{match.candidate_id}")
        assert card.status_code == 200 and "You ran this search" in card.text and 'name="decision"' not in card.text
        assert card.text.count('src="data:image/jpeg;base64,') >= 4  # found face, context, two enrolled faces
        assert "0 of 2" in card.text and "pairs of different people" in card.text
        token = re.search(r'hx-headers=\'\{"X-CSRF-Token": "([^"]+)"', card.text)
        assert token
        forged = client.post(f"/ui/review/{match.candidate_id}",
                             data={"csrf": token.group(1), "decision": "confirm", "reason": "mine"})  # fmt: skip
        assert forged.status_code == 409 and "ran the search" in forged.text
        # Over the API, the same evidence, and the look is on the ledger.
        views = len(g.audit_entries(action="evidence.view"))
        api = service.client.get(f"/v1/reviews/{match.candidate_id}/evidence", headers=service.headers("reviewer"))
        assert api.status_code == 200, api.text
        body = api.json()
        assert base64.b64decode(body["face"])[:3] == b"\xff\xd8\xff" and len(body["references"]) == 2
        assert body["required"] == 2 and body["confirmations"] == 0 and 0 < body["fmr"] < 1e-3
        assert len(g.audit_entries(action="evidence.view")) == views + 1
        assert (
            service.client.get(
                f"/v1/reviews/{match.candidate_id}/evidence", headers=service.headers("auditor")
            ).status_code
            == 403
        )
    finally:
        restore = tmp_path / "previous.toml"
        restore.write_text(previous, encoding="utf-8")
        g.set_policy(restore, actor="setup")


def test_an_admin_authorises_and_ends_a_deployment_from_the_form(service: Service) -> None:
    client = sign_in(service, "admin")
    token = _csrf(client, "/ui/deployments")
    form = {
        "csrf": token, "name": "lobby-2026", "gallery_purpose": "staff|access-control", "max_watchlist": "20",
        "location": "main lobby", "sources": "rtsp://user:secret@10.0.0.5/stream1\n", "legal_basis": "consent",
        "authorised_by": "head of security", "authorisation_ref": "memo 7", "valid_to": "2099-12-31T18:00",
    }  # fmt: skip
    added = client.post("/ui/deployments", data=form)
    assert added.status_code == 303, added.text
    page = client.get(added.headers["location"])
    assert "Deployment lobby-2026 authorised." in page.text and "main lobby" in page.text
    assert "secret" not in page.text and "rtsp://10.0.0.5/stream1" in page.text  # credentials never stored
    (record,) = [d for d in service.state.gallery.deployments() if d.name == "lobby-2026"]
    assert record.valid_to.startswith("2099-12-31T18:00") and record.created_by == "admin-user"
    ended = client.post("/ui/deployments/lobby-2026/end", data={"csrf": token, "reason": "moved"})
    assert ended.status_code == 303
    assert "ended" in client.get("/ui/deployments").text
    # An operator sees deployments but gets no form, and a forged one is refused by role.
    operator = sign_in(service, "operator")
    listing = operator.get("/ui/deployments")
    assert "lobby-2026" in listing.text and "Authorise a deployment" not in listing.text
    refused = operator.post("/ui/deployments", data={**form, "csrf": _csrf(operator, "/ui/deployments")})
    assert refused.status_code == 403


@pytest.mark.shared_data
def test_an_enroller_records_a_consent_and_enrolls_uploaded_photos(service: Service, faces_dir: Path) -> None:
    from test_api_helpers import people

    photos = people(faces_dir)["howard"]
    client = sign_in(service, "enroller")
    token = _csrf(client, "/ui/subjects")
    files = [("photos", (p.name, p.read_bytes(), "image/png")) for p in photos[:2]]
    # No consent yet: refused, and the page says why.
    under = {"csrf": token, "gallery_purpose": "staff|access-control"}
    refused = client.post("/ui/subjects/emp-how/enroll", data=under, files=files)
    assert refused.status_code == 409 and "consent" in refused.text
    consent = {"csrf": token, "subject": "emp-how", "gallery_purpose": "staff|access-control",
               "legal_basis": "explicit consent", "evidence_ref": "form 12", "expires_at": "2099-01-01"}  # fmt: skip
    recorded = client.post("/ui/consents", data=consent)
    assert recorded.status_code == 303 and recorded.headers["location"].startswith("/ui/subjects/emp-how")
    enrolled = client.post("/ui/subjects/emp-how/enroll", data=under, files=files)
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.text.count(">enrolled<") == 2 and photos[0].name in enrolled.text
    assert enrolled.text.count('src="data:image/jpeg;base64,') == 2  # the two enrolled faces
    (consent_record,) = service.state.gallery.consents("emp-how", actor="test", purpose="audit")
    assert consent_record.recorded_by == "enroller-user" and consent_record.expires_at.startswith("2099-01-01")
