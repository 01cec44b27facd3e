"""Erasure leaves no template, reference face or evidence bytes behind, and faces that match no one leave no trace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import GalleryLocation, new_database, raw_sql, stored_bytes
from faceledger import Engine
from faceledger.gallery import Gallery
from faceledger.gallery.keys import pending_key_file
from faceledger.ledger import MASTER_KEY_ENV

pytestmark = pytest.mark.shared_data
PURPOSE = "access-control"


@pytest.fixture(scope="module")
def engine() -> Engine:
    """The default engine: bundled models, thresholds from the bundled recognizer's calibration."""
    return Engine()


@pytest.fixture
def gallery(gallery_location: GalleryLocation, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gallery]:
    """A new gallery on SQLite, then on PostgreSQL."""
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    g = Gallery.init(gallery_location.location, key_file=gallery_location.key_file, actor="admin", engine=engine)
    yield g
    g.close()


def photos(faces_dir: Path, who: str) -> list[Path]:
    return sorted((faces_dir / "face_api_js" / "examples" / "images" / who).glob(f"{who}*.png"))


def enroll(g: Gallery, subject: str, images: list[Path]) -> None:
    g.add_consent(
        subject,
        actor="desk",
        collected_by="desk",
        legal_basis="explicit consent",
        purpose=PURPOSE,
        evidence_ref="f",
    )
    result = g.enroll(subject, images, actor="desk", purpose=PURPOSE)
    assert len(result.enrolled) == len(images), result.to_dict()


def disk_bytes(db: Path | str) -> bytes:
    """Everything SQLite keeps on disk for this database: the file, its WAL and shared-memory index (on
    PostgreSQL, every value of every table: the server's files are not the test's to read)."""
    return stored_bytes(db)


def chunks(data: bytes, size: int = 24) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


