"""The :class:`Gallery` facade: every use case that touches people, each with its audit entry.

Each method that changes something runs in one store transaction that also appends its audit entry, so an
operation is recorded if and only if it happened. Every method that touches people takes ``actor`` (who) and
``purpose`` (why); the purpose must be one the policy allows where the policy names purposes.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceledger.errors import FaceledgerError, ImageError, ModelError, NoFaceError
from faceledger.gallery.index import SearchIndex
from faceledger.gallery.results import (
    CandidateMatch,
    ConsentWithdrawal,
    DuplicateWarning,
    EnrollmentResult,
    ErasureReceipt,
    FaceResult,
    Identification,
    ImageOutcome,
    ImageVerification,
    PendingReview,
    PurgeReport,
    ReviewOutcome,
    SubjectInfo,
    SubjectVerification,
)
from faceledger.ledger import crypto
from faceledger.ledger.apikeys import authenticate as _authenticate
from faceledger.ledger.apikeys import create_api_key as _create_api_key
from faceledger.ledger.apikeys import revoke_api_key as _revoke_api_key
from faceledger.ledger.audit import PURGE_ACTION, AuditDraft, AuditEntry, AuditHead, VerifyResult
from faceledger.ledger.errors import (
    AccountabilityError,
    ConsentError,
    DuplicateError,
    LedgerError,
    MasterKeyError,
    PurposeError,
    ReviewError,
    StoreError,
    UnknownSubjectError,
)
from faceledger.ledger.policy import EXAMPLE_POLICY, LoadedPolicy, load_policy, parse_policy
from faceledger.ledger.records import (
    ApiKey,
    CandidateRecord,
    CandidateStatus,
    Consent,
    ReviewRecord,
    Subject,
    SubjectKey,
    TemplateRecord,
)
from faceledger.ledger.retention import cutoffs
from faceledger.ledger.store import SQLiteStore, Store, Transaction, verify_audit
from faceledger.ledger.timeutil import from_text, to_text, utcnow

if TYPE_CHECKING:
    from faceledger.engine import Engine

DB_ENV = "FACELEDGER_DB"
"""Environment variable naming the database file (default ``./faceledger.db``)."""
KEY_FILE_ENV = "FACELEDGER_KEY_FILE"
"""Environment variable naming the master key file (default: the database path plus ``.key``)."""

SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")
ImageInput = Any  # path, bytes, binary file object or numpy array


def default_db_path() -> Path:
    """``FACELEDGER_DB`` or ``./faceledger.db``."""
    return Path(os.environ.get(DB_ENV) or "faceledger.db")


def default_key_file(db: str | os.PathLike[str]) -> Path:
    """``FACELEDGER_KEY_FILE`` or the database path with ``.key`` appended."""
    env = os.environ.get(KEY_FILE_ENV)
    return Path(env) if env else Path(os.fspath(db) + ".key")


def _check_subject_id(subject: str) -> str:
    if not isinstance(subject, str) or not SUBJECT_ID.match(subject):
        raise ValueError(
            f"subject id {subject!r} is not valid: use 1-128 letters, digits or _.:@+- "
            "(starting with a letter or digit); never a name or other personal data if you can avoid it"
        )
    return subject


def _accountable(actor: str | None, purpose: str | None) -> tuple[str, str]:
    if not actor or not str(actor).strip():
        raise AccountabilityError("an actor is required: who is doing this", "actor")
    if not purpose or not str(purpose).strip():
        raise AccountabilityError("a purpose is required: why this is done", "purpose")
    return str(actor).strip(), str(purpose).strip()


@dataclass(frozen=True)
class _Probe:
    source: str
    sha256: str
    array: np.ndarray


@dataclass
class _AllowedCache:
    version: tuple[str | None, int]
    subjects: frozenset[str]
    valid_until: datetime | None
    mask: np.ndarray | None = None
    generation: int = -1


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
        self.store = store
        self.key_file = None if key_file is None else Path(key_file)
        self._engine = engine
        self._clock = clock or utcnow
        self._master: crypto.MasterKey | None = None
        self._data_keys: dict[str, bytes] = {}
        self._index: SearchIndex | None = None
        self._allowed: dict[tuple[str, str], _AllowedCache] = {}
        self._policy: LoadedPolicy | None = None
        with self.store.read() as tx:
            if tx.get_meta("initialised_at") is None:
                raise StoreError(
                    f"{store.location}: database is not initialised; run `faceledger --db {store.location} init`"
                )
            self._refresh_policy(tx)

    # ------------------------------------------------------------------------------------------ lifecycle
    @classmethod
    def init(
        cls,
        db: str | os.PathLike[str],
        *,
        actor: str,
        policy: str | os.PathLike[str] | LoadedPolicy | None = None,
        key_file: str | os.PathLike[str] | None = None,
        engine: Engine | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> Gallery:
        """Create a new deployment: the database, its master key and its policy.

        The master key is taken from ``FACELEDGER_MASTER_KEY`` when set; otherwise a new key file is written
        (mode 0600) at ``key_file`` (default: the database path plus ``.key``). ``policy`` is a policy file, a
        loaded policy, or None for the commented example policy (``faceledger policy example``).
        """
        actor, _ = _accountable(actor, "init")
        db = Path(db)
        loaded = _as_policy(policy)
        key_path = Path(key_file) if key_file is not None else default_key_file(db)
        store = SQLiteStore.open(db, create=True)
        try:
            with store.read() as tx:
                if tx.get_meta("initialised_at") is not None:
                    raise StoreError(f"{db}: already initialised; open it instead (or choose another --db)")
            if os.environ.get(crypto.MASTER_KEY_ENV):
                master = crypto.load_master_key(None)
                key_source = "environment"
            else:
                master = crypto.create_key_file(key_path)
                key_source = "file"
            now = to_text((clock or utcnow)())
            with store.write() as tx:
                if tx.get_meta("initialised_at") is not None:
                    raise StoreError(f"{db}: already initialised by another process")
                tx.set_meta("initialised_at", now)
                tx.set_meta("master_key_id", master.id)
                tx.set_meta("data_version", "0")
                tx.set_meta("consent_version", "0")
                tx.put_policy(loaded.hash, loaded.text, now, actor)
                tx.set_meta("policy_hash", loaded.hash)
                for g in loaded.policy.galleries:
                    tx.ensure_gallery(g.name, now)
                tx.append_audit(
                    AuditDraft(
                        action="ledger.init",
                        actor=actor,
                        purpose="administration",
                        policy_hash=loaded.hash,
                        details={
                            "master_key_id": master.id,
                            "master_key_source": key_source,
                            "galleries": [g.name for g in loaded.policy.galleries],
                        },
                    ),
                    now,
                )
        except BaseException:
            store.close()
            raise
        gallery = cls(store, key_file=key_path, engine=engine, clock=clock)
        gallery._master = master
        return gallery

    @classmethod
    def open(
        cls,
        db: str | os.PathLike[str] | None = None,
        *,
        key_file: str | os.PathLike[str] | None = None,
        engine: Engine | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> Gallery:
        """Open an initialised deployment (``db`` defaults to ``FACELEDGER_DB`` or ``./faceledger.db``).

        The master key is loaded only when an operation needs it (enroll, identify), from
        ``FACELEDGER_MASTER_KEY`` or ``key_file`` (default: the database path plus ``.key``).
        """
        db = Path(db) if db is not None else default_db_path()
        store = SQLiteStore.open(db)
        try:
            return cls(store, key_file=key_file or default_key_file(db), engine=engine, clock=clock)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        """Close the database."""
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ plumbing
    def _now(self) -> datetime:
        return self._clock()

    @property
    def engine(self) -> Engine:
        """The recognition engine (created on first use)."""
        if self._engine is None:
            from faceledger.engine import Engine

            self._engine = Engine()
        return self._engine

    @property
    def policy(self) -> LoadedPolicy:
        """The policy in force (text, hash and validated model)."""
        assert self._policy is not None
        return self._policy

    def _refresh_policy(self, tx: Transaction) -> LoadedPolicy:
        current = tx.get_meta("policy_hash")
        if current is None:
            raise StoreError(f"{self.store.location}: no policy recorded; the database was not initialised")
        if self._policy is None or self._policy.hash != current:
            text = tx.get_policy(current)
            if text is None:
                raise StoreError(f"{self.store.location}: active policy {current[:12]} is missing from the database")
            self._policy = parse_policy(text, f"policy {current[:12]}")
        return self._policy

    def _master_key(self, tx: Transaction) -> crypto.MasterKey:
        if self._master is None:
            master = crypto.load_master_key(self.key_file)
            expected = tx.get_meta("master_key_id")
            pending = None if self.key_file is None else _pending_key_file(self.key_file)
            if (
                expected != master.id
                and pending is not None
                and pending.exists()
                and master.source != (crypto.MASTER_KEY_ENV)
            ):
                # a rotation committed but was interrupted before the new key file replaced the old one
                candidate = crypto.load_master_key(pending)
                if candidate.id == expected:
                    assert self.key_file is not None
                    os.replace(pending, self.key_file)
                    master = crypto.MasterKey(candidate.key, str(self.key_file))
            if expected != master.id:
                raise MasterKeyError(
                    f"{master.source}: master key {master.id} is not the one this database was created with "
                    f"({expected}); give the right key file (--key-file) or {crypto.MASTER_KEY_ENV}"
                )
            self._master = master
        return self._master

    def rotate_master_key(self, *, actor: str, purpose: str = "key rotation") -> dict[str, Any]:
        """Re-wrap every subject data key with a new master key written to the key file.

        Afterwards only the new key opens this database; backups taken before the rotation need the old key,
        so destroying every copy of the old key makes them unreadable (including subjects erased since).
        Only key files can be rotated (not ``FACELEDGER_MASTER_KEY``). The rotation is an audit entry.
        """
        actor, purpose = _accountable(actor, purpose)
        if os.environ.get(crypto.MASTER_KEY_ENV):
            raise MasterKeyError(
                f"the master key comes from {crypto.MASTER_KEY_ENV}; rotation writes a key file, so unset it and "
                "give the key file (--key-file)"
            )
        if self.key_file is None:
            raise MasterKeyError("no key file to rotate; open the gallery with key_file=...")
        with self.store.read() as tx:
            old = self._master_key(tx)
        pending = _pending_key_file(self.key_file)
        if pending.exists():
            raise MasterKeyError(f"{pending} exists: an earlier rotation did not finish; move it away first")
        new = crypto.create_key_file(pending)
        now = to_text(self._now())
        try:
            with self._write() as tx:
                if tx.get_meta("master_key_id") != old.id:
                    raise MasterKeyError("the master key changed while rotating; retry")
                keys = tx.list_subject_keys()
                for key in keys:
                    data_key = old.unwrap(key.wrapped, subject_id=key.subject_id, key_id=key.id)
                    tx.rewrap_subject_key(key.id, new.wrap(data_key, subject_id=key.subject_id, key_id=key.id), new.id)
                tx.set_meta("master_key_id", new.id)
                entry = self._append(
                    tx,
                    AuditDraft(
                        action="key.rotate",
                        actor=actor,
                        purpose=purpose,
                        details={"old_master_key_id": old.id, "new_master_key_id": new.id, "subject_keys": len(keys)},
                    ),
                    now,
                )
        except BaseException:
            pending.unlink(missing_ok=True)
            raise
        os.replace(pending, self.key_file)
        self._master = crypto.MasterKey(new.key, str(self.key_file))
        reclaimed = self.store.reclaim()
        return {
            "old_master_key_id": old.id,
            "new_master_key_id": new.id,
            "subject_keys": len(keys),
            "key_file": str(self.key_file),
            "audit_seq": entry.seq,
            "reclaimed": reclaimed,
        }

    def _gallery_name(self, policy: LoadedPolicy, gallery: str | None) -> str:
        try:
            return policy.policy.gallery(gallery).name
        except KeyError as exc:
            raise PurposeError(str(exc.args[0])) from None

    def _check_purpose(self, policy: LoadedPolicy, gallery: str, purpose: str) -> None:
        allowed = policy.policy.gallery(gallery).purposes
        if purpose not in allowed:
            raise PurposeError(
                f"purpose {purpose!r} is not allowed for gallery {gallery!r} by policy {policy.hash[:12]}; "
                f"allowed: {', '.join(allowed)}"
            )

    def model_id(self) -> str:
        """Identifier of the recognizer templates are made with: card name and the start of its SHA-256."""
        card = self.engine.recognizer.card
        return f"{card.name}:{str(card.sha256)[:16]}"

    def threshold(self) -> float:
        """Similarity threshold of the policy's target false-match rate, from the recognizer's calibration."""
        fmr = self.policy.policy.identification.target_fmr
        try:
            return float(self.engine.threshold_for_fmr(fmr))
        except ModelError as exc:
            raise ModelError(f"cannot set the threshold for target_fmr={fmr}: {exc}") from None

    def _data_key(self, tx: Transaction, subject: str) -> bytes:
        key = self._data_keys.get(subject)
        if key is None:
            record = tx.get_subject_key(subject)
            if record is None:
                raise StoreError(f"subject {subject!r} has templates but no data key: the database is damaged")
            key = self._master_key(tx).unwrap(record.wrapped, subject_id=subject, key_id=record.id)
            self._data_keys[subject] = key
        return key

    def _decrypt(self, tx: Transaction, record: TemplateRecord) -> np.ndarray:
        plain = crypto.decrypt_template(
            self._data_key(tx, record.subject_id),
            record.nonce,
            record.ciphertext,
            subject_id=record.subject_id,
            template_id=record.id,
        )
        return np.frombuffer(plain, dtype="<f4").astype(np.float32).reshape(record.dim)

    def _sync_index(self, tx: Transaction) -> SearchIndex:
        """Bring the in-memory index to the store's data version (adds and erasures by any process)."""
        version = tx.data_version()
        model = self.model_id()
        dim = int(getattr(self.engine.recognizer.card, "dim", 0) or 128)
        if self._index is None or self._index.dim != dim:
            self._index = SearchIndex(dim)
        index = self._index
        if index.version == version:
            return index
        refs = tx.template_refs()
        foreign = sorted({r.model for r in refs if r.model != model})
        if foreign:
            raise ModelError(
                f"the gallery holds templates made with recognizer {', '.join(foreign)} but this engine runs "
                f"{model}; use the same recognizer, or erase and re-enroll those subjects"
            )
        current = {r.id: r.subject_id for r in refs}
        have = index.template_ids
        remove = have - current.keys()
        add = sorted(current.keys() - have)
        records = tx.get_templates(add)
        vectors = np.stack([self._decrypt(tx, r) for r in records]) if records else np.zeros((0, dim))
        index.update(
            remove=remove,
            add_ids=[r.id for r in records],
            add_subjects=[r.subject_id for r in records],
            add_vectors=vectors,
        )
        index.version = version
        present = set(current.values())
        for subject in list(self._data_keys):
            if subject not in present:
                del self._data_keys[subject]
        return index

    def _allowed_subjects(self, tx: Transaction, gallery: str, purpose: str | None, now: datetime) -> _AllowedCache:
        """Subjects of ``gallery`` whose consent is valid now for ``purpose`` (any purpose when None)."""
        version = (tx.get_meta("consent_version"), tx.data_version())
        key = (gallery, purpose or "")
        cached = self._allowed.get(key)
        if (
            cached is not None
            and cached.version == version
            and (cached.valid_until is None or now < cached.valid_until)
        ):
            return cached
        enrolled = {s.id for s in tx.list_subjects(gallery)}
        allowed: set[str] = set()
        valid_until: datetime | None = None
        for consent in tx.list_consents(gallery=gallery):
            if consent.subject_id not in enrolled or (purpose is not None and consent.purpose != purpose):
                continue
            state = consent.state(now)
            change = None
            if state == "valid":
                allowed.add(consent.subject_id)
                change = None if consent.expires_at is None else from_text(consent.expires_at)
            elif state == "not_yet_valid":
                change = from_text(consent.given_at)
            if change is not None and (valid_until is None or change < valid_until):
                valid_until = change
        entry = _AllowedCache(version, frozenset(allowed), valid_until)
        self._allowed[key] = entry
        return entry

    def _mask(self, index: SearchIndex, entry: _AllowedCache) -> np.ndarray:
        if entry.mask is None or entry.generation != index.generation:
            entry.mask = index.mask(entry.subjects)
            entry.generation = index.generation
        return entry.mask

    def _probe(self, image: ImageInput) -> _Probe:
        """Decode an image and hash its bytes (the hash is what the ledger records, never pixels)."""
        if isinstance(image, str | os.PathLike):
            source = os.fspath(image)
            array = self.engine.load(image)
            digest = hashlib.sha256(Path(image).read_bytes()).hexdigest()
            return _Probe(source, digest, array)
        if isinstance(image, np.ndarray):
            array = self.engine.load(image)
            digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
            return _Probe("<array>", digest, array)
        if isinstance(image, bytes | bytearray | memoryview):
            data = bytes(image)
            source = "<bytes>"
        elif hasattr(image, "read"):
            data = image.read()
            source = str(getattr(image, "name", "<stream>"))
        else:
            raise ImageError(repr(type(image).__name__), "not an image: give a path, bytes, a file or an array")
        try:
            array = self.engine.load(io.BytesIO(data))
        except ImageError as exc:
            raise ImageError(source, exc.reason) from None
        return _Probe(source, hashlib.sha256(data).hexdigest(), array)

    @contextmanager
    def _write(self) -> Iterator[Transaction]:
        """A store write transaction; if it fails, the in-memory index is resynchronised from the store."""
        try:
            with self.store.write() as tx:
                yield tx
        except BaseException:
            if self._index is not None:
                self._index.version = None
            raise

    def _index_applied(
        self,
        new_version: int,
        *,
        remove: Sequence[str] = (),
        add: Sequence[tuple[str, str, np.ndarray]] = (),
    ) -> None:
        """Apply this transaction's own template changes to the index, if it was in sync just before."""
        index = self._index
        if index is None or index.version != new_version - 1:
            return
        index.update(
            remove=remove,
            add_ids=[t for t, _, _ in add],
            add_subjects=[s for _, s, _ in add],
            add_vectors=np.stack([v for _, _, v in add]) if add else np.zeros((0, index.dim), np.float32),
        )
        index.version = new_version

    def _append(self, tx: Transaction, draft: AuditDraft, now: str) -> AuditEntry:
        return tx.append_audit(draft, now)

    # ------------------------------------------------------------------------------------------ policy
    def set_policy(
        self, policy: str | os.PathLike[str] | LoadedPolicy, *, actor: str, purpose: str = "administration"
    ) -> LoadedPolicy:
        """Put a new policy in force (recorded with its hash; the change is an audit entry).

        Refused when it drops a gallery that still has enrolled subjects.
        """
        actor, purpose = _accountable(actor, purpose)
        loaded = _as_policy(policy)
        now = to_text(self._now())
        with self._write() as tx:
            old = self._refresh_policy(tx)
            names = {g.name for g in loaded.policy.galleries}
            for subject in tx.list_subjects():
                if subject.gallery not in names:
                    raise PurposeError(
                        f"{loaded.source}: gallery {subject.gallery!r} still has enrolled subjects; "
                        "keep it in the policy or erase them first"
                    )
            tx.put_policy(loaded.hash, loaded.text, now, actor)
            tx.set_meta("policy_hash", loaded.hash)
            for g in loaded.policy.galleries:
                tx.ensure_gallery(g.name, now)
            tx.set_meta("consent_version", str(int(tx.get_meta("consent_version") or 0) + 1))
            self._append(
                tx,
                AuditDraft(
                    action="policy.change",
                    actor=actor,
                    purpose=purpose,
                    policy_hash=loaded.hash,
                    details={"previous_hash": old.hash, "new_hash": loaded.hash},
                ),
                now,
            )
            self._policy = loaded
        return loaded

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
    ) -> Consent:
        """Record a subject's consent to be enrolled in ``gallery`` and searched for ``purpose``.

        ``evidence_ref`` points to the signed form or recording (kept outside faceledger); ``given_at``
        defaults to now; ``expires_at`` (optional) must be later than both.
        """
        subject = _check_subject_id(subject)
        actor, purpose = _accountable(actor, purpose)
        for name, value in (
            ("collected_by", collected_by),
            ("legal_basis", legal_basis),
            ("evidence_ref", evidence_ref),
        ):
            if not value or not str(value).strip():
                raise ConsentError(f"consent for {subject!r}: {name} is required")
        now = self._now()
        given = _moment(given_at, "given_at") or now
        expires = _moment(expires_at, "expires_at")
        if expires is not None and expires <= max(given, now):
            raise ConsentError(f"consent for {subject!r}: expires_at {to_text(expires)} is not after given_at and now")
        with self._write() as tx:
            policy = self._refresh_policy(tx)
            gallery_name = self._gallery_name(policy, gallery)
            self._check_purpose(policy, gallery_name, purpose)
            existing = tx.get_subject(subject)
            if existing is not None and existing.gallery != gallery_name:
                raise DuplicateError(
                    f"subject {subject!r} is enrolled in gallery {existing.gallery!r}; "
                    "subject ids are unique across galleries"
                )
            record = Consent(
                id=uuid.uuid4().hex,
                subject_id=subject,
                gallery=gallery_name,
                collected_by=str(collected_by).strip(),
                legal_basis=str(legal_basis).strip(),
                purpose=purpose,
                evidence_ref=str(evidence_ref).strip(),
                given_at=to_text(given),
                expires_at=None if expires is None else to_text(expires),
                withdrawn_at=None,
                ended_reason=None,
                recorded_at=to_text(now),
                recorded_by=actor,
            )
            tx.add_consent(record)
            tx.set_meta("consent_version", str(int(tx.get_meta("consent_version") or 0) + 1))
            self._append(
                tx,
                AuditDraft(
                    action="consent.add",
                    actor=actor,
                    purpose=purpose,
                    gallery=gallery_name,
                    subjects=(subject,),
                    policy_hash=policy.hash,
                    details={
                        "consent_id": record.id,
                        "legal_basis": record.legal_basis,
                        "collected_by": record.collected_by,
                        "given_at": record.given_at,
                        "expires_at": record.expires_at,
                    },
                ),
                to_text(now),
            )
        return record

    def consents(
        self, subject: str | None = None, *, actor: str, purpose: str, gallery: str | None = None
    ) -> list[Consent]:
        """Consent records (of one subject, or all); the look-up is an audit entry."""
        actor, purpose = _accountable(actor, purpose)
        now = to_text(self._now())
        with self._write() as tx:
            records = tx.list_consents(subject_id=subject, gallery=gallery)
            if subject is not None and not records and tx.get_subject(subject) is None:
                raise UnknownSubjectError(f"no consent or subject {subject!r}")
            self._append(
                tx,
                AuditDraft(
                    action="consent.list",
                    actor=actor,
                    purpose=purpose,
                    gallery=gallery,
                    subjects=(subject,) if subject else (),
                    details={"records": len(records)},
                ),
                now,
            )
        return records

    def withdraw_consent(
        self,
        subject: str,
        *,
        actor: str,
        purpose: str,
        consent_id: str | None = None,
        reason: str = "consent withdrawn",
    ) -> ConsentWithdrawal:
        """Withdraw a subject's consent (all active ones, or ``consent_id``).

        When the subject has no valid consent left in its gallery, it is erased in the same transaction and
        the database space is reclaimed.
        """
        actor, purpose = _accountable(actor, purpose)
        now_dt = self._now()
        now = to_text(now_dt)
        with self._write() as tx:
            policy = self._refresh_policy(tx)
            records = tx.list_consents(subject_id=subject)
            if not records:
                raise UnknownSubjectError(f"no consent recorded for subject {subject!r}")
            active = [c for c in records if c.state(now_dt) in ("valid", "not_yet_valid")]
            if consent_id is not None:
                active = [c for c in active if c.id == consent_id]
                if not any(c.id == consent_id for c in records):
                    raise UnknownSubjectError(f"subject {subject!r} has no consent {consent_id!r}")
            if not active:
                raise ConsentError(f"subject {subject!r} has no active consent to withdraw")
            entry, erasure = self._end_consents(
                tx, subject, active, action="consent.withdraw", ended_at=now, ended_reason=reason,
                details={"reason": reason}, erase_reason=reason, actor=actor, purpose=purpose, policy=policy,
                now_dt=now_dt,
            )
        if erasure is not None:
            erasure = _with_reclaim(erasure, self.store.reclaim())
        return ConsentWithdrawal(subject, [c.id for c in active], entry.seq, erasure)

    def _end_consents(
        self,
        tx: Transaction,
        subject: str,
        consents: Sequence[Consent],
        *,
        action: str,
        ended_at: str | None,
        ended_reason: str,
        details: dict[str, Any],
        erase_reason: str,
        actor: str,
        purpose: str,
        policy: LoadedPolicy,
        now_dt: datetime,
        logged_at: str | None = None,
    ) -> tuple[AuditEntry, ErasureReceipt | None]:
        """End ``consents`` of one subject with their audit entry; erase the subject, in the same transaction, when
        no valid consent is left in its gallery (withdrawal and expiry share this)."""
        for consent in consents:
            tx.end_consent(consent.id, ended_at, ended_reason)
        tx.set_meta("consent_version", str(int(tx.get_meta("consent_version") or 0) + 1))
        entry = self._append(
            tx,
            AuditDraft(
                action=action,
                actor=actor,
                purpose=purpose,
                gallery=consents[0].gallery,
                subjects=(subject,),
                policy_hash=policy.hash,
                details={"consent_ids": [c.id for c in consents], **details},
            ),
            logged_at or to_text(now_dt),
        )
        erasure = None
        enrolled = tx.get_subject(subject)
        if enrolled is not None and not self._has_valid_consent(tx, subject, enrolled.gallery, now_dt):
            erasure = self._erase_in(tx, subject, reason=erase_reason, actor=actor, purpose=purpose, now=now_dt)
        return entry, erasure

    def _has_valid_consent(self, tx: Transaction, subject: str, gallery: str, now: datetime) -> bool:
        return any(c.gallery == gallery and c.state(now) == "valid" for c in tx.list_consents(subject_id=subject))

    def _find_consent(
        self,
        tx: Transaction,
        subject: str,
        gallery: str,
        purpose: str,
        consent_id: str | None,
        now: datetime,
    ) -> Consent:
        records = tx.list_consents(subject_id=subject)
        if consent_id is not None:
            chosen = [c for c in records if c.id == consent_id]
            if not chosen:
                raise ConsentError(f"subject {subject!r} has no consent {consent_id!r}; enrollment refused")
            candidates = chosen
        else:
            candidates = [c for c in records if c.gallery == gallery and c.purpose == purpose]
        for consent in candidates:
            if consent.gallery == gallery and consent.purpose == purpose and consent.state(now) == "valid":
                return consent
        if not records:
            raise ConsentError(
                f"no consent recorded for subject {subject!r}: enrollment refused. Record it first with "
                f"`faceledger consent add {subject} --collected-by ... --legal-basis ... --evidence ...`"
            )
        states = ", ".join(f"{c.id[:8]} ({c.gallery}/{c.purpose}: {c.state(now)})" for c in (candidates or records))
        raise ConsentError(
            f"subject {subject!r} has no valid consent for gallery {gallery!r} and purpose {purpose!r} "
            f"(found: {states}): enrollment refused"
        )

    # ------------------------------------------------------------------------------------------ enroll
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
        subject = _check_subject_id(subject)
        actor, purpose = _accountable(actor, purpose)
        image_list = list(images) if isinstance(images, list | tuple) else [images]
        if not image_list:
            raise ValueError("enroll needs at least one image")
        now_dt = self._now()
        with self.store.read() as tx:
            policy = self._refresh_policy(tx)
            gallery_name = self._gallery_name(policy, gallery)
            self._check_purpose(policy, gallery_name, purpose)
            self._find_consent(tx, subject, gallery_name, purpose, consent_id, now_dt)
            done = {(t.source_sha256) for t in tx.templates_of(subject)}
        threshold = self.threshold()
        model = self.model_id()

        outcomes: list[ImageOutcome | None] = []
        pending: list[tuple[int, ImageOutcome, np.ndarray]] = []
        for image in image_list:
            outcome, vector = self._enroll_image(image, done, face_index)
            outcomes.append(outcome)
            if vector is not None:
                pending.append((len(outcomes) - 1, outcome, vector))

        now = to_text(self._now())
        with self._write() as tx:
            policy = self._refresh_policy(tx)
            consent = self._find_consent(tx, subject, gallery_name, purpose, consent_id, self._now())
            existing = tx.get_subject(subject)
            if existing is not None and existing.gallery != gallery_name:
                raise DuplicateError(
                    f"subject {subject!r} is enrolled in gallery {existing.gallery!r}; "
                    "subject ids are unique across galleries"
                )
            already = {t.source_sha256 for t in tx.templates_of(subject)}
            accepted: list[tuple[int, ImageOutcome, np.ndarray]] = []
            for position, outcome, vector in pending:
                assert outcome.sha256 is not None
                owners = {s for s, _ in tx.sources_of(outcome.sha256)}
                if subject in owners or outcome.sha256 in already:
                    outcomes[position] = _replace(outcome, status="skipped", reason="already enrolled")
                elif owners:
                    outcomes[position] = _replace(
                        outcome,
                        status="rejected",
                        reason=f"this image is already enrolled for subject {sorted(owners)[0]!r}",
                    )
                else:
                    already.add(outcome.sha256)
                    accepted.append((position, outcome, vector))

            duplicates: list[DuplicateWarning] = []
            if accepted:
                index = self._sync_index(tx)
                enrolled_here = {s.id for s in tx.list_subjects(gallery_name)} - {subject}
                queries = np.stack([v for _, _, v in accepted])
                hits = index.search(queries, 3, allowed=enrolled_here, min_similarity=threshold)
                for (_, outcome, _), face_hits in zip(accepted, hits, strict=True):
                    duplicates += [DuplicateWarning(outcome.source, h.subject, h.similarity) for h in face_hits]

            created = False
            key_id = None
            added: list[tuple[str, str, np.ndarray]] = []
            if accepted:
                if existing is None:
                    tx.add_subject(Subject(subject, gallery_name, now, actor))
                    created = True
                key_record = tx.get_subject_key(subject)
                if key_record is None:
                    data_key = crypto.new_data_key()
                    key_id = uuid.uuid4().hex
                    master = self._master_key(tx)
                    tx.add_subject_key(
                        SubjectKey(
                            key_id,
                            subject,
                            master.wrap(data_key, subject_id=subject, key_id=key_id),
                            master.id,
                            now,
                        )
                    )
                    self._data_keys[subject] = data_key
                else:
                    key_id = key_record.id
                    data_key = self._data_key(tx, subject)
                for position, outcome, vector in accepted:
                    template_id = uuid.uuid4().hex
                    nonce, ciphertext = crypto.encrypt_template(
                        data_key,
                        np.asarray(vector, dtype="<f4").tobytes(),
                        subject_id=subject,
                        template_id=template_id,
                    )
                    tx.add_template(
                        TemplateRecord(
                            id=template_id,
                            subject_id=subject,
                            key_id=key_id,
                            model=model,
                            dim=int(vector.shape[0]),
                            nonce=nonce,
                            ciphertext=ciphertext,
                            source_sha256=str(outcome.sha256),
                            face_index=int(outcome.face_index or 0),
                            quality=float(outcome.quality or 0.0),
                            created_at=now,
                        )
                    )
                    outcomes[position] = _replace(outcome, status="enrolled", template_id=template_id)
                    added.append((template_id, subject, np.asarray(vector, np.float32)))
                self._index_applied(tx.bump_data_version(), add=added)
            final = [o for o in outcomes if o is not None]
            total = len(tx.templates_of(subject))
            entry = self._append(
                tx,
                AuditDraft(
                    action="enroll",
                    actor=actor,
                    purpose=purpose,
                    gallery=gallery_name,
                    subjects=(subject, *(d.other_subject for d in duplicates)),
                    threshold=threshold,
                    policy_hash=policy.hash,
                    details={
                        "subject": subject,
                        "consent_id": consent.id,
                        "model": model,
                        "created": created,
                        "key_id": key_id,
                        "templates_added": sum(o.status == "enrolled" for o in final),
                        "skipped": sum(o.status == "skipped" for o in final),
                        "rejected": sum(o.status == "rejected" for o in final),
                        "images": [
                            {"sha256": o.sha256, "status": o.status, "face": o.face_index, "reason": o.reason}
                            for o in final
                        ],
                        "possible_duplicates": [
                            {"subject": d.other_subject, "similarity": round(d.similarity, 4)} for d in duplicates
                        ],
                    },
                ),
                now,
            )
        return EnrollmentResult(
            subject=subject,
            gallery=gallery_name,
            consent_id=consent.id,
            outcomes=final,
            duplicates=duplicates,
            created=created,
            templates_total=total,
            audit_seq=entry.seq,
        )

    def _enroll_image(
        self, image: ImageInput, done: set[str], face_index: int | None
    ) -> tuple[ImageOutcome, np.ndarray | None]:
        source = os.fspath(image) if isinstance(image, str | os.PathLike) else "<image>"
        try:
            probe = self._probe(image)
        except ImageError as exc:
            return ImageOutcome(source, "rejected", reason=exc.reason), None
        except OSError as exc:
            return ImageOutcome(source, "rejected", reason=f"cannot be read: {exc.strerror or exc}"), None
        source = probe.source
        if probe.sha256 in done:
            return ImageOutcome(source, "skipped", reason="already enrolled", sha256=probe.sha256), None
        dets = self.engine.detect(probe.array)
        if len(dets) == 0:
            return ImageOutcome(source, "rejected", reason="no face found", sha256=probe.sha256), None
        if face_index is not None:
            if not 0 <= face_index < len(dets):
                return (
                    ImageOutcome(
                        source,
                        "rejected",
                        reason=f"face index {face_index} out of range: {len(dets)} face(s) (0 is largest)",
                        sha256=probe.sha256,
                    ),
                    None,
                )
            chosen = face_index
        else:
            usable = [i for i in range(len(dets)) if not dets.quality_reasons[i]]
            if len(usable) > 1:
                return (
                    ImageOutcome(
                        source,
                        "rejected",
                        reason=f"{len(usable)} usable faces; choose one with a face index (0 is largest)",
                        sha256=probe.sha256,
                    ),
                    None,
                )
            chosen = usable[0] if usable else 0
        face = dets[chosen]
        outcome = ImageOutcome(
            source,
            "rejected",
            sha256=probe.sha256,
            face_index=chosen,
            box=[float(v) for v in face.box],
            quality=float(face.quality),
            quality_reasons=list(face.reasons),
        )
        if face.reasons:
            return _replace(outcome, reason="face unfit for enrollment: " + ", ".join(face.reasons)), None
        vector = self.engine.embed_faces(probe.array, dets[chosen : chosen + 1])[0]
        return _replace(outcome, status="enrolled"), np.asarray(vector, np.float32)

    def enroll_batch(
        self,
        items: Iterable[tuple[str, Sequence[ImageInput]]],
        *,
        actor: str,
        purpose: str,
        gallery: str | None = None,
    ) -> Iterator[tuple[str, EnrollmentResult | FaceledgerError]]:
        """Enroll many subjects, one transaction each; yields ``(subject, result or error)`` as it goes.

        An interruption (even ``kill -9``) leaves every subject either fully enrolled or untouched; running
        the same batch again skips what was done and continues.
        """
        for subject, images in items:
            try:
                yield subject, self.enroll(subject, images, actor=actor, purpose=purpose, gallery=gallery)
            except (FaceledgerError, ValueError) as exc:
                error = exc if isinstance(exc, FaceledgerError) else LedgerError(str(exc))
                yield subject, error

    def subjects(self, *, actor: str, purpose: str, gallery: str | None = None) -> list[SubjectInfo]:
        """Enrolled subjects with their template count and consent state; the look-up is an audit entry."""
        actor, purpose = _accountable(actor, purpose)
        now_dt = self._now()
        with self._write() as tx:
            counts = tx.template_counts()
            out = []
            for subject in tx.list_subjects(gallery):
                states = [c.state(now_dt) for c in tx.list_consents(subject.id, subject.gallery)]
                state: Any = "valid" if "valid" in states else (states[-1] if states else "none")
                out.append(
                    SubjectInfo(subject.id, subject.gallery, counts.get(subject.id, 0), subject.created_at, state)
                )
            self._append(
                tx,
                AuditDraft(
                    action="subjects.list",
                    actor=actor,
                    purpose=purpose,
                    gallery=gallery,
                    details={"subjects": len(out)},
                ),
                to_text(now_dt),
            )
        return out

    # ------------------------------------------------------------------------------------------ identify
    def identify(
        self,
        image: ImageInput,
        *,
        actor: str,
        purpose: str,
        gallery: str | None = None,
        top_k: int | None = None,
    ) -> Identification:
        """Search every face of ``image`` against the gallery (1:N, exact).

        Per face: the top ``k`` subjects scoring at or above the policy threshold, each recorded as a
        candidate awaiting human review. Only subjects whose consent is valid now for this gallery and purpose
        are searched. Faces that match no one leave no trace: nothing about them is stored except the count in
        the audit entry (which records the SHA-256 of the image bytes, never pixels or templates).
        """
        actor, purpose = _accountable(actor, purpose)
        with self.store.read() as tx:
            policy = self._refresh_policy(tx)
            gallery_name = self._gallery_name(policy, gallery)
        try:
            self._check_purpose(policy, gallery_name, purpose)
        except PurposeError as exc:
            now = to_text(self._now())
            with self._write() as tx:
                self._append(
                    tx,
                    AuditDraft(
                        action="identify.refused",
                        actor=actor,
                        purpose=purpose,
                        gallery=gallery_name,
                        policy_hash=policy.hash,
                        details={"reason": str(exc)},
                    ),
                    now,
                )
            raise
        k = top_k or policy.policy.identification.top_k
        threshold = self.threshold()
        probe = self._probe(image)
        embeddings = self.engine.embed(probe.array)
        dets = embeddings.detections
        vectors = np.asarray(embeddings.vectors, np.float32)
        search_id = uuid.uuid4().hex
        now_dt = self._now()
        now = to_text(now_dt)
        with self._write() as tx:
            policy = self._refresh_policy(tx)
            index = self._sync_index(tx)
            allowed = self._allowed_subjects(tx, gallery_name, purpose, now_dt)
            hits = (
                index.search(vectors, k, allowed=self._mask(index, allowed), min_similarity=threshold)
                if len(vectors)
                else []
            )
            planned = [[(h, uuid.uuid4().hex) for h in face_hits] for face_hits in hits]
            subjects = tuple(h.subject for face in planned for h, _ in face)
            entry = self._append(
                tx,
                AuditDraft(
                    action="identify",
                    actor=actor,
                    purpose=purpose,
                    gallery=gallery_name,
                    probe_sha256=probe.sha256,
                    subjects=subjects,
                    threshold=threshold,
                    policy_hash=policy.hash,
                    details={
                        "search_id": search_id,
                        "model": self.model_id(),
                        "target_fmr": policy.policy.identification.target_fmr,
                        "top_k": k,
                        "faces": len(vectors),
                        "matched_faces": sum(1 for face in planned if face),
                        "candidates": [
                            {"face": i, "subject": h.subject, "similarity": round(h.similarity, 4), "id": cid}
                            for i, face in enumerate(planned)
                            for h, cid in face
                        ],
                    },
                ),
                now,
            )
            faces: list[FaceResult] = []
            for i, face in enumerate(planned):
                box = [float(v) for v in dets.boxes[i]]
                matches = []
                for rank, (hit, cid) in enumerate(face, start=1):
                    tx.add_candidate(
                        CandidateRecord(
                            id=cid,
                            search_id=search_id,
                            audit_seq=entry.seq,
                            gallery=gallery_name,
                            purpose=purpose,
                            actor=actor,
                            probe_sha256=probe.sha256,
                            face_index=i,
                            box=[round(v, 1) for v in box],
                            subject_id=hit.subject,
                            similarity=hit.similarity,
                            rank=rank,
                            threshold=threshold,
                            policy_hash=policy.hash,
                            status="pending",
                            created_at=now,
                            decided_at=None,
                        )
                    )
                    matches.append(CandidateMatch(hit.subject, hit.similarity, rank, cid))
                faces.append(FaceResult(i, box, float(dets.quality[i]), list(dets.quality_reasons[i]), matches))
        return Identification(
            search_id=search_id,
            source=probe.source,
            probe_sha256=probe.sha256,
            gallery=gallery_name,
            purpose=purpose,
            threshold=threshold,
            target_fmr=policy.policy.identification.target_fmr,
            policy_hash=policy.hash,
            audit_seq=entry.seq,
            faces=faces,
        )

    def verify_subject(
        self,
        subject: str,
        image: ImageInput,
        *,
        actor: str,
        purpose: str,
        gallery: str | None = None,
    ) -> SubjectVerification:
        """1:1: is the largest face of ``image`` the enrolled ``subject`` (at the policy threshold)?

        The subject needs a consent valid now for this gallery and purpose. The similarity is the best over
        the subject's templates; the check is an audit entry (probe hash, subject, similarity, decision).
        """
        actor, purpose = _accountable(actor, purpose)
        with self.store.read() as tx:
            policy = self._refresh_policy(tx)
            gallery_name = self._gallery_name(policy, gallery)
        self._check_purpose(policy, gallery_name, purpose)
        threshold = self.threshold()
        probe = self._probe(image)
        embeddings = self.engine.embed(probe.array)
        if len(embeddings.vectors) == 0:
            raise NoFaceError(f"{probe.source}: no face found")
        vector = np.asarray(embeddings.vectors[:1], np.float32)
        now_dt = self._now()
        with self._write() as tx:
            policy = self._refresh_policy(tx)
            record = tx.get_subject(subject)
            if record is None or record.gallery != gallery_name:
                raise UnknownSubjectError(f"no subject {subject!r} enrolled in gallery {gallery_name!r}")
            allowed = self._allowed_subjects(tx, gallery_name, purpose, now_dt)
            if subject not in allowed.subjects:
                raise ConsentError(
                    f"subject {subject!r} has no consent valid now for gallery {gallery_name!r} and purpose "
                    f"{purpose!r}: verification refused"
                )
            index = self._sync_index(tx)
            hits = index.search(vector, 1, allowed={subject})[0]
            similarity = hits[0].similarity if hits else float("-inf")
            match = similarity >= threshold
            entry = self._append(
                tx,
                AuditDraft(
                    action="verify",
                    actor=actor,
                    purpose=purpose,
                    gallery=gallery_name,
                    probe_sha256=probe.sha256,
                    subjects=(subject,),
                    threshold=threshold,
                    policy_hash=policy.hash,
                    details={
                        "similarity": round(similarity, 4),
                        "match": match,
                        "faces": len(embeddings.vectors),
                        "model": self.model_id(),
                    },
                ),
                to_text(now_dt),
            )
        return SubjectVerification(
            subject=subject,
            source=probe.source,
            probe_sha256=probe.sha256,
            similarity=similarity,
            match=match,
            threshold=threshold,
            target_fmr=policy.policy.identification.target_fmr,
            box=[float(v) for v in embeddings.detections.boxes[0]],
            audit_seq=entry.seq,
        )

    def verify_images(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        *,
        actor: str,
        purpose: str,
        gallery: str | None = None,
    ) -> ImageVerification:
        """1:1 without a gallery search: are the largest faces of two images the same person?

        Decided at the policy threshold; the purpose must be one the policy allows for ``gallery`` (default: the
        first). Recorded on the ledger (both images' SHA-256, similarity, decision); nothing else is kept.
        """
        actor, purpose = _accountable(actor, purpose)
        with self.store.read() as tx:
            policy = self._refresh_policy(tx)
            gallery_name = self._gallery_name(policy, gallery)
        self._check_purpose(policy, gallery_name, purpose)
        threshold = self.threshold()
        probes = [self._probe(image) for image in (image_a, image_b)]
        vectors = []
        for probe in probes:
            found = self.engine.embed(probe.array)
            if len(found.vectors) == 0:
                raise NoFaceError(f"{probe.source}: no face found")
            vectors.append(found.vectors[0])
        result = self.engine.compare(vectors[0], vectors[1], threshold=threshold)
        with self._write() as tx:
            policy = self._refresh_policy(tx)
            entry = self._append(
                tx,
                AuditDraft(
                    action="verify",
                    actor=actor,
                    purpose=purpose,
                    gallery=gallery_name,
                    probe_sha256=probes[0].sha256,
                    threshold=threshold,
                    policy_hash=policy.hash,
                    details={
                        "kind": "images",
                        "other_probe_sha256": probes[1].sha256,
                        "similarity": round(result.similarity, 4),
                        "match": result.match,
                        "model": self.model_id(),
                    },
                ),
                to_text(self._now()),
            )
        return ImageVerification(
            sources=(probes[0].source, probes[1].source),
            probe_sha256=(probes[0].sha256, probes[1].sha256),
            similarity=result.similarity,
            match=result.match,
            threshold=threshold,
            fmr=result.fmr,
            target_fmr=policy.policy.identification.target_fmr,
            audit_seq=entry.seq,
        )

    # ------------------------------------------------------------------------------------------ review
    def pending_reviews(self, *, actor: str, purpose: str, gallery: str | None = None) -> list[PendingReview]:
        """Candidates awaiting review (oldest first) with their confirmations so far and the number the policy
        requires; the look-up is an audit entry."""
        actor, purpose = _accountable(actor, purpose)
        now = to_text(self._now())
        with self._write() as tx:
            required = self._refresh_policy(tx).policy.identification.reviewers_required
            records = [PendingReview(c, n, required) for c, n in tx.pending_candidates(gallery)]
            self._append(
                tx,
                AuditDraft(
                    action="review.list",
                    actor=actor,
                    purpose=purpose,
                    gallery=gallery,
                    details={"pending": len(records)},
                ),
                now,
            )
        return records

    def reviews(self, candidate_id: str) -> list[ReviewRecord]:
        """The reviews recorded for a candidate (no audit entry: call it after an audited look-up such as
        :meth:`pending_reviews` that already records the access)."""
        with self.store.read() as tx:
            return tx.reviews_of(candidate_id)

    def review(
        self,
        candidate_id: str,
        *,
        reviewer: str,
        decision: str,
        reason: str,
        purpose: str | None = None,
    ) -> ReviewOutcome:
        """Confirm or reject a candidate. It becomes a match only when ``reviewers_required`` distinct
        reviewers confirmed it; one rejection rejects it. ``purpose`` defaults to the search's purpose and may
        not differ from it.
        """
        if decision not in ("confirm", "reject"):
            raise ReviewError(f"decision must be 'confirm' or 'reject', not {decision!r}")
        if not reason or not reason.strip():
            raise ReviewError("a review needs a reason (what the reviewer checked)")
        reviewer, _ = _accountable(reviewer, purpose or "review")
        now = to_text(self._now())
        with self._write() as tx:
            policy = self._refresh_policy(tx)
            candidate = tx.get_candidate(candidate_id)
            if candidate is None:
                raise UnknownSubjectError(
                    f"no candidate {candidate_id!r}: never created, or deleted by erasure or retention"
                )
            if purpose is not None and purpose.strip() != candidate.purpose:
                raise PurposeError(
                    f"candidate {candidate_id} comes from a search for purpose {candidate.purpose!r}; "
                    f"it cannot be reviewed for {purpose!r}"
                )
            if candidate.status != "pending":
                raise ReviewError(f"candidate {candidate_id} was already {candidate.status} at {candidate.decided_at}")
            record = ReviewRecord(uuid.uuid4().hex, candidate_id, reviewer, decision, reason.strip(), now)  # type: ignore[arg-type]
            tx.add_review(record)
            reviews = tx.reviews_of(candidate_id)
            confirmations = len({r.reviewer for r in reviews if r.decision == "confirm"})
            required = policy.policy.identification.reviewers_required
            status: CandidateStatus = "pending"
            if decision == "reject":
                status = "rejected"
            elif confirmations >= required:
                status = "confirmed"
            if status != "pending":
                tx.set_candidate_status(candidate_id, status, now)
            entry = self._append(
                tx,
                AuditDraft(
                    action=f"review.{decision}",
                    actor=reviewer,
                    purpose=candidate.purpose,
                    gallery=candidate.gallery,
                    probe_sha256=candidate.probe_sha256,
                    subjects=(candidate.subject_id,),
                    threshold=candidate.threshold,
                    policy_hash=policy.hash,
                    details={
                        "candidate_id": candidate_id,
                        "search_id": candidate.search_id,
                        "similarity": round(candidate.similarity, 4),
                        "reason": record.reason,
                        "confirmations": confirmations,
                        "required": required,
                        "status_after": status,
                    },
                ),
                now,
            )
            updated = tx.get_candidate(candidate_id)
            assert updated is not None
        return ReviewOutcome(updated, record, confirmations, required, entry.seq)

    def candidates(
        self,
        *,
        status: CandidateStatus | None = None,
        subject: str | None = None,
        gallery: str | None = None,
    ) -> list[CandidateRecord]:
        """Candidates by status (``pending``, ``confirmed``, ``rejected``), subject or gallery.

        No audit entry is written: for people-facing listings use :meth:`pending_reviews`; for counts use
        :meth:`stats`.
        """
        with self.store.read() as tx:
            return tx.list_candidates(status=status, gallery=gallery, subject_id=subject)

    def stats(self) -> dict[str, int]:
        """Counts only (no personal data, no audit entry): subjects, templates, valid consents, pending reviews,
        audit entries."""
        now = self._now()
        with self.store.read() as tx:
            head = tx.audit_head()
            return {
                "subjects": len(tx.list_subjects()),
                "templates": sum(tx.template_counts().values()),
                "valid_consents": sum(1 for c in tx.list_consents() if c.state(now) == "valid"),
                "pending_reviews": len(tx.list_candidates(status="pending")),
                "audit_head_seq": 0 if head is None else head.seq,
            }

    # ------------------------------------------------------------------------------------------ erase
    def erase(self, subject: str, *, actor: str, purpose: str, reason: str = "erasure request") -> ErasureReceipt:
        """Erase a subject: templates, data key, candidates, reviews deleted; consents ended; space reclaimed.

        The receipt names the audit entry that records the erasure. Consent records stay (they prove past
        processing was lawful) until the policy's consent retention ends.
        """
        actor, purpose = _accountable(actor, purpose)
        with self._write() as tx:
            self._refresh_policy(tx)
            receipt = self._erase_in(tx, subject, reason=reason, actor=actor, purpose=purpose, now=self._now())
        return _with_reclaim(receipt, self.store.reclaim())

    def _erase_in(
        self, tx: Transaction, subject: str, *, reason: str, actor: str, purpose: str, now: datetime
    ) -> ErasureReceipt:
        stamp = to_text(now)
        record = tx.get_subject(subject)
        consents = tx.list_consents(subject_id=subject)
        if record is None and not consents:
            raise UnknownSubjectError(f"no subject {subject!r}: nothing to erase (`faceledger subjects` lists them)")
        template_ids = [t.id for t in tx.templates_of(subject)]
        templates = len(template_ids)
        key = tx.get_subject_key(subject)
        candidates = tx.delete_candidates_of(subject)
        tx.delete_subject(subject)
        ended = []
        for consent in consents:
            if consent.state(now) in ("valid", "not_yet_valid"):
                tx.end_consent(consent.id, stamp, reason)
                ended.append(consent.id)
        self._index_applied(tx.bump_data_version(), remove=template_ids)
        tx.set_meta("consent_version", str(int(tx.get_meta("consent_version") or 0) + 1))
        gallery = record.gallery if record is not None else consents[0].gallery
        entry = self._append(
            tx,
            AuditDraft(
                action="subject.erase",
                actor=actor,
                purpose=purpose,
                gallery=gallery,
                subjects=(subject,),
                policy_hash=self.policy.hash,
                details={
                    "reason": reason,
                    "templates_destroyed": templates,
                    "key_id": None if key is None else key.id,
                    "key_destroyed": key is not None,
                    "candidates_deleted": candidates,
                    "consents_ended": ended,
                },
            ),
            stamp,
        )
        self._data_keys.pop(subject, None)
        return ErasureReceipt(
            subject=subject,
            gallery=gallery,
            erased_at=stamp,
            reason=reason,
            templates_destroyed=templates,
            key_id=None if key is None else key.id,
            candidates_deleted=candidates,
            consents_ended=ended,
            audit_seq=entry.seq,
            audit_hash=entry.hash,
        )

    # ------------------------------------------------------------------------------------------ retention
    def purge(self, *, actor: str = "retention", purpose: str = "retention") -> PurgeReport:
        """Apply the policy's retention: erase subjects whose consent expired, delete templates, ended
        consents, candidates and reviews, and audit entries past their periods (each step on the ledger),
        then reclaim the space. Safe to run often (the REST service runs it on a schedule).
        """
        actor, purpose = _accountable(actor, purpose)
        now_dt = self._now()
        report = PurgeReport(ran_at=to_text(now_dt))
        with self.store.read() as tx:
            policy = self._refresh_policy(tx)
            consents = tx.list_consents()
        cut = cutoffs(policy.policy, now_dt)

        # 1. consents that expired: mark them, erase subjects left without a valid consent (one tx each)
        expired_by_subject: dict[str, list[Consent]] = {}
        for consent in consents:
            if consent.state(now_dt) == "expired" and consent.ended_reason is None:
                expired_by_subject.setdefault(consent.subject_id, []).append(consent)
        for subject, expired in sorted(expired_by_subject.items()):
            with self._write() as tx:
                entry, receipt = self._end_consents(
                    tx, subject, expired, action="consent.expire", ended_at=None, ended_reason="expired",
                    details={}, erase_reason="consent expired", actor=actor, purpose=purpose, policy=policy,
                    now_dt=now_dt, logged_at=report.ran_at,
                )
                report.audit_seqs.append(entry.seq)
                report.consents_expired += [c.id for c in expired]
                if receipt is not None:
                    report.subjects_erased.append(receipt)
                    report.audit_seqs.append(receipt.audit_seq)

        # 2. templates past retention (a subject left without templates is erased)
        if cut.templates is not None:
            with self.store.read() as tx:
                old = tx.templates_created_before(cut.templates)
            by_subject: dict[str, list[str]] = {}
            for ref in old:
                by_subject.setdefault(ref.subject_id, []).append(ref.id)
            for subject, ids in sorted(by_subject.items()):
                with self._write() as tx:
                    for template_id in ids:
                        tx.delete_template(template_id)
                    self._index_applied(tx.bump_data_version(), remove=ids)
                    record = tx.get_subject(subject)
                    entry = self._append(
                        tx,
                        AuditDraft(
                            action="template.purge",
                            actor=actor,
                            purpose=purpose,
                            gallery=None if record is None else record.gallery,
                            subjects=(subject,),
                            policy_hash=policy.hash,
                            details={"templates_deleted": len(ids), "cutoff": cut.templates},
                        ),
                        report.ran_at,
                    )
                    report.templates_deleted += len(ids)
                    report.audit_seqs.append(entry.seq)
                    if record is not None and not tx.templates_of(subject):
                        receipt = self._erase_in(
                            tx,
                            subject,
                            reason="templates past retention",
                            actor=actor,
                            purpose=purpose,
                            now=now_dt,
                        )
                        report.subjects_erased.append(receipt)
                        report.audit_seqs.append(receipt.audit_seq)

        # 3. consent records that ended longer ago than their retention
        with self._write() as tx:
            gone = [
                c
                for c in tx.list_consents()
                if c.state(now_dt) in ("withdrawn", "expired")
                and (c.ended_at() or c.recorded_at) < cut.consents
                and tx.get_subject(c.subject_id) is None
            ]
            if gone:
                for consent in gone:
                    tx.delete_consent(consent.id)
                entry = self._append(
                    tx,
                    AuditDraft(
                        action="consent.purge",
                        actor=actor,
                        purpose=purpose,
                        subjects=tuple(sorted({c.subject_id for c in gone})),
                        policy_hash=policy.hash,
                        details={"consents_deleted": len(gone), "cutoff": cut.consents},
                    ),
                    report.ran_at,
                )
                report.consents_deleted = len(gone)
                report.audit_seqs.append(entry.seq)

        # 4. candidates and reviews past retention
        with self._write() as tx:
            deleted = tx.delete_candidates_before(cut.reviews)
            if deleted:
                entry = self._append(
                    tx,
                    AuditDraft(
                        action="review.purge",
                        actor=actor,
                        purpose=purpose,
                        policy_hash=policy.hash,
                        details={"candidates_deleted": deleted, "cutoff": cut.reviews},
                    ),
                    report.ran_at,
                )
                report.candidates_deleted = deleted
                report.audit_seqs.append(entry.seq)

        # 5. audit entries past retention, replaced by a checkpoint that keeps the chain verifiable
        if cut.audit is not None:
            with self._write() as tx:
                purged = tx.purge_audit_before(cut.audit)
                if purged is not None:
                    first, last, last_hash = purged
                    entry = self._append(
                        tx,
                        AuditDraft(
                            action=PURGE_ACTION,
                            actor=actor,
                            purpose=purpose,
                            policy_hash=policy.hash,
                            details={
                                "purged_from_seq": first,
                                "purged_to_seq": last,
                                "last_hash": last_hash,
                                "cutoff": cut.audit,
                            },
                        ),
                        report.ran_at,
                    )
                    report.audit_entries_purged = last - first + 1
                    report.audit_seqs.append(entry.seq)

        with self._write() as tx:
            entry = self._append(
                tx,
                AuditDraft(
                    action="purge",
                    actor=actor,
                    purpose=purpose,
                    policy_hash=policy.hash,
                    details={k: v for k, v in report.to_dict().items() if k not in ("audit_seqs", "reclaimed")},
                ),
                report.ran_at,
            )
            report.audit_seqs.append(entry.seq)
        removed = (
            report.subjects_erased
            or report.templates_deleted
            or report.consents_deleted
            or report.candidates_deleted
            or report.audit_entries_purged
        )
        report.reclaimed = self.store.reclaim() if removed else True
        return report

    def readiness(self, *, models: bool = True) -> dict[str, str]:
        """Checks a service runs before taking requests: ``{"models", "database", "master_key"}``, each ``"ok"``
        or what is wrong. ``models`` loads the models and runs each once on a blank image; the master key is
        read again from its source each time (a key file moved away shows here)."""
        checks: dict[str, str] = {}
        if models:
            try:
                engine = self.engine
                engine.detect(np.zeros((64, 64, 3), np.uint8))
                engine.recognizer.embed(np.zeros((1, 112, 112, 3), np.uint8))
                checks["models"] = "ok"
            except (FaceledgerError, OSError, RuntimeError, ValueError) as exc:
                checks["models"] = str(exc) or type(exc).__name__
        try:
            with self.store.read() as tx:
                head = tx.audit_head()
                expected = tx.get_meta("master_key_id")
            checks["database"] = "ok" if head is not None else "empty ledger"
        except FaceledgerError as exc:
            checks["database"] = str(exc)
            expected = None
        try:
            key = crypto.load_master_key(self.key_file)
            checks["master_key"] = (
                "ok" if expected is None or key.id == expected else f"{key.source}: not this database's master key"
            )
        except FaceledgerError as exc:
            checks["master_key"] = str(exc)
        return checks

    # ------------------------------------------------------------------------------------------ audit
    def audit_verify(self, expected_head: AuditHead | None = None) -> VerifyResult:
        """Recompute the audit chain; names the first entry altered, removed, inserted or reordered."""
        with self.store.read() as tx:
            return verify_audit(tx, expected_head)

    def audit_head(self) -> AuditHead | None:
        """Sequence number and hash of the last audit entry, to publish elsewhere as an anchor."""
        with self.store.read() as tx:
            return tx.audit_head()

    def audit_entries(
        self, *, after_seq: int = 0, limit: int | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """Audit entries after ``after_seq`` (optionally only one action, e.g. ``identify`` or ``review``)."""
        with self.store.read() as tx:
            return tx.audit_entries(after_seq=after_seq, limit=limit, action=action)

    def audit_export(self, *, actor: str, purpose: str) -> list[AuditEntry]:
        """Every audit entry, for export; the export itself is recorded first."""
        actor, purpose = _accountable(actor, purpose)
        now = to_text(self._now())
        with self._write() as tx:
            self._append(tx, AuditDraft(action="audit.export", actor=actor, purpose=purpose), now)
            return tx.audit_entries()

    # ------------------------------------------------------------------------------------------ api keys
    def create_api_key(
        self, owner: str, role: str, *, actor: str, purpose: str = "administration"
    ) -> tuple[ApiKey, str]:
        """Create an API key for the REST service; returns the record and the token (shown only once)."""
        actor, purpose = _accountable(actor, purpose)
        now = to_text(self._now())
        with self._write() as tx:
            record, token = _create_api_key(tx, owner=owner, role=role, created_by=actor, now=now)
            self._append(
                tx,
                AuditDraft(
                    action="key.create",
                    actor=actor,
                    purpose=purpose,
                    details={"key_id": record.id, "owner": owner, "role": role},
                ),
                now,
            )
        return record, token

    def api_keys(self) -> list[ApiKey]:
        """All API keys (revoked included), without secrets."""
        with self.store.read() as tx:
            return tx.list_api_keys()

    def revoke_api_key(self, key_id: str, *, actor: str, purpose: str = "administration") -> ApiKey:
        """Revoke an API key (recorded on the ledger)."""
        actor, purpose = _accountable(actor, purpose)
        now = to_text(self._now())
        with self._write() as tx:
            record = _revoke_api_key(tx, key_id, now=now)
            self._append(
                tx,
                AuditDraft(
                    action="key.revoke",
                    actor=actor,
                    purpose=purpose,
                    details={"key_id": key_id, "owner": record.owner, "role": record.role},
                ),
                now,
            )
        return record

    def authenticate(self, token: str) -> ApiKey:
        """The active API key of a token; raises :class:`~faceledger.ledger.AccessDenied` otherwise."""
        with self.store.read() as tx:
            return _authenticate(tx, token)

    # ------------------------------------------------------------------------------------------ report
    def report(
        self,
        *,
        actor: str,
        purpose: str,
        period: str = "month",
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> Any:
        """Transparency report: counts per period, gallery and purpose (:mod:`faceledger.gallery.report`)."""
        from faceledger.gallery.report import build_report

        actor, purpose = _accountable(actor, purpose)
        now_dt = self._now()
        with self._write() as tx:
            entries = tx.audit_entries()
            current = {
                "subjects": len(tx.list_subjects()),
                "templates": sum(tx.template_counts().values()),
                "pending_reviews": len(tx.list_candidates(status="pending")),
                "valid_consents": sum(1 for c in tx.list_consents() if c.state(now_dt) == "valid"),
            }
            report = build_report(
                entries,
                period=period,
                since=_moment(since, "since"),
                until=_moment(until, "until"),
                generated_at=to_text(now_dt),
                policy=self._refresh_policy(tx),
                current=current,
            )
            self._append(
                tx,
                AuditDraft(
                    action="report",
                    actor=actor,
                    purpose=purpose,
                    details={"period": period, "rows": len(report.rows)},
                ),
                to_text(now_dt),
            )
        return report


def _pending_key_file(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".new")


def _as_policy(policy: str | os.PathLike[str] | LoadedPolicy | None) -> LoadedPolicy:
    if policy is None:
        return parse_policy(EXAMPLE_POLICY, "<example policy>")
    if isinstance(policy, LoadedPolicy):
        return policy
    return load_policy(policy)


def _moment(value: datetime | str | None, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)
    try:
        return from_text(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an ISO 8601 date or time (e.g. 2025-12-31)") from None


def _replace(outcome: ImageOutcome, **changes: Any) -> ImageOutcome:
    from dataclasses import replace

    return replace(outcome, **changes)


def _with_reclaim(receipt: ErasureReceipt, reclaimed: bool) -> ErasureReceipt:
    from dataclasses import replace

    return replace(receipt, reclaimed=reclaimed)
