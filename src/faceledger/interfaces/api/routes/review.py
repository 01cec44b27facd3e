"""Review routes: the queue with confirmations so far, confirm and reject by the key's owner."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from faceledger.gallery.results import (
    CandidateEvidence,
    PendingReview,
    ReviewOutcome,
)
from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.routes.common import (
    CandidatePath,
    GalleryQuery,
    PurposeHeader,
    PurposeQuery,
    op,
    v1,
)
from faceledger.interfaces.api.security import Caller, purpose_of, service


# ------------------------------------------------------------------------------------------------ review
@v1.get("/reviews", response_model=s.ReviewList, tags=["review"], **op("admin", "reviewer", summary="Pending reviews"))
async def list_reviews(
    request: Request,
    caller: Caller,
    gallery: GalleryQuery = None,
    purpose: PurposeQuery = None,
    x_purpose: PurposeHeader = None,
) -> dict[str, Any]:
    """Candidates awaiting human review, oldest first, with their confirmations so far."""
    state = service(request)
    why = purpose_of(x_purpose, purpose)
    g = state.gallery

    def work() -> list[PendingReview]:
        return g.pending_reviews(actor=caller.owner, purpose=why, gallery=gallery)

    return {"pending": await state.run(work)}


@v1.get(
    "/reviews/{candidate_id}/evidence",
    response_model=CandidateEvidence,
    tags=["review"],
    **op("admin", "reviewer", summary="A candidate's evidence"),
)
async def evidence(
    request: Request,
    candidate_id: CandidatePath,
    caller: Caller,
    purpose: PurposeQuery = None,
    x_purpose: PurposeHeader = None,
) -> CandidateEvidence:
    """What a reviewer compares before deciding: the face that raised the candidate (aligned crop and a context
    crop with every other face blurred, JPEG in base64), the subject's enrolled faces, the similarity's false-match
    rate and the confirmations so far. Each call is an ``evidence.view`` audit entry; the purpose, when given, must
    be the search's."""
    state = service(request)
    why = purpose_of(x_purpose, purpose) if (x_purpose or purpose) else None
    return await state.run(state.gallery.evidence, candidate_id, actor=caller.owner, purpose=why)


async def _review(
    request: Request, caller: s.Principal, candidate_id: str, decision: str, body: s.ReviewIn, x_purpose: str | None
) -> ReviewOutcome:
    state = service(request)
    purpose = purpose_of(x_purpose, body.purpose)
    outcome = await state.run(
        state.gallery.review,
        candidate_id,
        reviewer=caller.owner,
        decision=decision,
        reason=body.reason,
        purpose=purpose,
    )
    state.metrics.count("reviews", decision=decision)
    return outcome


@v1.post(
    "/reviews/{candidate_id}/confirm",
    response_model=ReviewOutcome,
    tags=["review"],
    **op("admin", "reviewer", summary="Confirm a candidate"),
)
async def confirm(
    request: Request, candidate_id: CandidatePath, body: s.ReviewIn, caller: Caller, x_purpose: PurposeHeader = None
) -> ReviewOutcome:
    """Confirm the candidate is the same person. It becomes a match once the policy's number of distinct
    reviewers (key owners) confirmed it. The purpose must be the search's."""
    return await _review(request, caller, candidate_id, "confirm", body, x_purpose)


@v1.post(
    "/reviews/{candidate_id}/reject",
    response_model=ReviewOutcome,
    tags=["review"],
    **op("admin", "reviewer", summary="Reject a candidate"),
)
async def reject(
    request: Request, candidate_id: CandidatePath, body: s.ReviewIn, caller: Caller, x_purpose: PurposeHeader = None
) -> ReviewOutcome:
    """Reject the candidate (one rejection is final). The purpose must be the search's."""
    return await _review(request, caller, candidate_id, "reject", body, x_purpose)
