"""Request and response bodies of the REST service (pydantic models; they make the OpenAPI schema).

The responses that are gallery results (enrollment, identification, review, erasure, ...) are not defined here:
the service answers the result dataclasses themselves (:mod:`faceledger.gallery.results`,
:mod:`faceledger.ledger.records`), whose JSON form and schema pydantic derives from one definition, the same
``to_dict()`` that ``--json`` prints. This module keeps the requests, the service's own shapes, and the names the
OpenAPI document gives those results (:data:`COMPONENT_NAMES`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from faceledger.gallery.results import (
    CandidateMatch,
    ConsentWithdrawal,
    DuplicateWarning,
    EnrollmentResult,
    ErasureReceipt,
    FaceResult,
    Identification,
    ImageOutcome,
    PendingReview,
    PurgeReport,
    ReviewOutcome,
    SubjectInfo,
    SubjectVerification,
)
from faceledger.ledger.audit import AuditHead, VerifyResult
from faceledger.ledger.records import ConsentWithState, DeploymentWithState, ReviewRecord, SessionWithState

SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$"
Text = Field(min_length=1, max_length=500)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------------ errors
class ErrorDetail(_Out):
    """What went wrong: a stable ``code`` and a ``message`` saying what to do."""

    code: str = Field(examples=["purpose_required"])
    message: str


class ErrorResponse(_Out):
    """Every error response has this shape."""

    error: ErrorDetail


# ------------------------------------------------------------------------------------------------ service
class Health(_Out):
    """Liveness: the process answers."""

    status: Literal["ok"]


class Readiness(_Out):
    """Readiness: models run, database readable, master key present (each check "ok" or what is wrong)."""

    status: Literal["ready", "degraded", "not_ready"]
    checks: dict[str, str]


class Principal(_Out):
    """The API key a request was made with."""

    key_id: str
    owner: str
    role: Literal["admin", "enroller", "operator", "reviewer", "auditor"]


# ------------------------------------------------------------------------------------------------ images
class DetectJSON(_In):
    """Detect faces in one image sent as base64."""

    image: str = Field(description="the image file (JPEG, PNG, ...) encoded as base64", min_length=1)


class VerifyFields(_In):
    """Fields of a verification besides the images."""

    purpose: str | None = Field(default=None, max_length=200, description="why (or the X-Purpose header)")


class VerifyJSON(VerifyFields):
    """Compare the largest face of two images sent as base64."""

    image_a: str = Field(description="first image, base64", min_length=1)
    image_b: str = Field(description="second image, base64", min_length=1)


class IdentifyFields(_In):
    """Fields of an identification besides the image."""

    purpose: str | None = Field(default=None, max_length=200, description="why (or the X-Purpose header)")
    gallery: str | None = Field(default=None, max_length=64, description="gallery to search (default: the only one)")
    top_k: int | None = Field(default=None, ge=1, le=100, description="candidates per face (default: policy)")


class IdentifyJSON(IdentifyFields):
    """Search every face of one image (base64) against the gallery."""

    image: str = Field(description="the probe image, base64", min_length=1)


class EnrollFields(_In):
    """Fields of an enrollment besides the images."""

    subject: str = Field(pattern=SUBJECT_PATTERN, description="subject id (no names or personal data)")
    purpose: str | None = Field(default=None, max_length=200, description="why (or the X-Purpose header)")
    gallery: str | None = Field(default=None, max_length=64)
    consent_id: str | None = Field(default=None, max_length=64, description="consent record to rely on")
    face_index: int | None = Field(
        default=None, ge=0, le=1000, description="which face when an image holds several (0 is the largest)"
    )


class EnrollJSON(EnrollFields):
    """Enroll a subject from images sent as base64."""

    images: list[str] = Field(min_length=1, description="image files, base64 each")


class SubjectVerifyFields(_In):
    """Fields of a 1:1 check against an enrolled subject besides the image."""

    purpose: str | None = Field(default=None, max_length=200, description="why (or the X-Purpose header)")
    gallery: str | None = Field(
        default=None, max_length=64, description="the subject's gallery (default: the only one)"
    )


class SubjectVerifyJSON(SubjectVerifyFields):
    """Check the largest face of one image (base64) against an enrolled subject."""

    image: str = Field(description="the probe image, base64", min_length=1)


class FaceOut(_Out):
    """One detected face."""

    box: list[float] = Field(description="x1, y1, x2, y2 in pixels")
    score: float
    landmarks: list[list[float]] = Field(description="five [x, y] points: eyes, nose, mouth corners")
    quality: float
    quality_reasons: list[str]


class DetectOut(_Out):
    """Faces in an image, largest first. Nothing is stored."""

    width: int
    height: int
    faces: list[FaceOut]


class VerifyOut(_Out):
    """A 1:1 comparison of the largest face of each image, recorded on the ledger (hashes and decision only)."""

    similarity: float
    match: bool
    threshold: float
    fmr: float | None = Field(description="false-match rate at the threshold as measured; null beyond the calibration")
    fmr_interval: list[float] | None = Field(
        default=None, description="its 95 % interval (only the upper end bounds it when fmr is null)"
    )
    fmr_state: str | None = Field(default=None, description="measured, below_measurable or above_table")
    purpose: str
    audit_seq: int


# ------------------------------------------------------------------------------------------------ consent
class ConsentIn(_In):
    """A subject's consent to be enrolled and searched for one purpose."""

    subject: str = Field(pattern=SUBJECT_PATTERN)
    collected_by: str = Text
    legal_basis: str = Text
    evidence_ref: str = Field(min_length=1, max_length=500, description="where the signed form or recording is")
    purpose: str | None = Field(default=None, max_length=200, description="the purpose consented to (or X-Purpose)")
    gallery: str | None = Field(default=None, max_length=64)
    given_at: str | None = Field(default=None, max_length=40, description="ISO 8601; default now")
    expires_at: str | None = Field(default=None, max_length=40, description="ISO 8601; optional")
    category: str | None = Field(
        default=None, max_length=200, description="watchlist entries only: a category the watchlist accepts"
    )


