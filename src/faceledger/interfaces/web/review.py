"""The review queue: each pending candidate with the face that was found next to the subject's enrolled faces,
what the score means (the false-match rate behind it), where and when the face was seen, and how many of the
confirmations the policy requires exist. New candidates appear without a reload (htmx polls for them).

Every card shown is an ``evidence.view`` audit entry; looking for new candidates is not: it reads only the ids and
creation times of the pending ones (no subject, no score, no face).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from faceledger.interfaces.web.render import one_in, page
from faceledger.interfaces.web.session import REVIEW_ROLES, UiError, Viewer, viewer

router = APIRouter()

QUEUE_PURPOSE = "human review"
SHOWN = 12
"""Cards shown with their faces at once; the rest of the queue is listed without faces."""


def fmr_text(who: Viewer, similarity: float, fmr: float | None) -> str:
    """What the score means, never claiming more than the calibration measured (its estimate: the measured rate
    with its interval, or above its highest impostor score only an upper bound)."""
    calibration = who.gallery.engine.calibration
    if calibration is None or fmr is None:
        return "unknown: the recognizer in use is not calibrated"
    estimate = calibration.estimate(similarity)
    pairs = calibration.impostor_pairs
    if estimate.state == "below_measurable":
        return (
            f"below what the calibration can measure: none of its {pairs:,} pairs of different people scored this "
            f"high (under 1 in {round(1 / estimate.high):,} at 95 % confidence)"
        )
    return (
        f"{one_in(estimate.fmr)} pairs of different people score this high (FMR {estimate.fmr:.1e}, 95 % interval "
        f"{estimate.low:.1e} to {estimate.high:.1e}, measured on {pairs:,} pairs)"
    )


def _card(who: Viewer, evidence: Any) -> dict[str, Any]:
    """What a candidate's card shows, with the rules that apply to this reviewer."""
    c = evidence.candidate
    mine = next((r for r in evidence.reviews if r.reviewer == who.actor), None)
    own_search = c.actor == who.actor and evidence.required >= 2
    return {
        "ev": evidence,
        "c": c,
        "fmr": fmr_text(who, c.similarity, evidence.fmr),
        "mine": mine,
        "own_search": own_search,
        "can_review": c.status == "pending" and mine is None and not own_search,
    }


async def _cards(who: Viewer, ids: list[str]) -> list[dict[str, Any]]:
    cards = []
    for cid in ids:
        evidence = await who.call(who.gallery.evidence, cid, actor=who.actor)
        cards.append(_card(who, evidence))
    return cards


@router.get("/ui/review")
async def queue(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Pending candidates, newest first."""
    who.require(REVIEW_ROLES, "open the review queue")
    pending = await who.call(who.gallery.pending_reviews, actor=who.actor, purpose=QUEUE_PURPOSE)
    pending.sort(key=lambda p: (p.candidate.created_at, p.candidate.id), reverse=True)
    cards = await _cards(who, [p.id for p in pending[:SHOWN]])
    newest = pending[0].candidate.created_at if pending else ""
    return page(
        request, "review.html", who, title="Review", cards=cards, rest=pending[SHOWN:], newest=newest,
        total=len(pending), flash=request.query_params.get("done", ""),
    )  # fmt: skip


@router.get("/ui/review/new")
async def new_candidates(request: Request, who: Annotated[Viewer, Depends(viewer)], after: str = "") -> Response:
    """Cards of candidates raised after ``after`` (204 when there are none), and the poller's new cursor."""
    who.require(REVIEW_ROLES, "open the review queue")
    pending = await who.call(who.gallery.pending_stamps)  # ids and times only: every 5 s, not on the ledger
    fresh = sorted((c for c in pending if c.created_at > after), key=lambda c: (c.created_at, c.id), reverse=True)
    if not fresh:
        return Response(status_code=204)
    cards = await _cards(who, [c.id for c in fresh[:SHOWN]])
    return page(request, "_new_cards.html", who, cards=cards, newest=fresh[0].created_at, total=len(pending))


@router.get("/ui/review/{candidate_id}")
async def candidate(request: Request, candidate_id: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """One candidate's card, pending or decided."""
    who.require(REVIEW_ROLES, "review candidates")
    (card,) = await _cards(who, [candidate_id])
    return page(request, "candidate.html", who, title=f"Candidate {candidate_id[:8]}", card=card)


@router.post("/ui/review/{candidate_id}")
async def decide(request: Request, candidate_id: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Confirm or reject a candidate, with a reason; the card comes back showing where the candidate stands."""
    who.require(REVIEW_ROLES, "review candidates")
    form = await who.check_csrf()
    decision = str(form.get("decision", ""))
    reason = str(form.get("reason", "")).strip()
    if decision not in ("confirm", "reject"):
        raise UiError(400, "Choose Confirm or Reject.")
    if not reason:
        error = "Say what you checked before deciding (the reason is recorded with your decision)."
        if request.headers.get("hx-request"):
            (card,) = await _cards(who, [candidate_id])
            return page(request, "_card.html", who, card=card, error=error, status=400)
        raise UiError(400, error)
    outcome = await who.call(who.gallery.review, candidate_id, reviewer=who.actor, decision=decision, reason=reason)
    done = {
        "confirmed": "Confirmed: the match counts now.",
        "rejected": "Rejected: the candidate's evidence was destroyed.",
        "pending": f"Your confirmation is recorded: {outcome.confirmations} of {outcome.required}; "
        "another reviewer must confirm.",
    }[outcome.status]
    if request.headers.get("hx-request"):
        return page(request, "_decided.html", who, outcome=outcome, message=done)
    return RedirectResponse(f"/ui/review?done={quote(done)}", status_code=303)
