"""What the gallery use cases return. Every result has ``to_dict()`` with stable keys for JSON output."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from faceledger.ledger.records import CandidateRecord, Consent, ReviewRecord


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image of an enrollment.

    ``status`` is ``enrolled`` (a template was stored), ``skipped`` (this image's face was already enrolled
    for the subject: reruns resume) or ``rejected`` (``reason`` says why: unreadable, no face, several faces,
    poor quality, image already enrolled for someone else).
    """

    source: str
    status: Literal["enrolled", "skipped", "rejected"]
    reason: str | None = None
    sha256: str | None = None
    face_index: int | None = None
    box: list[float] | None = None
    quality: float | None = None
    quality_reasons: list[str] = field(default_factory=list)
    template_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["quality"] = _round(self.quality, 4)
        return out


@dataclass(frozen=True)
class DuplicateWarning:
    """A face being enrolled matched another enrolled subject at or above the threshold."""

    source: str
    other_subject: str
    similarity: float

    def message(self) -> str:
        """Human-readable warning."""
        return (
            f"{self.source}: this face matches enrolled subject {self.other_subject!r} "
            f"(similarity {self.similarity:.3f}); check it is not the same person under two ids"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "other_subject": self.other_subject,
            "similarity": _round(self.similarity),
        }


@dataclass(frozen=True)
class EnrollmentResult:
    """Outcome of enrolling one subject from one or more images (one transaction)."""

    subject: str
    gallery: str
    consent_id: str
    outcomes: list[ImageOutcome]
    duplicates: list[DuplicateWarning]
    created: bool
    templates_total: int
    audit_seq: int | None

    @property
    def enrolled(self) -> list[ImageOutcome]:
        """Images that produced a new template."""
        return [o for o in self.outcomes if o.status == "enrolled"]

    @property
    def skipped(self) -> list[ImageOutcome]:
        """Images already enrolled before."""
        return [o for o in self.outcomes if o.status == "skipped"]

    @property
    def rejected(self) -> list[ImageOutcome]:
        """Images that could not be used (see their reasons)."""
        return [o for o in self.outcomes if o.status == "rejected"]

    @property
    def warnings(self) -> list[str]:
        """Human-readable warnings (possible duplicates)."""
        return [d.message() for d in self.duplicates]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "subject": self.subject,
            "gallery": self.gallery,
            "consent_id": self.consent_id,
            "created": self.created,
            "enrolled": len(self.enrolled),
            "skipped": len(self.skipped),
            "rejected": len(self.rejected),
            "templates_total": self.templates_total,
            "images": [o.to_dict() for o in self.outcomes],
            "duplicates": [d.to_dict() for d in self.duplicates],
            "warnings": self.warnings,
            "audit_seq": self.audit_seq,
        }


@dataclass(frozen=True)
class CandidateMatch:
    """A subject scoring at or above the threshold for a face: a candidate awaiting human review."""

    subject: str
    similarity: float
    rank: int
    candidate_id: str
    status: str = "pending"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "subject": self.subject,
            "similarity": _round(self.similarity),
            "rank": self.rank,
            "candidate_id": self.candidate_id,
            "status": self.status,
        }


