"""Enrollment: templates made from a subject's photos, only under a valid consent, encrypted with the subject's key.

Each image must hold exactly one face fit for enrollment (or the caller picks one); images already enrolled are
skipped, so an interrupted batch resumes; a face that matches another subject is enrolled with a warning. The
aligned crop of each enrolled face is kept beside its template as a reference face for reviewers (JPEG, encrypted
with the subject's key, deleted with the template).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from faceledger.errors import FaceledgerError, ImageError
from faceledger.gallery.consent import check_one_gallery, valid_consent
from faceledger.gallery.context import GalleryContext, ImageInput, accountable, check_subject_id
from faceledger.gallery.index_sync import index_applied, sync_index
from faceledger.gallery.keys import encrypt_reference_face, encrypt_template, ensure_data_key
from faceledger.gallery.results import DuplicateWarning, EnrollmentResult, ImageOutcome, SubjectInfo
from faceledger.gallery.thresholds import check_gallery_size
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import LedgerError
from faceledger.ledger.records import ReferenceFace, Subject, TemplateRecord
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import to_text
from faceledger.vision.alignment import align_faces

Prepared = tuple[int, ImageOutcome, np.ndarray, bytes]  # position in the request, outcome so far, embedding, face JPEG


def enroll(
    ctx: GalleryContext,
    subject: str,
    images: Sequence[ImageInput] | ImageInput,
    *,
    actor: str,
    purpose: str,
    gallery: str | None = None,
    consent_id: str | None = None,
    face_index: int | None = None,
) -> EnrollmentResult:
    """Enroll ``subject`` from one or more images, in one transaction (see the module)."""
    subject = check_subject_id(subject)
    actor, purpose = accountable(actor, purpose)
    image_list = list(images) if isinstance(images, list | tuple) else [images]
    if not image_list:
        raise ValueError("enroll needs at least one image")
    # Refuse early, before any model runs, then check again in the write transaction.
    with ctx.store.read() as tx:
        policy = ctx.refresh_policy(tx)
        gallery_name = ctx.gallery_name(policy, gallery)
        ctx.check_purpose(policy, gallery_name, purpose)
        valid_consent(tx, subject, gallery_name, purpose, consent_id, ctx.now())
        done = {t.source_sha256 for t in tx.templates_of(subject)}
    threshold = ctx.threshold()
    model = ctx.model_id()

    outcomes: list[ImageOutcome] = []
    prepared: list[Prepared] = []
    for image in image_list:
        outcome, vector, face = prepare_image(ctx, image, done, face_index)
        outcomes.append(outcome)
        if vector is not None and face is not None:
            prepared.append((len(outcomes) - 1, outcome, vector, face))

    now = to_text(ctx.now())
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        consent = valid_consent(tx, subject, gallery_name, purpose, consent_id, ctx.now())
        check_one_gallery(tx, subject, gallery_name)
        created = tx.get_subject(subject) is None
        accepted = _new_images(tx, subject, prepared, outcomes)
        duplicates = _possible_duplicates(ctx, tx, subject, gallery_name, accepted, threshold)
        key_id = None
        if accepted:
            if created:
                tx.add_subject(Subject(subject, gallery_name, now, actor))
            key_id = _store_templates(ctx, tx, subject, accepted, outcomes, model, now)
            check_gallery_size(ctx, tx, gallery_name)  # refused (rolled back) when it outgrows the calibration
        created = created and bool(accepted)
        entry = ctx.record(
            tx,
            AuditAction.ENROLL,
            actor=actor,
            purpose=purpose,
            at=now,
            gallery=gallery_name,
            subjects=(subject, *(d.other_subject for d in duplicates)),
            threshold=threshold,
            policy_hash=policy.hash,
            details={
                "subject": subject,
                "consent_id": consent.id,
                "model": model,
                "created": created,
                "key_id": key_id,
                "templates_added": sum(o.status == "enrolled" for o in outcomes),
                "skipped": sum(o.status == "skipped" for o in outcomes),
                "rejected": sum(o.status == "rejected" for o in outcomes),
                "images": [
                    {"sha256": o.sha256, "status": o.status, "face": o.face_index, "reason": o.reason} for o in outcomes
                ],
                "possible_duplicates": [
                    {"subject": d.other_subject, "similarity": round(d.similarity, 4)} for d in duplicates
                ],
            },
        )
        total = len(tx.templates_of(subject))
    return EnrollmentResult(
        subject=subject,
        gallery=gallery_name,
        consent_id=consent.id,
        outcomes=outcomes,
        duplicates=duplicates,
        created=created,
        templates_total=total,
        audit_seq=entry.seq,
    )


def _new_images(
    tx: Transaction, subject: str, prepared: list[Prepared], outcomes: list[ImageOutcome]
) -> list[Prepared]:
    """The prepared images not enrolled yet; others are marked skipped (this subject) or rejected (someone else)."""
    already = {t.source_sha256 for t in tx.templates_of(subject)}
    accepted = []
    for position, outcome, vector, face in prepared:
        assert outcome.sha256 is not None
        owners = {s for s, _ in tx.sources_of(outcome.sha256)}
        if subject in owners or outcome.sha256 in already:
            outcomes[position] = replace(outcome, status="skipped", reason="already enrolled")
        elif owners:
            reason = f"this image is already enrolled for subject {sorted(owners)[0]!r}"
            outcomes[position] = replace(outcome, status="rejected", reason=reason)
        else:
            already.add(outcome.sha256)
            accepted.append((position, outcome, vector, face))
    return accepted


def _possible_duplicates(
    ctx: GalleryContext, tx: Transaction, subject: str, gallery: str, accepted: list[Prepared], threshold: float
) -> list[DuplicateWarning]:
    """Other subjects of the gallery that the new faces match at or above the threshold."""
    if not accepted:
        return []
    index = sync_index(ctx, tx)
    others = {s.id for s in tx.list_subjects(gallery)} - {subject}
    hits = index.search(np.stack([v for _, _, v, _ in accepted]), 3, allowed=others, min_similarity=threshold)
    return [
        DuplicateWarning(outcome.source, h.subject, h.similarity)
        for (_, outcome, _, _), face_hits in zip(accepted, hits, strict=True)
        for h in face_hits
    ]


def _store_templates(
    ctx: GalleryContext,
    tx: Transaction,
    subject: str,
    accepted: list[Prepared],
    outcomes: list[ImageOutcome],
    model: str,
    now: str,
) -> str:
    """Encrypt and store the accepted templates and their reference faces (creating the subject's data key if
    needed); returns the key id."""
    key_id, key = ensure_data_key(ctx, tx, subject, now)
    added: list[tuple[str, str, np.ndarray]] = []
    for position, outcome, vector, face in accepted:
        template_id = uuid.uuid4().hex
        nonce, ciphertext = encrypt_template(key, vector, subject=subject, template_id=template_id)
        tx.add_template(
            TemplateRecord(
                id=template_id,
                subject_id=subject,
                key_id=key_id,
                model=model,
                dim=int(vector.shape[0]),
                nonce=nonce,
                ciphertext=ciphertext,
                source_sha256=str(outcome.sha256),
                face_index=int(outcome.face_index or 0),
                quality=float(outcome.quality or 0.0),
                created_at=now,
            )
        )
        nonce, image = encrypt_reference_face(key, face, subject=subject, template_id=template_id)
        tx.add_reference_face(ReferenceFace(template_id, subject, nonce, image, now))
        outcomes[position] = replace(outcome, status="enrolled", template_id=template_id)
        added.append((template_id, subject, np.asarray(vector, np.float32)))
    index_applied(ctx, tx.bump_data_version(), add=added)
    return key_id


def prepare_image(
    ctx: GalleryContext, image: ImageInput, done: set[str], face_index: int | None
) -> tuple[ImageOutcome, np.ndarray | None, bytes | None]:
    """Decode, detect, check and embed one enrollment image (no transaction: models run outside it); with the
    embedding, the JPEG of the aligned face it was made from."""
    source = os.fspath(image) if isinstance(image, str | os.PathLike) else "<image>"
    try:
        probe = ctx.probe(image)
    except ImageError as exc:
        return ImageOutcome(source, "rejected", reason=exc.reason), None, None
    except OSError as exc:
        return ImageOutcome(source, "rejected", reason=f"cannot be read: {exc.strerror or exc}"), None, None
    source, digest = probe.source, probe.sha256
    if digest in done:
        return ImageOutcome(source, "skipped", reason="already enrolled", sha256=digest), None, None
    dets = ctx.engine.detect(probe.array)
    if len(dets) == 0:
        return ImageOutcome(source, "rejected", reason="no face found", sha256=digest), None, None
    if face_index is not None:
        if not 0 <= face_index < len(dets):
            reason = f"face index {face_index} out of range: {len(dets)} face(s) (0 is largest)"
            return ImageOutcome(source, "rejected", reason=reason, sha256=digest), None, None
        chosen = face_index
    else:
        usable = [i for i in range(len(dets)) if not dets.quality_reasons[i]]
        if len(usable) > 1:
            reason = f"{len(usable)} usable faces; choose one with a face index (0 is largest)"
            return ImageOutcome(source, "rejected", reason=reason, sha256=digest), None, None
        chosen = usable[0] if usable else 0
    face = dets[chosen]
    outcome = ImageOutcome(
        source,
        "rejected",
        sha256=digest,
        face_index=chosen,
        box=[float(v) for v in face.box],
        quality=float(face.quality),
        quality_reasons=list(face.reasons),
    )
    if face.reasons:
        return replace(outcome, reason="face unfit for enrollment: " + ", ".join(face.reasons)), None, None
    from faceledger.engine.evidence import encode_jpeg  # here: importing the engine loads onnxruntime

    vector = ctx.engine.embed_faces(probe.array, dets[chosen : chosen + 1])[0]
    face_jpeg = encode_jpeg(align_faces(probe.array, dets.landmarks[chosen : chosen + 1])[0])
    return replace(outcome, status="enrolled"), np.asarray(vector, np.float32), face_jpeg


def enroll_batch(
    ctx: GalleryContext,
    items: Iterable[tuple[str, Sequence[ImageInput]]],
    *,
    actor: str,
    purpose: str,
    gallery: str | None = None,
) -> Iterator[tuple[str, EnrollmentResult | FaceledgerError]]:
    """Enroll many subjects, one transaction each; yields ``(subject, result or error)`` as it goes.

    An interruption (even ``kill -9``) leaves every subject either fully enrolled or untouched; running the same
    batch again skips what was done and continues.
    """
    for subject, images in items:
        try:
            yield subject, enroll(ctx, subject, images, actor=actor, purpose=purpose, gallery=gallery)
        except (FaceledgerError, ValueError) as exc:
            yield subject, exc if isinstance(exc, FaceledgerError) else LedgerError(str(exc))


def subjects(ctx: GalleryContext, *, actor: str, purpose: str, gallery: str | None = None) -> list[SubjectInfo]:
    """Enrolled subjects with their template count and consent state; the look-up is an audit entry. The purpose
    must be an administrative one or of the gallery's (any gallery's without ``gallery``)."""
    actor, purpose = accountable(actor, purpose)
    now = ctx.now()
    with ctx.write() as tx:
        ctx.check_administrative_purpose(ctx.refresh_policy(tx), purpose, "list subjects", gallery=gallery)
        counts = tx.template_counts()
        out = []
        for subject in tx.list_subjects(gallery):
            states = [c.state(now) for c in tx.list_consents(subject.id, subject.gallery)]
            state: Any = "valid" if "valid" in states else (states[-1] if states else "none")
            out.append(SubjectInfo(subject.id, subject.gallery, counts.get(subject.id, 0), subject.created_at, state))
        ctx.record(
            tx,
            AuditAction.SUBJECTS_LIST,
            actor=actor,
            purpose=purpose,
            at=now,
            gallery=gallery,
            details={"subjects": len(out)},
        )
    return out
