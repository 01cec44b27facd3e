"""Plain records the store reads and writes. None of them holds a decrypted template or face image.

The records with a JSON form inherit :class:`~faceledger.wire.Wire`: ``to_dict()`` and their JSON schema are
derived from the annotations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, computed_field

from faceledger.ledger.timeutil import from_text
from faceledger.wire import Wire

ROLES = ("admin", "enroller", "operator", "reviewer", "auditor")
"""API key roles: admin (everything), enroller (consent, enroll, erase), operator (identify), reviewer
(review), auditor (audit, report)."""

Role = Literal["admin", "enroller", "operator", "reviewer", "auditor"]
CandidateStatus = Literal["pending", "confirmed", "rejected"]
Decision = Literal["confirm", "reject"]
ConsentState = Literal["valid", "withdrawn", "expired", "not_yet_valid"]


@dataclass(frozen=True)
class Subject(Wire):
    """An enrolled person, known only by an id chosen by the deployment (no name, no photo)."""

    id: str
    gallery: str
    created_at: str
    created_by: str


@dataclass(frozen=True)
class SubjectKey:
    """A subject's data key, wrapped by the master key ``master_key_id``."""

    id: str
    subject_id: str
    wrapped: bytes
    master_key_id: str
    created_at: str


@dataclass(frozen=True)
class Consent(Wire):
    """A consent record: who collected it, on which legal basis, for what purpose, and until when."""

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
    category: str | None = None  # watchlist entries only: the entry category the policy accepts (e.g. "missing person")

    def state(self, now: datetime) -> ConsentState:
        """Whether the consent allows processing at ``now``."""
        if self.withdrawn_at is not None:
            return "withdrawn"
        if self.expires_at is not None and from_text(self.expires_at) <= now:
            return "expired"
        if from_text(self.given_at) > now:
            return "not_yet_valid"
        return "valid"

    def ended_at(self) -> str | None:
        """When the consent stopped allowing processing (withdrawal or expiry), if it has."""
        if self.withdrawn_at is not None:
            return self.withdrawn_at
        return self.expires_at

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready form; with ``now``, includes ``state`` (the form of :class:`ConsentWithState`)."""
        return super().to_dict() if now is None else ConsentWithState.at(self, now).to_dict()


@dataclass(frozen=True)
class ConsentWithState(Wire):
    """A consent record and its state at one moment. On the wire: the record's fields, then ``state``."""

    _wire_flatten: ClassVar[str | None] = "consent"

    consent: Consent
    state: ConsentState

    @classmethod
    def at(cls, consent: Consent, now: datetime) -> ConsentWithState:
        """``consent`` with its state at ``now``."""
        return cls(consent, consent.state(now))


@dataclass(frozen=True)
class TemplateRecord:
    """An encrypted template as stored."""

    id: str
    subject_id: str
    key_id: str
    model: str
    dim: int
    nonce: bytes
    ciphertext: bytes
    source_sha256: str
    face_index: int
    quality: float
    created_at: str


@dataclass(frozen=True)
class TemplateRef:
    """A template's id, subject and model, without its ciphertext (what a search index syncs on)."""

    id: str
    subject_id: str
    model: str


@dataclass(frozen=True)
class CandidateRecord(Wire):
    """A probe face that scored at or above the threshold against a subject; a match only once reviewed."""

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
    status: CandidateStatus
    created_at: str
    decided_at: str | None
    source: str | None = None  # video only: the camera or file it was seen in (credentials removed)
    track: int | None = None  # video only: the face track within the session (search_id is the session)
    seen_at: str | None = None  # video only: when the best face of the track was seen


@dataclass(frozen=True)
class ReviewRecord(Wire):
    """One reviewer's decision on one candidate."""

    id: str
    candidate_id: str
    reviewer: str
    decision: Decision
    reason: str
    created_at: str


@dataclass(frozen=True)
class EvidenceRecord:
    """The encrypted evidence of one candidate as stored: the aligned crop of the face that raised it and a context
    crop around it (both JPEG, encrypted with the key ``key_id``, which the master key ``master_key_id`` wraps)."""

    candidate_id: str
    key_id: str
    wrapped_key: bytes
    master_key_id: str
    face_nonce: bytes
    face: bytes
    context_nonce: bytes
    context: bytes
    quality: float
    created_at: str


@dataclass(frozen=True)
class EvidenceKey:
    """A candidate's wrapped evidence key, without the images (what master key rotation re-wraps)."""

    candidate_id: str
    key_id: str
    wrapped_key: bytes
    master_key_id: str


