"""What every use case shares: the store, the clock, the policy in force, the engine, and the two primitives every
change goes through: :meth:`GalleryContext.write` (one transaction) and :meth:`GalleryContext.record` (its audit
entry, in that transaction). An operation is on the ledger if and only if it happened.

The use-case modules (:mod:`.consent`, :mod:`.enrollment`, :mod:`.identification`, :mod:`.review`,
:mod:`.erasure`, :mod:`.retention`, :mod:`.admin`, :mod:`.report`) are functions of a context;
:class:`faceledger.gallery.Gallery` is the facade that holds one.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from faceledger.errors import ImageError, ModelError
from faceledger.imageio import read_file
from faceledger.ledger import crypto
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.audit import AuditDraft, AuditEntry
from faceledger.ledger.errors import (
    AccountabilityError,
    NotInitialisedError,
    PolicyError,
    PurposeError,
    StoreError,
    UnknownSubjectError,
)
from faceledger.ledger.policy import EXAMPLE_POLICY, LoadedPolicy, load_policy, parse_policy
from faceledger.ledger.records import CandidateRecord
from faceledger.ledger.seals import SealedStore, seal_key
from faceledger.ledger.store import Store, Transaction
from faceledger.ledger.timeutil import from_text, to_text, utcnow

if TYPE_CHECKING:
    from faceledger.engine import Engine
    from faceledger.gallery.index import SearchIndex
    from faceledger.gallery.index_sync import AllowedSubjects

SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")
ImageInput = Any  # path, bytes, binary file object or numpy array
T = TypeVar("T")


@dataclass(frozen=True)
class Probe:
    """A decoded image and the SHA-256 of its bytes (the hash is what the ledger records, never pixels)."""

    source: str
    sha256: str
    array: np.ndarray


class GalleryContext:
    """The state one open gallery shares between its use cases (safe to share between threads).

    ``engine`` is made on first use (consent, review and audit work without loading models). ``clock`` returns
    the current time (tests pass their own).
    """

    def __init__(
        self,
        store: Store,
        *,
        key_file: str | os.PathLike[str] | None = None,
        engine: Engine | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = SealedStore(store, self._seal_key)
        self.key_file = None if key_file is None else Path(key_file)
        self._engine = engine
        self.clock = clock or utcnow
        self.master: crypto.MasterKey | None = None
        self.data_keys: dict[str, bytes] = {}
        self.index: SearchIndex | None = None
        self.allowed: dict[tuple[str, str], AllowedSubjects] = {}
        self.gallery_sizes: dict[str, tuple[int, int, int]] = {}
        """Gallery name -> (data version, subjects, templates) at that version (``thresholds.check_gallery_size``)."""
        self._policy: LoadedPolicy | None = None
        self.models_ready = False
        """The models have run once in this process (readiness need not run them again)."""
        self.excluded: dict[str, tuple[str, str]] = {}  # template id -> (subject it claims, why it cannot be used)
        self._policy_error: PolicyBindingError | None = None
        with self.store.read() as tx:
            if tx.get_meta("initialised_at") is None:
                raise NotInitialisedError(f"{store.location}: database is not initialised", store.location)
            try:
                self.refresh_policy(tx)
            except PolicyBindingError as exc:  # the gallery opens (to verify the ledger, to set a policy again);
                self._policy_error = exc  # every use of the policy is refused

    def _seal_key(self, tx: Transaction) -> bytes:
        from faceledger.gallery.keys import master_key  # keys builds on this module

        return seal_key(master_key(self, tx).key)

    @property
    def tampered(self) -> dict[str, str]:
        """Records this process found not to match the ledger ("kind:key" -> why; :mod:`faceledger.ledger.seals`)."""
        return self.store.problems

    # ------------------------------------------------------------------------------------------ time, engine
    def now(self) -> datetime:
        """The current time by this gallery's clock."""
        return self.clock()

    @property
    def engine(self) -> Engine:
        """The recognition engine (created on first use), with the bundled recognizer the gallery's templates were
        made with, if any (a gallery enrolled before the default changed keeps its own)."""
        if self._engine is None:
            from faceledger.engine import Engine

            self._engine = Engine(recognizer=self.templates_recognizer())
        return self._engine

    def templates_recognizer(self) -> str | None:
        """The bundled recognizer the gallery's templates were made with; None when it has none, or they were made
        with a user file or with several models (then the default is used)."""
        from faceledger.models.router import recognizer_for_templates  # here: the models package loads onnxruntime

        with self.store.read() as tx:
            return recognizer_for_templates(tx.template_models())

    def model_id(self) -> str:
        """Identifier of the recognizer templates are made with: card name and the start of its SHA-256."""
        return self.model_ids()[0]

    def model_ids(self) -> tuple[str, ...]:
        """The ids of templates this recognizer can search: :meth:`model_id`, then those of earlier builds of its
        file that compute the same embeddings (:meth:`faceledger.models.cards.ModelCard.model_ids`)."""
        return tuple(self.engine.recognizer.card.model_ids())

    def threshold(self) -> float:
        """Similarity threshold of the policy's target false-match rate, from the recognizer's calibration."""
        fmr = self.policy.policy.identification.target_fmr
        try:
            return float(self.engine.threshold_for_fmr(fmr))
        except ModelError as exc:
            from faceledger.models.cards import CalibrationRangeError  # here: the models package loads onnxruntime

            if isinstance(exc, CalibrationRangeError):  # a policy written before the check, or for another model
                raise PolicyError(self.policy.source, [("identification.target_fmr", str(exc))]) from None
            raise ModelError(f"cannot set the threshold for target_fmr={fmr}: {exc}") from None

    # ------------------------------------------------------------------------------------------ policy
    @property
    def policy(self) -> LoadedPolicy:
        """The policy in force (text, hash and validated model), as of the last transaction."""
        if self._policy is None and self._policy_error is not None:
            raise self._policy_error
        assert self._policy is not None
        return self._policy

    def refresh_policy(self, tx: Transaction) -> LoadedPolicy:
        """The policy in force in this transaction (another process may have changed it)."""
        current = tx.get_meta("policy_hash")
        if current is None:
            raise StoreError(f"{self.store.location}: no policy recorded; the database was not initialised")
        if self._policy is None or self._policy.hash != current:
            text = tx.get_policy(current)
            if text is None:
                raise StoreError(f"{self.store.location}: active policy {current[:12]} is missing from the database")
            loaded = parse_policy(text, f"policy {current[:12]}")
            _check_policy_binding(tx, current, loaded, self.store.location)
            self._policy, self._policy_error = loaded, None
        return self._policy

    def put_policy(self, loaded: LoadedPolicy) -> None:
        """Use ``loaded`` from now on (after the transaction that stored it)."""
        self._policy = loaded

    @staticmethod
    def gallery_name(policy: LoadedPolicy, gallery: str | None) -> str:
        """The gallery a call is about: ``gallery``, or the policy's only one."""
        try:
            return policy.policy.gallery(gallery).name
        except KeyError as exc:
            raise PurposeError(str(exc.args[0])) from None

    def reclaim(self) -> bool:
        """Make deleted data unrecoverable from the database files (:meth:`Store.reclaim`); True when done.

        The transaction that destroyed the data recorded the debt already (meta ``reclaim_pending``, see
        :meth:`owe_reclaim`); it is cleared only once a reclaim succeeds. When another process's read snapshot blocks
        it, or this process dies first, whichever process next reclaims (an erasure, a rejection, a retention run:
        the service runs one within about a minute of starting) pays it and says truthfully whether it could. Until
        then the erased subjects' data keys are destroyed already: the bytes left cannot be decrypted.
        """
        try:
            done = self.store.reclaim()
        except StoreError:
            done = False
        pending = self.reclaim_pending()
        if done == pending:  # a new debt to record, or an old one now paid; done with nothing owed writes nothing
            with self.store.write() as tx:
                tx.set_meta("reclaim_pending", "" if done else to_text(self.now()))
        if done and pending:
            done = self.store.reclaim()  # the meta change itself leaves nothing erased behind; truncate the WAL again
        return done

    @staticmethod
    def owe_reclaim(tx: Transaction, at: str) -> None:
        """Record, in the transaction that destroys biometric data (an erasure, a rejection's evidence, retention),
        that its space is still to be reclaimed: a process killed between that commit and its reclaim leaves the
        debt on the database, and the next reclaim pays it (:meth:`reclaim`)."""
        if not tx.get_meta("reclaim_pending"):
            tx.set_meta("reclaim_pending", at)

    def reclaim_pending(self) -> bool:
        """Whether an earlier erasure or rejection could not reclaim its space yet."""
        with self.store.read() as tx:
            return bool(tx.get_meta("reclaim_pending"))

    @staticmethod
    def check_purpose(policy: LoadedPolicy, gallery: str, purpose: str) -> None:
        """Refuse a purpose the policy does not allow for ``gallery``."""
        allowed = policy.policy.gallery(gallery).purposes
        if purpose not in allowed:
            raise PurposeError(
                f"purpose {purpose!r} is not allowed for gallery {gallery!r} by policy {policy.hash[:12]}; "
                f"allowed: {', '.join(allowed)}"
            )

    @staticmethod
    def check_administrative_purpose(policy: LoadedPolicy, purpose: str, what: str, *, gallery: str | None) -> None:
        """Refuse a purpose an administrative operation (``what``: listings, erasure, withdrawal, retention, the
        ledger, the report) may not have: one of the policy's administrative purposes, or of ``gallery``'s purposes
        (any gallery's when None), is required. Checked at the public entry points, not in :func:`erase_in` (which
        withdrawal, expiry and retention call with their own purpose)."""
        allowed = policy.policy.administrative_purposes(gallery)
        if purpose not in allowed:
            scope = "any gallery's" if gallery is None else f"gallery {gallery!r}'s"
            raise PurposeError(
                f"purpose {purpose!r} is not allowed to {what} by policy {policy.hash[:12]}; allowed: the "
                f"administrative purposes and {scope}: {', '.join(allowed)}"
            )

    # ------------------------------------------------------------------------------------------ transactions
    @contextmanager
    def write(self) -> Iterator[Transaction]:
        """A store write transaction; if it fails, the in-memory index is resynchronised from the store."""
        try:
            with self.store.write() as tx:
                if not tx.sealed():  # a database made before seals: seal its records as they are, on the ledger
                    stamp = to_text(self.now())
                    counts = tx.seal_all(stamp)
                    self.record(
                        tx, AuditAction.STATE_SEAL, actor="faceledger", purpose="administration", at=stamp,
                        details={"sealed": counts},
                    )  # fmt: skip
                    tx.finish()  # bound to that entry, not to the caller's
                yield tx
        except BaseException:
            if self.index is not None:
                self.index.version = None
            self.gallery_sizes.clear()
            raise

    def record(
        self,
        tx: Transaction,
        action: AuditAction,
        *,
        actor: str,
        purpose: str,
        at: datetime | str | None = None,
        gallery: str | None = None,
        subjects: tuple[str, ...] = (),
        probe_sha256: str | None = None,
        threshold: float | None = None,
        policy_hash: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append the audit entry of what ``tx`` does, in ``tx`` (``at`` defaults to now)."""
        stamp = at if isinstance(at, str) else to_text(at or self.now())
        draft = AuditDraft(
            action=action,
            actor=actor,
            purpose=purpose,
            gallery=gallery,
            subjects=subjects,
            probe_sha256=probe_sha256,
            threshold=threshold,
            policy_hash=policy_hash,
            details=details or {},
        )
        return tx.append_audit(draft, stamp)

    def read_records(
        self,
        kind: str,
        read: Callable[[Transaction], T],
        *,
        actor: str | None,
        purpose: str | None,
        filters: dict[str, Any],
        gallery: str | None = None,
    ) -> T:
        """``read(tx)``. With ``actor`` or ``purpose`` (then both are required, and the purpose must be one an
        administrative operation may have) the read shows records to a person: it is a ``records.read`` entry in the
        same transaction, naming ``kind``, the ``filters`` given and how many records were read. Without either it is
        an internal read (the index, the retention scheduler, metrics, a poller) and leaves no entry."""
        if actor is None and purpose is None:
            with self.store.read() as tx:
                return read(tx)
        actor, purpose = accountable(actor, purpose)
        with self.write() as tx:
            policy = self.refresh_policy(tx)
            self.check_administrative_purpose(policy, purpose, f"read {kind}", gallery=gallery)
            out = read(tx)
            details: dict[str, Any] = {"kind": kind, "filters": {k: v for k, v in filters.items() if v is not None}}
            if isinstance(out, list):
                details["count"] = len(out)
            subject = filters.get("subject")
            self.record(
                tx, AuditAction.RECORDS_READ, actor=actor, purpose=purpose, gallery=gallery,
                subjects=(subject,) if isinstance(subject, str) else (), details=details,
            )  # fmt: skip
        return out

    # ------------------------------------------------------------------------------------------ images
    def probe(self, image: ImageInput) -> Probe:
        """Decode an image with this gallery's engine and hash its bytes (see :func:`probe_image`)."""
        return probe_image(self.engine, image)


def probe_image(engine: Engine, image: ImageInput) -> Probe:
    """Decode an image with ``engine`` and hash its bytes: the digest on the ledger is of the bytes decoded."""
    if isinstance(image, str | os.PathLike):
        # read once: the hash on the ledger is of the very bytes decoded (a file replaced between two reads, or
        # a named pipe, which can be read only once, would otherwise break that)
        source = os.fspath(image)
        data = read_file(image)  # ImageError names the file and says what is wrong
        try:
            array = engine.load(io.BytesIO(data))
        except ImageError as exc:
            raise ImageError(source, exc.reason) from None
        return Probe(source, hashlib.sha256(data).hexdigest(), array)
    if isinstance(image, np.ndarray):
        array = engine.load(image)
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
        return Probe("<array>", digest, array)
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        source = "<bytes>"
    elif hasattr(image, "read"):
        data = image.read()
        source = str(getattr(image, "name", "<stream>"))
    else:
        raise ImageError(repr(type(image).__name__), "not an image: give a path, bytes, a file or an array")
    try:
        array = engine.load(io.BytesIO(data))
    except ImageError as exc:
        raise ImageError(source, exc.reason) from None
    return Probe(source, hashlib.sha256(data).hexdigest(), array)


# ---------------------------------------------------------------------------------------------- argument checks
def accountable(actor: str | None, purpose: str | None) -> tuple[str, str]:
    """``(actor, purpose)`` stripped; refuses a call without either."""
    if not actor or not str(actor).strip():
        raise AccountabilityError("an actor is required: who is doing this", "actor")
    if not purpose or not str(purpose).strip():
        raise AccountabilityError("a purpose is required: why this is done", "purpose")
    return str(actor).strip(), str(purpose).strip()


def subject_gallery(tx: Transaction, subject: str) -> str | None:
    """The gallery ``subject`` is enrolled in or has consents for, or None when it is unknown."""
    record = tx.get_subject(subject)
    if record is not None:
        return record.gallery
    consents = tx.list_consents(subject_id=subject)
    return consents[0].gallery if consents else None


def check_subject_id(subject: str) -> str:
    """Refuse a subject id that could be a name or break a URL."""
    if not isinstance(subject, str) or not SUBJECT_ID.match(subject):
        raise ValueError(
            f"subject id {subject!r} is not valid: use 1-128 letters, digits or _.:@+- "
            "(starting with a letter or digit); never a name or other personal data if you can avoid it"
        )
    return subject


def as_policy(policy: str | os.PathLike[str] | LoadedPolicy | None) -> LoadedPolicy:
    """A policy file, a loaded policy, or None for the commented example policy."""
    if policy is None:
        return parse_policy(EXAMPLE_POLICY, "<example policy>")
    if isinstance(policy, LoadedPolicy):
        return policy
    return load_policy(policy)


def moment(value: datetime | str | None, name: str) -> datetime | None:
    """A time given as a datetime (naive means UTC) or ISO 8601 text; ``name`` is used in the error."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)
    try:
        return from_text(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an ISO 8601 date or time (e.g. 2025-12-31)") from None


def bump_consent_version(tx: Transaction) -> None:
    """Tell every process's consent cache that consents changed."""
    tx.set_meta("consent_version", str(int(tx.get_meta("consent_version") or 0) + 1))


class PolicyBindingError(StoreError):
    """The active policy is not the one the ledger put in force (its text or its row was changed outside
    faceledger)."""


def _check_policy_binding(tx: Transaction, current: str, loaded: LoadedPolicy, where: str) -> None:
    """Refuse a policy the ledger did not put in force: a stored text whose SHA-256 is not its key (the text was
    rewritten in the database), or an active hash that is not the one the last ``policy.change`` (or
    ``ledger.init``) entry names (another policy was swapped in). Without this, either would be used at once."""
    if loaded.hash != current:
        raise PolicyBindingError(
            f"{where}: the stored text of policy {current[:12]} hashes to {loaded.hash[:12]}: it was changed outside "
            "faceledger; put the intended policy in force again with `faceledger policy set`"
        )
    changes = tx.audit_entries(action=AuditAction.POLICY_CHANGE.value)
    if changes:
        named = (changes[-1].data.get("details") or {}).get("new_hash")
    else:
        first = tx.audit_entries(limit=1)
        named = first[0].data.get("policy_hash") if first and first[0].data.get("action") == "ledger.init" else None
    if named is not None and named != current:
        raise PolicyBindingError(
            f"{where}: policy {current[:12]} is marked active, but the ledger put {str(named)[:12]} in force: the "
            "active policy was swapped outside faceledger"
        )


def search_candidate(tx: Transaction, candidate_id: str, purpose: str | None, doing: str) -> CandidateRecord:
    """A candidate by id; a ``purpose`` other than its search's is refused (``doing``: what would be done with it,
    for the message, e.g. "reviewed")."""
    candidate = tx.get_candidate(candidate_id)
    if candidate is None:
        raise UnknownSubjectError(f"no candidate {candidate_id!r}: never created, or deleted by erasure or retention")
    if purpose is not None and purpose.strip() != candidate.purpose:
        raise PurposeError(
            f"candidate {candidate_id} comes from a search for purpose {candidate.purpose!r}; "
            f"it cannot be {doing} for {purpose!r}"
        )
    return candidate
