"""One bad row stays one bad row: a template that was altered, or moved to another subject, in the database is left
out of the search and named (readiness, metrics), and every other subject is still searched; before, one such row
made every identification fail with master_key_unavailable."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from conftest import GalleryLocation
from faceledger.gallery import Gallery
from test_api_helpers import people, shared_engine

pytestmark = pytest.mark.shared_data
PURPOSE = "access-control"


def _zeros(where: GalleryLocation, column: str) -> str:
    """SQL for a value of ``column``'s length made of zero bytes."""
    return f"decode(repeat('00', length({column})), 'hex')" if where.postgres else f"zeroblob(length({column}))"


def _enrolled(where: GalleryLocation, faces_dir: Path) -> tuple[Gallery, dict[str, list[Path]]]:
    photos = people(faces_dir)
    g = Gallery.init(where.location, key_file=where.key_file, actor="setup", engine=shared_engine())
    for name in ("amy", "raj", "penny", "howard"):
        g.add_consent(f"emp-{name}", actor="desk", collected_by="desk", legal_basis="explicit consent",
                      purpose=PURPOSE, evidence_ref=f"f-{name}")  # fmt: skip
        g.enroll(f"emp-{name}", photos[name][:2], actor="desk", purpose=PURPOSE)
    return g, photos


def test_a_damaged_or_moved_template_is_left_out_and_everyone_else_is_searched(
    gallery_location: GalleryLocation, faces_dir: Path
) -> None:
    where = gallery_location
    g, photos = _enrolled(where, faces_dir)
    g.close()
    damaged, moved = [r[0] for r in where.sql("SELECT id FROM templates WHERE subject_id IN ('emp-amy', 'emp-raj') "
                                              "ORDER BY subject_id, id")][::2]  # fmt: skip
    where.sql(f"UPDATE templates SET ciphertext = {_zeros(where, 'ciphertext')} WHERE id = ?", damaged)
    where.sql("UPDATE templates SET subject_id = 'emp-penny' WHERE id = ?", moved)
    g = Gallery.open(where.location, key_file=where.key_file, engine=shared_engine())
    for name in ("penny", "howard"):
        found = g.identify(photos[name][3], actor="door", purpose=PURPOSE)
        assert [c.subject for c in found.faces[0].candidates][:1] == [f"emp-{name}"], name
    # amy and raj each keep one good template: still found.
    assert g.identify(photos["amy"][3], actor="door", purpose=PURPOSE).faces[0].candidates[0].subject == "emp-amy"
    assert set(g.context.excluded) == {damaged, moved}
    assert g.context.excluded[moved][0] == "emp-penny"  # the subject the moved row now claims, named as such
    checks = g.readiness()
    assert checks["templates"].startswith("degraded: 2 template(s) left out of the search"), checks
    assert damaged in checks["templates"] and moved in checks["templates"]
    assert g.stats()["templates_excluded"] == 2
    # Erasing the subject the damaged row belongs to removes it from the report as well.
    g.erase("emp-amy", actor="desk", purpose="erasure request")
    g.identify(photos["raj"][3], actor="door", purpose=PURPOSE)
    assert set(g.context.excluded) == {moved}
    g.close()


def test_readyz_says_degraded_but_ready(gallery_location: GalleryLocation, faces_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from faceledger.interfaces.api import ServiceSettings, create_app

    where = gallery_location
    g, _ = _enrolled(where, faces_dir)
    g.close()
    where.sql(f"UPDATE templates SET ciphertext = {_zeros(where, 'ciphertext')} "
              "WHERE id = (SELECT MIN(id) FROM templates)")  # fmt: skip
    settings = ServiceSettings(db=where.location, key_file=where.key_file, purge_interval=0)
    app = create_app(settings, engine=shared_engine())
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
        assert re.search(r"^faceledger_templates_excluded(\{[^}]*\})? 1(\.0)?$", client.get("/metrics").text, re.M)


def test_an_erasure_blocked_by_a_reader_is_finished_by_the_next_purge(tmp_path: Path, faces_dir: Path) -> None:
    """SQLite only: a reader's snapshot keeps the erased pages in the WAL (PostgreSQL's VACUUM owes no such debt)."""
    g, _ = _enrolled(GalleryLocation(str(tmp_path / "g.db"), tmp_path / "g.db.key"), faces_dir)
    db = tmp_path / "g.db"
    with sqlite3.connect(db) as peek:
        blobs = [bytes(r[0]) for r in peek.execute("SELECT ciphertext FROM templates WHERE subject_id = 'emp-raj'")]
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM templates").fetchone()  # another process holds an old snapshot
    receipt = g.erase("emp-raj", actor="desk", purpose="erasure request")
    assert receipt.reclaimed is False and g.context.reclaim_pending()
    assert g.purge().reclaimed is False, "a purge must not claim a reclamation it could not make"
    reader.execute("COMMIT")
    reader.close()
    report = g.purge()  # deletes nothing itself, but pays the erasure's debt
    assert report.reclaimed is True and not g.context.reclaim_pending()
    g.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("g.db") and p.suffix != ".key")
    assert blobs and not any(blob[:48] in data for blob in blobs)
