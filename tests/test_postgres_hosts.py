"""Several hosts on one PostgreSQL gallery: two ``faceledger serve`` processes (standing in for two hosts) share one
database under concurrent load. No request fails with a 5xx, every image is enrolled exactly once although each
is sent to both servers at the same time, the audit chain verifies, and an erasure made through one server is
seen by the other one's very next search; and one key's rate limit holds across both. Fails, not skips, in CI
without PostgreSQL or the shared photos.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceledger import Gallery
from test_api_helpers import PURPOSE, ROLES, people, wait_ready
from test_api_serve import _free_port


@contextmanager
def _serve(url: str, key_file: Path, *extra: str) -> Iterator[str]:
    port = _free_port()
    argv = [sys.executable, "-m", "faceledger.interfaces.api", "--db", url, "--key-file", str(key_file)]
    argv += ["--port", str(port), "--no-access-log", "--purge-interval", "0", "--log-level", "warning", *extra]
    server = subprocess.Popen(
        argv,
        env={**os.environ, "FACELEDGER_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.shared_data
@pytest.mark.slow
def test_two_servers_on_one_postgresql_gallery(postgres_url: str, tmp_path: Path, faces_dir: Path) -> None:
    key_file = tmp_path / "master.key"
    tokens = {}
    with Gallery.init(postgres_url, actor="setup", key_file=key_file) as g:
        for role in ROLES:
            tokens[role] = g.create_api_key(f"{role}-owner", role, actor="setup")[1]
    photos = people(faces_dir)
    subjects = {f"emp-{name}": files for name, files in photos.items()}

    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}", "X-Purpose": PURPOSE}

    with _serve(postgres_url, key_file) as a, _serve(postgres_url, key_file) as b:
        hosts = [a, b]
        with httpx.Client(timeout=60) as client:
            for i, subject in enumerate(subjects):
                consent = {
                    "subject": subject,
                    "collected_by": "desk",
                    "legal_basis": "explicit consent",
                    "evidence_ref": f"form-{subject}",
                }
                r = client.post(f"{hosts[i % 2]}/v1/consents", json=consent, headers=headers("enroller"))
                assert r.status_code == 201, r.text

        # Each enrollment image goes to both servers at once, while both answer searches.
        jobs: list[tuple[str, str, Any]] = []
        for subject, files in subjects.items():
            for host in hosts:
                jobs.append(("enroll", host, (subject, files[0])))
        for _ in range(2):
            for files in subjects.values():
                for host in hosts:
                    jobs.append(("identify", host, files[1]))

        def run(job: tuple[str, str, Any]) -> tuple[str, int, Any]:
            kind, host, arg = job
            with httpx.Client(timeout=120) as client:
                if kind == "enroll":
                    subject, path = arg
                    body = {"subject": subject, "images": [base64.b64encode(path.read_bytes()).decode()]}
                    r = client.post(f"{host}/v1/enroll", json=body, headers=headers("enroller"))
                else:
                    r = client.post(
                        f"{host}/v1/identify", files={"image": arg.read_bytes()}, headers=headers("operator")
                    )
                return kind, r.status_code, r.json()

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(run, jobs))
        assert [r for r in results if r[1] >= 500] == []
        statuses: dict[str, list[str]] = {}
        for kind, code, body in results:
            if kind == "enroll":
                assert code == 200, body
                statuses.setdefault(body["subject"], []).extend(i["status"] for i in body["images"])
        usable = {s for s, seen in statuses.items() if "enrolled" in seen}
        for subject, seen in statuses.items():
            assert sorted(seen) in (["enrolled", "skipped"], ["rejected", "rejected"]), (subject, seen)
        assert len(usable) >= 6

        def best(host: str, path: Path) -> str | None:
            r = httpx.post(
                f"{host}/v1/identify", files={"image": path.read_bytes()}, headers=headers("operator"), timeout=60
            )
            assert r.status_code == 200, r.text
            candidates = [c for face in r.json()["faces"] for c in face["candidates"]]
            return max(candidates, key=lambda c: c["similarity"])["subject"] if candidates else None

        erased = sorted(usable)[0]
        probe = subjects[erased][1]
        assert best(a, probe) == erased and best(b, probe) == erased
        r = httpx.delete(
            f"{a}/v1/subjects/{erased}", params={"reason": "asked"}, headers=headers("enroller"), timeout=60
        )
        assert r.status_code == 200 and r.json()["templates_destroyed"] == 1, r.text
        assert best(b, probe) != erased  # the other host's index saw the erasure before this search

        for host in hosts:
            verified = httpx.get(f"{host}/v1/audit/verify", headers={"X-API-Key": tokens["auditor"]}, timeout=60)
            assert verified.json()["ok"] is True, verified.text

    with Gallery.open(postgres_url, key_file=key_file) as g:
        stored = {s.id: s.templates for s in g.subjects(actor="test", purpose=PURPOSE)}
        assert g.audit_verify().ok
        searches = g.audit_entries(action="identify")
    assert stored == {s: 1 for s in usable - {erased}}  # no enrollment lost, none duplicated
    assert len(searches) == sum(1 for kind, _, _ in results if kind == "identify") + 3


@pytest.mark.slow
def test_a_rate_limit_holds_across_hosts(postgres_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    with Gallery.init(postgres_url, actor="setup", key_file=key_file) as g:
        token = g.create_api_key("reviewer-owner", "reviewer", actor="setup")[1]
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": PURPOSE}
    with (
        _serve(postgres_url, key_file, "--rate-limit", "20") as a,
        _serve(postgres_url, key_file, "--rate-limit", "20") as b,
    ):
        started = time.monotonic()
        codes = [httpx.get(f"{host}/v1/reviews", headers=headers, timeout=30).status_code for host in [a, b] * 20]
        elapsed = time.monotonic() - started
    allowed = codes.count(200)
    # 20 at once, refilled at 20 a minute: each server on its own would have allowed all 40
    assert set(codes) == {200, 429} and 20 <= allowed <= 20 + int(elapsed / 3) + 1, (codes, elapsed)
