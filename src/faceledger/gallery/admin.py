"""Administration: creating a deployment, the policy in force, API keys, reading and exporting the ledger,
counts, and the readiness checks a service runs before taking requests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

import numpy as np

from faceledger.config import Database, database
from faceledger.config import key_file as resolve_key_file
from faceledger.errors import FaceledgerError
from faceledger.gallery import signatures
from faceledger.gallery.context import (
    GalleryContext,
    PolicyBindingError,
    accountable,
    as_policy,
    bump_consent_version,
)
from faceledger.ledger import crypto
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.apikeys import authenticate as _authenticate
from faceledger.ledger.apikeys import create_api_key as _create_api_key
from faceledger.ledger.apikeys import revoke_api_key as _revoke_api_key
from faceledger.ledger.audit import AuditDraft, AuditEntry, AuditHead, VerifyResult
from faceledger.ledger.errors import AlreadyInitialisedError, PolicyError, PurposeError
from faceledger.ledger.policy import LoadedPolicy
from faceledger.ledger.records import ApiKey
from faceledger.ledger.seals import SEALED_META, SET_META, seal_key, set_tag
from faceledger.ledger.signing import load_signing_key
from faceledger.ledger.store import Store, Transaction, open_store
from faceledger.ledger.timeutil import to_text, utcnow


# ---------------------------------------------------------------------------------------------- deployment
def create_deployment(
    db: str | os.PathLike[str] | Database | None,
    *,
    actor: str,
    policy: str | os.PathLike[str] | LoadedPolicy | None = None,
    key_file: str | os.PathLike[str] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> tuple[Store, crypto.MasterKey, os.PathLike[str]]:
    """Create the database, its master key (``FACELEDGER_MASTER_KEY`` or a new 0600 key file) and its policy;
    returns the open store, the master key and the key file path."""
    actor, _ = accountable(actor, "init")
    location = database(db)
    loaded = as_policy(policy)
    key_path = resolve_key_file(location, key_file)
    store = open_store(location, create=True)
    try:
        with store.read() as tx:
            if tx.get_meta("initialised_at") is not None:
                raise AlreadyInitialisedError(f"{location}: already initialised", str(location))
        if os.environ.get(crypto.MASTER_KEY_ENV):
            master, key_source = crypto.load_master_key(None), "environment"
        else:
            master, key_source = crypto.create_key_file(key_path), "file"
        signer = load_signing_key(signatures.key_path(key_path), create=True)
        assert signer is not None
        now = to_text((clock or utcnow)())
        with store.write() as tx:
            if tx.get_meta("initialised_at") is not None:
                raise AlreadyInitialisedError(f"{location}: already initialised by another process", str(location))
            tx.set_meta("initialised_at", now)
            tx.set_meta("master_key_id", master.id)
            tx.set_meta("data_version", "0")
            tx.set_meta("consent_version", "0")
            tx.set_meta(SEALED_META, now)  # every record this database will hold is sealed (ledger/seals.py)
            tx.put_policy(loaded.hash, loaded.text, now, actor)
            tx.set_meta("policy_hash", loaded.hash)
            for g in loaded.policy.galleries:
                tx.ensure_gallery(g.name, now)
            details = {
                "master_key_id": master.id,
                "master_key_source": key_source,
                "galleries": [g.name for g in loaded.policy.galleries],
                "seals": "v1",
            }
            draft = AuditDraft(
                AuditAction.LEDGER_INIT, actor, "administration", policy_hash=loaded.hash, details=details
            )
            tx.append_audit(draft, now)
            # The key that signs the ledger's heads, beside the master key, and the first signed checkpoint.
            for key_draft in signatures.key_drafts(tx, signer, actor=actor, purpose="administration"):
                tx.append_audit(key_draft, now)
            first, _ = signatures.checkpoint_draft(tx, signer, actor=actor, purpose="administration", at=now)
            tx.append_audit(first, now)
            tx.set_meta(SET_META[0], f"{0:064x}")  # no seal yet, bound to the head (ledger/seals.py)
            tx.set_meta(SET_META[1], set_tag(seal_key(master.key), 0, tx.audit_head()))
    except BaseException:
        store.close()
        raise
    return store, master, key_path


def set_policy(
    ctx: GalleryContext, policy: str | os.PathLike[str] | LoadedPolicy, *, actor: str, purpose: str = "administration"
) -> LoadedPolicy:
    """Put a new policy in force; refused when it drops a gallery that still has enrolled subjects, or when its
    target false-match rate is below what the recognizer's calibration can measure."""
    actor, purpose = accountable(actor, purpose)
    loaded = as_policy(policy)
    check_target_fmr(ctx, loaded)
    with ctx.write() as tx:
        try:
            previous = ctx.refresh_policy(tx).hash
        except PolicyBindingError:  # putting the intended policy in force again is how a tampered one is replaced
            previous = str(tx.get_meta("policy_hash"))
        names = {g.name for g in loaded.policy.galleries}
        for subject in tx.list_subjects():
            if subject.gallery not in names:
                raise PurposeError(
                    f"{loaded.source}: gallery {subject.gallery!r} still has enrolled subjects; "
                    "keep it in the policy or erase them first"
                )
        now = to_text(ctx.now())
        tx.put_policy(loaded.hash, loaded.text, now, actor)
        tx.set_meta("policy_hash", loaded.hash)
        for g in loaded.policy.galleries:
            tx.ensure_gallery(g.name, now)
        bump_consent_version(tx)
        ctx.record(
            tx,
            AuditAction.POLICY_CHANGE,
            actor=actor,
            purpose=purpose,
            at=now,
            policy_hash=loaded.hash,
            details={"previous_hash": previous, "new_hash": loaded.hash},
        )
        ctx.put_policy(loaded)
    return loaded


