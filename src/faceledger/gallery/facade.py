"""The :class:`Gallery` facade: every use case that touches people, each with its audit entry.

Each method delegates to the module of its use case (:mod:`.consent`, :mod:`.enrollment`,
:mod:`.identification`, :mod:`.review`, :mod:`.erasure`, :mod:`.retention`, :mod:`.keys`, :mod:`.admin`,
:mod:`.report`), all sharing one :class:`~faceledger.gallery.context.GalleryContext`. Every method that touches
people takes ``actor`` (who) and ``purpose`` (why); :meth:`Gallery.as_actor` binds both once. The record reads
(``candidates``, ``reviews``, ``stats``, ``audit_entries``) take them optionally: given, as every interface that
shows the records to a person gives them, the read is a ``records.read`` entry; omitted, it is an internal read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceledger.config import Database, database
from faceledger.config import key_file as resolve_key_file
from faceledger.errors import FaceledgerError
from faceledger.gallery import (
    admin,
    consent,
    enrollment,
    erasure,
    identification,
    keys,
    retention,
    review,
    thresholds,
)
from faceledger.gallery.context import GalleryContext, ImageInput
from faceledger.gallery.report import TransparencyReport, transparency_report
from faceledger.gallery.results import (
    CandidateStamp,
    ConsentWithdrawal,
    EnrollmentResult,
    ErasureReceipt,
    Identification,
    ImageVerification,
    PendingReview,
    PurgeReport,
    ReviewOutcome,
    SearchThreshold,
    SubjectInfo,
    SubjectVerification,
)
from faceledger.ledger.audit import AuditEntry, AuditHead, VerifyResult
from faceledger.ledger.policy import LoadedPolicy
from faceledger.ledger.records import (
    ApiKey,
    CandidateRecord,
    CandidateStatus,
    Consent,
    DeploymentRecord,
    ReviewRecord,
    SessionWithState,
    TemplateRecord,
)
from faceledger.ledger.store import Store, Transaction, open_store

if TYPE_CHECKING:
    from faceledger.engine import Engine
    from faceledger.engine.executors import Executor
    from faceledger.gallery.accounts import SignIn, WebPrincipal
    from faceledger.gallery.index import SearchIndex
    from faceledger.gallery.results import CandidateEvidence, ReferenceImage
    from faceledger.gallery.session import GallerySession
    from faceledger.ledger.signing import SignedHead


class Gallery:
    """Consent-gated enrollment, 1:N identification, human review, erasure, retention and reports.

    Create a deployment with :meth:`init`, open one with :meth:`open`. ``engine`` defaults to ``Engine()``
    (made when first needed: consent, review and audit work without loading models). ``clock`` returns the
    current time (tests pass their own). A Gallery is safe to share between threads; several processes may
    open the same database.
    """

    def __init__(
        self,
        store: Store,
        *,
        key_file: str | os.PathLike[str] | None = None,
        engine: Engine | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.context = GalleryContext(store, key_file=key_file, engine=engine, clock=clock)

    # ------------------------------------------------------------------------------------------ lifecycle
    @classmethod
    def init(
        cls,
        db: str | os.PathLike[str] | Database,
        *,
        actor: str,
        policy: str | os.PathLike[str] | LoadedPolicy | None = None,
        key_file: str | os.PathLike[str] | None = None,
        engine: Engine | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> Gallery:
        """Create a new deployment: the database (a path or ``sqlite:///`` URL), its master key and its policy.

        The master key is taken from ``FACELEDGER_MASTER_KEY`` when set; otherwise a new key file is written
        (mode 0600) at ``key_file`` (default: ``FACELEDGER_KEY_FILE``, else the database file plus ``.key``).
        ``policy`` is a policy file, a loaded policy, or None for the commented example policy.
        """
        store, master, key_path = admin.create_deployment(
            db, actor=actor, policy=policy, key_file=key_file, clock=clock
        )
        gallery = cls(store, key_file=key_path, engine=engine, clock=clock)
        gallery.context.master = master
        return gallery

    @classmethod
    def open(
        cls,
        db: str | os.PathLike[str] | Database | None = None,
        *,
        key_file: str | os.PathLike[str] | None = None,
        engine: Engine | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> Gallery:
        """Open an initialised deployment (``db`` defaults to ``FACELEDGER_DB`` or ``./faceledger.db``).

        The master key is loaded only when an operation needs it, from ``FACELEDGER_MASTER_KEY`` or the key file
        (``key_file``, else ``FACELEDGER_KEY_FILE``, else the database file plus ``.key``).
        """
        location = database(db)
        store = open_store(location)
        try:
            return cls(store, key_file=resolve_key_file(location, key_file), engine=engine, clock=clock)
        except BaseException:
            store.close()
            raise

    def as_actor(self, actor: str, *, purpose: str, gallery: str | None = None) -> GallerySession:
        """This gallery bound to who acts and why (and optionally one gallery of the policy)::

            desk = Gallery.open("staff.db").as_actor("front-desk", purpose="access-control")
            desk.enroll("emp-001", ["a.jpg"])

        Both are still checked and recorded on every call.
        """
        from faceledger.gallery.session import GallerySession

        return GallerySession(self, actor, purpose=purpose, gallery_name=gallery)

    def close(self) -> None:
        """Close the database."""
        self.context.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ state
    @property
    def store(self) -> Store:
        """The database."""
        return self.context.store

    def shared_rate_limit(self) -> Callable[[str, int, float], float | None] | None:
        """The database's request buckets, which every process on every host shares (PostgreSQL's
        ``take_request``), or None when each process counts on its own (SQLite)."""
        return getattr(self.store, "take_request", None)

    @property
    def key_file(self) -> Path | None:
        """The master key file (``FACELEDGER_MASTER_KEY`` takes precedence when set)."""
        return self.context.key_file

    @property
    def engine(self) -> Engine:
        """The recognition engine (created on first use)."""
        return self.context.engine

    @property
    def policy(self) -> LoadedPolicy:
        """The policy in force (text, hash and validated model)."""
        return self.context.policy

    def now(self) -> datetime:
        """The current time by this gallery's clock."""
        return self.context.now()

    _now = now  # the name callers used before the facade existed

    @property
    def _index(self) -> SearchIndex | None:
        """This process's search index (for tests that check it stays in sync)."""
        return self.context.index

    def _decrypt(self, tx: Transaction, record: TemplateRecord) -> np.ndarray:
        """The embedding a template record holds (for tests of encryption and erasure)."""
        return keys.decrypt_template(self.context, tx, record)

    def model_id(self) -> str:
        """Identifier of the recognizer templates are made with: card name and the start of its SHA-256."""
        return self.context.model_id()

    def templates_recognizer(self) -> str | None:
        """The bundled recognizer this gallery's templates were made with (for an engine made outside), or None."""
        return self.context.templates_recognizer()

    def threshold(self) -> float:
        """Similarity threshold of the policy's target false-match rate, from the recognizer's calibration."""
        return self.context.threshold()

    # ------------------------------------------------------------------------------------------ consent
    def add_consent(
        self,
        subject: str,
        *,
        actor: str,
        collected_by: str,
        legal_basis: str,
        purpose: str,
        evidence_ref: str,
        given_at: datetime | str | None = None,
        expires_at: datetime | str | None = None,
        gallery: str | None = None,
        category: str | None = None,
    ) -> Consent:
        """Record a subject's consent to be enrolled in ``gallery`` and searched for ``purpose``.

        ``evidence_ref`` points to the signed form or recording (kept outside faceledger); ``given_at``
        defaults to now; ``expires_at`` (optional) must be later than both. In a watchlist gallery this records
        the entry's authorisation: ``category`` and ``expires_at`` are required (see ``consent.add_consent``).
        """
        return consent.add_consent(
            self.context, subject, actor=actor, collected_by=collected_by, legal_basis=legal_basis,
            purpose=purpose, evidence_ref=evidence_ref, given_at=given_at, expires_at=expires_at, gallery=gallery,
            category=category,
        )  # fmt: skip

    def consents(
        self, subject: str | None = None, *, actor: str, purpose: str, gallery: str | None = None
    ) -> list[Consent]:
        """Consent records (of one subject, or all); the look-up is an audit entry."""
        return consent.consents(self.context, subject, actor=actor, purpose=purpose, gallery=gallery)

    def withdraw_consent(
        self,
        subject: str,
        *,
        actor: str,
        purpose: str,
        consent_id: str | None = None,
        reason: str = "consent withdrawn",
    ) -> ConsentWithdrawal:
        """Withdraw a subject's consent (all active ones, or ``consent_id``). When no valid consent is left in its
        gallery, the subject is erased in the same transaction and the database space reclaimed."""
        return consent.withdraw_consent(
            self.context, subject, actor=actor, purpose=purpose, consent_id=consent_id, reason=reason
        )

    # ------------------------------------------------------------------------------------------ enrollment
    def enroll(
        self,
        subject: str,
        images: Sequence[ImageInput] | ImageInput,
        *,
        actor: str,
        purpose: str,
        gallery: str | None = None,
        consent_id: str | None = None,
        face_index: int | None = None,
    ) -> EnrollmentResult:
        """Enroll ``subject`` from one or more images, in one transaction.

        Needs a valid consent for the gallery and purpose. Each image must contain exactly one usable face
        (no quality reasons) unless ``face_index`` picks one (faces are ordered largest first); images that
        fail are reported with their reason and the others are enrolled. Images already enrolled for this
        subject are skipped, so rerunning an interrupted batch resumes it. A face that matches another
        subject at or above the threshold is enrolled with a warning (see ``duplicates``).
        """
        return enrollment.enroll(
            self.context, subject, images, actor=actor, purpose=purpose, gallery=gallery,
            consent_id=consent_id, face_index=face_index,
        )  # fmt: skip

    def enroll_batch(
        self, items: Iterable[tuple[str, Sequence[ImageInput]]], *, actor: str, purpose: str,
        gallery: str | None = None, executor: Executor | None = None,
    ) -> Iterator[tuple[str, EnrollmentResult | FaceledgerError]]:  # fmt: skip
        """Enroll many subjects, one transaction each, the image work on ``executor``; yields ``(subject, result
        or error)`` as it goes."""
        return enrollment.enroll_batch(
            self.context, items, actor=actor, purpose=purpose, gallery=gallery, executor=executor
        )  # fmt: skip

    def subjects(self, *, actor: str, purpose: str, gallery: str | None = None) -> list[SubjectInfo]:
        """Enrolled subjects with their template count and consent state; the look-up is an audit entry."""
        return enrollment.subjects(self.context, actor=actor, purpose=purpose, gallery=gallery)

    # ------------------------------------------------------------------------------------------ search
    def identify(
        self, image: ImageInput, *, actor: str, purpose: str, gallery: str | None = None, top_k: int | None = None
    ) -> Identification:
        """Search every face of ``image`` against the gallery (1:N, exact).

        Per face: the top ``k`` subjects scoring at or above the policy threshold, each recorded as a
        candidate awaiting human review. Only subjects whose consent is valid now for this gallery and purpose
        are searched. Faces that match no one leave no trace: nothing about them is stored except the count in
        the audit entry (which records the SHA-256 of the image bytes, never pixels or templates).
        """
        return identification.identify(self.context, image, actor=actor, purpose=purpose, gallery=gallery, top_k=top_k)

    def identify_batch(
        self, images: Iterable[ImageInput], *, actor: str, purpose: str, gallery: str | None = None,
        top_k: int | None = None, executor: Executor | None = None,
    ) -> Iterator[tuple[str, Identification | FaceledgerError]]:  # fmt: skip
        """:meth:`identify` for many images in input order, their image work on ``executor`` (threads here, or Ray)."""
        return identification.identify_batch(
            self.context, images, actor=actor, purpose=purpose, gallery=gallery, top_k=top_k, executor=executor
        )  # fmt: skip

    def verify_subject(
        self, subject: str, image: ImageInput, *, actor: str, purpose: str, gallery: str | None = None
    ) -> SubjectVerification:
        """1:1: is the largest face of ``image`` the enrolled ``subject`` (at the policy threshold)? An audit entry."""
        return identification.verify_subject(
            self.context, subject, image, actor=actor, purpose=purpose, gallery=gallery
        )

    def verify_images(
        self, image_a: ImageInput, image_b: ImageInput, *, actor: str, purpose: str, gallery: str | None = None
    ) -> ImageVerification:
        """1:1 without a gallery search: are the largest faces of two images the same person? An audit entry."""
        return identification.verify_images(
            self.context, image_a, image_b, actor=actor, purpose=purpose, gallery=gallery
        )

    # ------------------------------------------------------------------------------------------ review
    def pending_reviews(self, *, actor: str, purpose: str, gallery: str | None = None) -> list[PendingReview]:
        """Candidates awaiting review (oldest first) with their confirmations so far and the number the policy
        requires; the look-up is an audit entry."""
        return review.pending_reviews(self.context, actor=actor, purpose=purpose, gallery=gallery)

    def reviews(self, candidate_id: str, *, actor: str | None = None, purpose: str | None = None) -> list[ReviewRecord]:
        """The reviews recorded for a candidate. Any read that shows them to a person must pass ``actor`` and
        ``purpose``: the read is then a ``records.read`` entry. Without them it is an internal read (no entry)."""
        return review.reviews_of(self.context, candidate_id, actor=actor, purpose=purpose)

    def review(
        self, candidate_id: str, *, reviewer: str, decision: str, reason: str, purpose: str | None = None
    ) -> ReviewOutcome:
        """Confirm or reject a candidate. It becomes a match only when ``reviewers_required`` distinct
        reviewers confirmed it; one rejection rejects it. ``purpose`` defaults to the search's purpose and may
        not differ from it."""
        return review.review(
            self.context, candidate_id, reviewer=reviewer, decision=decision, reason=reason, purpose=purpose
        )

    def evidence(self, candidate_id: str, *, actor: str, purpose: str | None = None) -> CandidateEvidence:
        """What a reviewer looks at: the candidate, its reviews, the face that raised it (aligned and in context,
        other faces blurred), the subject's reference faces, the false-match rate of the similarity and the
        confirmations so far. One ``evidence.view`` entry; ``purpose`` defaults to the search's and may not differ."""
        from faceledger.gallery import evidence

        return evidence.evidence_of(self.context, candidate_id, actor=actor, purpose=purpose)

    def reference_faces(self, subject: str, *, actor: str, purpose: str) -> list[ReferenceImage]:
        """A subject's reference faces (the aligned crops of its enrolled images); one ``evidence.view`` entry."""
        from faceledger.gallery import evidence

        return evidence.reference_faces(self.context, subject, actor=actor, purpose=purpose)

    def candidates(
        self,
        *,
        status: CandidateStatus | None = None,
        subject: str | None = None,
        gallery: str | None = None,
        actor: str | None = None,
        purpose: str | None = None,
    ) -> list[CandidateRecord]:
        """Candidates by status, subject or gallery. Any read that shows them to a person must pass ``actor`` and
        ``purpose``: the read is then a ``records.read`` entry (kind, filters, count). Without them it is an internal
        read (no entry); to learn only that new candidates exist use :meth:`pending_stamps`."""
        return review.candidates(
            self.context, status=status, subject=subject, gallery=gallery, actor=actor, purpose=purpose
        )

    def pending_stamps(self, gallery: str | None = None) -> list[CandidateStamp]:
        """Id and creation time of each pending candidate, oldest first: nothing about a person, no audit entry."""
        return review.pending_stamps(self.context, gallery)

    # ------------------------------------------------------------------------------------------ erasure, retention
    def erase(self, subject: str, *, actor: str, purpose: str, reason: str = "erasure request") -> ErasureReceipt:
        """Erase a subject: templates, data key, candidates, reviews deleted; consents ended; space reclaimed.
        The receipt names the audit entry that records the erasure."""
        return erasure.erase(self.context, subject, actor=actor, purpose=purpose, reason=reason)

    def purge(self, *, actor: str = "retention", purpose: str = "retention") -> PurgeReport:
        """Apply the policy's retention (each step on the ledger), then reclaim the space."""
        return retention.purge(self.context, actor=actor, purpose=purpose)

    # ------------------------------------------------------------------------------------------ video (imported on use)
    def add_deployment(self, name: str, **fields: Any) -> DeploymentRecord:
        """Authorise identification in video: see :func:`faceledger.gallery.deployments.add_deployment` for the
        fields (actor, purpose, gallery, search_purpose, legal_basis, location, sources, authorised_by,
        authorisation_ref, valid_to, max_watchlist, valid_from, show_candidates)."""
        from faceledger.gallery import deployments

        return deployments.add_deployment(self.context, name, **fields)

    def change_deployment(self, name: str, **fields: Any) -> DeploymentRecord:
        """Change a deployment's validity end, sources or watchlist size limit, with a reason (an audit entry)."""
        from faceledger.gallery import deployments

        return deployments.change_deployment(self.context, name, **fields)

    def end_deployment(self, name: str, *, actor: str, purpose: str, reason: str) -> DeploymentRecord:
        """End a deployment now; sessions under it stop within a second."""
        from faceledger.gallery import deployments

        return deployments.end_deployment(self.context, name, actor=actor, purpose=purpose, reason=reason)

    def deployments(self) -> list[DeploymentRecord]:
        """Every deployment, oldest first."""
        from faceledger.gallery import deployments

        return deployments.deployments(self.context)

    def watch(self, source: str | int | os.PathLike[str], *, actor: str, **options: Any) -> Iterator[dict[str, Any]]:
        """Identify the faces of a video file, stream or camera under a deployment, one decision per face track;
        yields the events of ``faceledger watch --json`` (see :func:`faceledger.gallery.video.watch`)."""
        from faceledger.gallery import video  # PyAV is imported only by video work

        return video.watch(self.context, source, actor=actor, **options)

    def video_sessions(self, *, running_only: bool = False) -> list[SessionWithState]:
        """Video sessions and their state (running, stopped, or lost when the heartbeat stopped)."""
        from faceledger.gallery import video

        return video.sessions(self.context, running_only=running_only)

    # ------------------------------------------------------------------------------------------ keys, admin
    def rotate_master_key(self, *, actor: str, purpose: str = "key rotation") -> dict[str, Any]:
        """Re-wrap every subject data key with a new master key written to the key file (an audit entry)."""
        return keys.rotate_master_key(self.context, actor=actor, purpose=purpose)

    def search_threshold(self, *, gallery: str | None = None, purpose: str | None = None) -> SearchThreshold:
        """The 1:N threshold in force now for ``gallery`` and ``purpose`` (any purpose when None), at its size."""
        with self.context.store.read() as tx:
            name = self.context.gallery_name(self.context.refresh_policy(tx), gallery)
            return thresholds.search_threshold(self.context, tx, name, purpose, self.context.now())

    def accept_extrapolation(
        self, *, gallery: str | None, up_to: int, reason: str, actor: str, purpose: str = "administration"
    ) -> dict[str, Any]:
        """Accept thresholds extrapolated beyond the calibration for ``gallery`` up to ``up_to`` subjects (a
        ``calibration.extrapolation`` entry; see :mod:`faceledger.gallery.thresholds`)."""
        return thresholds.accept_extrapolation(
            self.context, gallery=gallery, up_to=up_to, reason=reason, actor=actor, purpose=purpose
        )

    def set_policy(
        self, policy: str | os.PathLike[str] | LoadedPolicy, *, actor: str, purpose: str = "administration"
    ) -> LoadedPolicy:
        """Put a new policy in force (recorded with its hash). Refused when it drops a gallery that still has
        enrolled subjects."""
        return admin.set_policy(self.context, policy, actor=actor, purpose=purpose)

    def create_api_key(
        self, owner: str, role: str, *, actor: str, purpose: str = "administration"
    ) -> tuple[ApiKey, str]:
        """Create an API key for the REST service; returns the record and the token (shown only once)."""
        return admin.create_api_key(self.context, owner, role, actor=actor, purpose=purpose)

    def api_keys(self) -> list[ApiKey]:
        """All API keys (revoked included), without secrets."""
        return admin.api_keys(self.context)

    def revoke_api_key(self, key_id: str, *, actor: str, purpose: str = "administration") -> ApiKey:
        """Revoke an API key (recorded on the ledger)."""
        return admin.revoke_api_key(self.context, key_id, actor=actor, purpose=purpose)

    def authenticate(self, token: str) -> ApiKey:
        """The active API key of a token; raises :class:`~faceledger.ledger.AccessDenied` otherwise."""
        return admin.authenticate(self.context, token)

    # ------------------------------------------------------------------------------------------ web UI accounts
    def add_user(self, name: str, *, role: str, password: str, actor: str, purpose: str = "administration") -> Any:
        """Create a web UI account (:mod:`faceledger.gallery.accounts`); returns its :class:`UserAccount`."""
        from faceledger.gallery import accounts

        return accounts.add_user(self.context, name, role=role, password=password, actor=actor, purpose=purpose)

    def disable_user(self, name: str, *, actor: str, purpose: str = "administration") -> Any:
        """Disable a web UI account; its sessions end."""
        from faceledger.gallery import accounts

        return accounts.disable_user(self.context, name, actor=actor, purpose=purpose)

    def users(self) -> list[Any]:
        """Every web UI account (no password hashes on the wire)."""
        from faceledger.gallery import accounts

        return accounts.users(self.context)

    def sign_in(self, *, address: str, **credentials: Any) -> SignIn:
        """Open a web session for ``name`` and ``password`` or for an API key ``token`` (audited either way)."""
        from faceledger.gallery import accounts

        return accounts.sign_in(self.context, address=address, **credentials)

    def signin_refused(self, *, tried: str, reason: str, address: str) -> None:
        """Record a sign-in refused before checking credentials (e.g. over the rate limit)."""
        from faceledger.gallery import accounts

        accounts.signin_failed(self.context, tried=tried, reason=reason, address=address)

    def session_principal(self, token: str) -> WebPrincipal | None:
        """Who a web session cookie belongs to, or None when it is not (or no longer) valid."""
        from faceledger.gallery import accounts

        return accounts.session_principal(self.context, token)

    def sign_out(self, token: str, *, address: str) -> bool:
        """End a web session (audited)."""
        from faceledger.gallery import accounts

        return accounts.sign_out(self.context, token, address=address)

    def stats(self, *, actor: str | None = None, purpose: str | None = None) -> dict[str, int]:
        """Counts only: subjects, templates, valid consents, pending reviews, audit head. Counts shown to a person
        pass ``actor`` and ``purpose`` (a ``records.read`` entry); ``/metrics`` calls it without (no entry)."""
        return admin.stats(self.context, actor=actor, purpose=purpose)

    def readiness(self, *, models: bool = True) -> dict[str, str]:
        """``{"models", "database", "master_key"}`` checks, each ``"ok"`` or what is wrong."""
        return admin.readiness(self.context, models=models)

    # ------------------------------------------------------------------------------------------ the ledger
    def audit_verify(self, expected_head: AuditHead | None = None, *, public_key: bytes | None = None) -> VerifyResult:
        """Recompute the audit chain and check its signed checkpoints against ``public_key`` (default: the signing
        key file's); names the first entry altered, removed, inserted or reordered."""
        return admin.audit_verify(self.context, expected_head, public_key=public_key)

    def audit_verify_published(self, published: SignedHead, *, public_key: bytes | None = None) -> VerifyResult:
        """Verify this database against a signed head published earlier (``audit head --signed``)."""
        from faceledger.gallery import signatures

        return signatures.verify_published(self.context, published, public_key=public_key)

    def audit_checkpoint(self, *, actor: str, purpose: str = "audit") -> SignedHead:
        """Sign the ledger's head now and record the checkpoint; returns the signed head, to publish."""
        from faceledger.gallery import signatures

        return signatures.checkpoint(self.context, actor=actor, purpose=purpose)

    def audit_head(self) -> AuditHead | None:
        """Sequence number and hash of the last audit entry, to publish elsewhere as an anchor."""
        return admin.audit_head(self.context)

    def audit_entries(
        self,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        action: str | None = None,
        actor: str | None = None,
        purpose: str | None = None,
    ) -> list[AuditEntry]:
        """Audit entries after ``after_seq`` (optionally only one action, e.g. ``identify``). Any read that shows
        them to a person must pass ``actor`` and ``purpose``: the read is then a ``records.read`` entry, appended
        after the entries read. Without them it is an internal read (no entry)."""
        return admin.audit_entries(
            self.context, after_seq=after_seq, limit=limit, action=action, actor=actor, purpose=purpose
        )

    def audit_export(self, *, actor: str, purpose: str) -> list[AuditEntry]:
        """Every audit entry, for export; the export itself is recorded first."""
        return admin.audit_export(self.context, actor=actor, purpose=purpose)

    def report(
        self,
        *,
        actor: str,
        purpose: str,
        period: str = "month",
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> TransparencyReport:
        """Transparency report: counts per period, gallery and purpose (:mod:`faceledger.gallery.report`)."""
        return transparency_report(self.context, actor=actor, purpose=purpose, period=period, since=since, until=until)
