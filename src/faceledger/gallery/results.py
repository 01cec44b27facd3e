"""What the gallery use cases return.

Every result is a plain dataclass whose JSON form, ``to_dict()``, is derived from its annotations (see
:mod:`faceledger.wire`): the command line's ``--json`` prints it and the REST service answers it, with the same
JSON schema. Wire names that differ from the attribute, rounding and derived values are in the annotations.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainSerializer, computed_field

from faceledger.ledger.records import CandidateRecord, CandidateStatus, Consent, ConsentWithState, ReviewRecord
from faceledger.wire import Wire, rounded

Similarity = Annotated[float, rounded(6)]
"""A similarity or threshold on the wire: 6 decimals."""
Quality = Annotated[float, rounded(4)]
"""A face quality score on the wire: 4 decimals."""
Box = list[Annotated[float, rounded(1)]]
"""A face box (x1, y1, x2, y2 in pixels) on the wire: 1 decimal."""


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


Jpeg = Annotated[bytes, PlainSerializer(_base64, return_type=str, when_used="unless-none")]
"""JPEG bytes; on the wire, their base64 text (standard alphabet, no line breaks)."""


@dataclass(frozen=True)
class ImageOutcome(Wire):
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
    quality: Quality | None = None
    quality_reasons: list[str] = field(default_factory=list)
    template_id: str | None = None


@dataclass(frozen=True)
class DuplicateWarning(Wire):
    """A face being enrolled matched another enrolled subject at or above the threshold."""

    source: str
    other_subject: str
    similarity: Similarity

    def message(self) -> str:
        """Human-readable warning."""
        return (
            f"{self.source}: this face matches enrolled subject {self.other_subject!r} "
            f"(similarity {self.similarity:.3f}); check it is not the same person under two ids"
        )


@dataclass(frozen=True)
class EnrollmentResult(Wire):
    """Outcome of enrolling one subject from one or more images (one transaction).

    On the wire ``enrolled``, ``skipped`` and ``rejected`` are counts and ``images`` the outcomes.
    """

    _wire_order: ClassVar[tuple[str, ...]] = (
        "subject", "gallery", "consent_id", "created", "enrolled", "skipped", "rejected", "templates_total",
        "images", "duplicates", "warnings", "audit_seq",
    )  # fmt: skip

    subject: str
    gallery: str
    consent_id: str
    outcomes: Annotated[list[ImageOutcome], Field(serialization_alias="images")]
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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def warnings(self) -> list[str]:
        """Human-readable warnings (possible duplicates)."""
        return [d.message() for d in self.duplicates]

    @computed_field(alias="enrolled")  # type: ignore[prop-decorator]
    @property
    def enrolled_count(self) -> int:
        """How many images produced a new template."""
        return len(self.enrolled)

    @computed_field(alias="skipped")  # type: ignore[prop-decorator]
    @property
    def skipped_count(self) -> int:
        """How many images were already enrolled."""
        return len(self.skipped)

    @computed_field(alias="rejected")  # type: ignore[prop-decorator]
    @property
    def rejected_count(self) -> int:
        """How many images could not be used."""
        return len(self.rejected)


@dataclass(frozen=True)
class CandidateMatch(Wire):
    """A subject scoring at or above the threshold for a face: a candidate awaiting human review."""

    subject: str
    similarity: Similarity
    rank: int
    candidate_id: str
    status: str = "pending"


@dataclass(frozen=True)
class FaceResult(Wire):
    """One face of a probe image: where it is and who it may be. No candidates means no match.

    On the wire ``face`` is the index, and ``decision`` is ``candidate`` or ``no_match``.
    """

    _wire_order: ClassVar[tuple[str, ...]] = ("face", "box", "quality", "quality_reasons", "decision", "candidates")

    index: Annotated[int, Field(serialization_alias="face")]
    box: Box
    quality: Quality
    quality_reasons: list[str]
    candidates: list[CandidateMatch]

    @property
    def matched(self) -> bool:
        """True when at least one subject scored at or above the threshold."""
        return bool(self.candidates)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def decision(self) -> Literal["candidate", "no_match"]:
        """``candidate`` when a subject scored at or above the threshold, else ``no_match``."""
        return "candidate" if self.matched else "no_match"


@dataclass(frozen=True)
class SearchThreshold(Wire):
    """The threshold a 1:N search runs at, and what it rests on.

    ``comparisons`` is the number of templates each probe face is compared with (those of the ``subjects`` searchable
    now); ``comparison_fmr`` the per-comparison false-match rate the threshold is set at; ``expected_fpir`` the FPIR
    the calibration predicts at that threshold and size; ``expected_fnir`` the calibration's false non-match rate at
    that threshold (a mated search missed), when it recorded one and the threshold is within it (None beyond it);
    ``extrapolated`` whether the threshold lies beyond the measured calibration (only with an accepted
    extrapolation)."""

    threshold: float
    target_fpir: float
    target_fmr: float
    subjects: int
    comparisons: int
    comparison_fmr: float
    expected_fpir: float
    expected_fnir: float | None
    calibration: str
    extrapolated: bool = False

    def details(self) -> dict[str, Any]:
        """What a search's audit entry records of it."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.to_dict().items()}


