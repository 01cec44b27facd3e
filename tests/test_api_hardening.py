"""Hardening of the REST service: the key is checked before the body is parsed, the access log names route
templates (never a subject id or an erasure's free-text reason), and a refusal for want of consent says what an
HTTP client does about it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import GalleryLocation
from faceledger.interfaces.api import ServiceSettings
from test_api_helpers import Service, b64, running_service

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "faceledger" / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, module_gallery_location: GalleryLocation) -> Iterator[Service]:
    """The module's tests on SQLite, then on PostgreSQL."""
    where, folder = module_gallery_location, tmp_path_factory.mktemp("hardening")
    with running_service(folder, db=where.location, key_file=where.key_file, access_log=True) as svc:
        yield svc


BAD_BODIES = {"malformed": b'{"subject": ', "nested": b"[" * 100_000 + b"]" * 100_000}


@pytest.mark.parametrize("body", sorted(BAD_BODIES))
@pytest.mark.parametrize("path", ["/v1/consents", "/v1/deployments"])
def test_the_key_is_checked_before_the_body_is_parsed(service: Service, path: str, body: str) -> None:
    headers = {"Content-Type": "application/json", "X-Purpose": "access-control"}
    sent = BAD_BODIES[body]
    no_key = service.client.post(path, headers=headers, content=sent)
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "unauthorized"
    assert no_key.headers["www-authenticate"] == "Bearer"
    bad_key = service.client.post(path, headers={**headers, "Authorization": "Bearer fl_nope_x"}, content=sent)
    assert bad_key.status_code == 401
    wrong_role = service.client.post(path, headers={**headers, **service.headers("reviewer")}, content=sent)
    assert wrong_role.status_code == 403 and wrong_role.json()["error"]["code"] == "forbidden"
    allowed = service.client.post(path, headers={**headers, **service.headers("admin")}, content=sent)
    assert allowed.status_code in (400, 422)  # only a caller who may call the route learns about the body


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_access_log_names_route_templates_not_paths_or_queries(service: Service) -> None:
    lines = _Lines()
    logging.getLogger("faceledger.access").addHandler(lines)
    try:
        reason = "asked by Jane Roe, jane.roe@example.org"
        response = service.client.delete(
            "/v1/subjects/p-erase-77", params={"reason": reason}, headers=service.headers("enroller")
        )
        assert response.status_code == 404  # never enrolled: the line is written all the same
        service.client.get("/v1/whoami", headers=service.headers("auditor"))
    finally:
        logging.getLogger("faceledger.access").removeHandler(lines)
    text = "\n".join(lines.lines)
    assert '"DELETE /v1/subjects/{subject}" 404' in text and '"GET /v1/whoami" 200' in text
    assert "p-erase-77" not in text and "jane" not in text.lower() and "reason" not in text


def test_the_access_log_setting_is_read_from_the_environment() -> None:
    env = {"FACELEDGER_DB": "x.db", ServiceSettings.env_name("access_log"): "true"}
    assert ServiceSettings.from_env(env).access_log is True
    assert ServiceSettings.from_env({"FACELEDGER_DB": "x.db"}).access_log is False
    with pytest.raises(ValueError, match="ACCESS_LOG"):
        ServiceSettings.from_env({**env, ServiceSettings.env_name("access_log"): "maybe"})


def test_an_enrollment_without_consent_says_how_to_record_one_over_http(service: Service) -> None:
    response = service.client.post(
        "/v1/enroll", headers=service.headers("enroller"), json={"subject": "emp-none", "images": [b64(EXAMPLE)]}
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "consent_required"
    message = response.json()["error"]["message"]
    assert "POST /v1/consents" in message and "faceledger consent add" not in message


def test_a_verification_over_http_carries_the_fmr_interval(service: Service) -> None:
    response = service.client.post(
        "/v1/verify", headers=service.headers("operator"), json={"image_a": b64(EXAMPLE), "image_b": b64(EXAMPLE)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    low, high = body["fmr_interval"]
    assert body["fmr_state"] == "measured" and low < body["fmr"] < high < 2e-3  # the policy targets 1e-3
