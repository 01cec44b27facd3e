"""Authorization matrix of the REST service: every route refuses every role it must (401 without a valid key,
403 with a key of the wrong role), a refused request leaves no trace on the ledger, keys are revocable and
rate-limited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import GalleryLocation
from faceledger.gallery import Gallery
from faceledger.interfaces.api.settings import ServiceSettings
from faceledger.ledger import ROLES
from test_api_helpers import PURPOSE, Service, running_service

EVERYONE = frozenset(ROLES)
# The specification: who may call what. A route added to the app without a row here fails the test below.
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/v1/whoami"): EVERYONE,
    ("POST", "/v1/detect"): frozenset({"admin", "enroller", "operator"}),
    ("POST", "/v1/verify"): frozenset({"admin", "operator"}),
    ("POST", "/v1/consents"): frozenset({"admin", "enroller"}),
    ("GET", "/v1/consents"): frozenset({"admin", "enroller"}),
    ("POST", "/v1/consents/withdraw"): frozenset({"admin", "enroller"}),
    ("POST", "/v1/enroll"): frozenset({"admin", "enroller"}),
    ("GET", "/v1/subjects"): frozenset({"admin", "enroller"}),
    ("DELETE", "/v1/subjects/{subject}"): frozenset({"admin", "enroller"}),
    ("POST", "/v1/subjects/{subject}/verify"): frozenset({"admin", "operator"}),
    ("POST", "/v1/identify"): frozenset({"admin", "operator"}),
    ("GET", "/v1/reviews"): frozenset({"admin", "reviewer"}),
    ("GET", "/v1/reviews/{candidate_id}/evidence"): frozenset({"admin", "reviewer"}),
    ("POST", "/v1/reviews/{candidate_id}/confirm"): frozenset({"admin", "reviewer"}),
    ("POST", "/v1/reviews/{candidate_id}/reject"): frozenset({"admin", "reviewer"}),
    ("POST", "/v1/purge"): frozenset({"admin"}),
    ("GET", "/v1/audit/verify"): frozenset({"admin", "auditor"}),
    ("GET", "/v1/audit/head"): frozenset({"admin", "auditor"}),
    ("GET", "/v1/audit/entries"): frozenset({"admin", "auditor"}),
    ("GET", "/v1/audit/export"): frozenset({"admin", "auditor"}),
    ("GET", "/v1/report"): frozenset({"admin", "auditor"}),
    ("GET", "/v1/deployments"): frozenset({"admin", "operator", "auditor"}),
    ("POST", "/v1/deployments"): frozenset({"admin"}),
    ("PATCH", "/v1/deployments/{name}"): frozenset({"admin"}),
    ("POST", "/v1/deployments/{name}/end"): frozenset({"admin"}),
    ("GET", "/v1/sessions"): frozenset({"admin", "operator", "auditor"}),
}
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgAB4iG8MwAAAABJRU5ErkJggg=="
BODIES: dict[str, Any] = {
    "/v1/detect": {"image": TINY_PNG},
    "/v1/verify": {"image_a": TINY_PNG, "image_b": TINY_PNG},
    "/v1/consents": {
        "subject": "matrix-1",
        "collected_by": "desk",
        "legal_basis": "explicit consent",
        "evidence_ref": "f-1",
    },
    "/v1/consents/withdraw": {"subject": "nobody"},
    "/v1/enroll": {"subject": "nobody", "images": [TINY_PNG]},
    "/v1/identify": {"image": TINY_PNG},
    "/v1/subjects/{subject}/verify": {"image": TINY_PNG},
    "/v1/reviews/{candidate_id}/confirm": {"reason": "checked"},
    "/v1/reviews/{candidate_id}/reject": {"reason": "checked"},
    "/v1/deployments/{name}": {"reason": "checked", "max_watchlist": 3},
    "/v1/deployments/{name}/end": {"reason": "checked"},
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, module_gallery_location: GalleryLocation) -> Any:
    """The module's tests on SQLite, then on PostgreSQL."""
    where = module_gallery_location
    with running_service(tmp_path_factory.mktemp("auth"), db=where.location, key_file=where.key_file) as svc:
        yield svc


def _call(svc: Service, method: str, path: str, headers: dict[str, str]) -> Any:
    url = path.replace("{subject}", "nobody").replace("{candidate_id}", "0123abcd").replace("{name}", "nowhere")
    body = BODIES.get(path)
    return svc.client.request(method, url, headers=headers, json=body if method != "GET" else None)


def _head(svc: Service) -> int:
    with Gallery.open(svc.db, key_file=svc.key_file) as g:
        head = g.audit_head()
    assert head is not None
    return head.seq