@dataclass(frozen=True)
class Identification(Wire):
    """Result of a 1:N search of one probe image. Candidates become matches only after human review."""

    search_id: str
    source: Annotated[str, Field(serialization_alias="image")]
    probe_sha256: str
    gallery: str
    purpose: str
    threshold: Similarity
    target_fmr: float
    policy_hash: str
    audit_seq: int
    faces: list[FaceResult]
    threshold_basis: SearchThreshold | None = None
    """What the threshold rests on: the gallery's size, the target FPIR, the expected FNIR (see
    :mod:`faceledger.gallery.thresholds`)."""


@dataclass(frozen=True)
class ImageVerification(Wire):
    """A recorded 1:1 comparison of the largest faces of two images (no enrolled subject involved).

    The ledger keeps the SHA-256 of both images, the similarity, the decision and the threshold; never pixels
    or embeddings.
    """

    sources: Annotated[tuple[str, str], Field(serialization_alias="images")]
    probe_sha256: tuple[str, str]
    similarity: Similarity
    match: bool
    threshold: Similarity
    fmr: float | None
    target_fmr: float
    audit_seq: int
    fmr_interval: tuple[float, float] | None = None
    """95 % interval of the false-match rate at the threshold (the upper end alone bounds it when ``fmr`` is None:
    beyond what the calibration measured)."""
    fmr_state: Literal["measured", "below_measurable", "above_table"] | None = None


@dataclass(frozen=True)
class SubjectVerification(Wire):
    """Result of a 1:1 check of a probe's largest face against one enrolled subject."""

    subject: str
    source: Annotated[str, Field(serialization_alias="image")]
    probe_sha256: str
    similarity: Similarity
    match: bool
    threshold: Similarity
    target_fmr: float
    box: Box
    audit_seq: int


@dataclass(frozen=True)
class PendingReview(Wire):
    """A candidate awaiting review, with the distinct reviewers who confirmed it so far and how many must.

    On the wire: the candidate's fields, then ``confirmations`` and ``required``.
    """

    _wire_flatten: ClassVar[str | None] = "candidate"

    candidate: CandidateRecord
    confirmations: int
    required: int

    @property
    def id(self) -> str:
        """The candidate's id."""
        return self.candidate.id


@dataclass(frozen=True)
class CandidateStamp(Wire):
    """A pending candidate's id and creation time, and nothing else: no subject, no score (nothing about a person)."""

    id: str
    created_at: str


