"""The 1:N threshold follows the gallery's size: held to the policy's target FPIR per searched face, recorded with
every search, refused where the calibration cannot hold it unless an extrapolation was accepted on the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import GalleryLocation
from faceledger.gallery import Gallery
from faceledger.gallery.context import bump_consent_version
from faceledger.gallery.keys import encrypt_template, ensure_data_key
from faceledger.gallery.thresholds import comparison_fmr, largest_gallery
from faceledger.ledger import EXAMPLE_POLICY, parse_policy
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import GallerySizeError
from faceledger.ledger.records import Consent, Subject, TemplateRecord
from faceledger.ledger.timeutil import to_text

EXAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "src" / "faceledger" / "examples" / "astronaut.jpg"
PURPOSE = "access-control"


def _grow(g: Gallery, total: int, rng: np.random.Generator) -> None:
    """Enroll synthetic subjects (one random unit template each, with a consent) until the gallery holds ``total``
    subjects: what thousands of enrollments would leave, without running the models thousands of times."""
    ctx = g.context
    now = to_text(g.now())
    model = ctx.model_id()
    with ctx.write() as tx:
        have = len(tx.list_subjects())
        added = []
        for i in range(have, total):
            subject = f"synthetic-{i:05d}"
            tx.add_consent(Consent(uuid.uuid4().hex, subject, "staff", "desk", "consent", PURPOSE, "form", now, None,
                                   None, None, now, "test"))  # fmt: skip
            tx.add_subject(Subject(subject, "staff", now, "test"))
            key_id, key = ensure_data_key(ctx, tx, subject, now)
            vector = rng.standard_normal(128).astype(np.float32)
            vector /= np.linalg.norm(vector)
            template_id = uuid.uuid4().hex
            nonce, ciphertext = encrypt_template(key, vector, subject=subject, template_id=template_id)
            tx.add_template(TemplateRecord(template_id, subject, key_id, model, 128, nonce, ciphertext,
                                           uuid.uuid4().hex, 0, 1.0, now))  # fmt: skip
            added.append(subject)
        tx.bump_data_version()
        bump_consent_version(tx)
        ctx.record(tx, AuditAction.ENROLL, actor="test", purpose=PURPOSE, gallery="staff",
                   details={"synthetic": len(added)})  # fmt: skip


@pytest.fixture
def gallery(gallery_location: GalleryLocation) -> Iterator[Gallery]:
    """A gallery with one enrolled subject, on SQLite and on PostgreSQL in turn."""
    yield from _one_subject(gallery_location.location, gallery_location.key_file)


@pytest.fixture
def sqlite_gallery(tmp_path: Path) -> Iterator[Gallery]:
    """The same on SQLite only: for the test that writes 10,000 subjects row by row (73 s on PostgreSQL against 4 s;
    the thresholds it checks do not depend on the store, and the store's counting is in the contract tests)."""
    yield from _one_subject(str(tmp_path / "g.db"), tmp_path / "g.db.key")


def _one_subject(location: str, key_file: Path) -> Iterator[Gallery]:
    g = Gallery.init(location, actor="admin", key_file=key_file)
    g.add_consent("ana", actor="desk", collected_by="desk", legal_basis="consent", purpose=PURPOSE, evidence_ref="f")
    g.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
    yield g
    g.close()


def test_the_per_comparison_rate_keeps_the_fpir() -> None:
    for n in (1, 10, 1000, 10**6):
        f = comparison_fmr(0.01, n)
        assert -np.expm1(n * np.log1p(-f)) == pytest.approx(0.01, rel=1e-9)
    assert comparison_fmr(0.01, 1) == pytest.approx(0.01)
    # 123,002 impostor pairs measure down to 1/123,002: an FPIR of 1 % holds up to about 1,236 templates
    assert largest_gallery(0.01, 1 / 123_002) == 1236


def test_a_gallery_grown_from_10_to_10000_subjects_raises_the_threshold_and_the_entries_show_it(
    sqlite_gallery: Gallery,
) -> None:
    gallery = sqlite_gallery
    rng = np.random.default_rng(7)
    seen = []
    for size in (10, 100, 1000):
        _grow(gallery, size, rng)
        found = gallery.identify(EXAMPLE_IMAGE, actor="door", purpose=PURPOSE)
        basis = found.threshold_basis
        assert basis is not None and basis.subjects == size and basis.comparisons == size
        assert [c.subject for c in found.faces[0].candidates][:1] == ["ana"]  # still found at rank 1
        entry = gallery.audit_entries(action="identify")[-1].data
        assert entry["threshold"] == pytest.approx(found.threshold)
        recorded = entry["details"]["threshold_basis"]
        assert recorded["subjects"] == size and recorded["target_fpir"] == 0.01 and recorded["expected_fnir"] > 0
        seen.append(found.threshold)
    one_to_one = gallery.threshold()
    assert seen[0] == pytest.approx(one_to_one, abs=1e-6)  # at 10 the 1:1 target (1e-3) is the stricter one
    assert one_to_one < seen[1] < seen[2], seen  # then the gallery's size raises it
    # 10,000 needs an FMR of 1e-6 per comparison: beyond what 123,002 impostor pairs can show
    _grow(gallery, 10_000, rng)
    with pytest.raises(GallerySizeError, match=r"10,000 searchable subjects .* below what the recognizer's calibr"):
        gallery.identify(EXAMPLE_IMAGE, actor="door", purpose=PURPOSE)
    with pytest.raises(GallerySizeError, match="accept-extrapolation"):
        gallery.search_threshold(purpose=PURPOSE)
    accepted = gallery.accept_extrapolation(gallery="staff", up_to=20_000, reason="pilot, reviewed", actor="dpo")
    assert accepted["largest_measured_gallery"] == 1241  # the default card: 123,481 impostor pairs (int8 SFace)
    found = gallery.identify(EXAMPLE_IMAGE, actor="door", purpose=PURPOSE)
    assert found.threshold_basis is not None and found.threshold_basis.extrapolated
    assert found.threshold > seen[2]
    entry = gallery.audit_entries(action="identify")[-1].data
    assert entry["details"]["threshold_basis"]["extrapolated"] is True
    assert entry["details"]["threshold_basis"]["subjects"] == 10_000
    assert entry["details"]["threshold_basis"]["expected_fnir"] is None  # beyond the calibration: not measured
    assert [e.data["action"] for e in gallery.audit_entries(action="calibration.extrapolation")] == [
        "calibration.extrapolation"
    ]


def test_an_enrollment_that_outgrows_the_calibration_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    strict = EXAMPLE_POLICY.replace("target_fpir = 1e-2", "target_fpir = 1e-5")
    assert strict != EXAMPLE_POLICY
    g = Gallery.init(tmp_path / "g.db", actor="admin", policy=parse_policy(strict))
    for subject in ("ana", "ben"):
        g.add_consent(subject, actor="desk", collected_by="desk", legal_basis="consent", purpose=PURPOSE,
                      evidence_ref="f")  # fmt: skip
    g.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)  # 1e-5 per comparison: measurable
    head = g.audit_head()
    with pytest.raises(GallerySizeError, match=r"gallery 'staff' has 2 searchable subjects \(2 templates\)"):
        g.enroll("ben", [_other_face(tmp_path)], actor="desk", purpose=PURPOSE)
    assert g.audit_head() == head and g.stats()["templates"] == 1
    g.close()


