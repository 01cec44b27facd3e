"""/docs and /redoc work offline: their pages name no internet address, every script, stylesheet and icon they
load is served by the app from the package's vendored copies, and those copies are the ones VENDORED.md lists."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceledger.interfaces.api import ServiceSettings, create_app
from faceledger.interfaces.assets import ASSETS_DIR, assets_dir
from test_api_helpers import running_service

VENDOR = ASSETS_DIR / "vendor"
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


class _References(HTMLParser):
    """Every URL-valued attribute of a page (src, href, spec-url)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href", "spec-url"} and value]


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    # Swagger UI's configuration names the OpenAPI document in its script: url: '/openapi.json'
    return parser.urls + re.findall(r"\burl: '([^']*)'", html)


@pytest.fixture(scope="module")
def client() -> TestClient:
    """The app without its lifespan: the docs pages and assets need no database or models."""
    return TestClient(create_app(ServiceSettings(db=Path("unused.db"))))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_name_no_internet_address(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"(?i)(https?:)?//[a-z0-9]", html), f"{page} names an absolute or protocol-relative URL"
    assert "googleapis" not in html and "jsdelivr" not in html and "tiangolo" not in html
    urls = _references(html)
    assert len(urls) >= (3 if page == "/docs" else 2), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url


def test_swagger_ui_calls_no_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_may_only_load_from_the_service(client: TestClient, page: str) -> None:
    response = client.get(page)
    policy = dict(d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["img-src"] == "'self' data:"
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.S)
    assert len(inline) == (1 if page == "/docs" else 0)
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"].split()
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_of_the_docs_pages_is_served(client: TestClient, page: str) -> None:
    for url in _references(client.get(page).text):
        response = client.get(url)
        assert response.status_code == 200, url
        suffix = Path(url).suffix
        assert CONTENT_TYPES[suffix] in response.headers["content-type"], (url, response.headers["content-type"])
        if url.startswith("/assets/"):
            assert response.content == (ASSETS_DIR / url.removeprefix("/assets/")).read_bytes(), url
            assert "max-age=" in response.headers["cache-control"]


def test_docs_behind_a_path_prefix_point_below_it() -> None:
    client = TestClient(create_app(ServiceSettings(db=Path("unused.db"))), root_path="/fl")
    for page in ("/docs", "/redoc"):
        urls = _references(client.get(page).text)
        assert urls and all(url.startswith("/fl/") for url in urls), urls


def test_the_oauth2_redirect_page_stays(client: TestClient) -> None:
    response = client.get("/docs/oauth2-redirect")
    assert response.status_code == 200 and "swaggerUIRedirectOauth2" in response.text


def test_assets_serve_no_python_and_no_missing_file(client: TestClient) -> None:
    for path in ("/assets/__init__.py", "/assets/vendor/none.js", "/assets/../app.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"], path


def _vendored() -> list[dict[str, str]]:
    rows = []
    for line in (VENDOR / "VENDORED.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[0-9a-f]{64}", cells[3]):
            rows.append(dict(zip(("package", "version", "file", "sha256", "licence"), cells, strict=True)))
    return rows


def test_vendored_files_are_the_listed_ones() -> None:
    rows = _vendored()
    assert {row["package"] for row in rows} == {"swagger-ui-dist", "redoc", "htmx.org"}
    for row in rows:
        assert re.fullmatch(r"\d+\.\d+\.\d+", row["version"]), row  # an exact version, never a range
        digest = hashlib.sha256((VENDOR / row["file"]).read_bytes()).hexdigest()
        assert digest == row["sha256"], f"{row['file']} differs from VENDORED.md; rerun scripts/vendor_assets.py"
    on_disk = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file() and p.name != "VENDORED.md"}
    assert on_disk == {row["file"] for row in rows}
    for folder in {Path(row["file"]).parent for row in rows}:
        assert (VENDOR / folder / "LICENSE").is_file(), folder
    htmx = next(row for row in rows if row["package"] == "htmx.org")
    assert htmx["version"].startswith("2."), htmx


def test_assets_dir_is_the_package_folder() -> None:
    assert assets_dir() == ASSETS_DIR and (ASSETS_DIR / "__init__.py").is_file()


def test_metrics_label_docs_and_assets_by_template(tmp_path: Path) -> None:
    with running_service(tmp_path) as service:
        client = service.client
        for path in ("/docs", "/redoc", "/assets/vendor/htmx/htmx.min.js", "/assets/vendor/redoc/LICENSE"):
            assert client.get(path).status_code == 200, path
        text = client.get("/metrics").text
    for route in ("/docs", "/redoc", "/assets/{path}"):
        pattern = rf'faceledger_http_requests_total\{{pid="\d+",method="GET",route="{re.escape(route)}",status="200"\}}'
        assert re.search(pattern, text), route
    assert "htmx.min.js" not in text and "unmatched" not in text
