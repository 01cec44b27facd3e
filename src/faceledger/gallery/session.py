"""A gallery bound to who acts and why, so callers stop repeating ``actor=`` and ``purpose=``::

    from faceledger import Gallery
    desk = Gallery.open("staff.db").as_actor("front-desk", purpose="access-control")
    desk.add_consent("emp-001", collected_by="front desk", legal_basis="explicit consent", evidence_ref="form.pdf")
    desk.enroll("emp-001", ["a.jpg"])
    found = desk.identify("door.jpg")

The binding is a convenience only: every call still goes through the gallery's checks (the purpose must be one the
policy allows) and its audit entry names the actor and purpose.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from faceledger.errors import FaceledgerError
from faceledger.gallery.context import ImageInput, accountable
from faceledger.gallery.facade import Gallery
from faceledger.gallery.report import TransparencyReport
from faceledger.gallery.results import (
    ConsentWithdrawal,
    EnrollmentResult,
    ErasureReceipt,
    Identification,
    ImageVerification,
    PendingReview,
    PurgeReport,
    ReviewOutcome,
    SubjectInfo,
    SubjectVerification,
)
from faceledger.ledger.audit import AuditEntry
from faceledger.ledger.policy import LoadedPolicy
from faceledger.ledger.records import ApiKey, CandidateRecord, CandidateStatus, Consent, ReviewRecord


class GallerySession:
    """``gallery`` acting as ``actor`` for ``purpose`` (and in ``gallery_name`` when given; else the policy's
    only gallery). Made by :meth:`Gallery.as_actor`; closing the session closes the gallery."""

    def __init__(self, gallery: Gallery, actor: str, *, purpose: str, gallery_name: str | None = None) -> None:
        self.actor, self.purpose = accountable(actor, purpose)
        self.gallery = gallery
        self.gallery_name = gallery_name

    def as_actor(self, actor: str, *, purpose: str | None = None) -> GallerySession:
        """The same gallery for another actor (and purpose, default this session's)."""
        return GallerySession(self.gallery, actor, purpose=purpose or self.purpose, gallery_name=self.gallery_name)

    def close(self) -> None:
        """Close the gallery's database."""
        self.gallery.close()

    def __enter__(self) -> GallerySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GallerySession(actor={self.actor!r}, purpose={self.purpose!r}, db={self.gallery.store.location!r})"

    @property
    def _who(self) -> dict[str, Any]:
        return {"actor": self.actor, "purpose": self.purpose}

    @property
    def _where(self) -> dict[str, Any]:
        return {"actor": self.actor, "purpose": self.purpose, "gallery": self.gallery_name}

    # consent
    def add_consent(
        self,
        subject: str,
        *,
        collected_by: str,
        legal_basis: str,
        evidence_ref: str,
        given_at: datetime | str | None = None,
        expires_at: datetime | str | None = None,
    ) -> Consent:
        """Record a consent for this session's purpose (see :meth:`Gallery.add_consent`)."""
        return self.gallery.add_consent(
            subject, collected_by=collected_by, legal_basis=legal_basis, evidence_ref=evidence_ref,
            given_at=given_at, expires_at=expires_at, **self._where,
        )  # fmt: skip

    def consents(self, subject: str | None = None) -> list[Consent]:
        """Consent records (audited)."""
        return self.gallery.consents(subject, **self._where)

    def withdraw_consent(
        self, subject: str, *, consent_id: str | None = None, reason: str = "consent withdrawn"
    ) -> ConsentWithdrawal:
        """Withdraw consents; erases the subject when none valid is left."""
        return self.gallery.withdraw_consent(subject, consent_id=consent_id, reason=reason, **self._who)

    # enrollment
    def enroll(
        self,
        subject: str,
        images: Sequence[ImageInput] | ImageInput,
        *,
        consent_id: str | None = None,
        face_index: int | None = None,
    ) -> EnrollmentResult:
        """Enroll a subject from images (see :meth:`Gallery.enroll`)."""
        return self.gallery.enroll(subject, images, consent_id=consent_id, face_index=face_index, **self._where)

    def enroll_batch(
        self, items: Iterable[tuple[str, Sequence[ImageInput]]]
    ) -> Iterator[tuple[str, EnrollmentResult | FaceledgerError]]:
        """Enroll many subjects, one transaction each."""
        return self.gallery.enroll_batch(items, **self._where)

    def subjects(self) -> list[SubjectInfo]:
        """Enrolled subjects (audited)."""
        return self.gallery.subjects(**self._where)

    # search
    def identify(self, image: ImageInput, *, top_k: int | None = None) -> Identification:
        """1:N search of every face of ``image``; matches become candidates for review."""
        return self.gallery.identify(image, top_k=top_k, **self._where)

    def verify_subject(self, subject: str, image: ImageInput) -> SubjectVerification:
        """1:1 against one enrolled subject."""
        return self.gallery.verify_subject(subject, image, **self._where)

    def verify_images(self, image_a: ImageInput, image_b: ImageInput) -> ImageVerification:
        """1:1 between two images."""
        return self.gallery.verify_images(image_a, image_b, **self._where)

    # review
    def pending_reviews(self) -> list[PendingReview]:
        """The review queue, with confirmations so far (audited)."""
        return self.gallery.pending_reviews(**self._where)

    def candidates(self, *, status: CandidateStatus | None = None, subject: str | None = None) -> list[CandidateRecord]:
        """Candidates by status or subject (a ``records.read`` entry)."""
        return self.gallery.candidates(status=status, subject=subject, **self._where)

    def reviews(self, candidate_id: str) -> list[ReviewRecord]:
        """A candidate's reviews (a ``records.read`` entry)."""
        return self.gallery.reviews(candidate_id, **self._who)

    def confirm(self, candidate_id: str, *, reason: str) -> ReviewOutcome:
        """Confirm a candidate as this session's actor, saying what was checked."""
        return self.gallery.review(
            candidate_id, reviewer=self.actor, decision="confirm", reason=reason, purpose=self.purpose
        )

    def reject(self, candidate_id: str, *, reason: str) -> ReviewOutcome:
        """Reject a candidate as this session's actor."""
        return self.gallery.review(
            candidate_id, reviewer=self.actor, decision="reject", reason=reason, purpose=self.purpose
        )

    # erasure, retention, administration, the ledger
    def erase(self, subject: str, *, reason: str = "erasure request") -> ErasureReceipt:
        """Erase a subject; the receipt names its audit entry."""
        return self.gallery.erase(subject, reason=reason, **self._who)

    def purge(self) -> PurgeReport:
        """Apply the policy's retention now."""
        return self.gallery.purge(**self._who)

    def set_policy(self, policy: str | os.PathLike[str] | LoadedPolicy) -> LoadedPolicy:
        """Put a new policy in force."""
        return self.gallery.set_policy(policy, **self._who)

    def create_api_key(self, owner: str, role: str) -> tuple[ApiKey, str]:
        """Create an API key (the token is returned once)."""
        return self.gallery.create_api_key(owner, role, **self._who)

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke an API key."""
        return self.gallery.revoke_api_key(key_id, **self._who)

    def rotate_master_key(self) -> dict[str, Any]:
        """Re-wrap every data key with a new master key."""
        return self.gallery.rotate_master_key(**self._who)

    def audit_entries(
        self, *, after_seq: int = 0, limit: int | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """Audit entries (a ``records.read`` entry)."""
        return self.gallery.audit_entries(after_seq=after_seq, limit=limit, action=action, **self._who)

    def audit_export(self) -> list[AuditEntry]:
        """Every audit entry (the export is recorded first)."""
        return self.gallery.audit_export(**self._who)

    def report(
        self, *, period: str = "month", since: datetime | str | None = None, until: datetime | str | None = None
    ) -> TransparencyReport:
        """The transparency report (audited)."""
        return self.gallery.report(period=period, since=since, until=until, **self._who)
