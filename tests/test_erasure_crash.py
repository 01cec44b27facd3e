"""kill -9 during an erasure while another process holds a read transaction on the same database.

At every point the erasing process can die (inside its transaction, after its commit, during the reclaim that
another process's snapshot keeps waiting), either no receipt is on the ledger and the subject is still enrolled, or
the receipt is there and the bytes are gone or the debt is recorded (meta ``reclaim_pending``); the next retention
run, once the reader has gone, removes the bytes from the database file and its WAL and says so truthfully.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import raw_sql
from faceledger.gallery import Gallery

EXAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "src" / "faceledger" / "examples" / "astronaut.jpg"
PURPOSE = "access-control"

ERASER = textwrap.dedent(
    """
    import os, sys, time
    from faceledger.gallery import Gallery
    from faceledger.gallery.context import GalleryContext

    db, point, flag = sys.argv[1:4]
    g = Gallery.open(db)
    ctx = g.context
    owe, reclaim = GalleryContext.owe_reclaim, ctx.reclaim

    def owe_then_wait(tx, at):  # inside the erasure's transaction, before its commit
        owe(tx, at)
        if point == "before_commit":
            open(flag, "w").write("ready")
            time.sleep(120)

    def reclaim_then_wait():  # after the commit, before or during the reclaim
        open(flag, "w").write("ready")
        if point == "after_commit":
            time.sleep(120)
        return reclaim()

    ctx.owe_reclaim = owe_then_wait
    ctx.reclaim = reclaim_then_wait
    g.erase("ana", actor="dpo", purpose="erasure request")
    open(flag, "w").write("finished")
    time.sleep(120)
    """
)

READER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM templates").fetchone()  # a snapshot from before the erasure
    print("reading", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crash")
    g = Gallery.init(folder / "g.db", actor="admin")
    g.add_consent("ana", actor="desk", collected_by="desk", legal_basis="consent", purpose=PURPOSE, evidence_ref="f1")
    g.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
    g.close()
    return folder


def _secrets(db: Path) -> list[bytes]:
    """Pieces of ana's stored bytes: a template's ciphertext and her wrapped data key."""
    conn = sqlite3.connect(db)
    template = conn.execute("SELECT ciphertext FROM templates").fetchone()[0]
    wrapped = conn.execute("SELECT wrapped FROM subject_keys").fetchone()[0]
    conn.close()
    return [bytes(template[:48]), bytes(wrapped[:32])]


def _left_in_files(db: Path, secrets: list[bytes]) -> list[str]:
    found = []
    for path in (db, Path(f"{db}-wal")):
        if path.exists():
            data = path.read_bytes()
            found += [path.name for s in secrets if s in data]
    return found


def _wait_for(flag: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if flag.exists() and flag.read_text():
            return flag.read_text()
        if process.poll() is not None:
            raise AssertionError(f"the eraser exited with {process.returncode}: {process.stderr.read()!r}")  # type: ignore[union-attr]
        time.sleep(0.02)
    raise AssertionError("the eraser did not reach its point")


@pytest.mark.parametrize(
    ("point", "delay"),
    [("before_commit", 0.0), ("after_commit", 0.0), ("during_reclaim", 0.3), ("during_reclaim", 1.0)],
)
def test_kill_9_during_an_erasure_with_a_reader_never_leaves_a_receipt_without_the_bytes_gone_or_owed(
    enrolled: Path, tmp_path: Path, point: str, delay: float
) -> None:
    for file in enrolled.iterdir():
        shutil.copy2(file, tmp_path / file.name)
    db = tmp_path / "g.db"
    secrets = _secrets(db)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db)], stdout=subprocess.PIPE, env=env)
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == b"reading"
        flag = tmp_path / "flag"
        eraser = subprocess.Popen(
            [sys.executable, "-c", ERASER, str(db), point, str(flag)], stderr=subprocess.PIPE, env=env
        )
        try:
            assert _wait_for(flag, eraser) == "ready"
            time.sleep(delay)
            assert eraser.poll() is None, "the eraser finished before it could be killed"
        finally:
            eraser.send_signal(signal.SIGKILL)
            eraser.wait()
        with Gallery.open(db) as g:
            receipts = [e for e in g.audit_entries(action="subject.erase") if "ana" in e.data["subjects"]]
            owed = g.context.reclaim_pending()
            left = _left_in_files(db, secrets)
            if point == "before_commit":
                assert not receipts and not owed, "an erasure that never committed left a receipt or a debt"
                assert [s.id for s in g.subjects(actor="dpo", purpose="audit")] == ["ana"] and left
                return
            assert receipts, "the erasure committed, so its receipt is on the ledger"
            assert owed or not left, f"a receipt while {left} still hold ana's bytes and no debt is recorded"
            assert left, "the reader's snapshot should have kept the bytes in the WAL (else this trial proves little)"
    finally:
        reader.kill()
        reader.wait()
    # the reader is gone: the next retention run pays the debt, truthfully
    with Gallery.open(db) as g:
        report = g.purge()
        assert report.reclaimed is True and not g.context.reclaim_pending()
        assert _left_in_files(db, secrets) == []
        assert g.audit_verify().ok


PG_READER = textwrap.dedent(
    """
    import sys, time, psycopg
    conn = psycopg.connect(sys.argv[1])
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    conn.execute("SELECT count(*) FROM templates").fetchone()  # a snapshot from before the erasure
    print("reading", flush=True)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])  # (VACUUM is too quick to be killed in)
