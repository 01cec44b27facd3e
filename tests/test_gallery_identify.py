"""Consent-gated enrollment and 1:N identification on real photographs of real people.

Identities come from the evaluation half of the shared face set (the thresholds shipped with faceledger are
calibrated on the other half), enrolled with two photos each and searched with others.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import GalleryLocation
from faceledger import Engine
from faceledger.evaluate.splits import is_calibration_identity
from faceledger.gallery import Gallery
from faceledger.ledger import (
    EXAMPLE_POLICY,
    MASTER_KEY_ENV,
    ConsentError,
    DuplicateError,
    PurposeError,
    UnknownSubjectError,
    parse_policy,
)

pytestmark = pytest.mark.shared_data
PURPOSE = "access-control"

KNOWN = [
    "dlib:John_Salley",
    "dlib:John_Simm",
    "face_api_js:amy",
    "face_api_js:sheldon",
    "face_api_js:stuart",
    "orl:s12",
    "orl:s14",
    "orl:s2",
    "yale:subject01",
    "yale:subject02",
]
UNKNOWN = ["orl:s16", "orl:s23", "yale:subject03", "yale:subject04", "dlib:John_Simm"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    """The default engine: bundled models, thresholds from the bundled recognizer's calibration."""
    return Engine()


@pytest.fixture(scope="module")
def photos(manifest: list) -> dict[str, list[Path]]:  # type: ignore[type-arg]
    by: dict[str, list[Path]] = collections.defaultdict(list)
    for row in manifest:
        if row.identity and row.n_faces in (1, -1):
            by[row.identity].append(row.path)
    for identity in KNOWN + UNKNOWN:
        assert not is_calibration_identity(identity), identity
    return {k: sorted(v) for k, v in by.items()}


def sid(identity: str) -> str:
    return identity.replace(":", ".")


@pytest.fixture
def gallery(gallery_location: GalleryLocation, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gallery]:
    """A new gallery, on SQLite and on PostgreSQL in turn."""
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    g = Gallery.init(gallery_location.location, actor="admin", engine=engine, key_file=gallery_location.key_file)
    yield g
    g.close()


def consent(g: Gallery, subject: str, **kw: object) -> None:
    g.add_consent(
        subject,
        actor="desk",
        collected_by="front desk",
        legal_basis="explicit consent",
        purpose=kw.pop("purpose", PURPOSE),  # type: ignore[arg-type]
        evidence_ref=f"form-{subject}",
        **kw,  # type: ignore[arg-type]
    )


def counts(g: Gallery) -> tuple[int, int]:
    with g.store.read() as tx:
        return len(tx.list_subjects()), sum(tx.template_counts().values())


def test_enrollment_is_refused_without_valid_consent(gallery: Gallery, photos: dict[str, list[Path]]) -> None:
    image = photos["face_api_js:amy"][0]
    with pytest.raises(ConsentError, match="no consent recorded"):
        gallery.enroll("amy", [image], actor="desk", purpose=PURPOSE)
    with pytest.raises(ConsentError, match="expires_at"):
        consent(gallery, "amy", given_at="2019-01-01", expires_at="2020-01-01")
    # consent for another gallery purpose than the one enrolled for
    policy = parse_policy(
        EXAMPLE_POLICY.replace('purposes = ["access-control"]', 'purposes = ["access-control", "payroll"]')
    )
    gallery.set_policy(policy, actor="admin")
    consent(gallery, "amy", purpose="payroll")
    with pytest.raises(ConsentError, match="no valid consent"):
        gallery.enroll("amy", [image], actor="desk", purpose=PURPOSE)
    with pytest.raises(PurposeError, match="not allowed"):
        consent(gallery, "amy", purpose="marketing")
    assert counts(gallery) == (0, 0)


def test_enroll_and_identify_real_people(gallery: Gallery, photos: dict[str, list[Path]]) -> None:
    for identity in KNOWN:
        consent(gallery, sid(identity))
        result = gallery.enroll(sid(identity), photos[identity][:2], actor="desk", purpose=PURPOSE)
        assert len(result.enrolled) == 2, result.to_dict()
    assert counts(gallery) == (len(KNOWN), 2 * len(KNOWN))

    correct = total = 0
    for identity in KNOWN:
        for probe in photos[identity][2:4]:
            result = gallery.identify(probe, actor="door-1", purpose=PURPOSE)
            assert len(result.faces) == 1
            face = result.faces[0]
            total += 1
            correct += bool(face.candidates) and face.candidates[0].subject == sid(identity)
            assert all(c.similarity >= result.threshold for c in face.candidates)
    # open-set rank-1 at the policy threshold, on people the threshold was not calibrated on
    assert correct / total >= 0.85, f"rank-1 {correct}/{total}"

    impostor_hits = []
    for identity in UNKNOWN[:4]:
        for probe in photos[identity][:2]:
            result = gallery.identify(probe, actor="door-1", purpose=PURPOSE)
            impostor_hits += [c.subject for f in result.faces for c in f.candidates]
    assert impostor_hits == [], "unknown people must be rejected at the policy threshold"
    assert gallery.audit_verify().ok


def test_multi_face_probe_and_group_enrollment(
    gallery: Gallery,
    photos: dict[str, list[Path]],
    manifest: list,
    faces_dir: Path,  # type: ignore[type-arg]
) -> None:
    def usable(path: Path) -> int:
        return sum(1 for reasons in gallery.engine.detect(path).quality_reasons if not reasons)

    # A group photo with at least two faces fit for enrollment (many group photos have none: small, turned away).
    group = next(r.path for r in manifest if r.n_faces >= 4 and usable(r.path) >= 2)
    consent(gallery, "guest")
    result = gallery.enroll("guest", [group], actor="desk", purpose=PURPOSE)
    assert not result.enrolled and "usable faces" in (result.rejected[0].reason or "")
    assert counts(gallery) == (0, 0)
    chosen = gallery.enroll("guest", [group], actor="desk", purpose=PURPOSE, face_index=0)
    assert len(chosen.enrolled) == 1 and chosen.enrolled[0].face_index == 0
    found = gallery.identify(group, actor="door-1", purpose=PURPOSE)
    assert len(found.faces) >= 4
    matched = [f for f in found.faces if f.candidates]
    assert [f.index for f in matched] == [0] and matched[0].candidates[0].subject == "guest"


