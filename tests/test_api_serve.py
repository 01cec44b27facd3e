"""`faceledger serve`: the command's checks, and a real uvicorn with two worker processes on loopback sharing
one database (each worker its own connection): concurrent enrollments are neither lost nor duplicated."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner

from faceledger.gallery import Gallery
from faceledger.interfaces.cli import serve as cli_serve
from test_api_helpers import PURPOSE, init_deployment, people, wait_ready


def _group() -> click.Group:
    @click.group()
    def group() -> None:
        """Test group."""

    cli_serve.register(group)
    return group


def test_serve_help_and_refusals(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(_group(), ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--db", "--host", "--port", "--workers", "--rate-limit", "--max-upload-bytes", "--timeout"):
        assert option in result.output
    missing = runner.invoke(_group(), ["serve", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "faceledger --db" in missing.output and "init" in missing.output
    bad_tls = runner.invoke(_group(), ["serve", "--db", str(tmp_path / "none.db"), "--ssl-certfile", __file__])
    assert bad_tls.exit_code == 2 and "--ssl-keyfile" in bad_tls.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.shared_data
@pytest.mark.slow
def test_two_uvicorn_workers_share_the_database(tmp_path: Path, faces_dir: Path) -> None:
    db = tmp_path / "served.db"
    tokens, _ = init_deployment(db)
    photos = people(faces_dir)
    subjects = {f"emp-{name}": files[:3] for name, files in photos.items()}
    with Gallery.open(db) as g:
        for subject in subjects:
            g.add_consent(
                subject,
                actor="desk",
                collected_by="desk",
                legal_basis="explicit consent",
                purpose=PURPOSE,
                evidence_ref=f"form-{subject}",
            )
    port = _free_port()
    env = {**os.environ, "FACELEDGER_THREADS": "1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faceledger.interfaces.api",
            "--db",
            str(db),
            "--port",
            str(port),
            "--workers",
            "2",
            "--no-access-log",
            "--purge-interval",
            "0",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)

        enroller = {"Authorization": f"Bearer {tokens['enroller']}", "X-Purpose": PURPOSE}
        # Every (subject, image) pair twice, concurrently: each image must end up enrolled exactly once.
        jobs = [(s, p) for s, files in subjects.items() for p in files] * 2

        def enroll(job: tuple[str, Path]) -> tuple[str, str, int, Any]:
            subject, path = job
            body = {"subject": subject, "images": [base64.b64encode(path.read_bytes()).decode()]}
            with httpx.Client(timeout=60) as client:
                r = client.post(f"{base}/v1/enroll", json=body, headers=enroller)
                return subject, path.name, r.status_code, r.json()

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(enroll, jobs))
        assert all(code < 500 for _, _, code, _ in results), [r for r in results if r[2] >= 500]
        enrolled: dict[str, set[str]] = {}
        for subject, _, code, body in results:
            if code == 200:
                for image in body["images"]:
                    if image["status"] == "enrolled":
                        assert image["sha256"] not in enrolled.get(subject, set()), "enrolled twice"
                        enrolled.setdefault(subject, set()).add(image["sha256"])
        pids = set()
        for _ in range(40):  # a new connection each time, so either worker may answer
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
            pids |= {line.split('pid="')[1].split('"')[0] for line in metrics.splitlines() if 'pid="' in line}
            if len(pids) == 2:
                break
        verified = httpx.get(f"{base}/v1/audit/verify", headers={"X-API-Key": tokens["auditor"]}, timeout=30)
        assert verified.json()["ok"] is True
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    with Gallery.open(db) as g:
        stored = {s.id: s.templates for s in g.subjects(actor="test", purpose=PURPOSE)}
        assert g.audit_verify().ok
        enroll_entries = g.audit_entries(action="enroll")
    assert stored == {s: len(v) for s, v in enrolled.items()}
    assert sum(stored.values()) >= len(subjects)  # most crops are usable
    assert len(enroll_entries) == sum(1 for r in results if r[2] in (200, 422))
    assert len(pids) == 2, pids  # both workers answered


def _listening_sockets(port: int) -> int:
    """TCP sockets listening on ``port`` on this host (Linux's /proc/net/tcp: state 0A)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A")


def _pid_of(metrics: str) -> str:
    return next(line.split('pid="')[1].split('"')[0] for line in metrics.splitlines() if 'pid="' in line)


def test_keep_alive_connections_opened_at_once_are_spread_over_the_workers(tmp_path: Path) -> None:
    """32 connections opened together, as a load generator or a gateway's pool does, each kept for several
    requests: with one socket shared by the workers the kernel often handed all of them to one worker; each
    worker now listens on its own SO_REUSEPORT socket, so both get a share (each fewer than 5 of 32 has a
    probability of about 1e-5 when connections are hashed evenly)."""
    db = tmp_path / "spread.db"
    init_deployment(db)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "faceledger.interfaces.api", "--db", str(db), "--port", str(port), "--workers", "2",
         "--no-access-log", "--purge-interval", "0", "--log-level", "warning"],
        env={**os.environ, "FACELEDGER_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        for _ in range(50):  # both workers ready: each answers on its own
            pids = {_pid_of(httpx.get(f"{base}/metrics", timeout=10).text) for _ in range(8)}
            if len(pids) == 2:
                break
        listening = _listening_sockets(port)
        clients = [httpx.Client(base_url=base, timeout=30) for _ in range(32)]
        try:

            def pids_of(client: httpx.Client) -> set[str]:
                return {_pid_of(client.get("/metrics").text) for _ in range(3)}

            with ThreadPoolExecutor(32) as pool:
                answered = list(pool.map(pids_of, clients))
        finally:
            for client in clients:
                client.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert listening == 2, "each worker listens on its own socket (one shared socket: 1)"
    assert all(len(p) == 1 for p in answered), "a keep-alive connection stays with its worker"
    counts: dict[str, int] = {}
    for (pid,) in answered:
        counts[pid] = counts.get(pid, 0) + 1
    assert len(counts) == 2 and min(counts.values()) >= 5, counts
