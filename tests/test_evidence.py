"""Evidence a reviewer can look at: the face that raised a candidate (aligned and in a bounded context with other
faces blurred), the subject's reference faces, encrypted, shown only through an audited call, and destroyed on
rejection (no byte left in the database or its WAL), on erasure and after the evidence retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import GalleryLocation, raw_sql, stored_bytes
from faceledger import Engine
from faceledger.engine.evidence import CONTEXT_MAX_SIDE, context_box, context_crop
from faceledger.gallery import Gallery
from faceledger.ledger import EXAMPLE_POLICY, MASTER_KEY_ENV, MasterKeyError, PurposeError, crypto, parse_policy

PURPOSE = "access-control"


class Clock:
    """A clock the test moves forward."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    yield


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def images(faces_dir: Path) -> Path:
    return faces_dir / "face_api_js" / "examples" / "images"


def photos(images: Path, who: str) -> list[Path]:
    return sorted((images / who).glob(f"{who}*.png"))


@pytest.fixture
def where(gallery_location: GalleryLocation) -> GalleryLocation:
    """The tests that keep evidence run on SQLite and on PostgreSQL."""
    return gallery_location


def make(where: GalleryLocation, engine: Engine, clock: Clock, policy: str = EXAMPLE_POLICY) -> Gallery:
    return Gallery.init(
        where.location, key_file=where.key_file, actor="admin", engine=engine, clock=clock, policy=parse_policy(policy)
    )


def enroll(g: Gallery, subject: str, files: list[Path]) -> None:
    g.add_consent(
        subject, actor="desk", collected_by="desk", legal_basis="explicit consent", purpose=PURPOSE, evidence_ref="f"
    )
    assert len(g.enroll(subject, files, actor="desk", purpose=PURPOSE).enrolled) == len(files)


def rows(db: Path | str, table: str) -> int:
    return int(raw_sql(db, f"SELECT COUNT(*) FROM {table}")[0][0])  # type: ignore[call-overload]


def disk_bytes(db: Path | str) -> bytes:
    """The database file, its WAL and shared-memory index, as on disk (on PostgreSQL, every value stored)."""
    return stored_bytes(db)


def chunks(data: bytes, size: int = 16) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


def textured(data: bytes, size: int = 64) -> list[bytes]:
    """Chunks of raw pixels with some texture (a run of black border pixels is on any disk)."""
    return [part for part in chunks(data, size) if len(set(part)) > 16]


