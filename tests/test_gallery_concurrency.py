"""Two processes enrolling at once lose nothing; kill -9 in the middle of a batch leaves no half subject."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import GalleryLocation
from faceledger.gallery import Gallery
from faceledger.ledger import MASTER_KEY_ENV
from faceledger.ledger.store import open_store

pytestmark = pytest.mark.shared_data
PURPOSE = "access-control"

# Run in child processes: the default engine, one thread each.
PRELUDE = """
from faceledger import Engine
from faceledger.gallery import Gallery
engine = Engine(threads=1)
"""


def _people(faces_dir: Path) -> dict[str, list[str]]:
    root = faces_dir / "face_api_js" / "examples" / "images"
    return {
        who: [str(p) for p in sorted((root / who).glob(f"{who}*.png"))[:2]]
        for who in ("amy", "bernadette", "howard", "leonard", "penny", "raj")
    }


def _init(db: str, people: dict[str, list[str]]) -> None:
    with Gallery.init(db, actor="admin") as g:
        for subject in people:
            g.add_consent(
                subject,
                actor="desk",
                collected_by="desk",
                legal_basis="explicit consent",
                purpose=PURPOSE,
                evidence_ref=f"form-{subject}",
            )


def _enroll_worker(db: str, items: list[tuple[str, list[str]]]) -> None:
    namespace: dict[str, object] = {}
    exec(PRELUDE, namespace)
    with Gallery.open(db, engine=namespace["engine"]) as g:  # type: ignore[arg-type]
        for subject, images in items:
            g.enroll(subject, images, actor=f"worker-{os.getpid()}", purpose=PURPOSE)


def _state(db: str) -> dict[str, int]:
    with open_store(db) as store, store.read() as tx:
        return {s.id: tx.template_counts().get(s.id, 0) for s in tx.list_subjects()}


@pytest.fixture
def db(gallery_location: GalleryLocation, monkeypatch: pytest.MonkeyPatch) -> str:
    """SQLite, then PostgreSQL; the master key file named by FACELEDGER_KEY_FILE, for this process and its children."""
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.setenv("FACELEDGER_KEY_FILE", str(gallery_location.key_file))
    return gallery_location.location


def test_two_processes_enrolling_at_once_lose_nothing(db: str, faces_dir: Path) -> None:
    people = _people(faces_dir)
    _init(db, people)
    items = list(people.items())
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_enroll_worker, args=(db, items[i::2])) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(240)
        assert w.exitcode == 0
    assert _state(db) == {subject: 2 for subject in people}
    with Gallery.open(db) as g:
        assert g.audit_verify().ok
        enrolls = g.audit_entries(action="enroll")
        assert len(enrolls) == len(people)
        assert len({e.data["actor"] for e in enrolls}) == 2, "both processes wrote"


BATCH = (
    PRELUDE
    + """
import sys, time, json
from faceledger.ledger import crypto
calls = {"n": 0}
real = crypto.encrypt_template
def slow_encrypt(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 4 and "--pause" in sys.argv:   # second subject, second template: inside its transaction
        print("INSIDE", flush=True)
        time.sleep(60)
    return real(*args, **kwargs)
crypto.encrypt_template = slow_encrypt
items = json.loads(sys.argv[2])
with Gallery.open(sys.argv[1], engine=engine) as g:
    for subject, outcome in g.enroll_batch(items, actor="batch", purpose="access-control"):
        print("DONE", subject, flush=True)
"""
)


def test_kill_9_during_batch_enrollment_leaves_no_half_subject(db: str, tmp_path: Path, faces_dir: Path) -> None:
    import json

    people = dict(list(_people(faces_dir).items())[:4])
    _init(db, people)
    script = tmp_path / "batch.py"
    script.write_text(textwrap.dedent(BATCH))
    items = json.dumps(list(people.items()))
    proc = subprocess.Popen([sys.executable, str(script), db, items, "--pause"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line.strip())
        if line.startswith("INSIDE") or not line:
            break
    assert lines[-1] == "INSIDE", lines
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    first, second = list(people)[:2]
    state = _state(db)
    assert state == {first: 2}, f"the subject being enrolled when killed must be absent, got {state}"
    with open_store(db) as store, store.read() as tx:
        assert tx.get_subject_key(second) is None
    with Gallery.open(db) as g:
        assert g.audit_verify().ok

    rerun = subprocess.run([sys.executable, str(script), db, items], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert _state(db) == {subject: 2 for subject in people}
    with Gallery.open(db) as g:
        resumed = g.audit_entries(action="enroll")[1].data["details"]
        assert resumed["subject"] == first and resumed["skipped"] == 2 and resumed["templates_added"] == 0
        assert g.audit_verify().ok
