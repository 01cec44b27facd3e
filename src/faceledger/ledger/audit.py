"""The hash-chained audit ledger: entry format, hashing, and verification.

Each entry is a JSON object serialised canonically (sorted keys, no whitespace, UTF-8). It carries its
sequence number ``seq`` and the hash of the previous entry ``prev``; its own hash is the SHA-256 of that
serialisation. Changing, removing, inserting or reordering any entry therefore breaks the chain at that entry,
and :func:`verify_chain` names it.

Entries never hold biometric data: a probe is recorded by the SHA-256 of its image bytes, candidates by
subject id.

When old entries are purged for retention, a checkpoint entry (action ``audit.purge``) is appended that
records the range removed and the hash of the last removed entry, so the remaining chain still verifies from
its new first entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faceledger.ledger.actions import AuditAction
from faceledger.wire import Wire

GENESIS_HASH = "0" * 64
"""``prev`` of the very first entry."""

ENTRY_VERSION = 1
PURGE_ACTION = AuditAction.AUDIT_PURGE

# Fields every entry body has, in addition to seq/prev/v.
ENTRY_FIELDS = (
    "ts",
    "action",
    "actor",
    "purpose",
    "gallery",
    "probe_sha256",
    "subjects",
    "threshold",
    "policy_hash",
    "details",
)


def canonical_json(value: Any) -> str:
    """Serialise ``value`` canonically: sorted keys, no whitespace, no NaN, non-ASCII kept as UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(data: bytes | str) -> str:
    """Hex SHA-256 of bytes (or of the UTF-8 encoding of a string)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class AuditDraft:
    """What a use case wants recorded; the store adds ``seq``, ``prev`` and the time, then hashes it.

    ``subjects`` are subject ids (candidates, the enrolled or erased subject); ``probe_sha256`` is the
    SHA-256 of a probe image's bytes; ``details`` is any further JSON-serialisable, non-biometric information.
    """

    action: str
    actor: str
    purpose: str
    gallery: str | None = None
    probe_sha256: str | None = None
    subjects: tuple[str, ...] = ()
    threshold: float | None = None
    policy_hash: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    """One stored entry: its sequence number, canonical body, previous hash and own hash."""

    seq: int
    body: str
    prev_hash: str
    hash: str

    @property
    def data(self) -> dict[str, Any]:
        """The entry as a dict (parsed from the canonical body)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    def to_dict(self) -> dict[str, Any]:
        """The entry's fields plus its ``hash``: what ``audit show`` and ``audit export`` print."""
        out = self.data
        out["hash"] = self.hash
        return out


@dataclass(frozen=True)
class AuditHead(Wire):
    """The last entry's sequence number and hash: publish it elsewhere to anchor the chain.

    ``to_dict()`` is ``{"seq": ..., "hash": ...}`` (derived, see :mod:`faceledger.wire`).
    """

    seq: int
    hash: str


def build_entry(draft: AuditDraft, *, seq: int, prev_hash: str, ts: str) -> AuditEntry:
    """Make the entry that follows ``prev_hash`` at position ``seq``."""
    if not draft.actor or not draft.actor.strip():
        raise ValueError("audit entry needs an actor")
    if not draft.purpose or not draft.purpose.strip():
        raise ValueError("audit entry needs a purpose")
    body_obj: dict[str, Any] = {
        "v": ENTRY_VERSION,
        "seq": seq,
        "prev": prev_hash,
        "ts": ts,
        "action": draft.action,
        "actor": draft.actor,
        "purpose": draft.purpose,
        "gallery": draft.gallery,
        "probe_sha256": draft.probe_sha256,
        "subjects": sorted(set(draft.subjects)),
        "threshold": None if draft.threshold is None else float(draft.threshold),
        "policy_hash": draft.policy_hash,
        "details": dict(draft.details),
    }
    body = canonical_json(body_obj)
    return AuditEntry(seq=seq, body=body, prev_hash=prev_hash, hash=sha256_hex(body))


