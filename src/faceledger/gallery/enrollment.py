"""Enrollment: templates made from a subject's photos, only under a valid consent, encrypted with the subject's key.

Each image must hold exactly one face fit for enrollment (or the caller picks one); images already enrolled are
skipped, so an interrupted batch resumes; a face that matches another subject is enrolled with a warning. The
aligned crop of each enrolled face is kept beside its template as a reference face for reviewers (JPEG, encrypted
with the subject's key, deleted with the template).
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from faceledger.errors import FaceledgerError, ImageError
from faceledger.gallery.consent import check_one_gallery, valid_consent
from faceledger.gallery.context import GalleryContext, ImageInput, accountable, check_subject_id, probe_image
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

if TYPE_CHECKING:
    from faceledger.engine import Engine
    from faceledger.engine.executors import Executor

Prepared = tuple[int, ImageOutcome, np.ndarray, bytes]  # position in the request, outcome so far, embedding, face JPEG
PreparedImage = tuple[ImageOutcome, np.ndarray | None, bytes | None]  # an image's outcome, embedding and face JPEG

DUPLICATES_SHOWN = 3
"""At most this many other subjects are named per enrolled face as possible duplicates."""


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
    gallery_name, done = _check(ctx, subject, purpose, gallery, consent_id)
    prepared = [prepare_image(ctx.engine, image, done, face_index) for image in image_list]
    return _commit(ctx, subject, gallery_name, prepared, actor=actor, purpose=purpose, consent_id=consent_id)


def _check(
    ctx: GalleryContext, subject: str, purpose: str, gallery: str | None, consent_id: str | None
) -> tuple[str, frozenset[str]]:
    """Refuse early, before any model runs (the write transaction checks again): the gallery's name and the
    digests of the images already enrolled for ``subject``."""
    with ctx.store.read() as tx:
        policy = ctx.refresh_policy(tx)
        gallery_name = ctx.gallery_name(policy, gallery)
        ctx.check_purpose(policy, gallery_name, purpose)
        valid_consent(tx, subject, gallery_name, purpose, consent_id, ctx.now())
        done = frozenset(t.source_sha256 for t in tx.templates_of(subject))
    ctx.threshold()  # a policy the calibration cannot hold is refused before any model runs
    return gallery_name, done


def _commit(
    ctx: GalleryContext,
    subject: str,
    gallery_name: str,
    images: Sequence[PreparedImage],
    *,
    actor: str,
    purpose: str,
    consent_id: str | None,
) -> EnrollmentResult:
    """The write transaction of one subject's enrollment: the prepared images' templates and the audit entry."""
    threshold = ctx.threshold()
    model = ctx.model_id()
    outcomes = [outcome for outcome, _, _ in images]
    prepared: list[Prepared] = [
        (i, outcome, vector, face) for i, (outcome, vector, face) in enumerate(images) if vector is not None and face
    ]
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
            key_id, version = _store_templates(ctx, tx, subject, accepted, outcomes, model, now)
            # refused (rolled back) when it outgrows the calibration
            check_gallery_size(ctx, tx, gallery_name, version=version, added=(int(created), len(accepted)))
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
    """Other subjects of the gallery that the new faces match at or above the threshold (the best
    :data:`DUPLICATES_SHOWN` of each face).

    The whole index is searched and the hits kept that are of the gallery and not the subject itself, asking for
    more hits until each face has its share or no more reach the threshold: exact, and without a list of the
    gallery's subjects, which at national scale would cost more than the search."""
    if not accepted:
        return []
    index = sync_index(ctx, tx)
    vectors = np.stack([v for _, _, v, _ in accepted])
    galleries: dict[str, str | None] = {}

    def other_of_gallery(candidate: str) -> bool:
        if candidate not in galleries:
            found = tx.get_subject(candidate)
            galleries[candidate] = None if found is None else found.gallery
        return candidate != subject and galleries[candidate] == gallery

    wanted = DUPLICATES_SHOWN + 1  # the subject's own earlier templates may take a place
    while True:
        hits = index.search(vectors, wanted, min_similarity=threshold)
        kept = [[h for h in face_hits if other_of_gallery(h.subject)][:DUPLICATES_SHOWN] for face_hits in hits]
        if all(len(k) == DUPLICATES_SHOWN or len(h) < wanted for k, h in zip(kept, hits, strict=True)):
            break
        wanted *= 4
    return [
        DuplicateWarning(outcome.source, h.subject, h.similarity)
        for (_, outcome, _, _), face_hits in zip(accepted, kept, strict=True)
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
) -> tuple[str, int]:
    """Encrypt and store the accepted templates and their reference faces (creating the subject's data key if
    needed); returns the key id and the data version the transaction set."""
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
    version = tx.bump_data_version()
    index_applied(ctx, version, add=added)
    return key_id, version


