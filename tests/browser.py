"""Harness of the browser tests (no tests here): a real ``faceledger serve`` on loopback over a fresh gallery, and
the system's Chromium driven by Playwright, recording every request its pages make.

A test module enables the fixtures with ``pytest_plugins = ["browser"]`` and asks for them by name::

    pytest_plugins = ["browser"]

    def test_page(chromium: Browser, live_server: LiveServer) -> None:
        chromium.page.goto(live_server.url("/docs"))
        ...
        assert chromium.left_loopback() == []
        chromium.screenshot("docs")

``live_server`` serves a gallery made by ``init_deployment`` (example policy, one API key per role:
``live_server.tokens[role]``). For another setup, or one server for a whole module, use the context managers
:func:`serve_gallery` (its ``prepare`` callback gets the database path before the server starts) and
:func:`launch_chromium` in a fixture of your own.

Chromium is Debian's ``/usr/bin/chromium`` (Playwright downloads no browser here). Without it, or without the
``playwright`` package, the tests skip on a developer machine and fail when ``CI=true``. Screenshots go to the
folder named by ``FACELEDGER_SCREENSHOTS``, else to the test's ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from test_api_helpers import init_deployment

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LOOPBACK = "127.0.0.1"
LOCAL_SCHEMES = {"data", "blob", "about"}  # never leave the browser

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "Browser",
    "LiveServer",
    "chromium",
    "is_loopback",
    "launch_chromium",
    "live_server",
    "require_chromium",
    "screenshot_dir",
    "serve_gallery",
]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(message: str) -> None:
    if _in_ci():
        pytest.fail(f"{message} (CI=true: browser tests must run)", pytrace=False)
    pytest.skip(message)


def require_chromium() -> None:
    """Skip (fail when ``CI=true``) without ``/usr/bin/chromium`` or the ``playwright`` package."""
    if not CHROMIUM.is_file():
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")


def is_loopback(url: str) -> bool:
    """Whether a request to ``url`` stays on this machine: 127.0.0.1, or a data:/blob:/about: URL."""
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname == LOOPBACK


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """A running ``faceledger serve``: its address, database, a token per role, and its log file."""

    base_url: str
    db: Path
    tokens: dict[str, str]
    key_ids: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + path

    def headers(self, role: str) -> dict[str, str]:
        """The Authorization header of ``role``'s API key."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output (stdout and stderr)."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:] if self.log.exists() else ""


def _faceledger() -> list[str]:
    exe = Path(sys.executable).parent / "faceledger"
    assert exe.exists(), f"the faceledger command is not installed beside {sys.executable}"
    return [str(exe)]


@contextmanager
def serve_gallery(
    folder: Path,
    *,
    prepare: Callable[[Path], None] | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float = 90.0,
) -> Iterator[LiveServer]:
    """``faceledger serve`` on a free 127.0.0.1 port over a new gallery in ``folder`` (``gallery.db``, its key
    file beside it, one API key per role); ``prepare(db)`` runs before the server starts. Yields once
    ``/readyz`` answers 200; stops the server (SIGTERM, then SIGKILL) on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "gallery.db"
    tokens, key_ids = init_deployment(db)
    if prepare is not None:
        prepare(db)
    port = _free_port()
    command = [
        *_faceledger(),
        "serve",
        "--db",
        str(db),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--purge-interval",
        "0",
        "--no-access-log",
        "--log-level",
        "warning",
        *args,
    ]
    log = folder / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            env={**os.environ, "FACELEDGER_THREADS": "1", **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(f"http://{LOOPBACK}:{port}", db, tokens, key_ids, log, process)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"faceledger serve exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if httpx.get(server.url("/readyz"), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"faceledger serve not ready after {ready_timeout:g} s:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)


@dataclass
class Browser:
    """A Chromium context and its first page. ``requests``: the URLs of every request any page of the context
    began, in order; ``refused``: those the page's own Content-Security-Policy stopped before they were sent;
    ``errors``: uncaught page errors and console errors (a CSP refusal is one)."""

    context: BrowserContext
    page: Page
    screenshots: Path
    prefix: str = ""
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def left_loopback(self) -> list[str]:
        """The URLs not for 127.0.0.1 that the page would have sent (the harness aborted them instead); those
        its Content-Security-Policy refused are not counted."""
        refused = Counter(self.refused)
        out = []
        for url in self.requests:
            if refused[url]:
                refused[url] -= 1
            elif not is_loopback(url):
                out.append(url)
        return out

    def screenshot(self, name: str, *, full_page: bool = True, page: Page | None = None) -> Path:
        """Save a PNG of the page as ``<screenshots>/<prefix><name>.png``; returns its path."""
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{self.prefix}{_safe(name)}.png"
        (page or self.page).screenshot(path=str(path), full_page=full_page)
        return path

    def watch(self, page: Page) -> None:
        """Record ``page``'s errors too (the context's first page is watched already)."""
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "page"


def screenshot_dir(tmp_path: Path) -> Path:
    """``$FACELEDGER_SCREENSHOTS`` when set, else ``tmp_path``."""
    env = os.environ.get("FACELEDGER_SCREENSHOTS")
    return Path(env) if env else tmp_path


@contextmanager
def launch_chromium(
    profile: Path, screenshots: Path, *, prefix: str = "", viewport: tuple[int, int] = (1280, 900)
) -> Iterator[Browser]:
    """Chromium (``/usr/bin/chromium``, headless) with the fresh user-data-dir ``profile``. Every request is
    recorded; those not for 127.0.0.1 are aborted, so a test finds them in :meth:`Browser.left_loopback`
    instead of waiting on the network."""
    require_chromium()
    from playwright.sync_api import Route, sync_playwright

    profile.mkdir(parents=True, exist_ok=False)  # fresh: nothing cached, no cookies from another test

    def only_loopback(route: Route) -> None:
        if is_loopback(route.request.url):
            route.continue_()
        else:
            route.abort("blockedbyclient")

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            context.set_default_timeout(30_000)
            page = context.pages[0] if context.pages else context.new_page()
            browser = Browser(context, page, screenshots, prefix)
            context.on("request", lambda request: browser.requests.append(request.url))
            context.on("requestfailed", lambda r: browser.refused.append(r.url) if r.failure == "csp" else None)
            context.route("**/*", only_loopback)
            browser.watch(page)
            yield browser
        finally:
            context.close()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A ``faceledger serve`` over a fresh gallery, for one test (see :func:`serve_gallery`)."""
    with serve_gallery(tmp_path / "server") as server:
        yield server


@pytest.fixture
def chromium(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """Chromium with a fresh profile, for one test; screenshots are named after the test."""
    with launch_chromium(
        tmp_path / "chromium-profile", screenshot_dir(tmp_path), prefix=_safe(request.node.name) + "-"
    ) as browser:
        yield browser