def check_target_fmr(ctx: GalleryContext, loaded: LoadedPolicy) -> None:
    """Refuse a policy whose target false-match rate the recognizer's calibration cannot measure (a threshold set
    for it would claim a rate nobody measured)."""
    calibration = ctx.engine.calibration
    target = loaded.policy.identification.target_fmr
    if calibration is None:
        return
    try:
        calibration.check_target(target)
    except ValueError as exc:
        raise PolicyError(loaded.source, [("identification.target_fmr", str(exc))]) from None


# ---------------------------------------------------------------------------------------------- API keys
def create_api_key(
    ctx: GalleryContext, owner: str, role: str, *, actor: str, purpose: str = "administration"
) -> tuple[ApiKey, str]:
    """Create an API key; returns the record and the token (shown only once)."""
    actor, purpose = accountable(actor, purpose)
    now = to_text(ctx.now())
    with ctx.write() as tx:
        record, token = _create_api_key(tx, owner=owner, role=role, created_by=actor, now=now)
        details = {"key_id": record.id, "owner": owner, "role": role}
        ctx.record(tx, AuditAction.KEY_CREATE, actor=actor, purpose=purpose, at=now, details=details)
    return record, token


def api_keys(ctx: GalleryContext) -> list[ApiKey]:
    """All API keys (revoked included), without secrets."""
    with ctx.store.read() as tx:
        return tx.list_api_keys()


def revoke_api_key(ctx: GalleryContext, key_id: str, *, actor: str, purpose: str = "administration") -> ApiKey:
    """Revoke an API key (recorded on the ledger)."""
    actor, purpose = accountable(actor, purpose)
    now = to_text(ctx.now())
    with ctx.write() as tx:
        record = _revoke_api_key(tx, key_id, now=now)
        details = {"key_id": key_id, "owner": record.owner, "role": record.role}
        ctx.record(tx, AuditAction.KEY_REVOKE, actor=actor, purpose=purpose, at=now, details=details)
    return record


def authenticate(ctx: GalleryContext, token: str) -> ApiKey:
    """The active API key of a token; raises :class:`~faceledger.ledger.AccessDenied` otherwise."""
    with ctx.store.read() as tx:
        return _authenticate(tx, token)


# ---------------------------------------------------------------------------------------------- the ledger
def audit_verify(
    ctx: GalleryContext, expected_head: AuditHead | None = None, *, public_key: bytes | None = None
) -> VerifyResult:
    """Recompute the audit chain and its signatures; names the first entry altered, removed, inserted or reordered
    (see :func:`faceledger.gallery.signatures.verify` for the key trusted)."""
    return signatures.verify(ctx, expected_head, public_key=public_key)


def audit_head(ctx: GalleryContext) -> AuditHead | None:
    """Sequence number and hash of the last audit entry, to publish elsewhere as an anchor."""
    with ctx.store.read() as tx:
        return tx.audit_head()


def audit_entries(
    ctx: GalleryContext,
    *,
    after_seq: int = 0,
    limit: int | None = None,
    action: str | None = None,
    actor: str | None = None,
    purpose: str | None = None,
) -> list[AuditEntry]:
    """Audit entries after ``after_seq`` (optionally only one action): subject ids, actors, purposes. With ``actor``
    and ``purpose`` (a read shown to a person must pass them) the read is a ``records.read`` entry appended after
    the entries read; without, an internal read (the retention scheduler looking for its last run)."""
    return ctx.read_records(
        "audit entries", lambda tx: tx.audit_entries(after_seq=after_seq, limit=limit, action=action),
        actor=actor, purpose=purpose, filters={"after_seq": after_seq, "limit": limit, "action": action},
    )  # fmt: skip