@dataclass(frozen=True)
class FaceResult:
    """One face of a probe image: where it is and who it may be. No candidates means no match."""

    index: int
    box: list[float]
    quality: float
    quality_reasons: list[str]
    candidates: list[CandidateMatch]

    @property
    def matched(self) -> bool:
        """True when at least one subject scored at or above the threshold."""
        return bool(self.candidates)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``box``, ``candidates`` (subject, similarity, ...), quality, ``decision``."""
        return {
            "face": self.index,
            "box": [round(float(v), 1) for v in self.box],
            "quality": _round(self.quality, 4),
            "quality_reasons": list(self.quality_reasons),
            "decision": "candidate" if self.matched else "no_match",
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass(frozen=True)
class Identification:
    """Result of a 1:N search of one probe image. Candidates become matches only after human review."""

    search_id: str
    source: str
    probe_sha256: str
    gallery: str
    purpose: str
    threshold: float
    target_fmr: float
    policy_hash: str
    audit_seq: int
    faces: list[FaceResult]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "search_id": self.search_id,
            "image": self.source,
            "probe_sha256": self.probe_sha256,
            "gallery": self.gallery,
            "purpose": self.purpose,
            "threshold": _round(self.threshold),
            "target_fmr": self.target_fmr,
            "policy_hash": self.policy_hash,
            "audit_seq": self.audit_seq,
            "faces": [f.to_dict() for f in self.faces],
        }


@dataclass(frozen=True)
class ImageVerification:
    """A recorded 1:1 comparison of the largest faces of two images (no enrolled subject involved).

    The ledger keeps the SHA-256 of both images, the similarity, the decision and the threshold; never pixels
    or embeddings.
    """

    sources: tuple[str, str]
    probe_sha256: tuple[str, str]
    similarity: float
    match: bool
    threshold: float
    fmr: float | None
    target_fmr: float
    audit_seq: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "images": list(self.sources),
            "probe_sha256": list(self.probe_sha256),
            "similarity": _round(self.similarity),
            "match": self.match,
            "threshold": _round(self.threshold),
            "fmr": self.fmr,
            "target_fmr": self.target_fmr,
            "audit_seq": self.audit_seq,
        }


@dataclass(frozen=True)
class SubjectVerification:
    """Result of a 1:1 check of a probe's largest face against one enrolled subject."""

    subject: str
    source: str
    probe_sha256: str
    similarity: float
    match: bool
    threshold: float
    target_fmr: float
    box: list[float]
    audit_seq: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "subject": self.subject,
            "image": self.source,
            "probe_sha256": self.probe_sha256,
            "similarity": _round(self.similarity),
            "match": self.match,
            "threshold": _round(self.threshold),
            "target_fmr": self.target_fmr,
            "box": [round(float(v), 1) for v in self.box],
            "audit_seq": self.audit_seq,
        }


@dataclass(frozen=True)
class PendingReview:
    """A candidate awaiting review, with the distinct reviewers who confirmed it so far and how many must."""

    candidate: CandidateRecord
    confirmations: int
    required: int

    @property
    def id(self) -> str:
        """The candidate's id."""
        return self.candidate.id

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the candidate's fields, then ``confirmations`` and ``required``."""
        return {**self.candidate.to_dict(), "confirmations": self.confirmations, "required": self.required}


@dataclass(frozen=True)
class ReviewOutcome:
    """A recorded review and where the candidate stands after it."""

    candidate: CandidateRecord
    review: ReviewRecord
    confirmations: int
    required: int
    audit_seq: int

    @property
    def status(self) -> str:
        """``pending``, ``confirmed`` or ``rejected``."""
        return self.candidate.status

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "candidate_id": self.candidate.id,
            "subject": self.candidate.subject_id,
            "status": self.status,
            "confirmations": self.confirmations,
            "required": self.required,
            "review": self.review.to_dict(),
            "audit_seq": self.audit_seq,
        }


@dataclass(frozen=True)
class ErasureReceipt:
    """Proof of an erasure: what was destroyed and the audit entry that records it."""

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
    reclaimed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ConsentWithdrawal:
    """Consents withdrawn, and the erasure it triggered when no valid consent was left."""

    subject: str
    withdrawn: list[str]
    audit_seq: int
    erasure: ErasureReceipt | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "subject": self.subject,
            "withdrawn": self.withdrawn,
            "audit_seq": self.audit_seq,
            "erasure": None if self.erasure is None else self.erasure.to_dict(),
        }


@dataclass(frozen=True)
class SubjectInfo:
    """An enrolled subject, how many templates it has, and whether its consent is valid now."""

    id: str
    gallery: str
    templates: int
    created_at: str
    consent: Literal["valid", "withdrawn", "expired", "not_yet_valid", "none"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class PurgeReport:
    """What a retention run removed."""

    ran_at: str
    consents_expired: list[str] = field(default_factory=list)
    subjects_erased: list[ErasureReceipt] = field(default_factory=list)
    templates_deleted: int = 0
    consents_deleted: int = 0
    candidates_deleted: int = 0
    audit_entries_purged: int = 0
    audit_seqs: list[int] = field(default_factory=list)
    reclaimed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ran_at": self.ran_at,
            "consents_expired": self.consents_expired,
            "subjects_erased": [r.subject for r in self.subjects_erased],
            "templates_deleted": self.templates_deleted,
            "consents_deleted": self.consents_deleted,
            "candidates_deleted": self.candidates_deleted,
            "audit_entries_purged": self.audit_entries_purged,
            "audit_seqs": self.audit_seqs,
            "reclaimed": self.reclaimed,
        }


def consent_dict(consent: Consent, now: Any) -> dict[str, Any]:
    """JSON-ready form of a consent record with its state at ``now``."""
    return consent.to_dict(now)
