"""The routes of the REST service, under ``/v1``, plus ``/healthz``, ``/readyz`` and ``/metrics``.

Handlers are thin: parse, check the caller and the purpose, call the gallery (or the engine) in a worker
thread, answer. A route that answers a gallery result returns the result itself with its class as the response
model, so the body is that result's ``to_dict()`` (what ``--json`` prints) and the schema is derived from the same
class. The gallery writes each audit entry in the same transaction as its effect, with the key's owner as the
actor.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import Field

from faceledger.errors import ImageError, NoFaceError
from faceledger.gallery.results import (
    ConsentWithdrawal,
    EnrollmentResult,
    ErasureReceipt,
    Identification,
    PendingReview,
    PurgeReport,
    ReviewOutcome,
    SubjectVerification,
)
from faceledger.interfaces.api import schemas as s
from faceledger.interfaces.api.errors import ApiError
from faceledger.interfaces.api.metrics import CONTENT_TYPE
from faceledger.interfaces.api.runtime import ServiceState
from faceledger.interfaces.api.security import ALL_ROLES, Caller, allow, purpose_of, service
from faceledger.interfaces.api.uploads import image_request_body, read_images
from faceledger.ledger.audit import AuditHead
from faceledger.ledger.records import ConsentWithState
from faceledger.ledger.timeutil import utcnow

_ERROR_DOCS = {
    400: "Malformed request, or no purpose given",
    401: "No API key, or an unknown or revoked one",
    403: "The key's role may not call this route, or the policy does not allow the purpose",
    404: "Unknown subject, candidate or route",
    409: "Conflicts with the current state (no valid consent, already reviewed, duplicate)",
    413: "Request body above the upload limit",
    415: "Unsupported content type",
    422: "Invalid field, unreadable image, too many faces or images",
    429: "Too many requests for this key; see Retry-After",
    500: "Unexpected error (the message names the request id in the server log)",
    503: "Database, master key or models unavailable; retry later",
    504: "The request took longer than the timeout",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": s.ErrorResponse, "description": text} for status, text in _ERROR_DOCS.items()
}
PurposeHeader = Annotated[
    str | None,
    Header(alias="X-Purpose", max_length=200, description="Why this request is made (must be allowed by the policy)"),
]
PurposeQuery = Annotated[
    str | None, Query(alias="purpose", max_length=200, description="The purpose, if not in X-Purpose")
]
SubjectPath = Annotated[str, Path(pattern=s.SUBJECT_PATTERN, description="Subject id")]
CandidatePath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
GalleryQuery = Annotated[str | None, Query(max_length=64, description="Gallery (default: all or the only one)")]


_UNNAMED = ("<image>", "<bytes>", "<stream>")
"""Sources of images the gallery got without a name (named after their upload instead)."""


class NoFields(s._In):
    """No fields besides the image."""


def op(
    *roles: str,
    summary: str,
    body: dict[str, Any] | None = None,
    extra_responses: dict[int | str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of a route that ``roles`` may call (``body``: a hand-written request body schema)."""
    extra = allow(*roles)
    if body:
        extra.update(body)
    return {
        "summary": summary,
        "description": f"Roles: {', '.join(roles)}.",
        "openapi_extra": extra,
        "responses": {**ERRORS, **(extra_responses or {})},
    }


v1 = APIRouter(prefix="/v1")
ops = APIRouter()