def prepare_image(engine: Engine, image: ImageInput, done: frozenset[str], face_index: int | None) -> PreparedImage:
    """Decode, detect, check and embed one enrollment image (no transaction: models run outside it, in this
    process or a batch worker); with the embedding, the JPEG of the aligned face it was made from."""
    source = os.fspath(image) if isinstance(image, str | os.PathLike) else "<image>"
    try:
        probe = probe_image(engine, image)
    except ImageError as exc:
        return ImageOutcome(source, "rejected", reason=exc.reason), None, None
    except OSError as exc:
        return ImageOutcome(source, "rejected", reason=f"cannot be read: {exc.strerror or exc}"), None, None
    source, digest = probe.source, probe.sha256
    if digest in done:
        return ImageOutcome(source, "skipped", reason="already enrolled", sha256=digest), None, None
    dets = engine.detect(probe.array)
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

    vector = engine.embed_faces(probe.array, dets[chosen : chosen + 1])[0]
    face_jpeg = encode_jpeg(align_faces(probe.array, dets.landmarks[chosen : chosen + 1])[0])
    return replace(outcome, status="enrolled"), np.asarray(vector, np.float32), face_jpeg


def prepare_job(engine: Engine, job: tuple[ImageInput, frozenset[str]]) -> PreparedImage:
    """One image of a batch, as an executor runs it: :func:`prepare_image` with the subject's enrolled digests."""
    image, done = job
    return prepare_image(engine, image, done, None)


@dataclass(frozen=True)
class _Planned:
    """A subject of a batch, checked before its images go to the executor: ``images`` results to wait for, or the
    refusal to report in its place."""

    subject: str
    gallery: str = ""
    images: int = 0
    refused: FaceledgerError | None = None


def enroll_batch(
    ctx: GalleryContext,
    items: Iterable[tuple[str, Sequence[ImageInput]]],
    *,
    actor: str,
    purpose: str,
    gallery: str | None = None,
    executor: Executor | None = None,
) -> Iterator[tuple[str, EnrollmentResult | FaceledgerError]]:
    """Enroll many subjects, one transaction each; yields ``(subject, result or error)`` in input order as it goes.

    The image work (decode, detect, embed) runs on ``executor``: threads of this process by default, or Ray workers
    (:class:`~faceledger.engine.executors.RayExecutor`), which take image paths only and return embeddings, never
    storing them; this process checks consent, encrypts and commits. An interruption (even ``kill -9``) leaves every
    subject either fully enrolled or untouched; running the same batch again skips what was done and continues.
    """
    from faceledger.engine.executors import LocalExecutor, require_path  # here: importing the engine loads onnxruntime

    actor, purpose = accountable(actor, purpose)
    run = executor or LocalExecutor(ctx.engine)
    plans: deque[_Planned] = deque()

    def jobs() -> Iterator[tuple[ImageInput, frozenset[str]]]:
        for subject, images in items:  # read as the executor asks for work: a long manifest is never all in memory
            image_list = list(images)
            try:
                subject = check_subject_id(subject)
                if not image_list:
                    raise ValueError("enroll needs at least one image")
                for image in image_list:
                    require_path(run, image)
                gallery_name, done = _check(ctx, subject, purpose, gallery, None)
            except (FaceledgerError, ValueError) as exc:
                plans.append(_Planned(subject, refused=_as_error(exc)))
                continue
            plans.append(_Planned(subject, gallery_name, len(image_list)))
            yield from ((image, done) for image in image_list)

    def refusals() -> Iterator[tuple[str, FaceledgerError]]:
        while plans and plans[0].refused is not None:
            plan = plans.popleft()
            yield plan.subject, plan.refused  # type: ignore[misc]

    current: _Planned | None = None
    results: list[PreparedImage | BaseException] = []
    try:
        for result in run.map(prepare_job, jobs()):
            if current is None:
                yield from refusals()
                current, results = plans.popleft(), []
            results.append(result)
            if len(results) == current.images:
                yield current.subject, _commit_planned(ctx, current, results, actor=actor, purpose=purpose)
                current = None
        yield from refusals()
    finally:
        if executor is None:
            run.close()


def _commit_planned(
    ctx: GalleryContext, plan: _Planned, results: list[PreparedImage | BaseException], *, actor: str, purpose: str
) -> EnrollmentResult | FaceledgerError:
    failed = next((r for r in results if isinstance(r, BaseException)), None)
    if failed is not None:  # a worker failed, not the image: nothing of this subject is committed; a rerun resumes
        return _as_error(failed)
    prepared = [r for r in results if not isinstance(r, BaseException)]
    try:
        return _commit(ctx, plan.subject, plan.gallery, prepared, actor=actor, purpose=purpose, consent_id=None)
    except (FaceledgerError, ValueError) as exc:
        return _as_error(exc)


def _as_error(exc: BaseException) -> FaceledgerError:
    return exc if isinstance(exc, FaceledgerError) else LedgerError(str(exc))


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