@dataclass(frozen=True)
class StoredAuditRow:
    """An audit row as read back from storage, including its denormalised query columns."""

    seq: int
    ts: str
    action: str
    actor: str
    purpose: str
    gallery: str | None
    body: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult(Wire):
    """Outcome of :func:`verify_chain`.

    ``ok`` is True when every entry hashes correctly, links to its predecessor, and the chain ends at the
    recorded (or expected) head. Otherwise ``bad_seq`` names the first entry at fault (for removed
    entries: the first one missing) and ``problem`` says what is wrong.

    ``records`` lists every sealed record that does not match the ledger (changed, inserted or deleted outside
    faceledger; see :mod:`faceledger.ledger.seals`), one line each; any makes ``ok`` False. ``records_checked`` is
    False when they could not be checked (no master key at hand, as for an auditor with a copy of the database).
    """

    ok: bool
    entries: int
    first_seq: int | None
    head: AuditHead | None
    bad_seq: int | None = None
    problem: str | None = None
    records_checked: bool = False
    records: tuple[str, ...] = ()


def _fail(entries: int, first: int | None, head: AuditHead | None, seq: int, problem: str) -> VerifyResult:
    return VerifyResult(False, entries, first, head, bad_seq=seq, problem=problem)


def verify_chain(
    rows: Iterable[StoredAuditRow],
    *,
    recorded_head: AuditHead | None = None,
    expected_head: AuditHead | None = None,
    initialised: bool = False,
) -> VerifyResult:
    """Recompute the chain over ``rows`` (in storage order) and report the first entry at fault.

    The entry named is the one that was changed, removed or inserted, not merely the first one whose check fails:
    an entry edited and re-hashed is named, not its successor (whose content committed to the old hash); an entry
    inserted by renumbering the later ones is named, not the first renumbered one. ``initialised``: the gallery
    was set up, so an empty ledger means its entries were deleted.

    ``recorded_head`` is the head the store wrote alongside the last append (catches entries appended or
    truncated behind the store's back); ``expected_head`` is a head anchored elsewhere (catches a rewritten
    tail). A chain whose oldest entries were purged starts at a later ``seq``; its first entry's ``prev`` must
    then equal the ``last_hash`` recorded by the ``audit.purge`` checkpoint that covers the gap.
    """
    rows = list(rows)
    if not rows:
        if recorded_head is not None and recorded_head.seq > 0:
            return _fail(0, None, None, 1, f"entries 1..{recorded_head.seq} removed: the ledger is empty")
        if expected_head is not None and expected_head.seq > 0:
            return _fail(0, None, None, 1, "the ledger is empty but an anchored head was given")
        if initialised:
            return _fail(
                0, None, None, 1, "the ledger is empty although the gallery was initialised: its entries were deleted"
            )
        return VerifyResult(True, 0, None, None)

    first_seq = rows[0].seq
    parsed: list[dict[str, Any]] = []
    for row in rows:
        try:
            data = json.loads(row.body)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            return _fail(len(rows), first_seq, None, row.seq, f"entry {row.seq} altered: body is not valid JSON")
        parsed.append(data)

    # Where the chain starts after a retention purge: the prev hash the first remaining entry must carry.
    start_prev = GENESIS_HASH
    if first_seq != 1:
        covering = [
            d
            for d in parsed
            if d.get("action") == PURGE_ACTION
            and isinstance(d.get("details"), dict)
            and d["details"].get("purged_to_seq") == first_seq - 1
        ]
        if not covering:
            # Name the first entry no checkpoint accounts for.
            accounted = [
                d["details"].get("purged_to_seq")
                for d in parsed
                if d.get("action") == PURGE_ACTION and isinstance(d.get("details"), dict)
            ]
            known = [n for n in accounted if isinstance(n, int) and n < first_seq - 1]
            missing_from = max(known) + 1 if known else 1
            return _fail(
                len(rows),
                first_seq,
                None,
                missing_from,
                f"entries {missing_from}..{first_seq - 1} removed: no audit.purge checkpoint covers them",
            )
        start_prev = str(covering[-1]["details"].get("last_hash"))

    prev_hash = start_prev
    before_prev = ""  # the hash of the entry before the previous one
    expected_seq = first_seq
    for row, data in zip(rows, parsed, strict=True):
        seq = row.seq
        n = len(rows)
        if seq != expected_seq:
            if seq > expected_seq:
                span = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
                return _fail(n, first_seq, None, expected_seq, f"entry {span} removed before entry {seq}")
            return _fail(n, first_seq, None, seq, f"entry {seq} out of order")
        if sha256_hex(row.body) != row.hash:
            return _fail(n, first_seq, None, seq, f"entry {seq} altered: its hash does not match its content")
        claimed = data.get("seq")
        if claimed != seq:
            duplicate = row.hash == prev_hash  # a copy of the entry before it: the copy is the insertion
            if claimed == seq - 1 and data.get("prev") == before_prev and seq - 1 > first_seq and not duplicate:
                # This is the entry that was at seq - 1, pushed down: the one now at seq - 1 was slipped in.
                return _fail(
                    n, first_seq, None, seq - 1,
                    f"entry {seq - 1} inserted: the entries after it were renumbered (entry {seq} says seq {claimed})",
                )  # fmt: skip
            if claimed == seq + 1 and data.get("prev") != prev_hash:
                return _fail(
                    n, first_seq, None, seq,
                    f"entry {seq} removed: the entries after it were renumbered (entry {seq} says seq {claimed})",
                )  # fmt: skip
            return _fail(n, first_seq, None, seq, f"entry {seq} reordered or inserted: its content says seq {claimed}")
        if row.prev_hash != prev_hash or data.get("prev") != prev_hash:
            if row.prev_hash == data.get("prev") and seq > first_seq:
                # This entry is intact and committed to another hash of its predecessor: the predecessor was
                # changed and its hash recomputed to match.
                return _fail(
                    n, first_seq, None, seq - 1,
                    f"entry {seq - 1} altered and re-hashed: entry {seq} recorded a different hash for it",
                )  # fmt: skip
            return _fail(
                n, first_seq, None, seq,
                f"entry {seq} does not follow entry {seq - 1}: chain broken (removed, inserted or reordered)",
            )  # fmt: skip
        columns = {
            "ts": row.ts,
            "action": row.action,
            "actor": row.actor,
            "purpose": row.purpose,
            "gallery": row.gallery,
        }
        for name, value in columns.items():
            if data.get(name) != value:
                return _fail(len(rows), first_seq, None, seq, f"entry {seq} altered: column {name!r} was changed")
        before_prev, prev_hash = prev_hash, row.hash
        expected_seq = seq + 1

    head = AuditHead(rows[-1].seq, rows[-1].hash)
    if recorded_head is not None:
        if recorded_head.seq > head.seq:
            return _fail(
                len(rows),
                first_seq,
                head,
                head.seq + 1,
                f"entries {head.seq + 1}..{recorded_head.seq} removed (recorded head: {recorded_head.seq})",
            )
        if recorded_head.seq < head.seq:
            return _fail(
                len(rows),
                first_seq,
                head,
                recorded_head.seq + 1,
                f"entry {recorded_head.seq + 1} inserted: the recorded head is seq {recorded_head.seq}",
            )
        if recorded_head.hash != head.hash:
            return _fail(
                len(rows),
                first_seq,
                head,
                head.seq,
                f"entry {head.seq} does not match the recorded head hash",
            )
    if expected_head is not None:
        # An anchored head may be older than the current head: the chain must extend it.
        by_seq = {row.seq: row for row in rows}
        if expected_head.seq > head.seq:
            return _fail(
                len(rows),
                first_seq,
                head,
                head.seq + 1,
                f"entries {head.seq + 1}..{expected_head.seq} removed (anchored head: {expected_head.seq})",
            )
        anchored = by_seq.get(expected_head.seq)
        if anchored is None:
            return _fail(
                len(rows),
                first_seq,
                head,
                expected_head.seq,
                f"entry {expected_head.seq} of the anchored head was purged; anchor a newer head",
            )
        if anchored.hash != expected_head.hash:
            return _fail(
                len(rows),
                first_seq,
                head,
                expected_head.seq,
                f"entry {expected_head.seq} does not match the anchored head hash: the chain was rewritten",
            )
    return VerifyResult(True, len(rows), first_seq, head)
