"""Seals: every record that decides who may be searched or what a search means is bound to the audit entry that last
wrote it, and checked where it is read.

A seal is an HMAC-SHA256 over the record's kind, key, the seq of the entry of the transaction that last created or
changed it, and its fields (canonical JSON), with a key derived from the master key (HKDF). Someone who can write
the database but does not hold the master key cannot seal a record they changed or inserted, nor move a seal to
another record. Sealed kinds:

- ``consent``: who may be enrolled and searched, for which purpose, until when;
- ``api_key`` and ``user``: who may call the service or sign in, with which role;
- ``candidate`` and ``review``: what a search raised, and who confirmed or rejected it;
- ``deployment``: where, when and from which sources live identification is authorised;
- ``subject``: a subject's gallery, data key id and the exact set of its template ids (a template deleted or
  added outside faceledger changes it; the templates themselves are AES-GCM with their ids as associated data).

:class:`SealedStore` wraps any :class:`~faceledger.ledger.store.Store`: every write of a sealed record through it is
sealed when its transaction ends, bound to the last audit entry that transaction appended (a sealed record changed
without an entry is refused); every read checks the seal. A ``get_*`` of a record that does not match raises
:class:`~faceledger.ledger.errors.TamperedRecordError` naming it; a ``list_*`` leaves it out. Either way it is
remembered in :attr:`SealedStore.problems` (readiness and metrics report it), and :func:`verify_records` lists every
such record, deletions included (a seal whose record is gone).

Written here rather than taken from a library: no library seals rows of an application's own schema; the
primitives (HMAC, HKDF) are the standard library's and ``cryptography``'s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from faceledger.ledger.audit import AuditDraft, AuditEntry
from faceledger.ledger.errors import StoreError, TamperedRecordError
from faceledger.ledger.records import CandidateRecord, CandidateStatus, Consent, ReviewRecord, Subject

SEALED_KINDS = ("consent", "api_key", "user", "candidate", "review", "deployment", "subject")
SEALED_META = "sealed_at"
"""Meta key: when this database's records were first sealed (at initialisation, or on upgrade)."""

SET_META = ("seals_set", "seals_tag")
"""Meta keys: the XOR of every seal's digest, and its HMAC bound to the ledger's head (see :func:`set_tag`)."""

_MAC_PREFIX = b"faceledger/seal/v1|"
_SET_PREFIX = b"faceledger/seal-set/v1|"


