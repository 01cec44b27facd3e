"""Work that does not grow with the gallery: an enrollment counts the gallery's size in the database (once, then
carried forward by this process's own transactions) and finds possible duplicates by one search of the index, never
reading every subject; a search after another process's change catches up from the store's change log: it reads
the templates, subjects and consents that changed and checks their seals, not the whole gallery again. On SQLite
and on PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import GalleryLocation
from faceledger.gallery import Gallery
from faceledger.gallery.keys import encrypt_template, ensure_data_key
from faceledger.ledger import EXAMPLE_POLICY, parse_policy
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import GallerySizeError
from faceledger.ledger.records import Subject, TemplateRecord
from faceledger.ledger.sql_tx import SQLTransaction
from faceledger.ledger.timeutil import to_text

EXAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "src" / "faceledger" / "examples" / "astronaut.jpg"
PURPOSE = "access-control"
TWO_GALLERIES = EXAMPLE_POLICY + '\n[[galleries]]\nname = "other"\npurposes = ["access-control"]\n'


def _variant(folder: Path, name: str, angle: float) -> Path:
    """The example face turned slightly: another image (another hash) of the same face."""
    import cv2

    image = cv2.imread(str(EXAMPLE_IMAGE))
    h, w = image.shape[:2]
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h))
    out = folder / name
    cv2.imwrite(str(out), turned)
    return out


def _plant(g: Gallery, gallery: str, subject: str, vector: np.ndarray) -> None:
    """A subject of ``gallery`` with one encrypted template of ``vector``, written as an enrollment would leave it
    (without running the models for each)."""
    ctx = g.context
    now = to_text(g.now())
    with ctx.write() as tx:
        tx.add_subject(Subject(subject, gallery, now, "test"))
        key_id, key = ensure_data_key(ctx, tx, subject, now)
        template_id = uuid.uuid4().hex
        nonce, ciphertext = encrypt_template(key, vector, subject=subject, template_id=template_id)
        tx.add_template(TemplateRecord(template_id, subject, key_id, ctx.model_id(), 128, nonce, ciphertext,
                                       uuid.uuid4().hex, 0, 1.0, now))  # fmt: skip
        tx.bump_data_version()
        ctx.record(tx, AuditAction.ENROLL, actor="test", purpose=PURPOSE, gallery=gallery, details={"planted": 1})


def _consent(g: Gallery, subject: str, gallery: str = "staff") -> None:
    g.add_consent(subject, actor="desk", collected_by="desk", legal_basis="consent", purpose=PURPOSE,
                  evidence_ref="form", gallery=gallery)  # fmt: skip


def test_enrolling_into_a_loaded_gallery_reads_neither_its_subjects_nor_every_template_count(
    gallery_location: GalleryLocation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Gallery.init(gallery_location.location, actor="admin", key_file=gallery_location.key_file) as g:
        for subject in ("ana", "ben"):
            _consent(g, subject)

        g.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)  # the index loads (every seal checked)

        def refused(*args: object, **kwargs: object) -> None:
            raise AssertionError("an enrollment read the whole gallery")

        monkeypatch.setattr(SQLTransaction, "list_subjects", refused)
        monkeypatch.setattr(SQLTransaction, "template_counts", refused)
        second = g.enroll("ben", [_variant(tmp_path, "turned.jpg", 4.0)], actor="desk", purpose=PURPOSE)
        assert [d.other_subject for d in second.duplicates] == ["ana"]
        monkeypatch.undo()
        assert g.stats()["templates"] == 2


def test_duplicate_warnings_name_other_subjects_of_the_same_gallery_even_behind_better_matches_elsewhere(
    gallery_location: GalleryLocation, tmp_path: Path
) -> None:
    with Gallery.init(gallery_location.location, actor="admin", key_file=gallery_location.key_file,
                      policy=parse_policy(TWO_GALLERIES)) as g:  # fmt: skip
        face = g.context.engine.embed(str(EXAMPLE_IMAGE)).vectors[0].astype(np.float32)
        # six subjects of another gallery hold the face itself (similarity 1): more than the first search asks for
        for i in range(6):
            _plant(g, "other", f"elsewhere-{i}", face)
        # one subject of this gallery holds a face near it, further down the ranking
        rng = np.random.default_rng(0)
        noise = rng.standard_normal(128).astype(np.float32)
        noise -= (noise @ face) * face
        near = 0.8 * face + 0.6 * noise / np.linalg.norm(noise)
        _plant(g, "staff", "colleague", (near / np.linalg.norm(near)).astype(np.float32))
        _consent(g, "newcomer")
        result = g.enroll("newcomer", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE, gallery="staff")
        assert [d.other_subject for d in result.duplicates] == ["colleague"]
        assert result.duplicates[0].similarity == pytest.approx(0.8, abs=0.01)
        # the subject's own earlier template is not a duplicate of itself
        again = g.enroll(
            "newcomer", [_variant(tmp_path, "turned.jpg", 4.0)], actor="desk", purpose=PURPOSE, gallery="staff"
        )
        assert [d.other_subject for d in again.duplicates] == ["colleague"]


def test_the_size_check_counts_what_another_process_enrolled_since(gallery_location: GalleryLocation) -> None:
    """The count carried forward is used only while this process's own transactions are the only changes: a third
    subject enrolled here after another process enrolled the second one is refused by a gallery accepted up to 2."""
    strict = EXAMPLE_POLICY.replace("target_fpir = 1e-2", "target_fpir = 1e-9")  # beyond the calibration at once
    assert strict != EXAMPLE_POLICY
    location, key = gallery_location.location, gallery_location.key_file
    with Gallery.init(location, actor="admin", key_file=key, policy=parse_policy(strict)) as here:
        here.accept_extrapolation(gallery="staff", up_to=2, reason="test", actor="dpo")
        for subject in ("ana", "ben", "cy"):
            _consent(here, subject)
        here.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
        with Gallery.open(location, key_file=key) as there:
            there.enroll("ben", [_mirrored(key.parent)], actor="desk", purpose=PURPOSE)
        head = here.audit_head()
        with pytest.raises(GallerySizeError, match=r"gallery 'staff' has 3 searchable subjects"):
            here.enroll("cy", [_variant(key.parent, "cy.jpg", -4.0)], actor="desk", purpose=PURPOSE)
        assert here.audit_head() == head and here.stats()["subjects"] == 2
        # erased elsewhere: the refused transaction left no count behind, so the third subject now fits
        with Gallery.open(location, key_file=key) as there:
            there.erase("ben", actor="dpo", purpose="erasure request")
        assert here.enroll("cy", [_variant(key.parent, "cy.jpg", -4.0)], actor="desk", purpose=PURPOSE).enrolled


def _mirrored(folder: Path) -> Path:
    import cv2

    out = folder / "mirrored.jpg"
    cv2.imwrite(str(out), cv2.imread(str(EXAMPLE_IMAGE))[:, ::-1])
    return out


def _ana_and_ben_enrolled_cy_consenting(writer: Gallery, folder: Path) -> None:
    for subject in ("ana", "ben", "cy"):
        _consent(writer, subject)
    writer.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
    writer.enroll("ben", [_mirrored(folder)], actor="desk", purpose=PURPOSE)


def test_a_search_after_another_process_changed_the_gallery_checks_only_the_changed_subjects(
    gallery_location: GalleryLocation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location, key = gallery_location.location, gallery_location.key_file
    with Gallery.init(location, actor="admin", key_file=key) as writer:
        _ana_and_ben_enrolled_cy_consenting(writer, tmp_path)
        with Gallery.open(location, key_file=key) as searcher:
            assert searcher.identify(EXAMPLE_IMAGE, actor="door", purpose=PURPOSE).faces  # the index loads
            (template,) = gallery_location.sql("SELECT id FROM templates WHERE subject_id = 'ben'")[0]
            gallery_location.sql("DELETE FROM templates WHERE id = ?", template)  # outside faceledger
            writer.enroll("cy", [_variant(tmp_path, "cy.jpg", -4.0)], actor="desk", purpose=PURPOSE)

            def whole_gallery(*args: object, **kwargs: object) -> None:
                raise AssertionError("the whole gallery's seals were checked again")

            monkeypatch.setattr("faceledger.ledger.seals._all_subjects", whole_gallery)
            found = searcher.identify(_variant(tmp_path, "cy.jpg", -4.0), actor="door", purpose=PURPOSE)
            assert {c.subject for c in found.faces[0].candidates} >= {"cy"}
            # ben's template went away in this sync: ben's seal was checked, and does not match
            assert "subject:ben" in searcher.context.tampered and "subject:ana" not in searcher.context.tampered


def _refuse_whole_gallery_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading every template, subject or consent of the gallery fail the test."""

    def whole(*args: object, **kwargs: object) -> None:
        raise AssertionError("a search read the whole gallery")

    def consents(self: SQLTransaction, subject_id: str | None = None, gallery: str | None = None) -> object:
        if subject_id is None:
            raise AssertionError("a search read every consent of the gallery")
        return original(self, subject_id, gallery)

    original = SQLTransaction.list_consents
    for name in ("template_refs", "templates_page", "list_subjects"):
        monkeypatch.setattr(SQLTransaction, name, whole)
    monkeypatch.setattr(SQLTransaction, "list_consents", consents)


