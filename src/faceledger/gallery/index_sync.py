"""Search index sync: keeps this process's in-memory :class:`~faceledger.gallery.index.SearchIndex` equal to the
store, and works out who may be searched (subjects whose consent is valid now for the gallery and purpose).

Any process may enroll or erase: before every search the index is brought to the store's data version, and the
consent cache to its consent version, inside the search's own transaction.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from faceledger.errors import ModelError
from faceledger.gallery.context import GalleryContext
from faceledger.gallery.index import SearchIndex
from faceledger.gallery.keys import decrypt_template, master_key
from faceledger.ledger.errors import MasterKeyError, StoreError
from faceledger.ledger.records import Consent, TemplateRecord, TemplateRef
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import from_text

log = logging.getLogger("faceledger.gallery")

SYNC_CHUNK = 20_000
"""Templates read and decrypted at a time while the index loads."""


class SubjectSet(AbstractSet[str]):
    """An immutable set of subject ids: a frozenset with the few joined and left since on top of it, so that a change
    to a set of millions costs the change, not a copy. Written here because neither the standard library nor numpy
    has a persistent set; the layers are folded into a new frozenset once they hold more than a sixteenth of it."""

    __slots__ = ("_added", "_base", "_removed")

    def __init__(
        self, base: frozenset[str], added: frozenset[str] = frozenset(), removed: frozenset[str] = frozenset()
    ) -> None:
        self._base, self._added, self._removed = base, added, removed  # added outside base, removed inside it

    def __contains__(self, subject: object) -> bool:
        return subject in self._added or (subject in self._base and subject not in self._removed)

    def __iter__(self) -> Iterator[str]:
        removed = self._removed
        yield from (s for s in self._base if s not in removed) if removed else self._base
        yield from self._added

    def __len__(self) -> int:
        return len(self._base) - len(self._removed) + len(self._added)

    def changed(self, joined: AbstractSet[str], left: AbstractSet[str]) -> SubjectSet:
        """This set without ``left`` and with ``joined`` (disjoint), as a new set; this one is not changed."""
        base = self._base
        added = (self._added - left) | {s for s in joined if s not in base}
        removed = (self._removed | {s for s in left if s in base}) - joined
        if len(added) + len(removed) > 64 + len(base) // 16:
            return SubjectSet(frozenset(SubjectSet(base, frozenset(added), frozenset(removed))))
        return SubjectSet(base, frozenset(added), frozenset(removed))


@dataclass
class AllowedSubjects:
    """Subjects searchable for one gallery and purpose, valid until ``valid_until`` (a consent starts or ends)."""

    version: tuple[str | None, int]
    subjects: SubjectSet
    valid_until: datetime | None
    mask: np.ndarray | None = None
    generation: int = -1
    changes: int | None = None
    """The last row of the store's change log the set reflects."""
    mask_of: SearchIndex | None = None
    """The index ``mask`` was made for; ``recheck``: the subjects whose place in it may be out of date."""
    recheck: frozenset[str] = frozenset()


def sync_index(ctx: GalleryContext, tx: Transaction, *, owns: Callable[[str], bool] | None = None) -> SearchIndex:
    """Bring the in-memory index to the store's data version (adds and erasures by any process). ``owns``: only the
    templates of the subjects it accepts (a shard's, :mod:`.shards`); with ``FACELEDGER_SHARDS`` set, ``ctx.index``
    is a shard set, which its shard processes sync themselves before each search.

    An index already loaded catches up from the store's change log (the templates and subjects changed since its
    last sync, read again); one not loaded yet, or further behind than :data:`CHANGES_REPLAYED` rows or than the
    log reaches back, reads the list of every template and loads those it does not hold."""
    from faceledger.gallery.shards import shard_set  # shards builds on this module

    if owns is None and (shards := shard_set(ctx)) is not None:
        return shards.synced(tx)
    version = tx.data_version()
    model = ctx.model_ids()
    dim = int(getattr(ctx.engine.recognizer.card, "dim", 0) or 128)
    if ctx.index is None or ctx.index.dim != dim:
        ctx.index = SearchIndex(dim)
    index = ctx.index
    if index.version == version:
        return index
    changes = None if index.changes is None else tx.changes_since(index.changes, CHANGES_REPLAYED)
    if changes is None:
        _reload(ctx, tx, index, owns, model)
    else:
        _catch_up(ctx, tx, index, changes, owns, model)
    index.version = version
    return index


