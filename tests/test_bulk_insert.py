"""``tx.add_subjects``: new subjects, their data keys and templates written in bulk (a few statements for all), with
the same contract on SQLite and PostgreSQL: all of them or none, sealed as if written one by one, searchable."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from conftest import GalleryLocation
from faceledger.gallery import Gallery
from faceledger.gallery.context import GalleryContext
from faceledger.gallery.index_sync import sync_index
from faceledger.gallery.keys import decrypt_template, encrypt_template, new_data_key
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import DuplicateError
from faceledger.ledger.records import Subject, SubjectKey, TemplateRecord
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import to_text

PURPOSE = "access-control"


def _batch(
    ctx: GalleryContext, tx: Transaction, names: list[str], vectors: np.ndarray, per_subject: int = 1
) -> tuple[list[Subject], list[SubjectKey], list[TemplateRecord]]:
    """Subjects ``names`` with a new key each and ``per_subject`` templates each (rows of ``vectors`` in turn)."""
    now, model = to_text(ctx.now()), ctx.model_id()
    gallery = ctx.policy.policy.galleries[0].name
    subjects, keys, templates, row = [], [], [], 0
    for name in names:
        subjects.append(Subject(name, gallery, now, "test"))
        record, key = new_data_key(ctx, tx, name, now)
        keys.append(record)
        for face in range(per_subject):
            template_id = uuid.uuid4().hex
            nonce, ciphertext = encrypt_template(key, vectors[row], subject=name, template_id=template_id)
            templates.append(
                TemplateRecord(
                    template_id,
                    name,
                    record.id,
                    model,
                    vectors.shape[1],
                    nonce,
                    ciphertext,
                    f"{row:064x}",
                    face,
                    1.0,
                    now,
                )
            )
            row += 1
    return subjects, keys, templates


def _record(ctx: GalleryContext, tx: Transaction, names: list[str]) -> None:
    """The enrollment entry the subjects' seals are bound to (it must name them)."""
    gallery = ctx.policy.policy.galleries[0].name
    ctx.record(tx, AuditAction.ENROLL, actor="test", purpose=PURPOSE, gallery=gallery, details={"subjects": names})
    tx.bump_data_version()


def _unit(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def gallery(gallery_location: GalleryLocation) -> Gallery:
    g = Gallery.init(gallery_location.location, actor="admin", key_file=gallery_location.key_file)
    yield g
    g.close()


def test_bulk_subjects_are_stored_sealed_decryptable_and_searchable(
    gallery: Gallery, gallery_location: GalleryLocation
) -> None:
    ctx = gallery.context
    vectors = _unit(8)
    names = ["ana", "ben", "cy", "dee"]
    with ctx.write() as tx:
        subjects, keys, templates = _batch(ctx, tx, names, vectors, per_subject=2)
        tx.add_subjects(subjects, keys, templates)
        _record(ctx, tx, names)
    assert gallery_location.count("subjects") == 4
    assert gallery_location.count("subject_keys") == 4
    assert gallery_location.count("templates") == 8
    ctx.data_keys.clear()  # read the keys back from the store, unwrapped by the master key
    with ctx.store.read() as tx:
        stored = {t.id: t for t in tx.get_templates([t.id for t in templates])}
        for i, template in enumerate(templates):
            assert np.array_equal(decrypt_template(ctx, tx, stored[template.id]), vectors[i])
        assert tx.subject_problems() == {}  # every subject's seal matches its key and its two templates
        index = sync_index(ctx, tx)
    assert len(index) == 8
    hits = index.search(vectors, 1)
    assert [h[0].subject for h in hits] == [n for n in names for _ in range(2)]
    assert all(h[0].similarity == pytest.approx(1.0, abs=1e-5) for h in hits)
    result = gallery.audit_verify()
    assert result.ok and result.records_checked, result


def test_a_subject_that_exists_leaves_none_of_the_batch_and_the_transaction_usable(
    gallery: Gallery, gallery_location: GalleryLocation
) -> None:
    ctx = gallery.context
    vectors = _unit(4, seed=1)
    with ctx.write() as tx:
        first = _batch(ctx, tx, ["ana"], vectors[:1])
        tx.add_subjects(*first)
        _record(ctx, tx, ["ana"])
    with ctx.write() as tx:
        clash = _batch(ctx, tx, ["ben", "ana", "cy"], vectors[1:])
        with pytest.raises(DuplicateError, match="none of 3 subjects"):
            tx.add_subjects(*clash)
        subjects, keys, templates = clash
        retry = [s for s in subjects if s.id != "ana"], [k for k in keys if k.subject_id != "ana"]
        tx.add_subjects(*retry, [t for t in templates if t.subject_id != "ana"])  # same transaction, goes on
        _record(ctx, tx, ["ben", "cy"])
    assert sorted(r[0] for r in gallery_location.sql("SELECT id FROM subjects")) == ["ana", "ben", "cy"]
    assert gallery_location.count("templates") == 3
    assert gallery_location.count("subject_keys") == 3
    ana = gallery_location.sql("SELECT id FROM subject_keys WHERE subject_id = 'ana'")
    assert [r[0] for r in ana] == [first[1][0].id]  # ana kept her key, not the one of the refused batch
    result = gallery.audit_verify()
    assert result.ok and result.records_checked, result


def test_a_template_added_later_in_the_same_transaction_is_sealed_too(gallery: Gallery) -> None:
    ctx = gallery.context
    vectors = _unit(2, seed=2)
    with ctx.write() as tx:
        subjects, keys, templates = _batch(ctx, tx, ["ana"], vectors, per_subject=2)
        tx.add_subjects(subjects, keys, templates[:1])
        tx.add_template(templates[1])  # the subject's seal must cover both templates
        _record(ctx, tx, ["ana"])
    with ctx.store.read() as tx:
        assert tx.subject_problems() == {}
        assert len(tx.templates_of("ana")) == 2
    assert gallery.audit_verify().ok


@pytest.mark.parametrize("mistake", ["stray template", "stray key", "subject twice"])
def test_rows_of_subjects_not_in_the_batch_are_refused(gallery: Gallery, gallery_location: GalleryLocation,
                                                       mistake: str) -> None:  # fmt: skip
    ctx = gallery.context
    with ctx.write() as tx:
        subjects, keys, templates = _batch(ctx, tx, ["ana", "ben"], _unit(2, seed=3))
        if mistake == "subject twice":
            subjects = [subjects[0], subjects[0]]
            keys = keys[:1]
            templates = templates[:1]
        else:
            subjects = subjects[:1]
            keys = keys if mistake == "stray key" else keys[:1]
            templates = templates if mistake == "stray template" else templates[:1]
        with pytest.raises(ValueError, match="add_subjects"):
            tx.add_subjects(subjects, keys, templates)
        _record(ctx, tx, [])
    assert gallery_location.count("subjects") == 0
    assert gallery_location.count("templates") == 0