@dataclass(frozen=True)
class ReferenceFace:
    """The aligned crop of one enrolled image as stored (JPEG, encrypted with the subject's data key)."""

    template_id: str
    subject_id: str
    nonce: bytes
    image: bytes
    created_at: str


@dataclass(frozen=True)
class ApiKey(Wire):
    """An API key of the REST service (the secret itself is never stored, only its SHA-256).

    On the wire: no secret hash, and ``active``.
    """

    id: str
    owner: str
    role: Role
    secret_sha256: Annotated[str, Field(exclude=True)]
    created_at: str
    created_by: str
    revoked_at: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def active(self) -> bool:
        """True unless revoked."""
        return self.revoked_at is None


@dataclass(frozen=True)
class UserAccount(Wire):
    """A person who signs in to the web UI (only an argon2id hash of the password is stored).

    On the wire: no password hash, and ``active``.
    """

    name: str
    role: Role
    password_hash: Annotated[str, Field(exclude=True)]
    created_at: str
    created_by: str
    disabled_at: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def active(self) -> bool:
        """True unless disabled."""
        return self.disabled_at is None


@dataclass(frozen=True)
class WebSession:
    """A signed-in web UI session: by a user account or by an API key (exactly one of the two)."""

    id_sha256: str
    user_name: str | None
    key_id: str | None
    csrf: str
    created_at: str
    expires_at: str
    ended_at: str | None


DeploymentState = Literal["scheduled", "active", "expired", "ended"]


@dataclass(frozen=True)
class DeploymentRecord(Wire):
    """The authorisation a live or post-event identification runs under: who authorised which watchlist to be
    searched for what, where, from which sources, when, and up to which size."""

    name: str
    gallery: str
    purpose: str
    legal_basis: str
    location: str
    sources: list[str]
    authorised_by: str
    authorisation_ref: str
    valid_from: str
    valid_to: str
    max_watchlist: int
    show_candidates: bool
    created_at: str
    created_by: str
    ended_at: str | None
    ended_by: str | None
    ended_reason: str | None
    evaluation: dict[str, Any] | None = None
    """The evaluation it relies on (faceledger.gallery.bias): report hash, population, per-group error rates."""

    def state(self, now: datetime) -> DeploymentState:
        """Whether the deployment authorises identification at ``now``."""
        if self.ended_at is not None:
            return "ended"
        if from_text(self.valid_from) > now:
            return "scheduled"
        if from_text(self.valid_to) <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class DeploymentWithState(Wire):
    """A deployment and its state at one moment. On the wire: the record's fields, then ``state``."""

    _wire_flatten: ClassVar[str | None] = "deployment"

    deployment: DeploymentRecord
    state: DeploymentState

    @classmethod
    def at(cls, deployment: DeploymentRecord, now: datetime) -> DeploymentWithState:
        """``deployment`` with its state at ``now``."""
        return cls(deployment, deployment.state(now))


SessionState = Literal["running", "stopped", "lost"]


@dataclass(frozen=True)
class VideoSessionRecord(Wire):
    """One ``watch`` run under a deployment: its source (credentials removed), counts and heartbeat."""

    id: str
    deployment: str
    source: str
    actor: str
    started_at: str
    heartbeat_at: str
    stopped_at: str | None
    stop_reason: str | None
    frames: int
    tracks: int
    candidates: int
    dropped: int
    gaps: int

    def state(self, now: datetime, stale_after_s: float = 30.0) -> SessionState:
        """``stopped``; ``running`` while the heartbeat is fresh; ``lost`` when it stopped without a stop (the
        process died)."""
        if self.stopped_at is not None:
            return "stopped"
        return "running" if (now - from_text(self.heartbeat_at)).total_seconds() <= stale_after_s else "lost"


@dataclass(frozen=True)
class SessionWithState(Wire):
    """A video session and its state at one moment. On the wire: the record's fields, then ``state``."""

    _wire_flatten: ClassVar[str | None] = "session"

    session: VideoSessionRecord
    state: SessionState


@dataclass(frozen=True)
class ActivityRow:
    """Audit entries of one day, gallery (``-`` for none), purpose and action, counted by the database: how many,
    and the sums of the figures their details carry (what the transparency report counts)."""

    day: str  # YYYY-MM-DD, UTC
    gallery: str
    purpose: str
    action: str
    entries: int
    templates_added: int = 0
    with_templates: int = 0  # entries that added at least one template
    faces: int = 0
    matched_faces: int = 0
    candidates: int = 0
    confirmed: int = 0
    rejected: int = 0
    consent_ids: int = 0
