"""Shared helpers of the REST service tests (no tests here): one engine per test process, a fresh deployment
with one API key per role, and request headers."""

from __future__ import annotations

import base64
import functools
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from faceledger.gallery import Gallery
from faceledger.interfaces.api import ServiceSettings, create_app
from faceledger.interfaces.api.runtime import LimitedEngine
from faceledger.ledger import ROLES

PURPOSE = "access-control"


@functools.cache
def shared_engine() -> LimitedEngine:
    """The bundled models, loaded once per test process (each app resets its limits on it)."""
    return LimitedEngine(threads=1, max_faces=32)


@dataclass
class Service:
    """A running app (in-process), its database and a token per role."""

    client: TestClient
    app: FastAPI
    db: Path | str  # an SQLite file, or a PostgreSQL URL
    tokens: dict[str, str]
    key_ids: dict[str, str]
    key_file: Path | None = None  # None: beside the SQLite file

    def headers(self, role: str | None, purpose: str | None = PURPOSE, **extra: str) -> dict[str, str]:
        """Authorization (when ``role``) and X-Purpose (when ``purpose``) headers."""
        out = dict(extra)
        if role is not None:
            out["Authorization"] = f"Bearer {self.tokens[role]}"
        if purpose is not None:
            out["X-Purpose"] = purpose
        return out

    @property
    def state(self) -> Any:
        """The running :class:`~faceledger.interfaces.api.runtime.ServiceState`."""
        return self.app.state.service


def init_deployment(db: Path | str, key_file: Path | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """A new database with the example policy and one key per role, owned by ``<role>-owner``."""
    tokens, ids = {}, {}
    with Gallery.init(db, actor="setup", key_file=key_file) as g:
        for role in ROLES:
            record, token = g.create_api_key(f"{role}-owner", role, actor="setup")
            tokens[role], ids[role] = token, record.id
    return tokens, ids


@contextmanager
def running_service(
    tmp_path: Path, *, db: str | None = None, key_file: Path | None = None, **overrides: Any
) -> Iterator[Service]:
    """A fresh deployment served in-process by FastAPI's TestClient (lifespan included): an SQLite file in
    ``tmp_path``, or the empty PostgreSQL database ``db`` with its master key in ``key_file``."""
    location: Path | str = db or tmp_path / "service.db"
    tokens, ids = init_deployment(location, key_file)
    settings = ServiceSettings(db=location, key_file=key_file, **{"purge_interval": 0, **overrides})
    app = create_app(settings, engine=shared_engine())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Service(client, app, location, tokens, ids, key_file)


def b64(path: Path) -> str:
    """A file's bytes as base64 text."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


def people(faces_dir: Path) -> dict[str, list[Path]]:
    """Five cropped photos each of eight people (face_api_js examples), sorted."""
    root = faces_dir / "face_api_js" / "examples" / "images"
    names = ("amy", "bernadette", "howard", "leonard", "penny", "raj", "sheldon", "stuart")
    return {n: sorted((root / n).glob("*.png")) for n in names}


def group_photo(faces_dir: Path) -> Path:
    """A photo of six people."""
    return faces_dir / "face_api_js" / "examples" / "images" / "bbt4.jpg"


def consent(service: Service, subject: str, purpose: str = PURPOSE) -> dict[str, Any]:
    """Record a consent through the API (as the enroller); returns the record."""
    response = service.client.post(
        "/v1/consents",
        headers=service.headers("enroller", purpose),
        json={
            "subject": subject,
            "collected_by": "front desk",
            "legal_basis": "explicit consent",
            "evidence_ref": f"form-{subject}",
        },
    )
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


def wait_ready(base: str, server: subprocess.Popen[bytes], seconds: float = 90) -> None:
    """Wait until a server process answers ``/readyz`` with 200; fail with its stderr if it exits first."""
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.3)