def test_bad_inputs_give_clear_errors_and_lose_nothing(
    gallery: Gallery, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    consent(gallery, "amy")
    consent(gallery, "sheldon")
    amy = photos["face_api_js:amy"]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(amy[0].read_bytes()[:300])
    empty = tmp_path / "no_face.png"
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(empty)
    result = gallery.enroll("amy", [amy[0], corrupt, empty, tmp_path / "missing.jpg"], actor="d", purpose=PURPOSE)
    reasons = {Path(o.source).name: o.reason for o in result.rejected}
    assert len(result.enrolled) == 1
    assert set(reasons) == {"corrupt.jpg", "no_face.png", "missing.jpg"}, reasons
    assert reasons["no_face.png"] == "no face found"
    assert "truncated" in (reasons["corrupt.jpg"] or "") or "corrupt" in (reasons["corrupt.jpg"] or "")

    # the same photo again: skipped (reruns resume), not duplicated
    again = gallery.enroll("amy", [amy[0], amy[1]], actor="d", purpose=PURPOSE)
    assert [o.status for o in again.outcomes] == ["skipped", "enrolled"]
    assert counts(gallery) == (1, 2)
    # the same photo under another subject: refused for that image
    other = gallery.enroll("sheldon", [amy[0]], actor="d", purpose=PURPOSE)
    assert other.rejected and "already enrolled for subject 'amy'" in (other.rejected[0].reason or "")
    # a different photo of amy enrolled as sheldon: enrolled, with a duplicate warning naming amy
    dup = gallery.enroll("sheldon", [amy[2]], actor="d", purpose=PURPOSE)
    assert [d.other_subject for d in dup.duplicates] == ["amy"] and dup.warnings
    assert counts(gallery) == (2, 3)

    with pytest.raises(UnknownSubjectError, match="nobody"):
        gallery.erase("nobody", actor="admin", purpose="erasure request")
    with pytest.raises(ValueError, match="subject id"):
        gallery.add_consent("bad id!", actor="d", collected_by="d", legal_basis="x", purpose=PURPOSE, evidence_ref="x")
    with pytest.raises(DuplicateError):
        policy = parse_policy(EXAMPLE_POLICY + '\n[[galleries]]\nname = "other"\npurposes = ["access-control"]\n')
        gallery.set_policy(policy, actor="admin")
        gallery.add_consent(
            "amy",
            actor="d",
            collected_by="d",
            legal_basis="x",
            purpose=PURPOSE,
            evidence_ref="x",
            gallery="other",
        )
    with pytest.raises(PurposeError, match="not allowed"):
        gallery.identify(amy[3], actor="door", purpose="marketing", gallery="staff")
    refused = gallery.audit_entries(action="identify.refused")
    assert len(refused) == 1 and refused[0].data["purpose"] == "marketing"
    assert counts(gallery) == (2, 3)
    assert gallery.audit_verify().ok


def test_image_to_image_verification_is_recorded_without_biometric_data(
    gallery: Gallery, photos: dict[str, list[Path]]
) -> None:
    a, b = photos[KNOWN[0]][:2]
    other = photos[KNOWN[1]][0]
    same = gallery.verify_images(a, b, actor="officer", purpose=PURPOSE)
    diff = gallery.verify_images(a, other, actor="officer", purpose=PURPOSE)
    assert same.match and not diff.match and same.similarity > diff.similarity
    assert same.threshold == pytest.approx(gallery.threshold())
    entries = gallery.audit_entries(action="verify")
    assert [e.seq for e in entries] == [same.audit_seq, diff.audit_seq]
    first = entries[0].data
    assert first["actor"] == "officer" and first["purpose"] == PURPOSE
    assert first["probe_sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert first["details"]["other_probe_sha256"] == hashlib.sha256(b.read_bytes()).hexdigest()
    assert set(first["details"]) == {"kind", "other_probe_sha256", "similarity", "match", "model"}
    assert gallery.audit_verify().ok
    with pytest.raises(PurposeError):
        gallery.verify_images(a, b, actor="officer", purpose="marketing")


def test_a_probe_is_read_once_so_a_named_pipe_works_and_the_hash_is_of_the_bytes_searched(tmp_path: Path) -> None:
    import os
    import threading

    from faceledger.examples import ASTRONAUT

    data = Path(ASTRONAUT).read_bytes()
    pipe = tmp_path / "probe.jpg"
    os.mkfifo(pipe)

    def feed() -> None:
        with open(pipe, "wb") as handle:  # a pipe can be read only once
            handle.write(data)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    results: list[object] = []
    with Gallery.init(tmp_path / "g.db", actor="admin") as g:
        # on a thread, so that reading the pipe twice fails this test instead of hanging it
        search = threading.Thread(
            target=lambda: results.append(g.identify(pipe, actor="door", purpose="access-control")), daemon=True
        )
        search.start()
        search.join(timeout=30)
        assert not search.is_alive(), "identify hung on a named pipe (it read the path twice)"
    result = results[0]
    assert len(result.faces) == 1 and result.probe_sha256 == hashlib.sha256(data).hexdigest()  # type: ignore[attr-defined]