# ------------------------------------------------------------------------------------------------ service
@ops.get("/healthz", response_model=s.Health, tags=["service"], summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process answers (no database or model check: see /readyz)."""
    return {"status": "ok"}


@ops.get(
    "/readyz",
    response_model=s.Readiness,
    tags=["service"],
    summary="Readiness",
    responses={503: {"model": s.Readiness, "description": "Not ready: see checks"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Models run, database readable, this database's master key present: 200, else 503 with the failed checks
    (the gallery's readiness checks: ``models``, ``database``, ``master_key``)."""
    state: ServiceState | None = getattr(request.app.state, "service", None)
    checks: dict[str, str]
    if state is None:
        checks = {"service": "starting"}
    else:
        try:
            checks = await state.run(state.gallery.readiness, models=True, model=True)
        except ApiError as exc:
            checks = {"service": exc.message}
    ready = bool(checks) and all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


@ops.get(
    "/metrics",
    tags=["service"],
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Request counts and latencies by route, domain counters, audit head and pending reviews (per process)."""
    state = service(request)

    def gauges() -> dict[str, tuple[str, float]]:
        stats = state.gallery.stats()  # counts only; no personal data, no audit entry
        return {
            "audit_head_seq": ("Sequence number of the last audit entry.", float(stats["audit_head_seq"])),
            "pending_reviews": ("Candidates awaiting human review.", float(stats["pending_reviews"])),
            "subjects": ("Enrolled subjects.", float(stats["subjects"])),
            "templates": ("Stored templates.", float(stats["templates"])),
            "valid_consents": ("Consent records valid now.", float(stats["valid_consents"])),
            "process_start_time_seconds": ("Start time of this process (Unix time).", state.started_at),
        }

    values = await state.run(gauges)
    return Response(state.metrics.render(values), media_type=CONTENT_TYPE)


@v1.get("/whoami", response_model=s.Principal, tags=["service"], **op(*ALL_ROLES, summary="The caller's key"))
async def whoami(caller: Caller) -> s.Principal:
    """The key id, owner and role of the API key this request was made with."""
    return caller


# ------------------------------------------------------------------------------------------------ engine
@v1.post(
    "/detect",
    response_model=s.DetectOut,
    tags=["vision"],
    **op(
        "admin",
        "enroller",
        "operator",
        summary="Detect faces",
        body=image_request_body(s.DetectJSON, NoFields, {"image": False}),
    ),
)
async def detect(request: Request, caller: Caller) -> dict[str, Any]:
    """Faces in one image (boxes, landmarks, quality), largest first. Nothing is stored or recorded."""
    state = service(request)
    _, images = await read_images(request, s.DetectJSON, NoFields, {"image": False}, max_images=1)
    upload = images["image"][0]

    def work() -> dict[str, Any]:
        engine = state.gallery.engine
        try:
            array = engine.load(upload.data)
        except ImageError as exc:
            raise ImageError(upload.name, exc.reason) from None
        faces = engine.detect(array)
        return {"width": int(array.shape[1]), "height": int(array.shape[0]), "faces": faces.to_dicts()}

    return await state.run(work, model=True)


@v1.post(
    "/verify",
    response_model=s.VerifyOut,
    tags=["vision"],
    **op(
        "admin",
        "operator",
        summary="Verify two faces (1:1)",
        body=image_request_body(s.VerifyJSON, s.VerifyFields, {"image_a": False, "image_b": False}),
    ),
)
async def verify(request: Request, caller: Caller, x_purpose: PurposeHeader = None) -> dict[str, Any]:
    """Compare the largest face of ``image_a`` with that of ``image_b`` at the policy's target false-match
    rate. Needs a purpose. Recorded on the ledger (both images' SHA-256, similarity, decision); nothing else is
    stored."""
    state = service(request)
    fields, images = await read_images(
        request, s.VerifyJSON, s.VerifyFields, {"image_a": False, "image_b": False}, max_images=1
    )
    purpose = purpose_of(x_purpose, fields.purpose)

    def work() -> dict[str, Any]:
        streams = []
        for field in ("image_a", "image_b"):
            upload = images[field][0]
            stream = io.BytesIO(upload.data)
            stream.name = upload.name  # named in errors and in the result
            streams.append(stream)
        try:
            result = state.gallery.verify_images(streams[0], streams[1], actor=caller.owner, purpose=purpose)
        except NoFaceError as exc:
            raise NoFaceError(f"{exc}; send an image with a visible face") from None
        out = result.to_dict()
        return {
            "similarity": out["similarity"],
            "match": out["match"],
            "threshold": out["threshold"],
            "fmr": out["fmr"],
            "purpose": purpose,
            "audit_seq": out["audit_seq"],
        }

    out = await state.run(work, model=True)
    state.metrics.count("verifications", match=str(out["match"]).lower(), kind="images")
    return out


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


# ------------------------------------------------------------------------------------------------ enroll
@v1.post(
    "/enroll",
    response_model=EnrollmentResult,
    tags=["subjects"],
    **op(
        "admin",
        "enroller",
        summary="Enroll a subject",
        body=image_request_body(s.EnrollJSON, s.EnrollFields, {"images": True}),
    ),
)
async def enroll(request: Request, caller: Caller, x_purpose: PurposeHeader = None) -> EnrollmentResult:
    """Enroll ``subject`` from one or more images (one face each), in one transaction. Needs a valid consent
    for the gallery and purpose. Images already enrolled for the subject are skipped, so retrying is safe.
    Answers 422 when no image could be used (each named with its reason)."""
    state = service(request)
    fields, images = await read_images(
        request, s.EnrollJSON, s.EnrollFields, {"images": True}, max_images=state.settings.max_images
    )
    purpose = purpose_of(x_purpose, fields.purpose)
    result = await state.run(
        state.gallery.enroll,
        fields.subject,
        [u.stream() for u in images["images"]],
        actor=caller.owner,
        purpose=purpose,
        gallery=fields.gallery,
        consent_id=fields.consent_id,
        face_index=fields.face_index,
        model=True,
    )
    state.metrics.count("enrollments")
    state.metrics.count("templates_enrolled", len(result.enrolled))
    # Outcomes come in the order of the images; name unreadable ones by their upload, not "<image>".
    uploads = images["images"]
    result = replace(
        result,
        outcomes=[
            replace(o, source=uploads[i].name) if i < len(uploads) and o.source in _UNNAMED else o
            for i, o in enumerate(result.outcomes)
        ],
    )
    if not result.enrolled and not result.skipped:
        reasons = "; ".join(f"{o.source}: {o.reason}" for o in result.rejected)
        raise ApiError(
            422,
            "no_usable_image",
            f"nothing enrolled for {result.subject!r}: {reasons} (recorded as audit entry {result.audit_seq})",
        )
    return result


@v1.get(
    "/subjects", response_model=s.SubjectList, tags=["subjects"], **op("admin", "enroller", summary="List subjects")
)
async def list_subjects(
    request: Request,
    caller: Caller,
    gallery: GalleryQuery = None,
    purpose: PurposeQuery = None,
    x_purpose: PurposeHeader = None,
) -> dict[str, Any]:
    """Enrolled subjects with their template count and consent state (the look-up is recorded)."""
    state = service(request)
    why = purpose_of(x_purpose, purpose)
    subjects = await state.run(state.gallery.subjects, actor=caller.owner, purpose=why, gallery=gallery)
    return {"subjects": subjects}


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


@v1.post(
    "/subjects/{subject}/verify",
    response_model=SubjectVerification,
    tags=["identify"],
    **op(
        "admin",
        "operator",
        summary="Verify a face against an enrolled subject (1:1)",
        body=image_request_body(s.SubjectVerifyJSON, s.SubjectVerifyFields, {"image": False}),
    ),
)
async def verify_subject(
    request: Request, subject: SubjectPath, caller: Caller, x_purpose: PurposeHeader = None
) -> SubjectVerification:
    """Is the largest face of the image the enrolled ``subject``, at the policy's target false-match rate?
    Needs the subject's consent valid now for the purpose; the check is an audit entry."""
    state = service(request)
    fields, images = await read_images(
        request, s.SubjectVerifyJSON, s.SubjectVerifyFields, {"image": False}, max_images=1
    )
    purpose = purpose_of(x_purpose, fields.purpose)
    result = await state.run(
        state.gallery.verify_subject,
        subject,
        images["image"][0].stream(),
        actor=caller.owner,
        purpose=purpose,
        gallery=fields.gallery,
        model=True,
    )
    state.metrics.count("verifications", match=str(result.match).lower(), kind="subject")
    return result


# ------------------------------------------------------------------------------------------------ identify
@v1.post(
    "/identify",
    response_model=Identification,
    tags=["identify"],
    **op(
        "admin",
        "operator",
        summary="Identify faces (1:N)",
        body=image_request_body(s.IdentifyJSON, s.IdentifyFields, {"image": False}),
    ),
)
async def identify(request: Request, caller: Caller, x_purpose: PurposeHeader = None) -> Identification:
    """Search every face of the image against the gallery. Per face: its box and the candidates at or above
    the policy threshold, each pending human review. Faces that match no one leave no trace."""
    state = service(request)
    fields, images = await read_images(request, s.IdentifyJSON, s.IdentifyFields, {"image": False}, max_images=1)
    purpose = purpose_of(x_purpose, fields.purpose)
    result = await state.run(
        state.gallery.identify,
        images["image"][0].stream(),
        actor=caller.owner,
        purpose=purpose,
        gallery=fields.gallery,
        top_k=fields.top_k,
        model=True,
    )
    state.metrics.count("identifications")
    state.metrics.count("faces_searched", len(result.faces))
    state.metrics.count("candidates", sum(len(f.candidates) for f in result.faces))
    return result


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


# ------------------------------------------------------------------------------------------------ audit
@v1.get(
    "/audit/verify",
    response_model=s.AuditVerifyOut,
    tags=["audit"],
    **op("admin", "auditor", summary="Verify the audit chain"),
)
async def audit_verify(
    request: Request,
    caller: Caller,
    expected_seq: Annotated[int | None, Query(ge=1, le=2**62, description="Anchored head: seq")] = None,
    expected_hash: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$", description="Anchored head: hash")] = None,
) -> dict[str, Any]:
    """Recompute the chain; ``ok`` false names the first entry altered, removed, inserted or reordered.
    Give the head you anchored elsewhere (``expected_seq`` and ``expected_hash``) to detect truncation."""
    state = service(request)
    if (expected_seq is None) != (expected_hash is None):
        raise ApiError(422, "validation_error", "give both expected_seq and expected_hash, or neither")
    expected = None if expected_seq is None else AuditHead(expected_seq, str(expected_hash))
    result = await state.run(state.gallery.audit_verify, expected)
    return result.to_dict()


@v1.get("/audit/head", response_model=s.AuditHeadOut, tags=["audit"], **op("admin", "auditor", summary="Audit head"))
async def audit_head(request: Request, caller: Caller) -> dict[str, Any]:
    """Sequence number and hash of the last entry: publish it elsewhere to anchor the chain."""
    state = service(request)
    head = await state.run(state.gallery.audit_head)
    if head is None:
        raise ApiError(404, "not_found", "the audit ledger is empty")
    return head.to_dict()


@v1.get(
    "/audit/entries", response_model=s.AuditEntries, tags=["audit"], **op("admin", "auditor", summary="Audit entries")
)
async def audit_entries(
    request: Request,
    caller: Caller,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=64, description="Only this action, e.g. identify")] = None,
) -> dict[str, Any]:
    """A page of entries after ``after_seq`` (oldest first)."""
    state = service(request)
    entries = await state.run(state.gallery.audit_entries, after_seq=after_seq, limit=limit, action=action)
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
            "head": None if head is None else {"seq": head.seq, "hash": head.hash},
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