def audit_export(ctx: GalleryContext, *, actor: str, purpose: str) -> list[AuditEntry]:
    """Every audit entry, for export; the export itself is recorded first. The purpose must be an administrative
    one or a gallery's."""
    actor, purpose = accountable(actor, purpose)
    with ctx.write() as tx:
        ctx.check_administrative_purpose(ctx.refresh_policy(tx), purpose, "export the ledger", gallery=None)
        ctx.record(tx, AuditAction.AUDIT_EXPORT, actor=actor, purpose=purpose)
        return tx.audit_entries()


# ---------------------------------------------------------------------------------------------- counts, health
def current_counts(tx: Transaction, now: datetime) -> dict[str, int]:
    """Subjects, templates, valid consents and pending reviews now (the stats and the report's current state),
    counted by the database. A record changed outside faceledger is counted as it stands; such records are
    reported on their own (``records_tampered``, ``audit verify``)."""
    return tx.counts(to_text(now))


def stats(ctx: GalleryContext, *, actor: str | None = None, purpose: str | None = None) -> dict[str, int]:
    """Counts only. With ``actor`` and ``purpose`` (counts shown to a person) the read is a ``records.read`` entry.
    Without, none: ``/metrics`` reads it on every scrape, and counts say nothing about anyone, so recording each
    scrape would only bury the entries that matter."""

    def counts(tx: Transaction) -> dict[str, int]:
        head = tx.audit_head()
        return {
            **current_counts(tx, ctx.now()),
            "audit_head_seq": 0 if head is None else head.seq,
            "templates_excluded": len(ctx.excluded),  # as of this process's last index sync
            "records_tampered": len(ctx.tampered),  # found by this process's reads so far (and this one's)
        }

    return ctx.read_records("stats", counts, actor=actor, purpose=purpose, filters={})


def readiness(ctx: GalleryContext, *, models: bool = True) -> dict[str, str]:
    """``{"models", "database", "master_key"}``, each ``"ok"`` or what is wrong.

    ``models`` loads the models and runs each once on a blank image; the master key is read again from its
    source each time (a key file moved away shows here) and checked against the database's key id.
    """
    checks: dict[str, str] = {}
    if models and not ctx.models_ready:  # once the models have run, they stay loaded: no need to run them again
        try:
            engine = ctx.engine
            engine.detect(np.zeros((64, 64, 3), np.uint8))
            engine.recognizer.embed(np.zeros((1, 112, 112, 3), np.uint8))
            ctx.models_ready = True
        except (FaceledgerError, OSError, RuntimeError, ValueError) as exc:
            checks["models"] = str(exc) or type(exc).__name__
    if models and ctx.models_ready:
        checks["models"] = "ok"
    expected = None
    try:
        with ctx.store.read() as tx:
            head = tx.audit_head()
            expected = tx.get_meta("master_key_id")
        checks["database"] = "ok" if head is not None else "empty ledger"
    except FaceledgerError as exc:
        checks["database"] = str(exc)
    try:
        key = crypto.load_master_key(ctx.key_file)
        ok = expected is None or key.id == expected
        checks["master_key"] = "ok" if ok else f"{key.source}: not the master key of this database"
    except FaceledgerError as exc:
        checks["master_key"] = str(exc)
    if models and checks.get("models") == "ok" and checks.get("master_key") == "ok":
        checks["templates"] = _templates_check(ctx)
    checks["records"] = _records_check(ctx)
    return checks


def _records_check(ctx: GalleryContext) -> str:
    """"ok", or "degraded: ..." naming the records this process found not to match the ledger (each is refused
    where it is used; `faceledger audit verify` lists every one)."""
    found = ctx.tampered
    if not found:
        return "ok"
    named = "; ".join(why for _, why in sorted(found.items())[:5])
    more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
    return f"degraded: {len(found)} record(s) do not match the ledger and are not used: {named}{more}"


def _templates_check(ctx: GalleryContext) -> str:
    """"ok", or "degraded: ..." naming the templates left out of the search (every other subject is searched)."""
    from faceledger.gallery.index_sync import sync_index

    with ctx.store.read() as tx:
        sync_index(ctx, tx)
    if not ctx.excluded:
        return "ok"
    named = "; ".join(f"template {t} of subject {s!r}: {why}" for t, (s, why) in sorted(ctx.excluded.items())[:5])
    more = f" (and {len(ctx.excluded) - 5} more)" if len(ctx.excluded) > 5 else ""
    return f"degraded: {len(ctx.excluded)} template(s) left out of the search, every other one searched: {named}{more}"
