"""Erasure and retention routes: erase a subject (with its receipt), apply the retention now."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from pydantic import Field

from faceledger.gallery.results import (
    ErasureReceipt,
    PurgeReport,
)
from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.routes.common import (
    PurposeHeader,
    PurposeQuery,
    SubjectPath,
    op,
    v1,
)
from faceledger.interfaces.api.security import Caller, purpose_of, service


@v1.delete(
    "/subjects/{subject}",
    response_model=ErasureReceipt,
    tags=["subjects"],
    **op("admin", "enroller", summary="Erase a subject"),
)
async def erase(
    request: Request,
    subject: SubjectPath,
    caller: Caller,
    reason: Annotated[str, Query(min_length=1, max_length=500)] = "erasure request",
    purpose: PurposeQuery = None,
    x_purpose: PurposeHeader = None,
) -> ErasureReceipt:
    """Erase a subject: templates, data key, candidates and reviews destroyed, consents ended, database space
    reclaimed. The receipt names the audit entry that records it."""
    state = service(request)
    why = purpose_of(x_purpose, purpose)
    receipt = await state.run(state.gallery.erase, subject, actor=caller.owner, purpose=why, reason=reason)
    state.metrics.count("erasures", trigger="request")
    return receipt


# ------------------------------------------------------------------------------------------------ retention
class PurgeIn(s._In):
    """Optional body of a retention run."""

    purpose: str | None = Field(default=None, max_length=200)


@v1.post("/purge", response_model=PurgeReport, tags=["retention"], **op("admin", summary="Apply retention"))
async def purge(
    request: Request, caller: Caller, body: PurgeIn | None = None, x_purpose: PurposeHeader = None
) -> PurgeReport:
    """Apply the policy's retention now (expired consents, old templates, candidates, audit entries). The
    service also runs it on a schedule."""
    state = service(request)
    why = purpose_of(x_purpose, body.purpose if body else None)
    return await state.run(state.gallery.purge, actor=caller.owner, purpose=why)
