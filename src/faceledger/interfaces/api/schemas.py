"""Request and response bodies of the REST service (pydantic models; they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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

    status: Literal["ready", "not_ready"]
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


class SubjectVerifyOut(_Out):
    """A 1:1 check of a probe's largest face against one enrolled subject (on the ledger)."""

    subject: str
    image: str
    probe_sha256: str
    similarity: float | None
    match: bool
    threshold: float | None
    target_fmr: float
    box: list[float]
    audit_seq: int


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
    fmr: float | None
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


class ConsentOut(_Out):
    """A consent record and its state now."""

    id: str
    subject_id: str
    gallery: str
    collected_by: str
    legal_basis: str
    purpose: str
    evidence_ref: str
    given_at: str
    expires_at: str | None
    withdrawn_at: str | None
    ended_reason: str | None
    recorded_at: str
    recorded_by: str
    state: Literal["valid", "withdrawn", "expired", "not_yet_valid"]


class ConsentList(_Out):
    """Consent records."""

    consents: list[ConsentOut]


class WithdrawIn(_In):
    """Withdraw a subject's consent (all active ones, or one)."""

    subject: str = Field(pattern=SUBJECT_PATTERN)
    consent_id: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="consent withdrawn", min_length=1, max_length=500)
    purpose: str | None = Field(default=None, max_length=200)


class ErasureOut(_Out):
    """Proof of an erasure: what was destroyed and the audit entry recording it."""

    subject: str
    gallery: str | None
    erased_at: str
    reason: str
    templates_destroyed: int
    key_id: str | None
    candidates_deleted: int
    consents_ended: list[str]
    audit_seq: int
    audit_hash: str
    reclaimed: bool


class WithdrawOut(_Out):
    """Consents withdrawn, and the erasure it caused when no valid consent was left."""

    subject: str
    withdrawn: list[str]
    audit_seq: int
    erasure: ErasureOut | None


# ------------------------------------------------------------------------------------------------ enroll
class ImageOutcomeOut(_Out):
    """What happened to one image of an enrollment."""

    source: str
    status: Literal["enrolled", "skipped", "rejected"]
    reason: str | None
    sha256: str | None
    face_index: int | None
    box: list[float] | None
    quality: float | None
    quality_reasons: list[str]
    template_id: str | None


class DuplicateOut(_Out):
    """A face being enrolled matched another enrolled subject."""

    source: str
    other_subject: str
    similarity: float | None


class EnrollOut(_Out):
    """Outcome of an enrollment (one transaction, one audit entry)."""

    subject: str
    gallery: str
    consent_id: str
    created: bool
    enrolled: int
    skipped: int
    rejected: int
    templates_total: int
    images: list[ImageOutcomeOut]
    duplicates: list[DuplicateOut]
    warnings: list[str]
    audit_seq: int | None


class SubjectOut(_Out):
    """An enrolled subject."""

    id: str
    gallery: str
    templates: int
    created_at: str
    consent: Literal["valid", "withdrawn", "expired", "not_yet_valid", "none"]


class SubjectList(_Out):
    """Enrolled subjects."""

    subjects: list[SubjectOut]


# ------------------------------------------------------------------------------------------------ identify
class CandidateOut(_Out):
    """A subject scoring at or above the threshold: a candidate awaiting human review."""

    subject: str
    similarity: float | None
    rank: int
    candidate_id: str
    status: str


class FaceResultOut(_Out):
    """One face of the probe: where it is and who it may be (no candidates: no match, nothing kept)."""

    face: int
    box: list[float]
    quality: float | None
    quality_reasons: list[str]
    decision: Literal["candidate", "no_match"]
    candidates: list[CandidateOut]


class IdentifyOut(_Out):
    """Result of a 1:N search; candidates become matches only after review."""

    search_id: str
    image: str
    probe_sha256: str
    gallery: str
    purpose: str
    threshold: float | None
    target_fmr: float
    policy_hash: str
    audit_seq: int
    faces: list[FaceResultOut]


# ------------------------------------------------------------------------------------------------ review
class ReviewItem(_Out):
    """A candidate awaiting review."""

    id: str
    search_id: str
    audit_seq: int
    gallery: str
    purpose: str
    actor: str
    probe_sha256: str
    face_index: int
    box: list[float]
    subject_id: str
    similarity: float
    rank: int
    threshold: float
    policy_hash: str
    status: Literal["pending", "confirmed", "rejected"]
    created_at: str
    decided_at: str | None
    confirmations: int
    required: int


class ReviewList(_Out):
    """Candidates awaiting review, oldest first."""

    pending: list[ReviewItem]


class ReviewIn(_In):
    """A reviewer's decision on a candidate."""

    reason: str = Field(min_length=1, max_length=1000, description="what the reviewer checked")
    purpose: str | None = Field(default=None, max_length=200, description="must be the search's purpose")


class ReviewRecordOut(_Out):
    """One reviewer's recorded decision."""

    id: str
    candidate_id: str
    reviewer: str
    decision: Literal["confirm", "reject"]
    reason: str
    created_at: str


class ReviewOut(_Out):
    """A recorded review and where the candidate stands after it."""

    candidate_id: str
    subject: str
    status: Literal["pending", "confirmed", "rejected"]
    confirmations: int
    required: int
    review: ReviewRecordOut
    audit_seq: int


# ------------------------------------------------------------------------------------------------ retention
class PurgeOut(_Out):
    """What a retention run removed."""

    ran_at: str
    consents_expired: list[str]
    subjects_erased: list[str]
    templates_deleted: int
    consents_deleted: int
    candidates_deleted: int
    audit_entries_purged: int
    audit_seqs: list[int]
    reclaimed: bool


# ------------------------------------------------------------------------------------------------ audit
class AuditHeadOut(_Out):
    """The last audit entry: publish it elsewhere to anchor the chain."""

    seq: int
    hash: str


class AuditVerifyOut(_Out):
    """Result of recomputing the audit chain."""

    ok: bool
    entries: int
    first_seq: int | None
    head: AuditHeadOut | None
    bad_seq: int | None
    problem: str | None


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
    head: AuditHeadOut | None


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