def test_kill_9_during_an_erasure_on_postgresql_never_leaves_a_receipt_with_the_rows_kept(
    postgres_url: str, tmp_path: Path, point: str
) -> None:
    """The same trials on a PostgreSQL database with a reader holding a snapshot: either no receipt and ana still
    enrolled, or the receipt and none of her rows left (the server's files are its own: VACUUM owes nothing a
    reader could block, but a debt recorded before a kill is still paid by the next retention run)."""
    from conftest import stored_bytes

    key_file = tmp_path / "master.key"
    with Gallery.init(postgres_url, key_file=key_file, actor="admin") as g:
        g.add_consent("ana", actor="desk", collected_by="desk", legal_basis="consent", purpose=PURPOSE,
                      evidence_ref="f1")  # fmt: skip
        g.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
    secrets = [bytes(v) for (v,) in raw_sql(postgres_url, "SELECT ciphertext FROM templates")]  # type: ignore[call-overload]
    secrets += [bytes(v) for (v,) in raw_sql(postgres_url, "SELECT wrapped FROM subject_keys")]  # type: ignore[call-overload]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FACELEDGER_KEY_FILE": str(key_file)}
    env.pop("FACELEDGER_MASTER_KEY", None)
    reader = subprocess.Popen([sys.executable, "-c", PG_READER, postgres_url], stdout=subprocess.PIPE, env=env)
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == b"reading"
        flag = tmp_path / "flag"
        eraser = subprocess.Popen(
            [sys.executable, "-c", ERASER, postgres_url, point, str(flag)], stderr=subprocess.PIPE, env=env
        )
        try:
            assert _wait_for(flag, eraser) == "ready"
            assert eraser.poll() is None, "the eraser finished before it could be killed"
        finally:
            eraser.send_signal(signal.SIGKILL)
            eraser.wait()
        with Gallery.open(postgres_url, key_file=key_file) as g:
            receipts = [e for e in g.audit_entries(action="subject.erase") if "ana" in e.data["subjects"]]
            left = [s for s in secrets if s in stored_bytes(postgres_url)]
            if point == "before_commit":
                assert not receipts and not g.context.reclaim_pending()
                assert [s.id for s in g.subjects(actor="dpo", purpose="audit")] == ["ana"] and len(left) == 2
                return
            assert receipts, "the erasure committed, so its receipt is on the ledger"
            assert left == [], "a receipt while ana's rows are still in the database"
    finally:
        reader.kill()
        reader.wait()
    with Gallery.open(postgres_url, key_file=key_file) as g:
        report = g.purge()
        assert report.reclaimed is True and not g.context.reclaim_pending()
        assert g.audit_verify().ok