@dataclass(frozen=True)
class ReviewOutcome(Wire):
    """A recorded review and where the candidate stands after it."""

    _wire_order: ClassVar[tuple[str, ...]] = (
        "candidate_id", "subject", "status", "confirmations", "required", "review", "audit_seq",
        "evidence_destroyed", "reclaimed",
    )  # fmt: skip

    candidate: Annotated[CandidateRecord, Field(exclude=True)]
    review: ReviewRecord
    confirmations: int
    required: int
    audit_seq: int
    evidence_destroyed: bool = False
    """A rejection destroyed the candidate's evidence (the face crops) in the review's transaction."""
    reclaimed: bool = False
    """The space of the destroyed evidence was made unrecoverable at once (database file and WAL rewritten)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> CandidateStatus:
        """``pending``, ``confirmed`` or ``rejected``."""
        return self.candidate.status

    @computed_field  # type: ignore[prop-decorator]
    @property
    def candidate_id(self) -> str:
        """The candidate's id."""
        return self.candidate.id

    @computed_field(alias="subject")  # type: ignore[prop-decorator]
    @property
    def subject_id(self) -> str:
        """The candidate's subject."""
        return self.candidate.subject_id


@dataclass(frozen=True)
class ErasureReceipt(Wire):
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
    reference_faces_destroyed: int = 0
    evidence_destroyed: int = 0


@dataclass(frozen=True)
class ConsentWithdrawal(Wire):
    """Consents withdrawn, and the erasure it triggered when no valid consent was left."""

    subject: str
    withdrawn: list[str]
    audit_seq: int
    erasure: ErasureReceipt | None


@dataclass(frozen=True)
class SubjectInfo(Wire):
    """An enrolled subject, how many templates it has, and whether its consent is valid now."""

    id: str
    gallery: str
    templates: int
    created_at: str
    consent: Literal["valid", "withdrawn", "expired", "not_yet_valid", "none"]


def _subjects(receipts: list[ErasureReceipt]) -> list[str]:
    return [r.subject for r in receipts]


@dataclass
class PurgeReport(Wire):
    """What a retention run removed (on the wire ``subjects_erased`` lists the subjects, not the receipts)."""

    ran_at: str
    consents_expired: list[str] = field(default_factory=list)
    subjects_erased: Annotated[list[ErasureReceipt], PlainSerializer(_subjects, return_type=list[str])] = field(
        default_factory=list
    )
    templates_deleted: int = 0
    consents_deleted: int = 0
    candidates_deleted: int = 0
    audit_entries_purged: int = 0
    evidence_deleted: int = 0
    audit_seqs: list[int] = field(default_factory=list)
    reclaimed: bool = False
    checkpoint_seq: int | None = None  # the signed checkpoint the run ended with (None: no signing key here)
    notes: list[str] = field(default_factory=list)  # steps skipped, and why


@dataclass(frozen=True)
class ReferenceImage(Wire):
    """One reference face of a subject: the aligned crop of an enrolled image (what its template was made from)."""

    template_id: str
    image: Jpeg
    quality: Quality
    created_at: str


EvidenceState = Literal["kept", "destroyed", "not_kept"]


@dataclass(frozen=True)
class CandidateEvidence(Wire):
    """What a reviewer looks at to decide a candidate (the look-up is the ``evidence.view`` entry ``audit_seq``).

    * ``face``: JPEG of the aligned 112×112 crop of the face that raised the candidate (what the recognizer saw);
      ``context``: JPEG of the face box enlarged by its own size on each side, at most 320 pixels on its longest
      side, every other face in it blurred. Both None when ``state`` is ``destroyed`` (rejection, retention) or
      ``not_kept``; ``missing`` then says why.
    * ``quality``: the quality score of that face (None with the evidence gone).
    * ``references``: the subject's reference faces, to compare with.
    * ``fmr``: the false-match rate the similarity corresponds to in the recognizer's calibration (None for an
      uncalibrated model): the share of comparisons of two different people that score this high.
    """

    candidate: CandidateRecord
    reviews: list[ReviewRecord]
    state: EvidenceState
    missing: str | None
    face: Jpeg | None
    context: Jpeg | None
    quality: Quality | None
    references: list[ReferenceImage]
    fmr: float | None
    confirmations: int
    required: int
    audit_seq: int


def consent_dict(consent: Consent, now: Any) -> dict[str, Any]:
    """JSON-ready form of a consent record with its state at ``now``."""
    return ConsentWithState.at(consent, now).to_dict()