class DeploymentIn(_In):
    """An authorisation for identification in video (see ``faceledger deployment add``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    gallery: str | None = Field(default=None, max_length=64, description="the watchlist gallery")
    search_purpose: str = Field(min_length=1, max_length=200, description="what the watchlist is searched for")
    legal_basis: str = Text
    location: str = Text
    sources: list[str] = Field(min_length=1, max_length=100, description="camera URIs, files or patterns")
    authorised_by: str = Text
    authorisation_ref: str = Text
    valid_from: str | None = Field(default=None, max_length=40, description="ISO 8601; default now")
    valid_to: str = Field(min_length=1, max_length=40, description="ISO 8601")
    max_watchlist: int = Field(ge=1, le=10_000_000, description="largest watchlist it may search")
    show_candidates: bool = Field(default=False, description="operators may see candidates unblurred in output")


class DeploymentChangeIn(_In):
    """A change to a deployment: a new end, new sources or a new watchlist size limit, and why."""

    reason: str = Text
    valid_to: str | None = Field(default=None, max_length=40)
    sources: list[str] | None = Field(default=None, min_length=1, max_length=100)
    max_watchlist: int | None = Field(default=None, ge=1, le=10_000_000)


class DeploymentEndIn(_In):
    """Why a deployment ends now."""

    reason: str = Text


class DeploymentList(_Out):
    """Every deployment, oldest first, with its state now."""

    deployments: list[DeploymentWithState]


class SessionList(_Out):
    """Video sessions, oldest first."""

    sessions: list[SessionWithState]


class ConsentList(_Out):
    """Consent records."""

    consents: list[ConsentWithState]


class WithdrawIn(_In):
    """Withdraw a subject's consent (all active ones, or one)."""

    subject: str = Field(pattern=SUBJECT_PATTERN)
    consent_id: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="consent withdrawn", min_length=1, max_length=500)
    purpose: str | None = Field(default=None, max_length=200)


