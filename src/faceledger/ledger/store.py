"""The system of record behind one narrow interface: :class:`Store` and :class:`Transaction`.

Use cases open a transaction, do everything an operation needs (including its audit entry) inside it, and
commit once, so an operation either happened completely, with its audit entry, or not at all::

    with store.write() as tx:
        tx.add_template(...)
        tx.append_audit(AuditDraft(...), ts)

:func:`open_store` maps a database location to its backend: SQLite (:mod:`faceledger.ledger.sqlite`), the embedded
default, or a PostgreSQL server (:mod:`faceledger.ledger.postgres`). Both run the same SQL
(:mod:`faceledger.ledger.sql_tx`) and pass the same contract tests (tests/test_store_contract.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol, cast

from faceledger.config import Database, database
from faceledger.ledger.audit import AuditDraft, AuditEntry, AuditHead, StoredAuditRow, VerifyResult, verify_chain
from faceledger.ledger.errors import StoreError
from faceledger.ledger.records import (
    ActivityRow,
    ApiKey,
    CandidateRecord,
    CandidateStatus,
    Consent,
    DeploymentRecord,
    EvidenceKey,
    EvidenceRecord,
    ReferenceFace,
    ReviewRecord,
    Subject,
    SubjectKey,
    TemplateRecord,
    TemplateRef,
    UserAccount,
    VideoSessionRecord,
    WebSession,
)
from faceledger.ledger.retention import retention_problem
from faceledger.ledger.signing import check_signatures
from faceledger.ledger.sql_base import DEFAULT_BUSY_TIMEOUT_S, migrations
from faceledger.ledger.sqlite import SQLiteStore

__all__ = ["DEFAULT_BUSY_TIMEOUT_S", "SQLiteStore", "Store", "Transaction", "migrations", "open_store", "verify_audit"]


class Transaction(Protocol):
    """Operations available inside one transaction. Every method is a small, single-purpose query."""

    # meta
    def get_meta(self, key: str) -> str | None:
        """A value from the meta table, or None."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Insert or replace a meta value."""
        ...

    def data_version(self) -> int:
        """Counter bumped by every change to the set of templates (search indexes compare it)."""
        ...

    def bump_data_version(self) -> int:
        """Increment and return the data version (and prune the change log to its latest rows)."""
        ...

    def last_change(self) -> int:
        """The highest seq of the change log of templates, subjects and consents (0 when empty)."""
        ...

    def changes_since(self, after: int, limit: int) -> tuple[int, list[tuple[str, str | None]]] | None:
        """The change log after seq ``after`` as ``(last seq, [(subject_id, template_id or None), ...])``, or None
        when it was pruned past ``after`` or holds more than ``limit`` rows."""
        ...

    # policies and galleries
    def put_policy(self, policy_hash: str, body: str, created_at: str, created_by: str) -> None:
        """Record a policy text by its hash (no-op if already recorded)."""
        ...

    def get_policy(self, policy_hash: str) -> str | None:
        """The text of a recorded policy."""
        ...

    def ensure_gallery(self, name: str, created_at: str) -> None:
        """Create the gallery row if missing."""
        ...

    def gallery_names(self) -> list[str]:
        """All gallery names."""
        ...

    # subjects and keys
    def add_subject(self, subject: Subject) -> None:
        """Insert a subject; raises DuplicateError if the id exists."""
        ...

    def add_subjects(
        self, subjects: Sequence[Subject], keys: Sequence[SubjectKey], templates: Sequence[TemplateRecord]
    ) -> None:
        """Insert new subjects with their data keys and templates in bulk (a few round trips for all, not a few
        per row): all of them, or none and DuplicateError when one exists already (the transaction stays usable).
        Every key and template must be of one of ``subjects`` (ValueError otherwise), at most one key each."""
        ...

    def get_subject(self, subject_id: str) -> Subject | None:
        """A subject by id."""
        ...

    def list_subjects(self, gallery: str | None = None) -> list[Subject]:
        """Subjects, ordered by id."""
        ...

    def template_counts(self) -> dict[str, int]:
        """Number of templates per subject id."""
        ...

    def gallery_counts(self, gallery: str) -> tuple[int, int]:
        """The subjects of ``gallery`` and their templates, counted by the database (enrollment checks the
        gallery's size in every transaction; reading its subjects would make a batch quadratic in the gallery)."""
        ...

    def template_models(self) -> set[str]:
        """The model ids the templates were made with (one query, whatever the gallery's size)."""
        ...

    def counts(self, now: str) -> dict[str, int]:
        """Subjects, templates, consents valid at ``now`` and pending candidates, counted by the database (not by
        reading the rows: /metrics asks on every scrape, and a national gallery has millions)."""
        ...

    def delete_subject(self, subject_id: str) -> None:
        """Delete a subject, its data key and templates (cascade)."""
        ...

    def add_subject_key(self, key: SubjectKey) -> None:
        """Store a subject's wrapped data key."""
        ...

    def get_subject_key(self, subject_id: str) -> SubjectKey | None:
        """A subject's wrapped data key."""
        ...

    def list_subject_keys(self) -> list[SubjectKey]:
        """Every wrapped data key (for master key rotation)."""
        ...

    def rewrap_subject_key(self, key_id: str, wrapped: bytes, master_key_id: str) -> None:
        """Replace a data key's wrapping (same data key, new master key)."""
        ...

    # consents
    def add_consent(self, consent: Consent) -> None:
        """Insert a consent record."""
        ...

    def get_consent(self, consent_id: str) -> Consent | None:
        """A consent record by id."""
        ...

    def list_consents(self, subject_id: str | None = None, gallery: str | None = None) -> list[Consent]:
        """Consent records, oldest first."""
        ...

    def end_consent(self, consent_id: str, withdrawn_at: str | None, reason: str) -> None:
        """Mark a consent as ended (withdrawn at a time, or expired when ``withdrawn_at`` is None)."""
        ...

    def delete_consent(self, consent_id: str) -> None:
        """Delete a consent record (retention)."""
        ...

    # templates
    def add_template(self, template: TemplateRecord) -> None:
        """Insert an encrypted template; raises DuplicateError for the same subject, image and face."""
        ...

    def template_refs(self) -> list[TemplateRef]:
        """Id, subject and model of every template, without ciphertext."""
        ...

    def templates_page(self, after_id: str, limit: int) -> list[tuple[TemplateRecord, SubjectKey | None]]:
        """Up to ``limit`` templates with ids after ``after_id``, in id order, each with its subject's wrapped key
        (None when the key row is missing): a whole gallery read page by page, one query per page."""
        ...

    def get_templates(self, template_ids: Sequence[str]) -> list[TemplateRecord]:
        """Templates by id (missing ids are skipped)."""
        ...

    def templates_of(self, subject_id: str) -> list[TemplateRecord]:
        """All templates of a subject."""
        ...

    def sources_of(self, source_sha256: str) -> list[tuple[str, int]]:
        """``(subject_id, face_index)`` of the templates made from an image with this SHA-256."""
        ...

    def templates_created_before(self, cutoff: str) -> list[TemplateRef]:
        """Templates older than a timestamp."""
        ...

    def delete_template(self, template_id: str) -> None:
        """Delete one template."""
        ...

    # candidates and reviews
    def add_candidate(self, candidate: CandidateRecord) -> None:
        """Insert a candidate awaiting review."""
        ...

    def get_candidate(self, candidate_id: str) -> CandidateRecord | None:
        """A candidate by id."""
        ...

    def list_candidates(
        self, status: CandidateStatus | None = None, gallery: str | None = None, subject_id: str | None = None
    ) -> list[CandidateRecord]:
        """Candidates, oldest first."""
        ...

    def pending_candidates(self, gallery: str | None = None) -> list[tuple[CandidateRecord, int]]:
        """Pending candidates, oldest first, each with its number of distinct confirming reviewers."""
        ...

    def set_candidate_status(self, candidate_id: str, status: CandidateStatus, decided_at: str | None) -> None:
        """Record a candidate's review outcome."""
        ...

    def delete_candidates_of(self, subject_id: str) -> int:
        """Delete a subject's candidates and their reviews; returns how many candidates."""
        ...

    def delete_candidates_before(self, cutoff: str) -> int:
        """Delete candidates (and reviews) created before a timestamp; returns how many."""
        ...

    def add_review(self, review: ReviewRecord) -> None:
        """Insert a review; raises DuplicateError if this reviewer already reviewed this candidate."""
        ...

    def reviews_of(self, candidate_id: str) -> list[ReviewRecord]:
        """Reviews of a candidate, oldest first."""
        ...

    # audit
    def append_audit(self, draft: AuditDraft, ts: str) -> AuditEntry:
        """Append an entry after the current head, in this transaction."""
        ...

    def audit_head(self) -> AuditHead | None:
        """The head the store recorded with the last append (None for an empty ledger)."""
        ...

    def audit_rows(self) -> Iterator[StoredAuditRow]:
        """Every stored audit row in storage order, as is (for verification)."""
        ...

    def audit_entries(
        self, after_seq: int = 0, limit: int | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """Entries with ``seq > after_seq``, optionally of one action."""
        ...

    def audit_activity(
        self, since: str | None = None, until: str | None = None
    ) -> tuple[list[ActivityRow], str | None, str | None]:
        """The entries with ``since <= ts < until`` counted by the database per day, gallery, purpose and action,
        with the first and last ``ts`` among them (the transparency report, without loading the entries)."""
        ...

    def purge_audit_before(self, cutoff: str) -> tuple[int, int, str] | None:
        """Delete the oldest entries with ``ts < cutoff``; returns ``(first_seq, last_seq, last_hash)``."""
        ...

    # deployments and video sessions
    def add_deployment(self, deployment: DeploymentRecord) -> None:
        """Insert a deployment; raises DuplicateError if the name is taken."""
        ...

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        """A deployment by name."""
        ...

    def list_deployments(self) -> list[DeploymentRecord]:
        """Every deployment, oldest first (ended ones included)."""
        ...

    def update_deployment(self, name: str, **changes: Any) -> None:
        """Change a deployment's end, sources, validity end or watchlist size limit."""
        ...

    def add_video_session(self, session: VideoSessionRecord) -> None:
        """Insert a video session record."""
        ...

    def update_video_session(self, session_id: str, **changes: Any) -> None:
        """Update a session's heartbeat, counts or stop."""
        ...

    def list_video_sessions(self, running_only: bool = False) -> list[VideoSessionRecord]:
        """Video sessions, oldest first; only those not stopped with ``running_only``."""
        ...

    # api keys
    def add_api_key(self, key: ApiKey) -> None:
        """Insert an API key record."""
        ...

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """An API key record by id."""
        ...

    def list_api_keys(self) -> list[ApiKey]:
        """All API key records, oldest first."""
        ...

    def revoke_api_key(self, key_id: str, revoked_at: str) -> None:
        """Mark an API key revoked."""
        ...

    # web UI accounts and sessions
    def add_user(self, user: UserAccount) -> None:
        """Insert a user account; raises DuplicateError if the name is taken."""
        ...

    def get_user(self, name: str) -> UserAccount | None:
        """A user account by name."""
        ...

    def list_users(self) -> list[UserAccount]:
        """Every user account, by name."""
        ...

    def update_user(self, name: str, *, password_hash: str | None = None, disabled_at: str | None = None) -> None:
        """Change a user's password hash or disable the account."""
        ...

    def add_web_session(self, session: WebSession) -> None:
        """Insert a web session."""
        ...

    def get_web_session(self, id_sha256: str) -> WebSession | None:
        """A web session by the SHA-256 of its cookie."""
        ...

    def end_web_sessions(self, ended_at: str, *, id_sha256: str | None = None, user_name: str | None = None) -> int:
        """End one session, or every open session of a user; returns how many ended."""
        ...

    def delete_web_sessions_before(self, cutoff: str) -> int:
        """Delete sessions that expired or ended before a timestamp; returns how many."""
        ...

    # seals (see migrations/0005_seals.sql and faceledger.ledger.seals)
    def get_seal(self, kind: str, key: str) -> tuple[int, str] | None:
        """``(seq, mac)`` of a record's seal, or None."""
        ...

    def seals_of(self, kind: str) -> dict[str, tuple[int, str]]:
        """Every seal of one kind of record, by key."""
        ...

    def put_seal(self, kind: str, key: str, seq: int, mac: str) -> None:
        """Insert or replace a record's seal."""
        ...

    def seals_among(self, kind: str, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        """The seals of the given records of one kind that exist, by key."""
        ...

    def put_seals(self, rows: Sequence[tuple[str, str, int, str]]) -> None:
        """Insert or replace many seals, ``(kind, key, seq, mac)`` each, in one go."""
        ...

    def delete_seal(self, kind: str, key: str) -> None:
        """Remove a record's seal (the record was deleted by faceledger)."""
        ...

    def audit_body(self, seq: int) -> str | None:
        """The stored body of one audit entry, or None."""
        ...

    # evidence and reference faces (see migrations/0003_evidence.sql)
    def add_evidence(self, evidence: EvidenceRecord) -> None:
        """Store a candidate's encrypted evidence (its candidate must exist)."""
        ...

    def get_evidence(self, candidate_id: str) -> EvidenceRecord | None:
        """A candidate's encrypted evidence, or None (never kept, or destroyed)."""
        ...

    def delete_evidence(self, candidate_id: str) -> int:
        """Destroy a candidate's evidence; returns how many rows (0 or 1)."""
        ...

    def delete_evidence_decided_before(self, cutoff: str) -> int:
        """Destroy the evidence of candidates decided (confirmed or rejected) before a timestamp; returns how many."""
        ...

    def evidence_count(self, subject_id: str | None = None) -> int:
        """How many candidates (of one subject, or all) have evidence stored."""
        ...

    def list_evidence_keys(self) -> list[EvidenceKey]:
        """Every wrapped evidence key, without the images (for master key rotation)."""
        ...

    def rewrap_evidence_key(self, candidate_id: str, wrapped: bytes, master_key_id: str) -> None:
        """Replace an evidence key's wrapping (same key, new master key)."""
        ...

    def add_reference_face(self, face: ReferenceFace) -> None:
        """Store the encrypted reference face of a template (deleted with the template or the subject)."""
        ...

    def reference_faces_of(self, subject_id: str) -> list[ReferenceFace]:
        """A subject's encrypted reference faces, oldest first."""
        ...


class Store(Protocol):
    """A database holding one faceledger deployment."""

    location: str

    def read(self) -> Any:
        """Context manager yielding a :class:`Transaction` over a consistent snapshot (no writes)."""
        ...

    def write(self) -> Any:
        """Context manager yielding a :class:`Transaction` holding the write lock; commits on success."""
        ...

    def reclaim(self) -> bool:
        """Make deleted data unrecoverable from the database files; True if fully done."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def verify_audit(
    tx: Transaction, expected_head: AuditHead | None = None, *, public_key: bytes | None = None
) -> VerifyResult:
    """Verify the audit chain stored behind ``tx`` against the head recorded with the last append, then its
    signatures (:func:`faceledger.ledger.signing.check_signatures`).

    ``expected_head`` is a head published earlier (``faceledger audit head``); the chain must extend it.
    ``public_key`` is the signing key's public key obtained outside the database (the key file's, or a published
    one): without it the signatures are checked against the key the ledger itself records.
    """
    rows = list(tx.audit_rows())
    result = verify_chain(
        rows,
        recorded_head=tx.audit_head(),
        expected_head=expected_head,
        initialised=tx.get_meta("initialised_at") is not None,
    )
    if not result.ok:
        return result
    bodies = [(r.seq, r.hash, json.loads(r.body)) for r in rows]
    problem = check_signatures(bodies, public_key)
    if problem is None:  # a signed retention checkpoint counts only if the policy then in force allowed it
        for seq, _, body in bodies:
            if body.get("action") == "audit.purge":
                why = retention_problem(seq, body, tx.get_policy(str(body.get("policy_hash") or "")))
                if why is not None:
                    problem = seq, why
                    break
    if problem is None:
        return result
    seq, text = problem
    return replace(result, ok=False, bad_seq=seq, problem=text)


def open_store(
    location: str | os.PathLike[str] | Database | None = None,
    *,
    create: bool = False,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
) -> Store:
    """Open the store at a database location (a path or a URL, see :func:`faceledger.config.database`;
    None: ``FACELEDGER_DB`` or ``./faceledger.db``). The one place that maps a location to a backend."""
    db = database(location)
    if db.backend == "sqlite":
        return SQLiteStore.open(db.file, create=create, busy_timeout=busy_timeout)
    if db.backend == "postgresql":
        from faceledger.ledger.postgres import PostgresStore  # psycopg is an optional dependency

        return cast("Store", PostgresStore.open(db, create=create, busy_timeout=busy_timeout))
    raise StoreError(f"{db}: no store for backend {db.backend!r}")  # config.database refuses these already
