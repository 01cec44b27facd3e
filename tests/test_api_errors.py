"""Errors and limits of the REST service: one JSON shape for every failure (404, 405, 415, 422, 413, 500,
504), bad uploads answered 4xx with a clear message, never a traceback; health, readiness and metrics."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import GalleryLocation
from test_api_helpers import Service, b64, consent, group_photo, people, running_service

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, module_gallery_location: GalleryLocation) -> Any:
    """The module's tests on SQLite, then on PostgreSQL."""
    where, folder = module_gallery_location, tmp_path_factory.mktemp("errors")
    with running_service(folder, db=where.location, key_file=where.key_file, max_upload_bytes=300_000,
                         max_images=2) as svc:  # fmt: skip
        yield svc


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    message: str = body["error"]["message"]
    return message


def test_unknown_routes_methods_and_malformed_requests(service: Service) -> None:
    client = service.client
    assert "no such route" in _error(client.get("/v2/identify"), 404, "not_found")
    _error(client.put("/v1/identify", headers=service.headers("operator")), 405, "method_not_allowed")
    message = _error(
        client.post("/v1/consents", headers=service.headers("enroller"), json={"subject": "a b"}),
        422,
        "validation_error",
    )
    assert "subject" in message and "collected_by: Field required" in message
    _error(
        client.post("/v1/consents", headers=service.headers("enroller"), content=b"{not json"), 422, "validation_error"
    )
    _error(
        client.post(
            "/v1/identify", headers=service.headers("operator", **{"Content-Type": "application/json"}), content=b"[1]"
        ),
        422,
        "validation_error",
    )
    message = _error(
        client.post(
            "/v1/identify", headers=service.headers("operator", **{"Content-Type": "text/plain"}), content=b"hi"
        ),
        415,
        "unsupported_media_type",
    )
    assert "multipart/form-data" in message
    message = _error(
        client.post("/v1/identify", headers=service.headers("operator"), json={"image": "x", "top_k": 0}),
        422,
        "validation_error",
    )
    assert "top_k" in message
    _error(client.get("/v1/audit/entries?limit=5000", headers=service.headers("auditor")), 422, "validation_error")
    _error(client.get("/v1/report?since=yesterday", headers=service.headers("auditor")), 422, "invalid_value")