def test_a_loaded_index_catches_up_from_the_change_log_to_what_a_fresh_load_holds(
    gallery_location: GalleryLocation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process enrolls one subject and erases another: the next search reads those changes only (not the
    list of every template, subject or consent) and then holds what a process loading the gallery now would."""
    location, key = gallery_location.location, gallery_location.key_file
    with Gallery.init(location, actor="admin", key_file=key) as writer:
        _ana_and_ben_enrolled_cy_consenting(writer, tmp_path)
        cy = _variant(tmp_path, "cy.jpg", -4.0)
        with Gallery.open(location, key_file=key) as searcher:
            first = searcher.identify(_mirrored(tmp_path), actor="door", purpose=PURPOSE)
            assert first.faces[0].candidates[0].subject == "ben"
            assert "ben" in searcher.context.data_keys  # unwrapped when its template loaded
            writer.erase("ben", actor="dpo", purpose="erasure request")
            writer.enroll("cy", [cy], actor="desk", purpose=PURPOSE)

            _refuse_whole_gallery_reads(monkeypatch)
            found = searcher.identify(cy, actor="door", purpose=PURPOSE)
            assert found.faces[0].candidates[0].subject == "cy"
            gone = searcher.identify(_mirrored(tmp_path), actor="door", purpose=PURPOSE)
            assert "ben" not in {c.subject for f in gone.faces for c in f.candidates}
            assert "ben" not in searcher.context.data_keys  # an erased subject's key does not stay in memory
            index = searcher.context.index
            assert index is not None
            caught_up = (sorted(index.template_ids), sorted(index.subjects))
            allowed = {k: v.subjects for k, v in searcher.context.allowed.items()}
            monkeypatch.undo()
        with Gallery.open(location, key_file=key) as fresh:
            fresh.identify(cy, actor="door", purpose=PURPOSE)
            index = fresh.context.index
            assert index is not None
            assert caught_up == (sorted(index.template_ids), sorted(index.subjects))
            assert caught_up[1] == ["ana", "cy"]
            assert allowed == {k: v.subjects for k, v in fresh.context.allowed.items()}


def test_an_index_further_behind_than_the_log_reaches_loads_the_gallery_again(
    gallery_location: GalleryLocation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the log pruned past the index (one row kept here), the next search reads the whole list of templates
    instead, and finds the same."""
    import faceledger.ledger.sql_changes as changes

    location, key = gallery_location.location, gallery_location.key_file
    with Gallery.init(location, actor="admin", key_file=key) as writer:
        for subject in ("ana", "ben"):
            _consent(writer, subject)
        writer.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
        with Gallery.open(location, key_file=key) as searcher:
            assert searcher.identify(EXAMPLE_IMAGE, actor="door", purpose=PURPOSE).faces[0].candidates
            monkeypatch.setattr(changes, "CHANGES_KEPT", 1)
            writer.enroll("ben", [_mirrored(tmp_path)], actor="desk", purpose=PURPOSE)  # its subject and template
            assert gallery_location.count("index_changes") == 1
            (pruned,) = gallery_location.sql("SELECT value FROM meta WHERE key = 'index_changes_pruned'")[0]
            assert searcher.context.index is not None and searcher.context.index.changes < int(pruned)
            reloads = []
            original = SQLTransaction.template_refs

            def counted(self: SQLTransaction) -> object:
                reloads.append(1)
                return original(self)

            monkeypatch.setattr(SQLTransaction, "template_refs", counted)
            found = searcher.identify(_mirrored(tmp_path), actor="door", purpose=PURPOSE)
            assert found.faces[0].candidates[0].subject == "ben" and reloads == [1]


def test_the_change_log_records_changes_made_outside_faceledger_and_holds_ids_only(
    gallery_location: GalleryLocation, tmp_path: Path
) -> None:
    location, key = gallery_location.location, gallery_location.key_file
    with Gallery.init(location, actor="admin", key_file=key) as g:
        _consent(g, "ana")
        g.enroll("ana", [EXAMPLE_IMAGE], actor="desk", purpose=PURPOSE)
        (template,) = gallery_location.sql("SELECT id FROM templates")[0]
        before = gallery_location.sql("SELECT subject_id, template_id FROM index_changes ORDER BY seq")
        # the consent row, the subject row, the template: ids only
        assert before == [("ana", None), ("ana", None), ("ana", template)]
        columns = gallery_location.sql("SELECT * FROM index_changes")[0]
        assert len(columns) == 3  # seq, subject_id, template_id
        gallery_location.sql("DELETE FROM templates WHERE id = ?", template)  # outside faceledger
        assert gallery_location.sql("SELECT subject_id, template_id FROM index_changes ORDER BY seq DESC")[0] == (
            "ana",
            template,
        )


def test_consents_given_and_withdrawn_elsewhere_change_who_is_searched_without_reading_every_consent(
    gallery_location: GalleryLocation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process withdraws one of ana's two consents (she stays enrolled) and gives ben a second one: the
    next searches for that purpose find ben and not ana, having looked at those two subjects only. (ben's photo is
    ana's mirrored: one search finds every subject searchable for its purpose.)"""
    policy = parse_policy(
        EXAMPLE_POLICY.replace('purposes = ["access-control"]', 'purposes = ["access-control", "visits"]')
    )
    location, key = gallery_location.location, gallery_location.key_file
    ana = EXAMPLE_IMAGE
    with Gallery.init(location, actor="admin", key_file=key, policy=policy) as writer:
        _consent(writer, "ana")
        visits = writer.add_consent("ana", actor="desk", collected_by="desk", legal_basis="consent", purpose="visits",
                                    evidence_ref="form")  # fmt: skip
        _consent(writer, "ben")
        writer.enroll("ana", [ana], actor="desk", purpose=PURPOSE)
        writer.enroll("ben", [_mirrored(tmp_path)], actor="desk", purpose=PURPOSE)
        with Gallery.open(location, key_file=key) as searcher:

            def found(image: Path, purpose: str) -> set[str]:
                result = searcher.identify(image, actor="door", purpose=purpose)
                return {c.subject for f in result.faces for c in f.candidates}

            assert found(ana, "visits") == {"ana"} and found(ana, PURPOSE) == {"ana", "ben"}
            writer.withdraw_consent("ana", actor="desk", purpose="consent administration", consent_id=visits.id)
            writer.add_consent("ben", actor="desk", collected_by="desk", legal_basis="consent", purpose="visits",
                               evidence_ref="form")  # fmt: skip

            _refuse_whole_gallery_reads(monkeypatch)
            assert found(ana, "visits") == {"ben"}
            assert found(ana, PURPOSE) == {"ana", "ben"}  # ana still enrolled, still searched for access control
            allowed = {k: v.subjects for k, v in searcher.context.allowed.items()}
            monkeypatch.undo()
        with Gallery.open(location, key_file=key) as fresh:
            for purpose in (PURPOSE, "visits"):
                fresh.identify(ana, actor="door", purpose=purpose)
            assert allowed == {k: v.subjects for k, v in fresh.context.allowed.items()}
            assert allowed[("staff", "visits")] == {"ben"}