# ------------------------------------------------------------------------------------------------ subjects
class SubjectList(_Out):
    """Enrolled subjects."""

    subjects: list[SubjectInfo]


# ------------------------------------------------------------------------------------------------ review
class ReviewList(_Out):
    """Candidates awaiting review, oldest first."""

    pending: list[PendingReview]


class ReviewIn(_In):
    """A reviewer's decision on a candidate."""

    reason: str = Field(min_length=1, max_length=1000, description="what the reviewer checked")
    purpose: str | None = Field(default=None, max_length=200, description="must be the search's purpose")


# ------------------------------------------------------------------------------------------------ audit
class AuditEntryOut(BaseModel):
    """One audit entry (never biometric data: probes by hash, people by subject id)."""

    model_config = ConfigDict(extra="allow")

    seq: int
    prev: str
    ts: str
    action: str
    actor: str
    purpose: str
    gallery: str | None = None
    probe_sha256: str | None = None
    subjects: list[str] = []
    threshold: float | None = None
    policy_hash: str | None = None
    details: dict[str, Any] = {}
    hash: str


class AuditEntries(_Out):
    """A page of audit entries; ask again with ``after_seq=next_after_seq`` for the next page."""

    entries: list[AuditEntryOut]
    next_after_seq: int | None


class AuditExport(_Out):
    """Every audit entry, and the head they end at."""

    entries: list[AuditEntryOut]
    head: AuditHead | None


# ------------------------------------------------------------------------------------------------ report
class ReportRowOut(BaseModel):
    """Counts for one period, gallery and purpose."""

    model_config = ConfigDict(extra="allow")

    period: str
    gallery: str
    purpose: str


class ReportOut(_Out):
    """Transparency report counted from the audit ledger."""

    generated_at: str
    period: str
    controller: str
    deployment_purpose: str
    legal_basis: str
    policy_hash: str
    target_fmr: float
    reviewers_required: int
    covers_from: str | None
    covers_to: str | None
    rows: list[ReportRowOut]
    totals: dict[str, int]
    current: dict[str, int]
    target_fpir: float
    deployments: list[dict[str, Any]]


# ------------------------------------------------------------------------------------------------ OpenAPI names
COMPONENT_NAMES: dict[type[Any], str] = {
    AuditHead: "AuditHeadOut",
    CandidateMatch: "CandidateOut",
    ConsentWithState: "ConsentOut",
    DeploymentWithState: "DeploymentOut",
    SessionWithState: "SessionOut",
    ConsentWithdrawal: "WithdrawOut",
    DuplicateWarning: "DuplicateOut",
    EnrollmentResult: "EnrollOut",
    ErasureReceipt: "ErasureOut",
    FaceResult: "FaceResultOut",
    Identification: "IdentifyOut",
    ImageOutcome: "ImageOutcomeOut",
    PendingReview: "ReviewItem",
    PurgeReport: "PurgeOut",
    ReviewOutcome: "ReviewOut",
    ReviewRecord: "ReviewRecordOut",
    SubjectInfo: "SubjectOut",
    SubjectVerification: "SubjectVerifyOut",
    VerifyResult: "AuditVerifyOut",
}
"""The name of each result's schema in the OpenAPI document (the names the service has always published; by
default a component is named after its class)."""

_REF = "#/components/schemas/"


def name_components(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (an OpenAPI document) with the result schemas renamed after :data:`COMPONENT_NAMES`."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    renames = {cls.__name__: name for cls, name in COMPONENT_NAMES.items() if cls.__name__ in schemas}
    renamed: dict[str, Any] = {}
    for key, schema in schemas.items():
        name = renames.get(key, key)
        if name in renamed:
            raise RuntimeError(f"two OpenAPI schemas would be named {name!r}")
        if key in renames and schema.get("title") == key:
            schema["title"] = name
        renamed[name] = schema
    if schemas:
        document["components"]["schemas"] = dict(sorted(renamed.items()))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_REF) and ref[len(_REF) :] in renames:
                node["$ref"] = _REF + renames[ref[len(_REF) :]]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return document