def seal_key(master_key: bytes) -> bytes:
    """The sealing key derived from the master key (HKDF-SHA256; distinct from every other use of the master key)."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"faceledger/seal-key/v1").derive(master_key)


def content(record: Any) -> bytes:
    """The canonical bytes of a record's fields (sorted keys, no whitespace)."""
    data = record if isinstance(record, dict) else dataclasses.asdict(record)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def mac(key: bytes, kind: str, record_key: str, seq: int, record: Any) -> str:
    """The seal of one record written by the transaction of entry ``seq``."""
    message = _MAC_PREFIX + f"{kind}|{record_key}|{seq}|".encode() + content(record)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _digest(kind: str, key: str, seq: int, seal_mac: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{kind}|{key}|{seq}|{seal_mac}".encode()).digest(), "big")


def set_tag(key: bytes, seals_set: int, head: Any) -> str:
    """The HMAC of the set of seals (the XOR of their digests) and the ledger's head when it was last written.

    Every write that appends an entry re-makes it. A record deleted together with its seal, or a record and its
    seal restored from an earlier copy of the database, changes the set; putting back the earlier tag too would
    need the earlier head as well, that is a ledger cut back, which the chain and its signed checkpoints name. The
    XOR is a set hash updated in constant time per seal; the HMAC makes it unforgeable without the master key."""
    where = "-" if head is None else f"{head.seq}|{head.hash}"
    message = _SET_PREFIX + f"{seals_set:064x}|{where}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _key_of(kind: str, record: Any) -> str:
    return str(record.name if kind in ("user", "deployment") else record.id)


class SealedTransaction:
    """A :class:`~faceledger.ledger.store.Transaction` whose sealed records are sealed on write and checked on read.

    Every other method is the wrapped transaction's."""

    def __init__(self, tx: Any, key: Callable[[Any], bytes], problems: dict[str, str]) -> None:
        self._tx = tx
        self._key_source = key
        self._key: bytes | None = None
        self._problems = problems
        # written here: (kind, key) -> (record, or None to re-read; how many entries this transaction had appended)
        self._touched: dict[tuple[str, str], tuple[Any, int]] = {}
        self._appended: list[int] = []  # seqs of the entries this transaction appended
        self._dropped: set[tuple[str, str]] = set()
        self._last_seq: int | None = None
        self._mode: str | None = None
        self._set_delta = 0  # XOR of the seal digests removed and added by this transaction

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    @property
    def raw(self) -> Any:
        """The wrapped transaction (no checks)."""
        return self._tx

    # ------------------------------------------------------------------------------------------ mode and key
    def sealed(self) -> bool:
        """True when this database's records are sealed; False for one created before seals, not yet upgraded.
        A database whose seal marker was removed although its ledger says it was sealed is refused."""
        if self._mode is None:
            if self._tx.get_meta(SEALED_META):
                self._mode = "sealed"
            elif (entry := ledger_sealed_at(self._tx)) is not None:
                raise StoreError(
                    f"the database's seal marker (meta {SEALED_META}) is gone, but entry {entry} of the ledger says "
                    "its records were sealed: it was removed outside faceledger; no record can be trusted"
                )
            else:
                self._mode = "legacy"
        return self._mode == "sealed"

    def _sealing_key(self) -> bytes:
        if self._key is None:
            self._key = self._key_source(self._tx)
        return self._key

    # ------------------------------------------------------------------------------------------ checks
    def _problem(self, kind: str, key: str, record: Any, seals: dict[str, tuple[int, str]] | None = None) -> str | None:
        """Why ``record`` does not match its seal, or None when it does (or is not sealed yet in this transaction)."""
        if (kind, key) in self._touched or not self.sealed():
            return None
        seal = self._tx.get_seal(kind, key) if seals is None else seals.get(key)
        if seal is None:
            return "it has no seal: it was inserted outside faceledger"
        seq, stored = seal
        if not hmac.compare_digest(stored, mac(self._sealing_key(), kind, key, seq, record)):
            what = "a template was added or removed, or its key replaced" if kind == "subject" else "it was changed"
            return f"it does not match the seal of entry {seq}, which last wrote it: {what} outside faceledger"
        return None

    def _report(self, kind: str, key: str, why: str) -> str:
        text = f"{kind.replace('_', ' ')} {key!r} does not match the ledger: {why}"
        self._problems[f"{kind}:{key}"] = text
        return text

    def _checked(self, kind: str, record: Any) -> Any:
        if record is None:
            return None
        key = _key_of(kind, record)
        why = self._problem(kind, key, record)
        if why is not None:
            raise TamperedRecordError(f"{self._report(kind, key, why)}; it is not used", kind, key)
        self._problems.pop(f"{kind}:{key}", None)
        return record

    def _filtered(self, kind: str, records: list[Any]) -> list[Any]:
        if not records or not self.sealed():
            return records
        keys = [_key_of(kind, r) for r in records]  # a few: their seals only; many: every seal of the kind at once
        seals = self._tx.seals_among(kind, keys) if len(keys) <= 500 else self._tx.seals_of(kind)
        good = []
        for key, record in zip(keys, records, strict=True):
            why = self._problem(kind, key, record, seals)
            if why is None:
                good.append(record)
                self._problems.pop(f"{kind}:{key}", None)
            else:
                self._report(kind, key, why)
        return good

    # ------------------------------------------------------------------------------------------ writes
    def _touch(self, kind: str, key: str, record: Any = None) -> None:
        self._touched[(kind, key)] = (record, len(self._appended))
        self._dropped.discard((kind, key))

    def _drop(self, kind: str, key: str) -> None:
        self._touched.pop((kind, key), None)
        self._dropped.add((kind, key))

    def append_audit(self, draft: AuditDraft, ts: str) -> AuditEntry:
        entry = self._tx.append_audit(draft, ts)
        self._last_seq = entry.seq
        self._appended.append(entry.seq)
        return entry

    def finish(self) -> None:
        """Seal what this transaction wrote so far (called before it commits, and after an entry that the records
        written before it must be bound to). A record is bound to the first entry appended after it was written
        (a withdrawal's consent to the ``consent.withdraw`` entry, not to the erasure after it), or to the last one
        when it was written after every entry (an identification's candidates)."""
        for kind, dropped in self._dropped:
            self._delete_seal(kind, dropped)
        self._dropped.clear()
        if self._touched and self._last_seq is None:
            names = ", ".join(f"{k} {v!r}" for k, v in sorted(self._touched)[:5])
            raise StoreError(f"records changed without an audit entry ({names}); nothing was written")
        writes: dict[str, list[tuple[str, int, Any]]] = {}
        for (kind, record_key), (record, before) in self._touched.items():
            current = record if record is not None else self._read_raw(kind, record_key)
            if current is None:
                self._delete_seal(kind, record_key)
            else:
                seq = self._appended[min(before, len(self._appended) - 1)]
                writes.setdefault(kind, []).append((record_key, seq, current))
        for kind, records in writes.items():  # the old seals read, and the new ones written, in bulk
            old, rows = self._tx.seals_among(kind, [k for k, _, _ in records]), []
            for record_key, seq, current in records:
                if record_key in old:
                    self._set_delta ^= _digest(kind, record_key, *old[record_key])
                rows.append((kind, record_key, seq, mac(self._sealing_key(), kind, record_key, seq, current)))
                self._set_delta ^= _digest(*rows[-1])
            self._tx.put_seals(rows)
        self._touched.clear()
        if (self._last_seq is not None or self._set_delta) and self.sealed():
            stored = self._tx.get_meta(SET_META[0])
            seals_set = (int(stored, 16) if stored else 0) ^ self._set_delta
            self._tx.set_meta(SET_META[0], f"{seals_set:064x}")
            self._tx.set_meta(SET_META[1], set_tag(self._sealing_key(), seals_set, self._tx.audit_head()))
            self._set_delta = 0

    def _put_seal(self, kind: str, record_key: str, seq: int, record: Any, key: bytes) -> None:
        self._delete_seal(kind, record_key)
        seal_mac = mac(key, kind, record_key, seq, record)
        self._tx.put_seal(kind, record_key, seq, seal_mac)
        self._set_delta ^= _digest(kind, record_key, seq, seal_mac)

    def _delete_seal(self, kind: str, record_key: str) -> None:
        old = self._tx.get_seal(kind, record_key)
        if old is not None:
            self._tx.delete_seal(kind, record_key)
            self._set_delta ^= _digest(kind, record_key, *old)

    def seal_all(self, at: str) -> dict[str, int]:
        """Seal every record as it is now (the upgrade of a database made before seals, at time ``at``); returns
        counts per kind. The caller appends the entry they are bound to, in this transaction."""
        counts = {}
        for kind in SEALED_KINDS:
            keys = list(_all_raw(self._tx, kind))
            for record_key, record in keys:
                self._touch(kind, record_key, record)  # a later write in this transaction touches it again
            counts[kind] = len(keys)
        self._tx.set_meta(SEALED_META, at)
        self._mode = "sealed"
        return counts

    def reseal_all(self, new_key: bytes) -> int:
        """Re-make every seal that is valid now with ``new_key`` (master key rotation), keeping its entry; a record
        that does not match its seal keeps its old seal, and stays refused. Returns how many were re-made."""
        old = self._sealing_key()
        done = 0
        for kind in SEALED_KINDS:
            seals = self._tx.seals_of(kind)
            for record_key, record in _all_raw(self._tx, kind):
                seal = seals.get(record_key)
                if seal is not None and hmac.compare_digest(seal[1], mac(old, kind, record_key, seal[0], record)):
                    self._put_seal(kind, record_key, seal[0], record, new_key)
                    done += 1
        self._key = new_key  # the set's tag is made with it when this transaction ends
        return done

    def _read_raw(self, kind: str, key: str) -> Any:
        if kind == "subject":
            return subject_content(self._tx, key)
        return _GETTERS[kind](self._tx, key)

    # sealed writes
    def add_consent(self, consent: Consent) -> None:
        self._tx.add_consent(consent)
        self._touch("consent", consent.id)

    def end_consent(self, consent_id: str, withdrawn_at: str | None, reason: str) -> None:
        self._tx.end_consent(consent_id, withdrawn_at, reason)
        self._touch("consent", consent_id)

    def delete_consent(self, consent_id: str) -> None:
        self._tx.delete_consent(consent_id)
        self._drop("consent", consent_id)

    def add_api_key(self, key: Any) -> None:
        self._tx.add_api_key(key)
        self._touch("api_key", key.id)

    def revoke_api_key(self, key_id: str, revoked_at: str) -> None:
        self._tx.revoke_api_key(key_id, revoked_at)
        self._touch("api_key", key_id)

    def add_user(self, user: Any) -> None:
        self._tx.add_user(user)
        self._touch("user", user.name)

    def update_user(self, name: str, **changes: Any) -> None:
        self._tx.update_user(name, **changes)
        self._touch("user", name)

    def add_candidate(self, candidate: CandidateRecord) -> None:
        self._tx.add_candidate(candidate)
        self._touch("candidate", candidate.id)

    def set_candidate_status(self, candidate_id: str, status: CandidateStatus, decided_at: str | None) -> None:
        self._tx.set_candidate_status(candidate_id, status, decided_at)
        self._touch("candidate", candidate_id)

    def delete_candidates_of(self, subject_id: str) -> int:
        self._drop_candidates(self._tx.list_candidates(subject_id=subject_id))
        return int(self._tx.delete_candidates_of(subject_id))

    def delete_candidates_before(self, cutoff: str) -> int:
        self._drop_candidates([c for c in self._tx.list_candidates() if c.created_at < cutoff])
        return int(self._tx.delete_candidates_before(cutoff))

    def _drop_candidates(self, candidates: list[CandidateRecord]) -> None:
        for candidate in candidates:
            self._drop("candidate", candidate.id)
            for review in self._tx.reviews_of(candidate.id):
                self._drop("review", review.id)

    def add_review(self, review: ReviewRecord) -> None:
        self._tx.add_review(review)
        self._touch("review", review.id, review)

    def add_deployment(self, deployment: Any) -> None:
        self._tx.add_deployment(deployment)
        self._touch("deployment", deployment.name)

    def update_deployment(self, name: str, **changes: Any) -> None:
        self._tx.update_deployment(name, **changes)
        self._touch("deployment", name)

    def add_subject(self, subject: Subject) -> None:
        self._tx.add_subject(subject)
        self._touch("subject", subject.id)

    def add_subjects(self, subjects: Sequence[Subject], keys: Sequence[Any], templates: Sequence[Any]) -> None:
        """New subjects in bulk (the store's ``add_subjects``), sealed with what was written, not read back."""
        self._tx.add_subjects(subjects, keys, templates)
        key_ids = {k.subject_id: k.id for k in keys}
        ids: dict[str, list[str]] = {s.id: [] for s in subjects}
        for template in templates:
            ids[template.subject_id].append(template.id)
        for s in subjects:  # = subject_content(): nothing else of a new subject exists
            body = {**dataclasses.asdict(s), "key_id": key_ids.get(s.id), "templates": sorted(ids[s.id])}
            self._touch("subject", s.id, body)

    def add_subject_key(self, key: Any) -> None:
        self._tx.add_subject_key(key)
        self._touch("subject", key.subject_id)

    def add_template(self, template: Any) -> None:
        self._tx.add_template(template)
        self._touch("subject", template.subject_id)

    def delete_template(self, template_id: str) -> None:
        subjects = [r.subject_id for r in self._tx.get_templates([template_id])]
        self._tx.delete_template(template_id)
        for subject in subjects:
            self._touch("subject", subject)

    def delete_subject(self, subject_id: str) -> None:
        self._tx.delete_subject(subject_id)
        self._drop("subject", subject_id)

    # checked reads
    def get_consent(self, consent_id: str) -> Consent | None:
        return self._checked("consent", self._tx.get_consent(consent_id))

    def list_consents(self, subject_id: str | None = None, gallery: str | None = None) -> list[Consent]:
        return self._filtered("consent", self._tx.list_consents(subject_id=subject_id, gallery=gallery))

    def get_api_key(self, key_id: str) -> Any:
        return self._checked("api_key", self._tx.get_api_key(key_id))

    def list_api_keys(self) -> list[Any]:
        return self._filtered("api_key", self._tx.list_api_keys())

    def get_user(self, name: str) -> Any:
        return self._checked("user", self._tx.get_user(name))

    def list_users(self) -> list[Any]:
        return self._filtered("user", self._tx.list_users())

    def get_candidate(self, candidate_id: str) -> CandidateRecord | None:
        return self._checked("candidate", self._tx.get_candidate(candidate_id))

    def list_candidates(self, status: Any = None, gallery: str | None = None, subject_id: str | None = None) -> Any:
        return self._filtered(
            "candidate", self._tx.list_candidates(status=status, gallery=gallery, subject_id=subject_id)
        )

    def pending_candidates(self, gallery: str | None = None) -> list[tuple[CandidateRecord, int]]:
        if not self.sealed():
            return list(self._tx.pending_candidates(gallery))
        pending = self._filtered("candidate", [c for c, _ in self._tx.pending_candidates(gallery)])
        counted = []
        for candidate in pending:  # the confirmations of reviews that match their seals only
            confirmers = {r.reviewer for r in self.reviews_of(candidate.id) if r.decision == "confirm"}
            counted.append((candidate, len(confirmers)))
        return counted

    def reviews_of(self, candidate_id: str) -> list[ReviewRecord]:
        return self._filtered("review", self._tx.reviews_of(candidate_id))

    def get_deployment(self, name: str) -> Any:
        return self._checked("deployment", self._tx.get_deployment(name))

    def list_deployments(self) -> list[Any]:
        return self._filtered("deployment", self._tx.list_deployments())

    def subject_problems(
        self,
        refs: list[Any] | None = None,
        owns: Callable[[str], bool] | None = None,
        only: Collection[str] | None = None,
    ) -> dict[str, str]:
        """Subjects whose gallery, data key or set of templates does not match their seal, with why (also remembered
        in the store's problems). ``refs`` are the template refs the caller read already (the index sync); ``owns``:
        only the subjects it accepts are checked (a search shard's; then ``refs`` need hold only theirs); ``only``:
        just these subject ids, read one by one (an index already loaded checks those whose templates changed)."""
        if not self.sealed():
            return {}
        seals = None if only is not None else self._tx.seals_of("subject")
        records: Iterator[tuple[str, Any]]
        if only is not None:
            records = ((s, r) for s in sorted(only) if (r := subject_content(self._tx, s)) is not None)
        else:
            records = _all_subjects(self._tx, refs, owns)
        bad = {}
        for subject_id, record in records:
            why = self._problem("subject", subject_id, record, seals)
            if why is None:
                self._problems.pop(f"subject:{subject_id}", None)
            else:
                bad[subject_id] = self._report("subject", subject_id, why)
        return bad


def subject_content(tx: Any, subject_id: str) -> dict[str, Any] | None:
    """What a subject's seal covers: its row, its data key's id and its template ids (sorted)."""
    subject = tx.get_subject(subject_id)
    if subject is None:
        return None
    key = tx.get_subject_key(subject_id)
    templates = sorted(t.id for t in tx.templates_of(subject_id))
    return {**dataclasses.asdict(subject), "key_id": None if key is None else key.id, "templates": templates}


def _all_subjects(
    tx: Any, refs: list[Any] | None = None, owns: Callable[[str], bool] | None = None
) -> Iterator[tuple[str, Any]]:
    keys = {k.subject_id: k.id for k in tx.list_subject_keys() if owns is None or owns(k.subject_id)}
    templates: dict[str, list[str]] = {}
    for ref in tx.template_refs() if refs is None else refs:
        templates.setdefault(ref.subject_id, []).append(ref.id)
    names: tuple[str, ...] = ()
    for subject in tx.list_subjects():
        if owns is not None and not owns(subject.id):
            continue
        # the fields of a subject are flat strings: read them as asdict would, without its deep copy (a third of
        # the time of checking every subject when a gallery of millions loads)
        names = names or tuple(f.name for f in dataclasses.fields(subject))
        body = {
            **{name: getattr(subject, name) for name in names},
            "key_id": keys.get(subject.id),
            "templates": sorted(templates.get(subject.id, [])),
        }
        yield subject.id, body


def _all_reviews(tx: Any) -> Iterator[tuple[str, Any]]:
    for candidate in tx.list_candidates():
        for review in tx.reviews_of(candidate.id):
            yield review.id, review


def _all_raw(tx: Any, kind: str) -> Iterator[tuple[str, Any]]:
    """Every record of one kind, unchecked, as ``(key, record)``."""
    if kind == "subject":
        yield from _all_subjects(tx)
    elif kind == "review":
        yield from _all_reviews(tx)
    else:
        for record in _LISTERS[kind](tx):
            yield _key_of(kind, record), record


_GETTERS: dict[str, Callable[[Any, str], Any]] = {
    "consent": lambda tx, k: tx.get_consent(k),
    "api_key": lambda tx, k: tx.get_api_key(k),
    "user": lambda tx, k: tx.get_user(k),
    "candidate": lambda tx, k: tx.get_candidate(k),
    "deployment": lambda tx, k: tx.get_deployment(k),
}
_LISTERS: dict[str, Callable[[Any], list[Any]]] = {
    "consent": lambda tx: tx.list_consents(),
    "api_key": lambda tx: tx.list_api_keys(),
    "user": lambda tx: tx.list_users(),
    "candidate": lambda tx: tx.list_candidates(),
    "deployment": lambda tx: tx.list_deployments(),
}


def ledger_sealed_at(tx: Any) -> int | None:
    """The seq of the entry that says this database's records were sealed (``ledger.init`` with seals, or
    ``state.seal``), if the ledger still holds it."""
    upgrades = tx.audit_entries(action="state.seal", limit=1)
    if upgrades:
        return int(upgrades[0].seq)
    first = tx.audit_entries(limit=1)
    if first and first[0].data.get("action") == "ledger.init" and (first[0].data.get("details") or {}).get("seals"):
        return int(first[0].seq)
    return None


def verify_records(tx: Any, key: bytes, *, first_seq: int | None, head_seq: int | None) -> list[str]:
    """Every sealed record that does not match the ledger, one line each: changed or inserted (no seal, or a seal
    that does not match), deleted (a seal whose record is gone), or bound to an entry that does not exist or does not
    name it. ``first_seq`` and ``head_seq`` are the first and last entry the ledger holds (entries before
    ``first_seq`` were removed by retention; a seal bound to one of them is not checked against its entry)."""
    if not tx.get_meta(SEALED_META):
        return []
    problems = []
    seals_set = 0
    for kind in SEALED_KINDS:
        label = kind.replace("_", " ")
        seals = tx.seals_of(kind)
        for record_key, (seq, seal_mac) in seals.items():
            seals_set ^= _digest(kind, record_key, seq, seal_mac)
        for record_key, record in _all_raw(tx, kind):
            seal = seals.pop(record_key, None)
            if seal is None:
                problems.append(f"{label} {record_key!r}: no seal: inserted outside faceledger")
                continue
            seq, stored = seal
            if not hmac.compare_digest(stored, mac(key, kind, record_key, seq, record)):
                problems.append(
                    f"{label} {record_key!r}: does not match the seal of entry {seq}: changed outside faceledger"
                )
            elif head_seq is None or seq > head_seq:
                problems.append(f"{label} {record_key!r}: sealed by entry {seq}, which the ledger does not hold")
            elif first_seq is not None and seq >= first_seq:
                body = tx.audit_body(seq)
                names = body is not None and (record_key in body or json.loads(body).get("action") == "state.seal")
                if not names and kind != "review":  # a review's entry names its candidate
                    problems.append(f"{label} {record_key!r}: sealed by entry {seq}, which does not name it")
        for record_key, (seq, _) in sorted(seals.items()):
            problems.append(f"{label} {record_key!r}: deleted outside faceledger (sealed by entry {seq})")
    head = tx.audit_head()
    if not hmac.compare_digest(tx.get_meta(SET_META[1]) or "", set_tag(key, seals_set, head)):
        problems.append(
            f"the set of seals does not match the one written with the ledger's head (entry "
            f"{None if head is None else head.seq}): a record was deleted together with its seal, or a record and "
            "its seal were put back from an earlier copy of the database, outside faceledger"
        )
    return problems


class SealedStore:
    """A store whose transactions are :class:`SealedTransaction`; ``key(tx)`` gives the sealing key (called once per
    transaction, when a sealed record is first written or checked)."""

    def __init__(self, store: Any, key: Callable[[Any], bytes]) -> None:
        self.inner = store
        self.location = store.location
        self._key = key
        self.problems: dict[str, str] = {}
        """Records found not to match the ledger by this process ("kind:key" -> why), until read again intact."""

    def reclaim(self) -> bool:
        return bool(self.inner.reclaim())

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextmanager
    def read(self) -> Iterator[SealedTransaction]:
        with self.inner.read() as tx:
            yield SealedTransaction(tx, self._key, self.problems)

    @contextmanager
    def write(self) -> Iterator[SealedTransaction]:
        with self.inner.write() as tx:
            sealed = SealedTransaction(tx, self._key, self.problems)
            yield sealed
            sealed.finish()
