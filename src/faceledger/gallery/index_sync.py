"""Search index sync: keeps this process's in-memory :class:`~faceledger.gallery.index.SearchIndex` equal to the
store, and works out who may be searched (subjects whose consent is valid now for the gallery and purpose).

Any process may enroll or erase: before every search the index is brought to the store's data version, and the
consent cache to its consent version, inside the search's own transaction.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from faceledger.errors import ModelError
from faceledger.gallery.context import GalleryContext
from faceledger.gallery.index import SearchIndex
from faceledger.gallery.keys import decrypt_template, master_key
from faceledger.ledger.errors import MasterKeyError, StoreError
from faceledger.ledger.records import TemplateRecord
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import from_text

log = logging.getLogger("faceledger.gallery")

SYNC_CHUNK = 20_000
"""Templates read and decrypted at a time while the index loads."""


@dataclass
class AllowedSubjects:
    """Subjects searchable for one gallery and purpose, valid until ``valid_until`` (a consent starts or ends)."""

    version: tuple[str | None, int]
    subjects: frozenset[str]
    valid_until: datetime | None
    mask: np.ndarray | None = None
    generation: int = -1


def sync_index(ctx: GalleryContext, tx: Transaction, *, owns: Callable[[str], bool] | None = None) -> SearchIndex:
    """Bring the in-memory index to the store's data version (adds and erasures by any process). ``owns``: only the
    templates of the subjects it accepts (a shard's, :mod:`.shards`); with ``FACELEDGER_SHARDS`` set, ``ctx.index``
    is a shard set, which its shard processes sync themselves before each search."""
    from faceledger.gallery.shards import shard_set  # shards builds on this module

    if owns is None and (shards := shard_set(ctx)) is not None:
        return shards.synced(tx)
    version = tx.data_version()
    model = ctx.model_id()
    dim = int(getattr(ctx.engine.recognizer.card, "dim", 0) or 128)
    if ctx.index is None or ctx.index.dim != dim:
        ctx.index = SearchIndex(dim)
    index = ctx.index
    if index.version == version:
        return index
    refs = tx.template_refs() if owns is None else [r for r in tx.template_refs() if owns(r.subject_id)]
    foreign = sorted({r.model for r in refs if r.model != model})
    if foreign:
        raise ModelError(
            f"the gallery holds templates made with recognizer {', '.join(foreign)} but this engine runs "
            f"{model}; use the same recognizer, or erase and re-enroll those subjects"
        )
    current = {r.id: r.subject_id for r in refs}
    have = index.template_ids
    missing = sorted(current.keys() - have)
    removed = have - current.keys()
    # a subject whose set of templates, key or gallery does not match its seal (a template deleted outside
    # faceledger) is reported (readiness, metrics); its templates that decrypt are its own (AES-GCM binds each to
    # its subject and id) and stay searched: one bad row stays one bad row. Every subject is checked when the
    # index loads; once loaded, the subjects whose templates this sync adds or removes (checking the whole gallery
    # again after each enrollment by another process made every search after it cost seconds at 100,000 subjects)
    changed = None
    if len(index):
        changed = {current[t] for t in missing} | {index.subject_of(t) for t in removed} - {None}
    problems = tx.subject_problems(refs, owns, only=changed) if hasattr(tx, "subject_problems") else {}
    for subject, why in problems.items():
        log.error("subject %s: %s", subject, why)
    for template_id in [t for t in ctx.excluded if t not in current]:
        del ctx.excluded[template_id]  # erased or purged since
    index.update(remove=removed, add_ids=[], add_subjects=[], add_vectors=np.zeros((0, dim)))
    index.reserve(len(index) + len(missing))
    bulk = len(missing) > SYNC_CHUNK
    cached = set(ctx.data_keys) if bulk else set()
    # In chunks: at national scale the ciphertexts of every template at once would take more memory than the index
    for page in _pages(ctx, tx, missing, whole=len(index) == 0 and bulk):
        records, vectors = _readable(ctx, tx, page)
        index.update(
            remove=(),
            add_ids=[r.id for r in records],
            add_subjects=[r.subject_id for r in records],
            add_vectors=np.stack(vectors) if vectors else np.zeros((0, dim)),
        )
        if bulk:  # a whole gallery loading leaves no unwrapped subject key behind in memory
            for subject in set(ctx.data_keys) - cached:
                del ctx.data_keys[subject]
    index.version = version
    present = set(current.values())
    for subject in list(ctx.data_keys):
        if subject not in present:
            del ctx.data_keys[subject]
    return index


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
    """Subjects of ``gallery`` whose consent is valid now for ``purpose`` (any purpose when None)."""
    version = (tx.get_meta("consent_version"), tx.data_version())
    key = (gallery, purpose or "")
    cached = ctx.allowed.get(key)
    if cached is not None and cached.version == version and (cached.valid_until is None or now < cached.valid_until):
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
    entry = AllowedSubjects(version, frozenset(allowed), valid_until)
    ctx.allowed[key] = entry
    return entry


def search_mask(index: SearchIndex, allowed: AllowedSubjects) -> np.ndarray:
    """The index rows of the allowed subjects (cached until the index changes)."""
    if allowed.mask is None or allowed.generation != index.generation:
        allowed.mask = index.mask(allowed.subjects)
        allowed.generation = index.generation
    return allowed.mask