CHANGES_REPLAYED = 20_000
"""At most this many rows of the change log are replayed into a loaded index; further behind, it reads the list of
every template instead (a few seconds at a million templates)."""


def _check_models(models: Iterable[str], accepted: tuple[str, ...]) -> None:
    foreign = sorted(set(models) - set(accepted))
    if foreign:
        raise ModelError(
            f"the gallery holds templates made with recognizer {', '.join(foreign)} but this engine runs "
            f"{accepted[0]}; use the same recognizer, or erase and re-enroll those subjects"
        )


def _report_problems(tx: Transaction, refs: list[TemplateRef] | None, owns: Any, only: set[str] | None) -> None:
    """Log the subjects whose set of templates, key or gallery does not match their seal (a template deleted
    outside faceledger): readiness and metrics report them. Their templates that decrypt are their own (AES-GCM
    binds each to its subject and id) and stay searched: one bad row stays one bad row."""
    problems = tx.subject_problems(refs, owns, only=only) if hasattr(tx, "subject_problems") else {}
    for subject, why in problems.items():
        log.error("subject %s: %s", subject, why)


def _reload(ctx: GalleryContext, tx: Transaction, index: SearchIndex, owns: Any, model: tuple[str, ...]) -> None:
    """The index brought to the store by the list of every template: those it lacks loaded, those gone removed."""
    last = tx.last_change()  # read first: a change logged after it is replayed by the next sync (idempotent)
    refs = tx.template_refs() if owns is None else [r for r in tx.template_refs() if owns(r.subject_id)]
    _check_models((r.model for r in refs), model)
    current = {r.id: r.subject_id for r in refs}
    have = index.template_ids
    missing = sorted(current.keys() - have)
    removed = have - current.keys()
    # every subject is checked when the index loads; an index already loaded (the change log did not reach back
    # far enough) checks the subjects whose templates this sync adds or removes
    changed = None
    if len(index):
        changed = {current[t] for t in missing} | {s for t in removed if (s := index.subject_of(t)) is not None}
    _report_problems(tx, refs, owns, changed)
    for template_id in [t for t in ctx.excluded if t not in current]:
        del ctx.excluded[template_id]  # erased or purged since
    index.update(remove=removed, add_ids=[], add_subjects=[], add_vectors=np.zeros((0, index.dim)))
    # room for the enrollments that follow a load (1/64 more, at least 1,024): the first of them need not copy
    # the whole matrix to grow it
    index.reserve(len(index) + len(missing) + (max(1024, len(missing) // 64) if len(index) == 0 else 0))
    bulk = len(missing) > SYNC_CHUNK
    cached = set(ctx.data_keys) if bulk else set()
    # In chunks: at national scale the ciphertexts of every template at once would take more memory than the index
    for page in _pages(ctx, tx, missing, whole=len(index) == 0 and bulk):
        _add(ctx, tx, index, page)
        if bulk:  # a whole gallery loading leaves no unwrapped subject key behind in memory
            for subject in set(ctx.data_keys) - cached:
                del ctx.data_keys[subject]
    present = set(current.values())
    for subject in list(ctx.data_keys):
        if subject not in present:
            del ctx.data_keys[subject]
    index.changes = last


def _catch_up(
    ctx: GalleryContext,
    tx: Transaction,
    index: SearchIndex,
    changes: tuple[int, list[tuple[str, str | None]]],
    owns: Any,
    model: tuple[str, ...],
) -> None:
    """The index brought to the store by the change log's rows since its last sync: each template named there is
    read again (present: loaded if the index lacks it or holds it under another subject; gone: removed)."""
    last, rows = changes
    if owns is not None:
        rows = [(s, t) for s, t in rows if owns(s)]
    named = sorted({t for _, t in rows if t is not None})
    present = {r.id: r for r in tx.get_templates(named)}
    _check_models((r.model for r in present.values()), model)
    held = {t: s for t in named if (s := index.subject_of(t)) is not None}  # the subject the index has it under
    removed = {t for t in held if t not in present}
    moved = {t for t, r in present.items() if t in held and held[t] != r.subject_id}
    missing = [r for t, r in present.items() if t not in held or t in moved]
    changed = {r.subject_id for r in missing} | {held[t] for t in removed | moved}
    _report_problems(tx, None, owns, changed)
    for template_id in named:
        if template_id not in present:
            ctx.excluded.pop(template_id, None)  # erased or purged since
    # a subject named in the log may have been erased, or erased and enrolled again with a new key: its cached key
    # goes (the key of a subject erased must not stay in memory; the next use unwraps the current one)
    for subject in {s for s, _ in rows}:
        ctx.data_keys.pop(subject, None)
    index.update(remove=removed | moved, add_ids=[], add_subjects=[], add_vectors=np.zeros((0, index.dim)))
    for start in range(0, len(missing), SYNC_CHUNK):
        _add(ctx, tx, index, missing[start : start + SYNC_CHUNK])
    index.changes = last


def _add(ctx: GalleryContext, tx: Transaction, index: SearchIndex, records: list[TemplateRecord]) -> None:
    good, vectors = _readable(ctx, tx, records)
    index.update(
        remove=(),
        add_ids=[r.id for r in good],
        add_subjects=[r.subject_id for r in good],
        add_vectors=np.stack(vectors) if vectors else np.zeros((0, index.dim)),
    )


def _pages(ctx: GalleryContext, tx: Transaction, missing: list[str], *, whole: bool) -> Iterator[list[TemplateRecord]]:
    """The missing templates, :data:`SYNC_CHUNK` at a time. ``whole`` (an empty index loading a large gallery):
    every template is missing, so the pages are read in id order with their subjects' keys, one query per page,
    and the keys unwrapped here (a key that does not unwrap is left to :func:`_readable`, which excludes and
    reports the templates it locks)."""
    if not whole:
        for start in range(0, len(missing), SYNC_CHUNK):
            yield tx.get_templates(missing[start : start + SYNC_CHUNK])
        return
    wanted, after = set(missing), ""
    master = master_key(ctx, tx)
    while page := tx.templates_page(after, SYNC_CHUNK):
        after = page[-1][0].id
        for record, key in page:  # only the keys of the templates wanted (a shard's subjects, when sharded)
            if key is not None and key.subject_id not in ctx.data_keys and record.id in wanted:
                with contextlib.suppress(MasterKeyError):
                    ctx.data_keys[key.subject_id] = master.unwrap(key.wrapped, subject_id=key.subject_id, key_id=key.id)
        yield [record for record, _ in page if record.id in wanted]


def _readable(
    ctx: GalleryContext, tx: Transaction, records: list[TemplateRecord]
) -> tuple[list[TemplateRecord], list[np.ndarray]]:
    """The templates that decrypt, with their vectors. One that does not (altered, moved to another subject, its
    subject's key damaged) is left out of the search and remembered in ``ctx.excluded`` (readiness and metrics
    report it): one bad row must not stop every search, nor be searched."""
    good, vectors = [], []
    if records:
        master_key(ctx, tx)  # a wrong or missing master key is not a bad row: it stops every search, and says so
    for record in records:
        try:
            vectors.append(decrypt_template(ctx, tx, record))
        except (MasterKeyError, StoreError) as exc:
            if record.id not in ctx.excluded:
                log.error("template %s excluded from search: %s", record.id, exc)
            ctx.excluded[record.id] = (record.subject_id, str(exc))
            continue
        good.append(record)
        ctx.excluded.pop(record.id, None)
    return good, vectors


def index_applied(
    ctx: GalleryContext,
    new_version: int,
    *,
    remove: Sequence[str] = (),
    add: Sequence[tuple[str, str, np.ndarray]] = (),
) -> None:
    """Apply a transaction's own template changes to the index, if it was in sync just before (else the next
    search resynchronises it from the store)."""
    for template_id in remove:
        ctx.excluded.pop(template_id, None)  # a bad row deleted is no longer a bad row
    index = ctx.index
    if index is None or index.version != new_version - 1:
        return
    index.update(
        remove=remove,
        add_ids=[t for t, _, _ in add],
        add_subjects=[s for _, s, _ in add],
        add_vectors=np.stack([v for _, _, v in add]) if add else np.zeros((0, index.dim), np.float32),
    )
    index.version = new_version


def allowed_subjects(
    ctx: GalleryContext, tx: Transaction, gallery: str, purpose: str | None, now: datetime
) -> AllowedSubjects:
    """Subjects of ``gallery`` whose consent is valid now for ``purpose`` (any purpose when None). Cached until the
    consents or subjects change, or a consent starts or ends; then the subjects the change log names since are
    looked at again (all of them when it names too many, or does not reach back far enough)."""
    version = (tx.get_meta("consent_version"), tx.data_version())
    key = (gallery, purpose or "")
    cached = ctx.allowed.get(key)
    if cached is not None and (cached.valid_until is None or now < cached.valid_until):
        if cached.version == version:
            return cached
        if cached.changes is not None and (caught := tx.changes_since(cached.changes, CHANGES_REPLAYED)):
            named = {s for s, _ in caught[1]}
            if len(named) <= max(256, len(cached.subjects) // 50):  # else one pass over all is cheaper
                entry = _allowed_again(tx, gallery, purpose, now, cached, named, version, caught[0])
                ctx.allowed[key] = entry
                return entry
    last = tx.last_change()
    enrolled = {s.id for s in tx.list_subjects(gallery)}
    allowed: set[str] = set()
    valid_until: datetime | None = None
    for consent in tx.list_consents(gallery=gallery):
        if consent.subject_id not in enrolled or (purpose is not None and consent.purpose != purpose):
            continue
        valid, change = _window(consent, now)
        if valid:
            allowed.add(consent.subject_id)
        valid_until = _earlier(valid_until, change)
    entry = AllowedSubjects(version, SubjectSet(frozenset(allowed)), valid_until, changes=last)
    ctx.allowed[key] = entry
    return entry


def _allowed_again(
    tx: Transaction,
    gallery: str,
    purpose: str | None,
    now: datetime,
    cached: AllowedSubjects,
    named: set[str],
    version: tuple[str | None, int],
    changes: int,
) -> AllowedSubjects:
    """``cached`` with the subjects ``named`` (by the change log up to ``changes``) looked at again."""
    allowed: set[str] = set()
    valid_until = cached.valid_until  # at worst earlier than needed: the whole set is then worked out again
    for subject in sorted(named):
        record = tx.get_subject(subject)
        if record is None or record.gallery != gallery:
            continue
        for consent in tx.list_consents(subject_id=subject, gallery=gallery):
            if purpose is not None and consent.purpose != purpose:
                continue
            valid, change = _window(consent, now)
            if valid:
                allowed.add(subject)
            valid_until = _earlier(valid_until, change)
    # the change on top of the set before, not a copy of it (a million subjects: tens of milliseconds); the mask
    # of the set before stays good for everyone else, so search_mask looks at these subjects again only
    return AllowedSubjects(
        version,
        cached.subjects.changed(allowed, named - allowed),
        valid_until,
        mask=cached.mask,
        changes=changes,
        mask_of=cached.mask_of,
        recheck=frozenset(named | cached.recheck),
    )


def _window(consent: Consent, now: datetime) -> tuple[bool, datetime | None]:
    """Whether ``consent`` is valid now, and when that next changes (None: never by itself)."""
    state = consent.state(now)
    if state == "valid":
        return True, None if consent.expires_at is None else from_text(consent.expires_at)
    return False, from_text(consent.given_at) if state == "not_yet_valid" else None


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b < a) else a


def search_mask(index: SearchIndex, allowed: AllowedSubjects) -> np.ndarray:
    """The index rows of the allowed subjects (cached until the index changes)."""
    if allowed.mask is None or allowed.generation != index.generation:
        # a mask made for this index before it changed needs only the subjects added or named since
        base = allowed.mask if allowed.mask_of is index else None
        allowed.mask = index.mask(allowed.subjects, base=base, recheck=allowed.recheck)
        allowed.generation, allowed.mask_of, allowed.recheck = index.generation, index, frozenset()
    return allowed.mask
