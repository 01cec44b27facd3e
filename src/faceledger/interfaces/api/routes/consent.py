"""Consent routes: record, list, withdraw (withdrawal erases a subject left without consent)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from faceledger.gallery.results import (
    ConsentWithdrawal,
)
from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.errors import ApiError
from faceledger.interfaces.api.routes.common import (
    GalleryQuery,
    PurposeHeader,
    PurposeQuery,
    op,
    v1,
)
from faceledger.interfaces.api.security import Caller, purpose_of, service
from faceledger.ledger.records import ConsentWithState
from faceledger.ledger.timeutil import utcnow


# ------------------------------------------------------------------------------------------------ consent
@v1.post(
    "/consents",
    response_model=ConsentWithState,
    status_code=201,
    tags=["consent"],
    **op("admin", "enroller", summary="Record a consent"),
)
async def add_consent(
    request: Request, body: s.ConsentIn, caller: Caller, x_purpose: PurposeHeader = None
) -> ConsentWithState:
    """Record a subject's consent to be enrolled in a gallery and searched for one purpose (the request's
    purpose). Enrollment is refused without one."""
    state = service(request)
    purpose = purpose_of(x_purpose, body.purpose)
    try:
        record = await state.run(
            state.gallery.add_consent,
            body.subject,
            actor=caller.owner,
            collected_by=body.collected_by,
            legal_basis=body.legal_basis,
            purpose=purpose,
            evidence_ref=body.evidence_ref,
            given_at=body.given_at,
            expires_at=body.expires_at,
            gallery=body.gallery,
            category=body.category,
        )
    except ApiError as exc:
        if exc.code == "consent_required":  # here it means the record itself is invalid
            raise ApiError(422, "invalid_consent", exc.message) from None
        raise
    return ConsentWithState.at(record, utcnow())


@v1.get("/consents", response_model=s.ConsentList, tags=["consent"], **op("admin", "enroller", summary="List consents"))
async def list_consents(
    request: Request,
    caller: Caller,
    subject: Annotated[str | None, Query(pattern=s.SUBJECT_PATTERN)] = None,
    gallery: GalleryQuery = None,
    purpose: PurposeQuery = None,
    x_purpose: PurposeHeader = None,
) -> dict[str, Any]:
    """Consent records, of one subject or all (the look-up is recorded)."""
    state = service(request)
    why = purpose_of(x_purpose, purpose)
    records = await state.run(state.gallery.consents, subject, actor=caller.owner, purpose=why, gallery=gallery)
    now = utcnow()
    return {"consents": [ConsentWithState.at(r, now) for r in records]}


@v1.post(
    "/consents/withdraw",
    response_model=ConsentWithdrawal,
    tags=["consent"],
    **op("admin", "enroller", summary="Withdraw consent"),
)
async def withdraw_consent(
    request: Request, body: s.WithdrawIn, caller: Caller, x_purpose: PurposeHeader = None
) -> ConsentWithdrawal:
    """Withdraw a subject's consent (all active ones, or ``consent_id``). A subject left without a valid
    consent is erased in the same transaction."""
    state = service(request)
    purpose = purpose_of(x_purpose, body.purpose)
    result = await state.run(
        state.gallery.withdraw_consent,
        body.subject,
        actor=caller.owner,
        purpose=purpose,
        consent_id=body.consent_id,
        reason=body.reason,
    )
    if result.erasure is not None:
        state.metrics.count("erasures", trigger="withdrawal")
    return result
