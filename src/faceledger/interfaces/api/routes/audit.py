"""Ledger routes: verify the chain, its head, the entries, the export, the transparency report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import Response

from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.errors import ApiError
from faceledger.interfaces.api.routes.common import (
    PurposeHeader,
    PurposeQuery,
    op,
    v1,
)
from faceledger.interfaces.api.security import Caller, purpose_of, service
from faceledger.ledger.audit import AuditHead, VerifyResult

AUDIT_PURPOSE = "audit"
"""The purpose of reading the entries when the request names none."""


# ------------------------------------------------------------------------------------------------ audit
@v1.get(
    "/audit/verify",
    response_model=VerifyResult,
    tags=["audit"],
    **op("admin", "auditor", summary="Verify the audit chain"),
)
async def audit_verify(
    request: Request,
    caller: Caller,
    expected_seq: Annotated[int | None, Query(ge=1, le=2**62, description="Anchored head: seq")] = None,
    expected_hash: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$", description="Anchored head: hash")] = None,
) -> VerifyResult:
    """Recompute the chain; ``ok`` false names the first entry altered, removed, inserted or reordered.
    Give the head you anchored elsewhere (``expected_seq`` and ``expected_hash``) to detect truncation."""
    state = service(request)
    if (expected_seq is None) != (expected_hash is None):
        raise ApiError(422, "validation_error", "give both expected_seq and expected_hash, or neither")
    expected = None if expected_seq is None else AuditHead(expected_seq, str(expected_hash))
    return await state.run(state.gallery.audit_verify, expected)


@v1.get("/audit/head", response_model=AuditHead, tags=["audit"], **op("admin", "auditor", summary="Audit head"))
async def audit_head(request: Request, caller: Caller) -> AuditHead:
    """Sequence number and hash of the last entry: publish it elsewhere to anchor the chain."""
    state = service(request)
    head = await state.run(state.gallery.audit_head)
    if head is None:
        raise ApiError(404, "not_found", "the audit ledger is empty")
    return head


@v1.get(
    "/audit/entries", response_model=s.AuditEntries, tags=["audit"], **op("admin", "auditor", summary="Audit entries")
)
async def audit_entries(
    request: Request,
    caller: Caller,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=64, description="Only this action, e.g. identify")] = None,
    purpose: PurposeQuery = None,
    x_purpose: PurposeHeader = None,
) -> dict[str, Any]:
    """A page of entries after ``after_seq`` (oldest first). Entries name subjects and actors, so the read is
    itself a ``records.read`` entry (appended after the page), for the purpose given or ``audit``."""
    state = service(request)
    why = purpose_of(x_purpose, purpose) if (x_purpose or purpose) else AUDIT_PURPOSE
    entries = await state.run(
        state.gallery.audit_entries, after_seq=after_seq, limit=limit, action=action, actor=caller.owner, purpose=why
    )
    return {
        "entries": [e.to_dict() for e in entries],
        "next_after_seq": entries[-1].seq if len(entries) == limit else None,
    }


@v1.get(
    "/audit/export", response_model=s.AuditExport, tags=["audit"], **op("admin", "auditor", summary="Export the ledger")
)
async def audit_export(
    request: Request, caller: Caller, purpose: PurposeQuery = None, x_purpose: PurposeHeader = None
) -> dict[str, Any]:
    """Every audit entry and the head (the export itself is recorded first)."""
    state = service(request)
    why = purpose_of(x_purpose, purpose)

    def work() -> dict[str, Any]:
        entries = state.gallery.audit_export(actor=caller.owner, purpose=why)
        head = entries[-1] if entries else None
        return {
            "entries": [e.to_dict() for e in entries],
            "head": None if head is None else AuditHead(head.seq, head.hash).to_dict(),
        }

    return await state.run(work)


@v1.get(
    "/report",
    response_model=s.ReportOut,
    tags=["audit"],
    **op(
        "admin",
        "auditor",
        summary="Transparency report",
        extra_responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}}}},
    ),
)
async def report(
    request: Request,
    caller: Caller,
    period: Literal["day", "week", "month", "year"] = "month",
    since: Annotated[str | None, Query(max_length=40, description="ISO 8601 date or time")] = None,
    until: Annotated[str | None, Query(max_length=40, description="ISO 8601 date or time")] = None,
    purpose: PurposeQuery = None,
    x_purpose: PurposeHeader = None,
) -> Any:
    """Counts per period, gallery and purpose from the audit ledger (the report itself is recorded).
    ``Accept: text/markdown`` gives the Markdown document instead of JSON."""
    state = service(request)
    why = purpose_of(x_purpose, purpose)
    result = await state.run(
        state.gallery.report, actor=caller.owner, purpose=why, period=period, since=since, until=until
    )
    if "text/markdown" in request.headers.get("accept", ""):
        return Response(result.to_markdown(), media_type="text/markdown; charset=utf-8")
    out: dict[str, Any] = result.to_dict()
    return out