def test_bad_uploads_get_4xx_naming_the_field(service: Service, faces_dir: Path) -> None:
    client = service.client
    h = service.headers("operator")
    assert "image: not valid base64" in _error(
        client.post("/v1/identify", headers=h, json={"image": "not base64 at all!"}), 422, "bad_base64"
    )
    garbage = base64.b64encode(b"this is not an image").decode()
    assert _error(client.post("/v1/identify", headers=h, json={"image": garbage}), 422, "bad_image").startswith(
        "image:"
    )
    photo = people(faces_dir)["penny"][0].read_bytes()
    truncated = client.post("/v1/identify", headers=h, files={"image": ("cut.png", photo[: len(photo) // 2])})
    assert _error(truncated, 422, "bad_image").startswith("cut.png:")
    _error(client.post("/v1/detect", headers=h, files={"image": ("empty.jpg", b"")}), 422, "bad_image")
    missing = client.post("/v1/identify", headers=h, files={"picture": ("p.png", photo)})
    assert "picture: unexpected file field" in _error(missing, 422, "validation_error")
    as_text = client.post("/v1/identify", headers=h, data={"image": "hello"}, files={"other": ("x", b"1")})
    _error(as_text, 422, "validation_error")
    no_face = client.post(
        "/v1/verify", headers=h, json={"image_a": b64(people(faces_dir)["penny"][0]), "image_b": _blank_png()}
    )
    assert _error(no_face, 422, "no_face").startswith("image_b: no face found")
    enroll = client.post(
        "/v1/enroll",
        headers=service.headers("enroller"),
        json={"subject": "emp-1", "images": [garbage, garbage, garbage]},
    )
    assert "more than the limit of 2" in _error(enroll, 422, "too_many_images")


def test_an_enrollment_with_no_usable_image_is_a_422_naming_each(service: Service, faces_dir: Path) -> None:
    consent(service, "emp-group")
    garbage = base64.b64encode(b"GIF89a broken").decode()
    response = service.client.post(
        "/v1/enroll",
        headers=service.headers("enroller"),
        json={"subject": "emp-group", "images": [garbage, _blank_png()]},
    )
    message = _error(response, 422, "no_usable_image")
    assert "images[0]:" in message and "images[1]: no face found" in message


def test_upload_size_limit_413_before_and_while_reading(service: Service, faces_dir: Path) -> None:
    big = group_photo(faces_dir).read_bytes() * 3  # about 360 kB, over the 300 kB limit of this service
    h = service.headers("operator")
    message = _error(service.client.post("/v1/identify", headers=h, files={"image": ("g.jpg", big)}), 413, "too_large")
    assert "300,000 bytes" in message

    def chunks() -> Any:  # no Content-Length: the limit applies while the body streams in
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    streamed = service.client.post("/v1/detect", headers={**h, "Content-Type": "application/json"}, content=chunks())
    _error(streamed, 413, "too_large")


def test_pixel_face_and_timeout_limits(tmp_path: Path, faces_dir: Path) -> None:
    photos = people(faces_dir)
    with running_service(tmp_path, max_faces=3, max_pixels=20_000, timeout=0.5) as svc:
        h = svc.headers("operator")
        small = photos["amy"][0]  # 150 x 150 = 22,500 pixels
        message = _error(svc.client.post("/v1/detect", headers=h, json={"image": b64(small)}), 422, "bad_image")
        assert "22,500 pixels" in message and "20,000" in message
        svc.state.gallery.engine.max_pixels = 10_000_000
        group = group_photo(faces_dir)
        message = _error(
            svc.client.post("/v1/identify", headers=h, files={"image": ("g.jpg", group.read_bytes())}),
            422,
            "too_many_faces",
        )
        assert "more than the limit of 3" in message
        # Nothing was recorded for the refused probe.
        assert (
            svc.client.get("/v1/audit/entries?action=identify", headers=svc.headers("auditor")).json()["entries"] == []
        )

        def slow(**kwargs: Any) -> list[Any]:
            time.sleep(1.5)
            return []

        svc.state.gallery.subjects = slow
        started = time.perf_counter()
        message = _error(svc.client.get("/v1/subjects", headers=svc.headers("enroller")), 504, "timeout")
        assert time.perf_counter() - started < 1.4
        assert "0.5 s" in message


def test_unexpected_exceptions_are_500_without_details(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise RuntimeError("secret internal detail /home/x/db")

    monkeypatch.setattr(service.state.gallery, "audit_head", boom)
    response = service.client.get("/v1/audit/head", headers=service.headers("auditor"))
    message = _error(response, 500, "internal")
    assert "secret" not in response.text and response.headers["x-request-id"] in message


def test_health_readiness_metrics_and_docs(service: Service, tmp_path: Path) -> None:
    client = service.client
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "models": "ok",
        "database": "ok",
        "master_key": "ok",
        "templates": "ok",
        "records": "ok",
    }
    key_file = service.key_file or Path(str(service.db) + ".key")
    moved = tmp_path / "elsewhere.key"
    key_file.rename(moved)
    try:
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and "not found" in not_ready.json()["checks"]["master_key"]
    finally:
        moved.rename(key_file)
    client.get("/v1/whoami")
    text = client.get("/metrics").text
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+Inf-]+$')
    for line in text.strip().splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert re.search(
        r'faceledger_http_requests_total\{pid="\d+",method="GET",route="/v1/whoami",status="401"\} [1-9]', text
    )
    assert "faceledger_http_request_duration_seconds_bucket" in text and "faceledger_audit_head_seq" in text
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "faceledger"
    client.get("/no/such/page")
    text = client.get("/metrics").text
    for route in ("/docs", "/openapi.json", "unmatched"):  # the docs are labelled by route, not as unmatched
        pattern = rf'faceledger_http_requests_total\{{pid="\d+",method="GET",route="{route}",status="\d+"\}}'
        assert re.search(pattern, text), route


def _blank_png() -> str:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_retention_runs_on_a_schedule(tmp_path: Path, gallery_location: GalleryLocation) -> None:
    where = gallery_location
    with running_service(tmp_path, db=where.location, key_file=where.key_file, purge_interval=0.4) as svc:
        deadline = time.monotonic() + 10
        runs: list[Any] = []
        while not runs and time.monotonic() < deadline:
            time.sleep(0.2)
            runs = svc.client.get("/v1/audit/entries?action=purge", headers=svc.headers("auditor")).json()["entries"]
        assert runs and runs[0]["actor"] == "faceledger-service" and runs[0]["purpose"] == "retention"


def test_deeply_nested_json_is_a_4xx_not_a_500(service: Service) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    headers = {"Content-Type": "application/json"}
    for path, role in (
        ("/v1/identify", "operator"),
        ("/v1/enroll", "enroller"),
        ("/v1/verify", "operator"),
        ("/v1/detect", "operator"),
        ("/v1/consents", "enroller"),
        ("/v1/deployments", "admin"),
    ):
        response = service.client.post(path, headers=service.headers(role, **headers), content=nested)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])
        assert response.json()["error"]["code"] in ("validation_error", "bad_request"), path


def test_a_purpose_over_200_characters_is_the_documented_400(service: Service) -> None:
    long = "p" * 201
    for method, path, role in (("GET", "/v1/consents", "enroller"), ("GET", "/v1/reviews", "reviewer")):
        response = service.client.request(method, path, headers={**service.headers(role), "X-Purpose": long})
        assert response.status_code == 400 and response.json()["error"]["code"] == "purpose_too_long", path
    response = service.client.get("/v1/reviews", headers=service.headers("reviewer", None), params={"purpose": long})
    assert response.status_code == 400 and response.json()["error"]["code"] == "purpose_too_long"
