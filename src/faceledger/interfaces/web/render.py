"""Pages from Jinja2 templates (autoescaped), with the headers every page of the UI carries: a Content Security
Policy that admits only this site's own scripts, styles and images (faces are inline ``data:`` images, never
URLs a browser could cache or share), no caching, no framing, no referrer."""

from __future__ import annotations

import base64
import math
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from faceledger import __version__
from faceledger.interfaces.web.session import PAGES, Viewer

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def when(text: str | None) -> str:
    """An ISO 8601 UTC timestamp as ``2026-12-02 05:46:14 UTC``."""
    if not text:
        return ""
    return text[:19].replace("T", " ") + " UTC"


def jpeg_uri(data: bytes | None) -> str:
    """A JPEG as an inline ``data:`` URI (empty when there is none)."""
    return "" if not data else "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def png_uri(data: bytes | None) -> str:
    """A PNG as an inline ``data:`` URI."""
    return "" if not data else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def one_in(rate: float | None) -> str:
    """A false-match rate for people: ``about 1 in 12,000``."""
    if rate is None or not math.isfinite(rate):
        return "unknown"
    if rate <= 0:
        return "none measured"
    return f"about 1 in {round(1 / rate):,}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("faceledger.interfaces.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, jpeg=jpeg_uri, png=png_uri, one_in=one_in)
    env.globals.update(version=__version__)
    return env


ENV = _environment()


def page(
    request: Request,
    template: str,
    viewer: Viewer | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` for ``viewer`` (None on the sign-in and error pages) with the UI's headers."""
    nav = [] if viewer is None else [(path, title) for path, title, roles in PAGES if viewer.may(roles)]
    html = ENV.get_template(template).render(
        request=request,
        viewer=viewer,
        principal=None if viewer is None else viewer.principal,
        csrf="" if viewer is None else viewer.principal.csrf,
        nav=nav,
        path=request.url.path,
        now=datetime.now().astimezone(),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