def test_erasure_leaves_no_template_bytes(gallery: Gallery, engine: Engine, faces_dir: Path) -> None:
    db = gallery.store.location
    amy, sheldon = photos(faces_dir, "amy"), photos(faces_dir, "sheldon")
    enroll(gallery, "amy", amy[:2])
    enroll(gallery, "sheldon", sheldon[:2])
    # the stored ciphertexts and the plaintext vectors they hold (decrypted with the subject's key)
    with gallery.store.read() as tx:
        records = tx.templates_of("amy")
        plain = [gallery._decrypt(tx, r) for r in records]
        other = tx.templates_of("sheldon")
    expected = engine.embed(amy[0]).vectors[0]
    assert any(np.allclose(p, expected, atol=1e-5) for p in plain)
    secrets = [r.ciphertext for r in records] + [r.nonce + r.ciphertext[:8] for r in records]
    plaintexts = [p.astype("<f4").tobytes() for p in plain]
    before = disk_bytes(db)
    assert all(c in before for c in (r.ciphertext for r in records)), "sanity: ciphertext is on disk"
    assert not any(part in before for p in plaintexts for part in chunks(p)), "plaintext never on disk"
    raised = gallery.identify(amy[3], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    assert raised.subject == "amy"
    # the reference faces (aligned crops of the enrolled images) and the search's evidence, as stored
    with gallery.store.read() as tx:
        references = tx.reference_faces_of("amy")
        evidence = tx.get_evidence(raised.candidate_id)
    assert len(references) == 2 and evidence is not None
    secrets += [r.image for r in references] + [evidence.face, evidence.context, evidence.wrapped_key]
    viewed = gallery.evidence(raised.candidate_id, actor="rev")
    assert viewed.face is not None and len(viewed.references) == 2
    shown = [viewed.face, viewed.context] + [r.image for r in viewed.references]
    before = disk_bytes(db)
    for blob in secrets[-5:]:  # (a blob larger than a page is split over overflow pages: look for its chunks)
        assert sum(part in before for part in chunks(blob, 16)) > len(blob) // 32, "sanity: it is on disk"
    assert not any(part in before for image in shown for part in chunks(image, 64)), "no face on disk unencrypted"

    receipt = gallery.erase("amy", actor="dpo", purpose="erasure request", reason="subject asked")
    assert receipt.templates_destroyed == 2 and receipt.key_id and receipt.reclaimed
    assert receipt.candidates_deleted == 1
    assert receipt.reference_faces_destroyed == 2 and receipt.evidence_destroyed == 1
    entry = gallery.audit_entries(after_seq=receipt.audit_seq - 1, limit=1)[0]
    assert entry.data["action"] == "subject.erase" and entry.hash == receipt.audit_hash
    assert entry.data["details"]["key_destroyed"] is True

    after = disk_bytes(db)
    for ciphertext in secrets:
        for part in chunks(ciphertext, 16):
            assert part not in after, "ciphertext bytes (template, reference face or evidence) survived erasure"
    for p in plaintexts:
        assert not any(part in after for part in chunks(p)), "plaintext bytes on disk"
    # the other subject is untouched and still found; amy is never returned again
    assert any(r.ciphertext in after for r in other)
    for probe in amy[2:4]:
        found = gallery.identify(probe, actor="door", purpose=PURPOSE)
        assert all(c.subject != "amy" for f in found.faces for c in f.candidates)
    assert gallery.identify(sheldon[3], actor="door", purpose=PURPOSE).faces[0].candidates[0].subject == "sheldon"
    for table in ("subjects", "subject_keys", "templates", "candidates", "reference_faces"):
        column = "id" if table == "subjects" else "subject_id"
        assert raw_sql(db, f"SELECT COUNT(*) FROM {table} WHERE {column} = 'amy'")[0][0] == 0
    assert raw_sql(db, "SELECT COUNT(*) FROM evidence WHERE candidate_id = ?", raised.candidate_id)[0][0] == 0
    assert gallery.audit_verify().ok


def _snapshot(db: str) -> dict[str, list[tuple[object, ...]]]:
    if GalleryLocation(db, Path()).postgres:
        query = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
    tables = [str(r[0]) for r in raw_sql(db, query)]
    return {t: sorted(raw_sql(db, f"SELECT * FROM {t}"), key=repr) for t in tables}


def _files(db: str) -> list[str]:
    """The files beside an SQLite database (none to watch on PostgreSQL)."""
    return [] if GalleryLocation(db, Path()).postgres else sorted(p.name for p in Path(db).parent.iterdir())


def test_unmatched_faces_leave_no_trace(gallery: Gallery, engine: Engine, faces_dir: Path, manifest: list) -> None:  # type: ignore[type-arg]
    db = gallery.store.location
    enroll(gallery, "amy", photos(faces_dir, "amy")[:2])
    group = next(r.path for r in manifest if r.n_faces >= 4)
    vectors = engine.embed(group).vectors
    assert len(vectors) >= 4
    files_before = _files(db)
    before = _snapshot(db)

    result = gallery.identify(group, actor="door", purpose=PURPOSE)
    assert len(result.faces) == len(vectors) and not any(f.candidates for f in result.faces)

    after = _snapshot(db)
    assert _files(db) == files_before, "no file was created"
    for table in before:
        if table in ("audit", "meta"):
            continue
        assert after[table] == before[table], f"table {table} changed"
    new_audit = [row for row in after["audit"] if row not in before["audit"]]
    assert len(new_audit) == 1
    meta_changes = {k for k, *_ in set(after["meta"]) ^ set(before["meta"])}
    assert meta_changes == {"audit_head", "seals_tag"}  # the head, and the seals' tag bound to it (no data)
    entry = gallery.audit_entries(after_seq=len(before["audit"]))[0].data
    assert entry["action"] == "identify" and entry["subjects"] == []
    assert entry["details"]["faces"] == len(vectors) and entry["details"]["candidates"] == []
    assert entry["probe_sha256"] == __import__("hashlib").sha256(group.read_bytes()).hexdigest()
    # no template of the bystanders reached the disk, in the database or its WAL; nor any picture of them
    on_disk = disk_bytes(db)
    for vector in vectors:
        assert not any(part in on_disk for part in chunks(vector.astype("<f4").tobytes(), 16))
    assert after["evidence"] == [] and b"JFIF" not in on_disk
    for crop in engine.align(group):  # (runs of border pixels are on any disk: look for textured chunks)
        textured = [part for part in chunks(crop.tobytes(), 64) if len(set(part)) > 16]
        assert textured and not any(part in on_disk for part in textured), "a bystander's crop is on disk"


def test_withdrawal_erases_and_stops_searches(gallery: Gallery, faces_dir: Path) -> None:
    amy = photos(faces_dir, "amy")
    enroll(gallery, "amy", amy[:1])
    assert gallery.identify(amy[2], actor="door", purpose=PURPOSE).faces[0].candidates
    withdrawal = gallery.withdraw_consent("amy", actor="desk", purpose=PURPOSE)
    assert withdrawal.erasure is not None and withdrawal.erasure.templates_destroyed == 1
    assert not gallery.identify(amy[2], actor="door", purpose=PURPOSE).faces[0].candidates
    with gallery.store.read() as tx:
        consent = tx.list_consents("amy")[0]
        assert tx.get_subject("amy") is None and consent.withdrawn_at is not None
    actions = [e.data["action"] for e in gallery.audit_entries()]
    assert actions[-3:-1] == ["consent.withdraw", "subject.erase"]


def test_master_key_rotation_makes_old_backups_unreadable(
    gallery: Gallery, faces_dir: Path, engine: Engine, request: pytest.FixtureRequest
) -> None:
    import shutil

    from faceledger.ledger import MasterKeyError

    db, key_file = gallery.store.location, Path(str(gallery.key_file))
    amy = photos(faces_dir, "amy")
    enroll(gallery, "amy", amy[:1])
    gallery.store.reclaim()
    if GalleryLocation(db, key_file).postgres:  # a copy of the database (nobody may be connected to it meanwhile)
        gallery.close()
        backup = new_database(request.getfixturevalue("postgres_server"), template=db)
        gallery = Gallery.open(db, key_file=key_file, engine=engine)
        request.addfinalizer(gallery.close)
    else:
        backup = str(key_file.with_name("backup.db"))
        shutil.copy(db, backup)
    shutil.copy(key_file, key_file.with_name("old.key"))
    with gallery.store.read() as tx:
        old_wrapped = tx.get_subject_key("amy").wrapped  # type: ignore[union-attr]

    info = gallery.rotate_master_key(actor="admin")
    assert info["subject_keys"] == 1 and info["old_master_key_id"] != info["new_master_key_id"]
    assert not pending_key_file(key_file).exists()
    assert old_wrapped[:16] not in disk_bytes(db), "the old wrapping is gone from the database and WAL"
    # the rotated database opens with the new key file and still finds amy
    with Gallery.open(db, key_file=key_file, engine=engine) as reopened:
        assert reopened.identify(amy[2], actor="door", purpose=PURPOSE).faces[0].candidates[0].subject == "amy"
        assert reopened.audit_entries(action="key.rotate")[0].data["details"]["subject_keys"] == 1
    # a backup from before the rotation does not open with the new key: destroying the old key shreds it
    with (
        Gallery.open(backup, key_file=key_file, engine=engine) as old,
        pytest.raises(MasterKeyError, match="not the one"),
    ):
        old.identify(amy[2], actor="door", purpose=PURPOSE)
    with Gallery.open(backup, key_file=key_file.with_name("old.key"), engine=engine) as old:
        assert old.identify(amy[2], actor="door", purpose=PURPOSE).faces[0].candidates


def test_interrupted_rotation_is_completed_on_next_open(
    gallery: Gallery, faces_dir: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faceledger.gallery.keys as service

    db, key_file = gallery.store.location, Path(str(gallery.key_file))
    amy = photos(faces_dir, "amy")
    enroll(gallery, "amy", amy[:1])

    def crash(*args: object) -> None:
        raise OSError("power cut before the new key file was moved into place")

    monkeypatch.setattr(service.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        gallery.rotate_master_key(actor="admin")
    monkeypatch.undo()
    assert pending_key_file(key_file).exists()
    with Gallery.open(db, key_file=key_file, engine=engine) as reopened:
        assert reopened.identify(amy[2], actor="door", purpose=PURPOSE).faces[0].candidates[0].subject == "amy"
    assert not pending_key_file(key_file).exists()
