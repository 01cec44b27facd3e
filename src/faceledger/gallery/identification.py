"""Search: identification (1:N against the gallery), verification against one subject, verification of two images.

Only subjects whose consent is valid now for the gallery and purpose are searched. A face that matches no one
leaves no trace: the audit entry records the SHA-256 of the image bytes and counts, never pixels or templates.
Every match is a candidate awaiting human review (:mod:`faceledger.gallery.review`), with the face that raised it
kept, encrypted, for the reviewer (:mod:`faceledger.gallery.evidence`).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from faceledger.errors import FaceledgerError, ImageError, NoFaceError
from faceledger.gallery.context import GalleryContext, ImageInput, accountable, probe_image
from faceledger.gallery.evidence import store_evidence
from faceledger.gallery.index_sync import allowed_subjects, search_mask, sync_index
from faceledger.gallery.results import (
    CandidateMatch,
    FaceResult,
    Identification,
    ImageVerification,
    SubjectVerification,
)
from faceledger.gallery.thresholds import threshold_for_search
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import ConsentError, PurposeError, UnknownSubjectError
from faceledger.ledger.policy import LoadedPolicy
from faceledger.ledger.records import CandidateRecord
from faceledger.ledger.timeutil import to_text

if TYPE_CHECKING:
    from faceledger.engine import Embeddings, Engine
    from faceledger.engine.executors import Executor
    from faceledger.vision.detection import Detections


def _search_policy(ctx: GalleryContext, gallery: str | None) -> tuple[LoadedPolicy, str]:
    with ctx.store.read() as tx:
        policy = ctx.refresh_policy(tx)
    return policy, ctx.gallery_name(policy, gallery)


def identify(
    ctx: GalleryContext,
    image: ImageInput,
    *,
    actor: str,
    purpose: str,
    gallery: str | None = None,
    top_k: int | None = None,
) -> Identification:
    """Search every face of ``image`` against the gallery (exact); each hit at or above the policy threshold is
    recorded as a candidate, with the face's evidence (its aligned and context crops, other faces blurred). A
    purpose the policy does not allow is refused, and the refusal is on the ledger."""
    actor, purpose = accountable(actor, purpose)
    gallery_name, k = _allowed_search(ctx, actor, purpose, gallery, top_k)
    probe = ctx.probe(image)
    found = ProbeFaces.of(probe.source, probe.sha256, ctx.engine.embed(probe.array))
    return _search(ctx, found, lambda: probe.array, actor=actor, purpose=purpose, gallery_name=gallery_name, k=k)


def identify_batch(
    ctx: GalleryContext,
    images: Iterable[ImageInput],
    *,
    actor: str,
    purpose: str,
    gallery: str | None = None,
    top_k: int | None = None,
    executor: Executor | None = None,
) -> Iterator[tuple[str, Identification | FaceledgerError]]:
    """:func:`identify` for many images, yielding ``(source, result or error)`` in input order.

    The purpose is checked once, before any image is read. Decoding, detection and embedding run on ``executor``
    (threads here by default, or Ray workers, which take paths and return only boxes and embeddings); each search,
    its audit entry and its candidates are written here, one transaction per image. The evidence of a face that
    raised candidates is cut here: from the image a thread of this process decoded, or from the image a Ray worker
    searched, read again and checked against the SHA-256 searched.
    """
    from faceledger.engine.executors import LocalExecutor, require_path  # here: importing the engine loads onnxruntime

    actor, purpose = accountable(actor, purpose)
    gallery_name, k = _allowed_search(ctx, actor, purpose, gallery, top_k)
    run = executor or LocalExecutor(ctx.engine)
    sources: deque[ImageInput] = deque()

    def jobs() -> Iterator[ImageInput]:
        for image in images:
            require_path(run, image)
            sources.append(image)
            yield image

    try:
        for found in run.map(embed_probe if run.remote else _embed_probe_keeping_pixels, jobs()):
            image = sources.popleft()
            name = os.fspath(image) if isinstance(image, str | os.PathLike) else "<image>"
            if isinstance(found, BaseException):
                yield name, found if isinstance(found, FaceledgerError) else ImageError(name, f"{found}")
                continue
            pixels = functools.partial(_pixels, ctx, image, found)
            try:
                result = _search(ctx, found, pixels, actor=actor, purpose=purpose, gallery_name=gallery_name, k=k)
            except FaceledgerError as exc:  # this image failed (read again for its evidence, say); the rest go on
                yield name, exc
                continue
            yield name, result
    finally:
        if executor is None:
            run.close()


@dataclass(frozen=True)
class ProbeFaces:
    """What a search needs of an image: its name, the SHA-256 of its bytes, and its faces' boxes and embeddings.
    A Ray worker returns it without pixels; a thread of this process keeps the decoded image for the evidence."""

    source: str
    sha256: str
    detections: Detections
    vectors: np.ndarray
    pixels: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, source: str, sha256: str, embeddings: Embeddings, pixels: np.ndarray | None = None) -> ProbeFaces:
        return cls(source, sha256, embeddings.detections, np.asarray(embeddings.vectors, np.float32), pixels)


def embed_probe(engine: Engine, image: ImageInput) -> ProbeFaces:
    """The faces of one image of a batch search, as a Ray worker runs it: no pixels in what it returns."""
    probe = probe_image(engine, image)
    return ProbeFaces.of(probe.source, probe.sha256, engine.embed(probe.array))


def _embed_probe_keeping_pixels(engine: Engine, image: ImageInput) -> ProbeFaces:
    probe = probe_image(engine, image)
    return ProbeFaces.of(probe.source, probe.sha256, engine.embed(probe.array), probe.array)


def _pixels(ctx: GalleryContext, image: ImageInput, found: ProbeFaces) -> np.ndarray:
    """The image ``found`` was searched in: kept by a thread of this process, else read again by path (a Ray
    worker's) and checked to be the same bytes."""
    if found.pixels is not None:
        return found.pixels
    probe = ctx.probe(image)
    if probe.sha256 != found.sha256:
        raise ImageError(probe.source, "the file changed after it was searched; its evidence cannot be cut")
    return probe.array


def _allowed_search(
    ctx: GalleryContext, actor: str, purpose: str, gallery: str | None, top_k: int | None
) -> tuple[str, int]:
    """The gallery and top-k of a search the policy allows, before any image is read; a refused purpose is on
    the ledger."""
    policy, gallery_name = _search_policy(ctx, gallery)
    try:
        ctx.check_purpose(policy, gallery_name, purpose)
    except PurposeError as exc:
        with ctx.write() as tx:
            ctx.record(
                tx,
                AuditAction.IDENTIFY_REFUSED,
                actor=actor,
                purpose=purpose,
                gallery=gallery_name,
                policy_hash=policy.hash,
                details={"reason": str(exc)},
            )
        raise
    ctx.threshold()  # a policy the calibration cannot hold is refused before any image is read
    return gallery_name, top_k or policy.policy.identification.top_k


def _search(
    ctx: GalleryContext,
    found: ProbeFaces,
    pixels: Callable[[], np.ndarray],
    *,
    actor: str,
    purpose: str,
    gallery_name: str,
    k: int,
) -> Identification:
    """The search of one image's faces, its audit entry and its candidates, in one transaction; ``pixels`` gives
    the image only when a face raised candidates and its evidence must be cut."""
    from faceledger.engine.evidence import face_crops  # here: importing the engine loads onnxruntime

    probe, dets, vectors = found, found.detections, found.vectors
    search_id = uuid.uuid4().hex
    now_dt = ctx.now()
    now = to_text(now_dt)
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        index = sync_index(ctx, tx)
        allowed = allowed_subjects(ctx, tx, gallery_name, purpose, now_dt)
        basis = threshold_for_search(ctx, tx, gallery_name, index, allowed)  # at the gallery's size now
        threshold = basis.threshold
        hits = (
            index.search(vectors, k, allowed=search_mask(index, allowed), min_similarity=threshold)
            if len(vectors)
            else []
        )
        planned = [[(h, uuid.uuid4().hex) for h in face_hits] for face_hits in hits]
        entry = ctx.record(
            tx,
            AuditAction.IDENTIFY,
            actor=actor,
            purpose=purpose,
            at=now,
            gallery=gallery_name,
            probe_sha256=probe.sha256,
            subjects=tuple(h.subject for face in planned for h, _ in face),
            threshold=threshold,
            policy_hash=policy.hash,
            details={
                "search_id": search_id,
                "model": ctx.model_id(),
                "target_fmr": policy.policy.identification.target_fmr,
                "threshold_basis": basis.details(),
                "top_k": k,
                "faces": len(vectors),
                "matched_faces": sum(1 for face in planned if face),
                "candidates": [
                    {"face": i, "subject": h.subject, "similarity": round(h.similarity, 4), "id": cid}
                    for i, face in enumerate(planned)
                    for h, cid in face
                ],
            },
        )
        faces: list[FaceResult] = []
        for i, face in enumerate(planned):
            box = [float(v) for v in dets.boxes[i]]
            matches = []
            for rank, (hit, cid) in enumerate(face, start=1):
                tx.add_candidate(
                    CandidateRecord(
                        id=cid,
                        search_id=search_id,
                        audit_seq=entry.seq,
                        gallery=gallery_name,
                        purpose=purpose,
                        actor=actor,
                        probe_sha256=probe.sha256,
                        face_index=i,
                        box=[round(v, 1) for v in box],
                        subject_id=hit.subject,
                        similarity=hit.similarity,
                        rank=rank,
                        threshold=threshold,
                        policy_hash=policy.hash,
                        status="pending",
                        created_at=now,
                        decided_at=None,
                    )
                )
                matches.append(CandidateMatch(hit.subject, hit.similarity, rank, cid))
            if face:  # only a face that raised candidates is kept, for their reviewers
                crops = face_crops(pixels(), dets.boxes, dets.landmarks, i)
                store_evidence(ctx, tx, [cid for _, cid in face], crops, quality=float(dets.quality[i]), now=now)
            faces.append(FaceResult(i, box, float(dets.quality[i]), list(dets.quality_reasons[i]), matches))
    return Identification(
        search_id=search_id,
        source=probe.source,
        probe_sha256=probe.sha256,
        gallery=gallery_name,
        purpose=purpose,
        threshold=threshold,
        target_fmr=policy.policy.identification.target_fmr,
        policy_hash=policy.hash,
        audit_seq=entry.seq,
        faces=faces,
        threshold_basis=basis,
    )


def verify_subject(
    ctx: GalleryContext,
    subject: str,
    image: ImageInput,
    *,
    actor: str,
    purpose: str,
    gallery: str | None = None,
) -> SubjectVerification:
    """1:1: is the largest face of ``image`` the enrolled ``subject`` (best over its templates, at the policy
    threshold)? The subject needs a consent valid now for this gallery and purpose."""
    actor, purpose = accountable(actor, purpose)
    policy, gallery_name = _search_policy(ctx, gallery)
    ctx.check_purpose(policy, gallery_name, purpose)
    threshold = ctx.threshold()
    probe = ctx.probe(image)
    embeddings = ctx.engine.embed(probe.array)
    if len(embeddings.vectors) == 0:
        raise NoFaceError(f"{probe.source}: no face found")
    vector = np.asarray(embeddings.vectors[:1], np.float32)
    now = ctx.now()
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        record = tx.get_subject(subject)
        if record is None or record.gallery != gallery_name:
            raise UnknownSubjectError(f"no subject {subject!r} enrolled in gallery {gallery_name!r}")
        if subject not in allowed_subjects(ctx, tx, gallery_name, purpose, now).subjects:
            raise ConsentError(
                f"subject {subject!r} has no consent valid now for gallery {gallery_name!r} and purpose "
                f"{purpose!r}: verification refused"
            )
        hits = sync_index(ctx, tx).search(vector, 1, allowed={subject})[0]
        similarity = hits[0].similarity if hits else float("-inf")
        match = similarity >= threshold
        entry = ctx.record(
            tx,
            AuditAction.VERIFY,
            actor=actor,
            purpose=purpose,
            at=now,
            gallery=gallery_name,
            probe_sha256=probe.sha256,
            subjects=(subject,),
            threshold=threshold,
            policy_hash=policy.hash,
            details={
                "similarity": round(similarity, 4),
                "match": match,
                "faces": len(embeddings.vectors),
                "model": ctx.model_id(),
            },
        )
    return SubjectVerification(
        subject=subject,
        source=probe.source,
        probe_sha256=probe.sha256,
        similarity=similarity,
        match=match,
        threshold=threshold,
        target_fmr=policy.policy.identification.target_fmr,
        box=[float(v) for v in embeddings.detections.boxes[0]],
        audit_seq=entry.seq,
    )


def verify_images(
    ctx: GalleryContext,
    image_a: ImageInput,
    image_b: ImageInput,
    *,
    actor: str,
    purpose: str,
    gallery: str | None = None,
) -> ImageVerification:
    """1:1 without a gallery search: are the largest faces of two images the same person (at the policy
    threshold)? Recorded on the ledger with both images' SHA-256; nothing else is kept."""
    actor, purpose = accountable(actor, purpose)
    policy, gallery_name = _search_policy(ctx, gallery)
    ctx.check_purpose(policy, gallery_name, purpose)
    threshold = ctx.threshold()
    probes = [ctx.probe(image) for image in (image_a, image_b)]
    vectors = []
    for probe in probes:
        found = ctx.engine.embed(probe.array)
        if len(found.vectors) == 0:
            raise NoFaceError(f"{probe.source}: no face found")
        vectors.append(found.vectors[0])
    result = ctx.engine.compare(vectors[0], vectors[1], threshold=threshold)
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        entry = ctx.record(
            tx,
            AuditAction.VERIFY,
            actor=actor,
            purpose=purpose,
            gallery=gallery_name,
            probe_sha256=probes[0].sha256,
            threshold=threshold,
            policy_hash=policy.hash,
            details={
                "kind": "images",
                "other_probe_sha256": probes[1].sha256,
                "similarity": round(result.similarity, 4),
                "match": result.match,
                "model": ctx.model_id(),
            },
        )
    return ImageVerification(
        sources=(probes[0].source, probes[1].source),
        probe_sha256=(probes[0].sha256, probes[1].sha256),
        similarity=result.similarity,
        match=result.match,
        threshold=threshold,
        fmr=result.fmr,
        target_fmr=policy.policy.identification.target_fmr,
        audit_seq=entry.seq,
        fmr_interval=None if result.estimate is None else (result.estimate.low, result.estimate.high),
        fmr_state=None if result.estimate is None else result.estimate.state,  # type: ignore[arg-type]
    )
