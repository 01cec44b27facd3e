"""Evidence: what a reviewer looks at to decide a candidate, kept only as long as it is needed, and every look on
the ledger.

* When a search raises candidates, the face that matched is kept for each of them (:func:`store_evidence`): its
  aligned crop (what the recognizer saw) and a context crop around it with every other face blurred, both JPEG,
  encrypted with a key of the candidate's own that the master key wraps. A face that matched no one leaves nothing.
* At enrollment the aligned crop of each enrolled image is kept as the subject's reference face, encrypted with
  the subject's data key (erasure shreds it with the templates).
* Evidence is destroyed when its candidate is rejected (in the review's transaction), when its subject is erased,
  and ``retention.evidence_days`` after a confirmation (:mod:`faceledger.gallery.retention`).
* :func:`evidence_of` and :func:`reference_faces` show them to a person: each call is one ``evidence.view`` entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from faceledger.errors import ModelError
from faceledger.gallery.context import GalleryContext, accountable, search_candidate
from faceledger.gallery.keys import decrypt_reference_face, open_evidence, seal_evidence
from faceledger.gallery.results import CandidateEvidence, EvidenceState, ReferenceImage
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import UnknownSubjectError
from faceledger.ledger.records import CandidateRecord
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import to_text

if TYPE_CHECKING:
    from faceledger.engine.evidence import FaceCrops


def store_evidence(
    ctx: GalleryContext,
    tx: Transaction,
    candidate_ids: Sequence[str],
    crops: FaceCrops,
    *,
    quality: float,
    now: str,
) -> None:
    """Keep ``crops`` (the face that raised ``candidate_ids``) for each of these candidates, each under its own key,
    in ``tx`` (after the candidates were added)."""
    if not candidate_ids:
        return
    face, context = crops.jpeg()
    for candidate_id in candidate_ids:
        tx.add_evidence(seal_evidence(ctx, tx, candidate_id, face, context, quality=quality, now=now))


def evidence_of(ctx: GalleryContext, candidate_id: str, *, actor: str, purpose: str | None = None) -> CandidateEvidence:
    """A candidate, its reviews, the face that raised it (aligned and in context), the subject's reference faces,
    the false-match rate of its similarity and its confirmations; one ``evidence.view`` entry. ``purpose``
    defaults to the search's purpose and may not differ from it."""
    actor, _ = accountable(actor, purpose or "review")
    now_dt = ctx.now()
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        candidate = search_candidate(tx, candidate_id, purpose, "viewed")
        reviews = tx.reviews_of(candidate_id)
        record = tx.get_evidence(candidate_id)
        face = context = None
        if record is not None:
            face, context = open_evidence(ctx, tx, record)
            state: EvidenceState = "kept"
            note = None
        else:
            state, note = _absent(candidate, policy.policy.retention.evidence_days, now_dt)
        references = _references(ctx, tx, candidate.subject_id)
        confirmations = len({r.reviewer for r in reviews if r.decision == "confirm"})
        required = policy.policy.identification.reviewers_required
        entry = ctx.record(
            tx,
            AuditAction.EVIDENCE_VIEW,
            actor=actor,
            purpose=candidate.purpose,
            at=now_dt,
            gallery=candidate.gallery,
            subjects=(candidate.subject_id,),
            probe_sha256=candidate.probe_sha256,
            policy_hash=policy.hash,
            details={
                "kind": "candidate",
                "candidate_id": candidate_id,
                "search_id": candidate.search_id,
                "evidence": state,
                "references": len(references),
            },
        )
    return CandidateEvidence(
        candidate=candidate,
        reviews=reviews,
        state=state,
        missing=note,
        face=face,
        context=context,
        quality=None if record is None else record.quality,
        references=references,
        fmr=_fmr(ctx, candidate.similarity),
        confirmations=confirmations,
        required=required,
        audit_seq=entry.seq,
    )


def reference_faces(ctx: GalleryContext, subject: str, *, actor: str, purpose: str) -> list[ReferenceImage]:
    """A subject's reference faces (for a subject's page); one ``evidence.view`` entry of kind ``reference``."""
    actor, purpose = accountable(actor, purpose)
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        record = tx.get_subject(subject)
        if record is None:
            raise UnknownSubjectError(f"no subject {subject!r}: never enrolled, or erased")
        references = _references(ctx, tx, subject)
        ctx.record(
            tx,
            AuditAction.EVIDENCE_VIEW,
            actor=actor,
            purpose=purpose,
            gallery=record.gallery,
            subjects=(subject,),
            policy_hash=policy.hash,
            details={"kind": "reference", "references": len(references)},
        )
    return references


def _references(ctx: GalleryContext, tx: Transaction, subject: str) -> list[ReferenceImage]:
    stored = tx.reference_faces_of(subject)
    if not stored:
        return []
    quality = {t.id: t.quality for t in tx.templates_of(subject)}
    return [
        ReferenceImage(f.template_id, decrypt_reference_face(ctx, tx, f), quality.get(f.template_id, 0.0), f.created_at)
        for f in stored
    ]


def _absent(candidate: CandidateRecord, evidence_days: int, now: datetime) -> tuple[EvidenceState, str]:
    """Why a candidate has no evidence."""
    if candidate.status == "rejected":
        return "destroyed", f"destroyed when the candidate was rejected at {candidate.decided_at}"
    decided = candidate.decided_at
    if candidate.status == "confirmed" and decided is not None and decided < to_text(now - timedelta(evidence_days)):
        return "destroyed", f"destroyed by retention: kept {evidence_days} days after the confirmation at {decided}"
    return "not_kept", "no evidence was kept for this candidate (it was raised before evidence was kept)"


def _fmr(ctx: GalleryContext, similarity: float) -> float | None:
    """The false-match rate of ``similarity`` in the recognizer's calibration (None without one)."""
    try:
        return float(ctx.engine.fmr_at(similarity))
    except ModelError:
        return None
