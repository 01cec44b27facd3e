"""The REST walkthrough of the README runs as written: its shell blocks, in order, against a real server
(on a free port instead of 8000), from `faceledger init` to the erasure; then once more with the gallery on a
PostgreSQL server (``FACELEDGER_DB`` and ``FACELEDGER_KEY_FILE`` set instead of ``--db walk.db``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[1] / "README.md"


def _section() -> str:
    """The README's walkthrough section, up to the next heading of its level."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## REST service: from `faceledger serve` to an erasure")
    return text[start : text.index("\n## ", start + 1)]


def _walkthrough() -> tuple[str, str]:
    """The walkthrough's shell blocks, and the block that sets a PostgreSQL gallery instead ("On several hosts")."""
    walk, hosts = _section().split("**On several hosts.**")
    blocks = re.findall(r"```sh\n(.*?)```", walk, re.S)
    assert len(blocks) >= 6
    [server] = re.findall(r"```sh\n(.*?)```", hosts, re.S)
    return "\n".join(blocks), server


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_service_walkthrough_runs_as_written(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script, server = _walkthrough()
    script = script.replace("8000", str(port))
    if backend == "postgresql":  # the README's export line, with this test's server and a key file in the folder
        assert script.count(" --db walk.db") == 6 and server.count("export ") == 1
        server = server.replace(
            "postgresql://faceledger@db.internal/faceledger", request.getfixturevalue("postgres_url")
        )
        script = server.replace("/etc/faceledger/walk.key", "walk.key") + script.replace(" --db walk.db", "")
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "faceledger").exists() or shutil.which("faceledger"), "faceledger is not installed"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FACELEDGER_THREADS": "1"}
    for name in ("FACELEDGER_DB", "FACELEDGER_KEY_FILE", "FACELEDGER_MASTER_KEY", "FACELEDGER_ACTOR"):
        env.pop(name, None)
    shell = subprocess.Popen(
        # a failing step must not leave the server holding the output pipe open
        ["bash", "-c", "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=180)
        # The walkthrough's last command stops the server: the port closes.
        deadline = time.monotonic() + 15
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(port), "the server still runs after `kill %1`"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGTERM)  # anything the walkthrough left running
    assert shell.returncode == 0, err[-3000:]
    assert '"state":"valid"' in out and '"enrolled":1' in out
    assert out.count('"decision":"candidate"') == 1 and '"subject":"emp-001"' in out
    assert '"status":"confirmed"' in out and '"ok":true' in out and "# Transparency report" in out
    assert '"templates_destroyed":1' in out and out.count('"decision":"no_match"') == 1
    # the identification the README shows is the one this walkthrough answers (ids and hashes differ per run)
    [shown] = _json_blocks()
    # curl prints each answer without a newline: the first identification's answer is decoded where it starts
    answered, _ = json.JSONDecoder().raw_decode(out, out.index('{"search_id"'))
    assert _shape(answered) == _shape(shown)
    assert answered["threshold"] == shown["threshold"] and answered["target_fmr"] == shown["target_fmr"]
    face, shown_face = answered["faces"][0], shown["faces"][0]
    assert face["box"] == pytest.approx(shown_face["box"], abs=0.15) and face["quality"] == shown_face["quality"]
    assert face["candidates"][0]["subject"] == shown_face["candidates"][0]["subject"]
    assert face["candidates"][0]["similarity"] == pytest.approx(shown_face["candidates"][0]["similarity"], abs=1e-4)


def _json_blocks() -> list[dict[str, Any]]:
    """The walkthrough's example outputs."""
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", _section(), re.S)]


def _shape(value: Any) -> Any:
    """``value``'s keys, nested, with the values left out."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