def test_every_v1_route_is_in_the_matrix_and_documents_its_roles(service: Service) -> None:
    spec = service.client.get("/openapi.json").json()
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    }
    assert documented == set(MATRIX)
    for (method, path), roles in MATRIX.items():
        operation = spec["paths"][path][method.lower()]
        assert set(operation["x-roles"]) == roles, path
        assert {"401", "403", "429"} <= set(operation["responses"]), path
        assert operation["security"] == [{"bearer": []}, {"apiKey": []}], path
    assert {"bearer", "apiKey"} <= set(spec["components"]["securitySchemes"])


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
def test_route_refuses_missing_bad_and_wrong_role_keys(service: Service, method: str, path: str) -> None:
    allowed = MATRIX[(method, path)]
    before = _head(service)
    bad_headers: list[dict[str, str]] = [
        {"X-Purpose": PURPOSE},
        {"Authorization": "Bearer flk_000000000000_not-a-real-secret", "X-Purpose": PURPOSE},
        {"X-API-Key": "garbage", "X-Purpose": PURPOSE},
        {"Authorization": f"Basic {service.tokens['admin']}", "X-Purpose": PURPOSE},
    ]
    for headers in bad_headers:
        response = _call(service, method, path, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    for role in sorted(EVERYONE - allowed):
        response = _call(service, method, path, service.headers(role))
        assert response.status_code == 403, (role, response.text)
        error = response.json()["error"]
        assert error["code"] == "forbidden" and role in error["message"]
    # Refused requests leave no trace on the ledger (nothing was done).
    assert _head(service) == before
    for role in sorted(allowed):
        response = _call(service, method, path, service.headers(role))
        assert response.status_code not in (401, 403), (role, response.text)
        # The same key also works in an X-API-Key header.
        response = _call(service, method, path, {"X-API-Key": service.tokens[role], "X-Purpose": PURPOSE})
        assert response.status_code not in (401, 403), (role, response.text)


def test_whoami_names_the_key_owner_and_role(service: Service) -> None:
    for role in ROLES:
        body = service.client.get("/v1/whoami", headers=service.headers(role, None)).json()
        assert body == {"key_id": service.key_ids[role], "owner": f"{role}-owner", "role": role}


def test_keys_created_and_revoked_from_outside_take_effect_at_once(service: Service) -> None:
    with Gallery.open(service.db, key_file=service.key_file) as g:
        record, token = g.create_api_key("temp-operator", "operator", actor="admin-person")
    headers = {"Authorization": f"Bearer {token}"}
    assert service.client.get("/v1/whoami", headers=headers).json()["owner"] == "temp-operator"
    with Gallery.open(service.db, key_file=service.key_file) as g:
        g.revoke_api_key(record.id, actor="admin-person")
    response = service.client.get("/v1/whoami", headers=headers)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]
    # A token differing from the stored one only in its secret is refused too.
    forged = token[: token.rindex("_") + 1] + "x" * 43
    assert service.client.get("/v1/whoami", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_rate_limit_answers_429_with_retry_after_per_key(tmp_path: Path) -> None:
    with running_service(tmp_path, rate_limit=3) as svc:
        for _ in range(3):
            assert svc.client.get("/v1/whoami", headers=svc.headers("auditor")).status_code == 200
        response = svc.client.get("/v1/whoami", headers=svc.headers("auditor"))
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 20
        # Another key is not affected, and the health endpoints are never limited.
        assert svc.client.get("/v1/whoami", headers=svc.headers("admin")).status_code == 200
        assert all(svc.client.get("/healthz").status_code == 200 for _ in range(5))
        metrics = svc.client.get("/metrics").text
        assert 'faceledger_rate_limited_total{pid="' in metrics


def test_operator_keys_have_their_own_rate_limit(tmp_path: Path) -> None:
    """Identify clients (camera gateways) get ``operator_rate_limit``, every other role ``rate_limit``."""
    with running_service(tmp_path, rate_limit=2, operator_rate_limit=5) as svc:
        codes = [svc.client.get("/v1/whoami", headers=svc.headers("operator")).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        reviewer = [svc.client.get("/v1/whoami", headers=svc.headers("reviewer")).status_code for _ in range(3)]
        assert reviewer == [200, 200, 429]
        refused = svc.client.get("/v1/whoami", headers=svc.headers("operator")).json()["error"]["message"]
        assert "(operator) made more than 5 requests" in refused
    (tmp_path / "off").mkdir()
    with running_service(tmp_path / "off", rate_limit=0, operator_rate_limit=5) as svc:  # 0 turns every limit off
        assert all(svc.client.get("/v1/whoami", headers=svc.headers("operator")).status_code == 200 for _ in range(8))


def test_the_default_operator_limit_is_higher_than_the_default_limit() -> None:
    settings = ServiceSettings(db="x.db")
    assert settings.operator_rate_limit > settings.rate_limit > 0
    assert ServiceSettings.from_env({"FACELEDGER_API_OPERATOR_RATE_LIMIT": "120"}).operator_rate_limit == 120
