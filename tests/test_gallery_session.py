"""The Python gallery API: the README's example runs as written, a session binds who and why without weakening the
checks, every audit action the gallery writes is one of the enumeration, and readiness checks what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceledger import Gallery, GallerySession, load_image
from faceledger.examples import ASTRONAUT
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import AccountabilityError, NoConsentError, PurposeError, ReviewError

ROOT = Path(__file__).resolve().parents[1]
PURPOSE = "access-control"


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### The gallery in Python") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's gallery section has no python block"
    return match.group(1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_readme_gallery_example_runs_as_written(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """As written on SQLite; on PostgreSQL the same code with the server's URL for "staff.db" and the master key
    file named by FACELEDGER_KEY_FILE (as docs/deployment.md sets it up)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACELEDGER_")}
    code, location, key_file = _readme_example(), str(tmp_path / "staff.db"), tmp_path / "staff.db.key"
    if backend == "postgresql":
        location, key_file = request.getfixturevalue("postgres_url"), tmp_path / "master.key"
        assert code.count('"staff.db"') == 2
        code = code.replace('"staff.db"', repr(location))
        env["FACELEDGER_KEY_FILE"] = str(key_file)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    subject, similarity, status = first.split()
    assert subject == "emp-001" and float(similarity) >= 0.5 and status == "pending"
    with Gallery.open(location, key_file=key_file) as g:
        entries = [e.data for e in g.audit_entries()]
        assert g.audit_verify().ok and int(second) == entries[-1]["seq"]
        assert [(e["action"], e["actor"]) for e in entries] == [
            ("ledger.init", "admin"),
            ("ledger.signing_key", "admin"),
            ("audit.checkpoint", "admin"),
            ("consent.add", "front-desk"),
            ("enroll", "front-desk"),
            ("identify", "door-1"),
            ("review.confirm", "bob"),
            ("subject.erase", "front-desk"),
        ]
        assert {e["purpose"] for e in entries[3:]} == {PURPOSE}
        assert g.stats()["templates"] == 0


@pytest.fixture
def session(tmp_path: Path) -> GallerySession:
    Gallery.init(tmp_path / "g.db", actor="admin").close()
    desk = Gallery.open(tmp_path / "g.db").as_actor("front-desk", purpose=PURPOSE)
    yield desk
    desk.close()


def test_a_session_keeps_every_check(session: GallerySession) -> None:
    with pytest.raises(AccountabilityError) as no_actor:
        session.gallery.as_actor(" ", purpose=PURPOSE)
    assert no_actor.value.missing == "actor"
    with pytest.raises(AccountabilityError) as no_purpose:
        session.gallery.as_actor("desk", purpose="")
    assert no_purpose.value.missing == "purpose"
    marketing = session.gallery.as_actor("desk", purpose="marketing")
    with pytest.raises(PurposeError, match="not allowed"):
        marketing.add_consent("emp-9", collected_by="desk", legal_basis="consent", evidence_ref="f")
    with pytest.raises(NoConsentError) as refused:
        session.enroll("emp-9", [ASTRONAUT])
    assert refused.value.subject == "emp-9"
    with pytest.raises(PurposeError, match="not allowed"):
        marketing.identify(ASTRONAUT)
    refused_entry = session.gallery.audit_entries(action="identify.refused")[-1].data
    assert refused_entry["actor"] == "desk" and refused_entry["purpose"] == "marketing"


def test_a_session_reviews_as_its_actor(session: GallerySession) -> None:
    session.add_consent("emp-1", collected_by="desk", legal_basis="explicit consent", evidence_ref="form-1")
    session.enroll("emp-1", [ASTRONAUT])
    found = session.as_actor("door").identify(load_image(ASTRONAUT)[:, ::-1])
    candidate = found.faces[0].candidates[0].candidate_id
    queue = session.as_actor("bob").pending_reviews()
    assert [(p.id, p.confirmations, p.required) for p in queue] == [(candidate, 0, 1)]
    outcome = session.as_actor("bob").confirm(candidate, reason="checked")
    assert outcome.status == "confirmed" and outcome.review.reviewer == "bob"
    with pytest.raises(ReviewError, match="already confirmed"):
        session.as_actor("carol").reject(candidate, reason="too late")
    assert session.pending_reviews() == []


def test_every_action_written_is_in_the_enumeration(session: GallerySession) -> None:
    session.add_consent("emp-1", collected_by="desk", legal_basis="explicit consent", evidence_ref="form-1")
    session.consents("emp-1")
    session.enroll("emp-1", [ASTRONAUT])
    session.subjects()
    session.identify(ASTRONAUT)
    session.verify_subject("emp-1", ASTRONAUT)
    session.pending_reviews()
    key, _ = session.create_api_key("door-2", "operator")
    session.revoke_api_key(key.id)
    session.report()
    session.audit_export()
    session.withdraw_consent("emp-1")
    session.purge()
    written = [e.data["action"] for e in session.gallery.audit_entries()]
    assert len(written) >= 14
    assert [a for a in written if a not in {x.value for x in AuditAction}] == []
    assert {"consent.withdraw", "subject.erase", "purge", "key.create", "key.revoke"} <= set(written)


class _BrokenModels:
    """An engine whose detector fails, as a damaged model file would."""

    def detect(self, image: np.ndarray) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : damaged model")


def test_readiness_runs_the_models_and_reads_the_key_again(tmp_path: Path) -> None:
    Gallery.init(tmp_path / "g.db", actor="admin").close()
    with Gallery.open(tmp_path / "g.db") as g:
        checks = {"models": "ok", "database": "ok", "master_key": "ok", "templates": "ok", "records": "ok"}
        assert g.readiness() == checks
        assert g.readiness(models=False) == {"database": "ok", "master_key": "ok", "records": "ok"}
        (tmp_path / "g.db.key").rename(tmp_path / "moved.key")
        assert "not found" in g.readiness(models=False)["master_key"]
    with Gallery.open(tmp_path / "g.db", key_file=tmp_path / "moved.key", engine=_BrokenModels()) as g:  # type: ignore[arg-type]
        checks = g.readiness()
        assert "damaged model" in checks["models"] and checks["master_key"] == "ok"
    Gallery.init(tmp_path / "other.db", actor="admin").close()
    with Gallery.open(tmp_path / "g.db", key_file=tmp_path / "other.db.key") as g:
        assert "not the master key" in g.readiness(models=False)["master_key"]
