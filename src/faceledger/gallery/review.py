"""Review: a candidate becomes a match only when the policy's number of distinct reviewers confirm it; one
rejection rejects it. The review queue shows each pending candidate with its confirmations so far.

Each reviewer decides a candidate once. When the policy requires two or more reviewers (the EU AI Act, art. 14(5),
asks that two people separately verify and confirm a remote identification), the person who ran the search is not
one of them: the check is made by others than the one who wanted the answer.
A rejection destroys the candidate's evidence in the same transaction, and the space is reclaimed after it.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from faceledger.gallery.context import GalleryContext, accountable, search_candidate
from faceledger.gallery.results import CandidateStamp, PendingReview, ReviewOutcome
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import ReviewError
from faceledger.ledger.records import CandidateRecord, CandidateStatus, ReviewRecord
from faceledger.ledger.timeutil import to_text


def pending_reviews(
    ctx: GalleryContext, *, actor: str, purpose: str, gallery: str | None = None
) -> list[PendingReview]:
    """Candidates awaiting review (oldest first) with their confirmations and the number the policy requires,
    from one query; the look-up is an audit entry. The purpose must be an administrative one or of the gallery's (any
    gallery's without ``gallery``)."""
    actor, purpose = accountable(actor, purpose)
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        ctx.check_administrative_purpose(policy, purpose, "list the review queue", gallery=gallery)
        required = policy.policy.identification.reviewers_required
        records = [PendingReview(c, n, required) for c, n in tx.pending_candidates(gallery)]
        ctx.record(
            tx,
            AuditAction.REVIEW_LIST,
            actor=actor,
            purpose=purpose,
            gallery=gallery,
            details={"pending": len(records)},
        )
    return records


def reviews_of(
    ctx: GalleryContext, candidate_id: str, *, actor: str | None = None, purpose: str | None = None
) -> list[ReviewRecord]:
    """The reviews recorded for a candidate (who reviewed, when, why). With ``actor`` and ``purpose`` (a read shown to
    a person must pass them) the read is a ``records.read`` entry; without, an internal read."""
    return ctx.read_records(
        "reviews", lambda tx: tx.reviews_of(candidate_id), actor=actor, purpose=purpose,
        filters={"candidate_id": candidate_id},
    )  # fmt: skip


def review(
    ctx: GalleryContext,
    candidate_id: str,
    *,
    reviewer: str,
    decision: str,
    reason: str,
    purpose: str | None = None,
) -> ReviewOutcome:
    """Confirm or reject a candidate. ``purpose`` defaults to the search's purpose and may not differ from it.

    A reviewer who already decided this candidate, or (with two or more reviewers required) the actor who ran the
    search, is refused with a :class:`ReviewError`. A rejection destroys the evidence and reclaims its space."""
    if decision not in ("confirm", "reject"):
        raise ReviewError(f"decision must be 'confirm' or 'reject', not {decision!r}")
    if not reason or not reason.strip():
        raise ReviewError("a review needs a reason (what the reviewer checked)")
    reviewer, _ = accountable(reviewer, purpose or "review")
    now = to_text(ctx.now())
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        candidate = search_candidate(tx, candidate_id, purpose, "reviewed")
        if candidate.status != "pending":
            raise ReviewError(f"candidate {candidate_id} was already {candidate.status} at {candidate.decided_at}")
        required = policy.policy.identification.reviewers_required
        _check_reviewer(candidate, tx.reviews_of(candidate_id), reviewer, required)
        record = ReviewRecord(uuid.uuid4().hex, candidate_id, reviewer, decision, reason.strip(), now)  # type: ignore[arg-type]
        tx.add_review(record)
        confirmations = len({r.reviewer for r in tx.reviews_of(candidate_id) if r.decision == "confirm"})
        status: CandidateStatus = "pending"
        if decision == "reject":
            status = "rejected"
        elif confirmations >= required:
            status = "confirmed"
        if status != "pending":
            tx.set_candidate_status(candidate_id, status, now)
        destroyed = status == "rejected" and tx.delete_evidence(candidate_id) > 0
        if destroyed:
            ctx.owe_reclaim(tx, now)
        entry = ctx.record(
            tx,
            AuditAction.REVIEW_CONFIRM if decision == "confirm" else AuditAction.REVIEW_REJECT,
            actor=reviewer,
            purpose=candidate.purpose,
            at=now,
            gallery=candidate.gallery,
            probe_sha256=candidate.probe_sha256,
            subjects=(candidate.subject_id,),
            threshold=candidate.threshold,
            policy_hash=policy.hash,
            details={
                "candidate_id": candidate_id,
                "search_id": candidate.search_id,
                "similarity": round(candidate.similarity, 4),
                "reason": record.reason,
                "confirmations": confirmations,
                "required": required,
                "status_after": status,
                "evidence_destroyed": destroyed,
            },
        )
        updated = tx.get_candidate(candidate_id)
        assert updated is not None
    outcome = ReviewOutcome(updated, record, confirmations, required, entry.seq, evidence_destroyed=destroyed)
    if not destroyed:
        return outcome
    # no byte of the destroyed evidence may stay in the database file or its WAL; the rejection is committed
    # whatever happens here, so a database kept busy by another process leaves reclaimed False and the debt
    # recorded for the next reclaim (GalleryContext.reclaim)
    return replace(outcome, reclaimed=ctx.reclaim())


def _check_reviewer(candidate: CandidateRecord, reviews: list[ReviewRecord], reviewer: str, required: int) -> None:
    """Refuse a reviewer who decided this candidate already, or who ran its search when several must review."""
    for earlier in reviews:
        if earlier.reviewer == reviewer:
            done = "confirmed" if earlier.decision == "confirm" else "rejected"
            raise ReviewError(
                f"reviewer {reviewer!r} already {done} candidate {candidate.id} at {earlier.created_at}; "
                "each reviewer decides once"
            )
    if required >= 2 and reviewer == candidate.actor:
        raise ReviewError(
            f"{reviewer!r} ran the search that raised candidate {candidate.id}, so may not review it: the policy "
            f"requires {required} reviewers, and they must be people other than the one who ran the search"
        )


def candidates(
    ctx: GalleryContext,
    *,
    status: CandidateStatus | None = None,
    subject: str | None = None,
    gallery: str | None = None,
    actor: str | None = None,
    purpose: str | None = None,
) -> list[CandidateRecord]:
    """Candidates by status, subject or gallery (subject ids, similarities, who searched). With ``actor`` and
    ``purpose`` (a read shown to a person must pass them) the read is a ``records.read`` entry; without, an internal
    read (for people-facing listings prefer :func:`pending_reviews`)."""
    return ctx.read_records(
        "candidates", lambda tx: tx.list_candidates(status=status, gallery=gallery, subject_id=subject),
        actor=actor, purpose=purpose, filters={"status": status, "subject": subject, "gallery": gallery},
        gallery=gallery,
    )  # fmt: skip


def pending_stamps(ctx: GalleryContext, gallery: str | None = None) -> list[CandidateStamp]:
    """The id and creation time of each pending candidate, oldest first: no subject, no score, nothing about a
    person, so no audit entry (the web UI's queue polls it to learn that a candidate is new)."""
    with ctx.store.read() as tx:
        pending = tx.list_candidates(status="pending", gallery=gallery)
    return sorted((CandidateStamp(c.id, c.created_at) for c in pending), key=lambda c: (c.created_at, c.id))