def _other_face(tmp_path: Path) -> Path:
    """The example face mirrored: another image (another hash) of a face, enough for a second enrollment."""
    import cv2

    image = cv2.imread(str(EXAMPLE_IMAGE))
    out = tmp_path / "mirrored.jpg"
    cv2.imwrite(str(out), image[:, ::-1])
    return out


def test_a_deployment_whose_watchlist_outgrows_the_calibration_is_refused(gallery: Gallery) -> None:
    from datetime import timedelta

    from faceledger.ledger.errors import DeploymentError

    fields = dict(
        actor="chief", purpose="administration", gallery=None, search_purpose=PURPOSE, legal_basis="consent",
        location="front door", sources=["/footage/*.mp4"], authorised_by="A. Example", authorisation_ref="AUTH-1",
        valid_to=gallery.now() + timedelta(hours=1),
    )  # fmt: skip
    with pytest.raises(DeploymentError, match=r"watchlist of up to 5,000.*accept-extrapolation"):
        gallery.add_deployment("big", max_watchlist=5_000, **fields)
    assert gallery.add_deployment("small", max_watchlist=100, **fields).name == "small"


def test_the_command_line_shows_the_threshold_and_records_an_accepted_extrapolation(
    gallery: Gallery, gallery_location: GalleryLocation
) -> None:
    import json

    from click.testing import CliRunner

    from faceledger.interfaces.cli import main

    gallery.close()
    db = ["--db", gallery_location.location, "--key-file", str(gallery_location.key_file)]
    shown = CliRunner().invoke(main, ["policy", "threshold", *db, "--json"])
    assert shown.exit_code == 0, shown.output
    basis = json.loads(shown.output)
    assert basis["subjects"] == 1 and basis["comparisons"] == 1 and basis["comparison_fmr"] == 0.001
    text = CliRunner().invoke(main, ["policy", "threshold", *db])
    assert "for 1 searchable subject(s) (1 template(s))" in text.output and "expected FNIR 0.0" in text.output
    refused = CliRunner().invoke(main, ["policy", "accept-extrapolation", *db, "--up-to", "10", "--actor", "dpo"])
    assert refused.exit_code == 2 and "--reason" in refused.output
    accepted = CliRunner().invoke(main, ["policy", "accept-extrapolation", *db, "--up-to", "5000",
                                         "--reason", "pilot", "--actor", "dpo"])  # fmt: skip
    assert accepted.exit_code == 0, accepted.output
    assert "up to 5,000 subjects" in accepted.output and "up to 1,241 templates" in accepted.output
    with Gallery.open(gallery_location.location, key_file=gallery_location.key_file) as g:
        (entry,) = g.audit_entries(action="calibration.extrapolation")
        assert entry.data["actor"] == "dpo" and entry.data["details"]["up_to_subjects"] == 5000
