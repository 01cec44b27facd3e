"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served with the package's own copies
of their scripts and stylesheets (``/assets``, see :mod:`faceledger.interfaces.assets`): they work on a site with no
internet access, and a reader's browser tells no CDN which service it looks at. Like ``/openapi.json`` they need no
API key.

A Content-Security-Policy keeps the pages to the service's own origin; it is what stops ReDoc 2 from fetching the
Redocly logo of its sidebar from cdn.redoc.ly (the image is then left out).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from faceledger.interfaces.assets import ASSETS_DIR

__all__ = ["ASSETS_PATH", "AssetFiles", "install_docs"]

ASSETS_PATH = "/assets"
CACHE_CONTROL = "public, max-age=86400"  # the file names carry no version: a day, then revalidated by ETag
SWAGGER = f"{ASSETS_PATH}/vendor/swagger-ui"
REDOC = f"{ASSETS_PATH}/vendor/redoc"
FAVICON = f"{SWAGGER}/favicon-32x32.png"


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    """``page`` with a Content-Security-Policy admitting only the service's origin (its inline scripts by hash;
    inline styles, data: images and blob: workers, which Swagger UI and ReDoc create themselves)."""
    inline = re.findall(rb"<script>(.*?)</script>", bytes(page.body), re.S)
    scripts = ["'self'", *(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in inline)]
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src {' '.join(scripts)}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "worker-src 'self' blob:; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
    )
    return page


class AssetFiles(StaticFiles):
    """The assets folder, with a cache header; the package's Python files in it are not served."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        parts = path.replace(os.sep, "/").split("/")
        if "__pycache__" in parts or parts[-1].endswith((".py", ".pyc")):
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = CACHE_CONTROL
        return response


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, its OAuth2 redirect page, ``/redoc`` and the ``/assets`` mount to an app built with
    ``docs_url=None, redoc_url=None``."""
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        parameters: dict[str, Any] = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=base + openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{base}{SWAGGER}/swagger-ui-bundle.js",
                swagger_css_url=f"{base}{SWAGGER}/swagger-ui.css",
                swagger_favicon_url=base + FAVICON,
                oauth2_redirect_url=base + redirect_url if redirect_url else None,
                init_oauth=app.swagger_ui_init_oauth,
                swagger_ui_parameters=parameters,
            )
        )

    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return _with_policy(
            get_redoc_html(
                openapi_url=base + openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{base}{REDOC}/redoc.standalone.js",
                redoc_favicon_url=base + FAVICON,
                with_google_fonts=False,
            )
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    if redirect_url:
        app.add_route(redirect_url, oauth2_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.mount(ASSETS_PATH, AssetFiles(directory=ASSETS_DIR), name="assets")