def decode(jpeg: bytes | None) -> np.ndarray:
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8", "a JPEG"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def gray_variance(image: np.ndarray, box: np.ndarray | tuple[float, ...], inner: float = 0.3) -> float:
    """Pixel variance of the central part of a face box (the blur is an ellipse: its corners are untouched)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    region = image[int(cy - h * inner) : int(cy + h * inner), int(cx - w * inner) : int(cx + w * inner)]
    return float(cv2.cvtColor(region, cv2.COLOR_BGR2GRAY).astype(np.float64).var())


# ---------------------------------------------------------------------------------------------- no models, no data
def test_context_crop_is_bounded_and_blurs_only_the_other_faces() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (900, 1600, 3), dtype=np.uint8)  # noise: any blur shows in the variance
    boxes = np.array([[600, 300, 900, 620], [960, 350, 1160, 560], [20, 20, 80, 80]], np.float32)
    untouched = image.copy()
    crop = context_crop(image, boxes, 0)
    left, top, right, bottom = context_box(boxes[0], image.shape)
    assert (left, top, right, bottom) == (300, 0, 1200, 900)  # the box grown by its size, clipped to the image
    assert max(crop.shape[:2]) == CONTEXT_MAX_SIDE and crop.shape[:2] == (320, 320)
    scale = crop.shape[0] / (bottom - top)
    shift = np.array([left, top, left, top])
    plain = cv2.resize(image[top:bottom, left:right], crop.shape[1::-1], interpolation=cv2.INTER_AREA)
    kept, other = (boxes[0] - shift) * scale, (boxes[1] - shift) * scale
    assert np.array_equal(crop[int(kept[1]) : int(kept[3]), int(kept[0]) : int(kept[2])],
                          plain[int(kept[1]) : int(kept[3]), int(kept[0]) : int(kept[2])])  # fmt: skip
    assert gray_variance(crop, other) < 0.05 * gray_variance(plain, other)
    assert np.array_equal(image, untouched), "the caller's image is not changed"
    small = context_crop(image, boxes, 2)  # a small face near the corner: clipped, not scaled up
    assert small.shape[:2] == (140, 140)


def test_evidence_blobs_are_bound_to_their_candidate_and_part() -> None:
    master = crypto.MasterKey(b"k" * 32, "test")
    key = crypto.new_data_key()
    wrapped = master.wrap_evidence_key(key, candidate_id="c1", key_id="k1")
    assert master.unwrap_evidence_key(wrapped, candidate_id="c1", key_id="k1") == key
    with pytest.raises(MasterKeyError, match="candidate c2"):
        master.unwrap_evidence_key(wrapped, candidate_id="c2", key_id="k1")
    with pytest.raises(MasterKeyError):  # a subject key's wrapping is not an evidence key's
        master.unwrap(wrapped, subject_id="c1", key_id="k1")
    nonce, blob = crypto.encrypt_evidence(key, b"jpeg", candidate_id="c1", key_id="k1", part="face")
    assert crypto.decrypt_evidence(key, nonce, blob, candidate_id="c1", key_id="k1", part="face") == b"jpeg"
    for moved in ({"candidate_id": "c2", "part": "face"}, {"candidate_id": "c1", "part": "context"}):
        with pytest.raises(MasterKeyError, match="altered or moved"):
            crypto.decrypt_evidence(key, nonce, blob, key_id="k1", **moved)  # type: ignore[arg-type]
    nonce, blob = crypto.encrypt_reference_face(key, b"jpeg", subject_id="s", template_id="t1")
    with pytest.raises(MasterKeyError, match="reference face"):
        crypto.decrypt_reference_face(key, nonce, blob, subject_id="s", template_id="t2")


# ---------------------------------------------------------------------------------------------- photos
@pytest.mark.shared_data
def test_identify_keeps_evidence_for_each_candidate_and_nothing_for_the_rest(
    where: GalleryLocation, engine: Engine, clock: Clock, images: Path
) -> None:
    g = make(where, engine, clock)
    db = where.location
    enroll(g, "sheldon", photos(images, "sheldon")[:1])
    assert rows(db, "reference_faces") == 1
    group = images / "bbt4.jpg"  # six people; only sheldon (face 1) is enrolled; bernadette (face 5) stands by him
    result = g.identify(group, actor="door", purpose=PURPOSE)
    raised = [(f.index, c) for f in result.faces for c in f.candidates]
    assert [(i, c.subject) for i, c in raised] == [(1, "sheldon")]
    assert rows(db, "evidence") == rows(db, "candidates") == 1
    ev = g.evidence(raised[0][1].candidate_id, actor="rev")
    assert ev.state == "kept" and ev.missing is None and ev.candidate.subject_id == "sheldon"
    face, context = decode(ev.face), decode(ev.context)
    assert face.shape == (112, 112, 3) and max(context.shape[:2]) <= CONTEXT_MAX_SIDE
    assert ev.quality == pytest.approx(result.faces[1].quality, abs=1e-6)
    assert ev.fmr is not None and 0 <= ev.fmr <= result.target_fmr
    assert (ev.confirmations, ev.required, ev.reviews) == (0, 1, [])
    assert len(ev.references) == 1 and decode(ev.references[0].image).shape == (112, 112, 3)
    assert ev.references[0].quality > 0.5
    # the context is where the face was: the box enlarged by its own size, clipped, scaled to 320 at most
    original = engine.load(group)
    boxes = engine.detect(original).boxes
    left, top, right, bottom = context_box(boxes[1], original.shape)
    scale = context.shape[0] / (bottom - top)
    assert abs(context.shape[1] - (right - left) * scale) <= 1.5
    # the bystander inside it is blurred: little variance left where her face is, against the photo's
    bystander = (boxes[5] - np.array([left, top, left, top])) * scale
    assert gray_variance(context, bystander) < 0.1 * gray_variance(original, boxes[5])
    assert gray_variance(context, (boxes[1] - np.array([left, top, left, top])) * scale) > 200  # sheldon is not

    # a search that matches no one stores nothing: no evidence row, no picture on disk
    nobody = g.identify(photos(images, "penny")[0], actor="door", purpose=PURPOSE)
    assert nobody.faces and not any(f.candidates for f in nobody.faces)
    assert rows(db, "evidence") == rows(db, "candidates") == 1
    on_disk = disk_bytes(db)
    assert b"JFIF" not in on_disk, "every picture on disk is encrypted"
    for crop in engine.align(photos(images, "penny")[0]):
        assert textured(crop.tobytes()) and not any(part in on_disk for part in textured(crop.tobytes()))


@pytest.mark.shared_data
def test_each_look_is_one_audit_entry(where: GalleryLocation, engine: Engine, clock: Clock, images: Path) -> None:
    g = make(where, engine, clock)
    enroll(g, "amy", photos(images, "amy")[:2])
    found = g.identify(photos(images, "amy")[2], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    before = len(g.audit_entries())
    first = g.evidence(found.candidate_id, actor="rev-1")
    second = g.evidence(found.candidate_id, actor="rev-2", purpose=PURPOSE)
    with pytest.raises(PurposeError, match="cannot be viewed for 'marketing'"):
        g.evidence(found.candidate_id, actor="rev-3", purpose="marketing")
    refs = g.reference_faces("amy", actor="desk", purpose="subject page")
    assert len(refs) == 2 and all(decode(r.image).shape == (112, 112, 3) for r in refs)
    entries = g.audit_entries(after_seq=before)
    assert [e.data["action"] for e in entries] == ["evidence.view"] * 3
    assert [e.seq for e in entries[:2]] == [first.audit_seq, second.audit_seq]
    for entry, actor in zip(entries[:2], ("rev-1", "rev-2"), strict=True):
        data = entry.data
        assert (data["actor"], data["purpose"], data["subjects"]) == (actor, PURPOSE, ["amy"])
        assert data["details"]["kind"] == "candidate" and data["details"]["candidate_id"] == found.candidate_id
    last = entries[2].data
    assert (last["actor"], last["purpose"], last["subjects"]) == ("desk", "subject page", ["amy"])
    assert last["details"] == {"kind": "reference", "references": 2}
    assert first.to_dict()["face"] and first.to_dict()["references"][0]["image"]  # base64 on the wire
    assert g.audit_verify().ok


@pytest.mark.shared_data
def test_rejection_destroys_the_evidence_and_leaves_no_byte(
    where: GalleryLocation, engine: Engine, clock: Clock, images: Path
) -> None:
    g = make(where, engine, clock)
    db = where.location
    enroll(g, "amy", photos(images, "amy")[:1])
    kept = g.identify(photos(images, "amy")[1], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    doomed = g.identify(photos(images, "amy")[2], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    with g.store.read() as tx:
        stored = tx.get_evidence(doomed.candidate_id)
    assert stored is not None
    secrets = [stored.face, stored.context, stored.wrapped_key]
    before = disk_bytes(db)
    assert sum(part in before for part in chunks(stored.context)) > len(stored.context) // 32

    outcome = g.review(doomed.candidate_id, reviewer="rev", decision="reject", reason="different ears")
    assert outcome.status == "rejected" and outcome.evidence_destroyed and outcome.reclaimed
    assert outcome.to_dict()["evidence_destroyed"] is True
    after = disk_bytes(db)
    for secret in secrets:
        assert not any(part in after for part in chunks(secret)), "evidence bytes survived the rejection"
    entry = g.audit_entries(action="review.reject")[-1].data
    assert entry["details"]["evidence_destroyed"] is True
    gone = g.evidence(doomed.candidate_id, actor="auditor")
    assert gone.state == "destroyed" and gone.face is None and gone.context is None and gone.quality is None
    assert "rejected" in str(gone.missing) and [r.decision for r in gone.reviews] == ["reject"]
    # the other candidate's evidence is untouched
    assert g.evidence(kept.candidate_id, actor="rev").state == "kept"
    assert rows(db, "evidence") == 1


@pytest.mark.shared_data
def test_retention_destroys_evidence_after_a_confirmation(
    where: GalleryLocation, engine: Engine, clock: Clock, images: Path
) -> None:
    policy = EXAMPLE_POLICY.replace("evidence_days = 30", "evidence_days = 10")
    g = make(where, engine, clock, policy)
    enroll(g, "amy", photos(images, "amy")[:1])
    confirmed = g.identify(photos(images, "amy")[1], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    pending = g.identify(photos(images, "amy")[2], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    g.review(confirmed.candidate_id, reviewer="rev", decision="confirm", reason="same person")

    clock.advance(days=9)
    assert g.purge().evidence_deleted == 0 and g.audit_entries(action="evidence.purge") == []
    clock.advance(days=2)
    report = g.purge()
    assert report.evidence_deleted == 1 and report.to_dict()["evidence_deleted"] == 1 and report.reclaimed
    purge = g.audit_entries(action="evidence.purge")
    assert len(purge) == 1 and purge[0].data["details"]["evidence_deleted"] == 1
    gone = g.evidence(confirmed.candidate_id, actor="auditor")
    assert gone.state == "destroyed" and "retention" in str(gone.missing) and gone.candidate.status == "confirmed"
    assert g.evidence(pending.candidate_id, actor="rev").state == "kept"  # undecided: kept for its reviewer
    assert g.purge().evidence_deleted == 0


@pytest.mark.shared_data
def test_template_retention_deletes_its_reference_face(
    where: GalleryLocation, engine: Engine, clock: Clock, images: Path
) -> None:
    g = make(where, engine, clock, EXAMPLE_POLICY.replace("# templates_days = 365", "templates_days = 30"))
    enroll(g, "amy", photos(images, "amy")[:1])
    clock.advance(days=20)
    assert g.enroll("amy", photos(images, "amy")[1:2], actor="desk", purpose=PURPOSE).enrolled
    assert len(g.reference_faces("amy", actor="desk", purpose="check")) == 2
    clock.advance(days=15)
    assert g.purge().templates_deleted == 1
    with g.store.read() as tx:
        left = tx.reference_faces_of("amy")
        assert [r.template_id for r in left] == [t.id for t in tx.templates_of("amy")]
    assert where.count("reference_faces") == 1


@pytest.mark.shared_data
def test_rotation_rewraps_the_evidence_keys(where: GalleryLocation, engine: Engine, clock: Clock, images: Path) -> None:
    g = make(where, engine, clock)
    enroll(g, "amy", photos(images, "amy")[:1])
    found = g.identify(photos(images, "amy")[1], actor="door", purpose=PURPOSE).faces[0].candidates[0]
    shown = g.evidence(found.candidate_id, actor="rev")
    with g.store.read() as tx:
        old = tx.get_evidence(found.candidate_id)
    info = g.rotate_master_key(actor="admin")
    assert info["evidence_keys"] == 1 and info["subject_keys"] == 1
    assert g.audit_entries(action="key.rotate")[-1].data["details"]["evidence_keys"] == 1
    g.close()
    with Gallery.open(where.location, key_file=where.key_file, engine=engine, clock=clock) as reopened:
        with reopened.store.read() as tx:
            new = tx.get_evidence(found.candidate_id)
        assert old is not None and new is not None
        assert new.wrapped_key != old.wrapped_key and new.master_key_id == info["new_master_key_id"]
        assert new.face == old.face  # the images keep their key; only its wrapping changed
        after = reopened.evidence(found.candidate_id, actor="rev")
        assert (after.face, after.context) == (shown.face, shown.context)
        assert [r.image for r in after.references] == [r.image for r in shown.references]


@pytest.mark.shared_data
def test_cli_writes_the_evidence_of_a_candidate(
    tmp_path: Path, where: GalleryLocation, engine: Engine, images: Path
) -> None:
    import json

    from click.testing import CliRunner

    from faceledger.interfaces.cli import main

    db, key_file = where.location, where.key_file
    g = Gallery.init(db, key_file=key_file, actor="admin", engine=engine)
    enroll(g, "amy", photos(images, "amy")[:2])
    cid = g.identify(photos(images, "amy")[2], actor="door", purpose=PURPOSE).faces[0].candidates[0].candidate_id
    g.close()
    out = tmp_path / "evidence"
    at = ["--db", db, "--key-file", str(key_file)]
    result = CliRunner().invoke(main, ["review", "evidence", cid, "--out", str(out), *at, "--actor", "bob"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["context.jpg", "face.jpg", "reference-1.jpg", "reference-2.jpg"]
    assert all((out / n).stat().st_mode & 0o077 == 0 for n in names)
    assert decode((out / "face.jpg").read_bytes()).shape == (112, 112, 3)
    assert f"wrote {out / 'face.jpg'}" in result.stdout and "audit entry #" in result.stdout
    listed = CliRunner().invoke(main, ["review", "evidence", cid, "--out", str(out), *at, "--actor", "eve", "--json"])
    summary = json.loads(listed.stdout)
    assert summary["candidate_id"] == cid and len(summary["files"]) == 4 and summary["evidence"] == "kept"
    with Gallery.open(db, key_file=key_file, engine=engine) as reopened:
        views = reopened.audit_entries(action="evidence.view")
        assert [v.data["actor"] for v in views] == ["bob", "eve"]
        assert all(v.data["purpose"] == PURPOSE for v in views)
    wrong = CliRunner().invoke(main, ["review", "evidence", "nope", "--out", str(out), *at, "--actor", "x"])
    assert wrong.exit_code == 1 and "no candidate" in wrong.stderr


# ---------------------------------------------------------------------------------------------- video
@pytest.mark.shared_data
def test_track_evidence_carries_the_best_face_with_the_frame_s_other_faces_blurred(
    engine: Engine, images: Path
) -> None:
    from faceledger.engine.video import TrackPipeline
    from faceledger.vision.video import Frame

    still = engine.load(images / "bbt4.jpg")  # a camera looking at six people standing still
    boxes = engine.detect(still).boxes
    pipeline = TrackPipeline(engine, fps=25.0)
    evidence = []
    for i in range(8):
        evidence += pipeline.process(Frame(i, i / 25.0, still.copy(), 0.0)).evidence
    evidence += pipeline.finish()[0]
    assert evidence and all(ev.crops is not None for ev in evidence)
    by_box = {int(np.argmin(np.abs(boxes - ev.box).sum(axis=1))): ev for ev in evidence}
    sheldon = by_box[1].crops
    assert sheldon is not None and sheldon.aligned.shape == (112, 112, 3)
    left, top, _, bottom = context_box(by_box[1].box, still.shape)
    scale = sheldon.context.shape[0] / (bottom - top)
    assert max(sheldon.context.shape[:2]) <= CONTEXT_MAX_SIDE
    bystander = (boxes[5] - np.array([left, top, left, top])) * scale
    assert gray_variance(sheldon.context, bystander) < 0.1 * gray_variance(still, boxes[5])


@pytest.mark.shared_data
@pytest.mark.slow
def test_watch_keeps_evidence_for_each_candidate(tmp_path: Path, engine: Engine, faces_dir: Path) -> None:
    from faceledger.evaluate.scenes import make_scene
    from test_video_watch import Clock as WatchClock
    from test_video_watch import open_gallery

    scene = make_scene(
        tmp_path / "hall.mp4", seed=3, seconds=3, people=3, watchlisted=1, width=640, height=360, faces_root=faces_dir
    )
    g, subjects = open_gallery(tmp_path, engine, scene, WatchClock())
    db = tmp_path / "g.db"
    assert rows(db, "reference_faces") == len(subjects)
    events = list(g.watch(scene.path, actor="operator-7"))
    raised = [c["candidate_id"] for e in events if e["event"] == "candidate" for c in e["candidates"]]
    assert raised and rows(db, "evidence") == rows(db, "candidates") == len(raised)
    for cid in raised:
        ev = g.evidence(cid, actor="reviewer")
        assert ev.state == "kept" and ev.candidate.track is not None and ev.candidate.subject_id in subjects.values()
        assert decode(ev.face).shape == (112, 112, 3) and max(decode(ev.context).shape[:2]) <= CONTEXT_MAX_SIDE
        assert ev.quality is not None and ev.quality > 0 and len(ev.references) == 1
    assert b"JFIF" not in disk_bytes(db)
