"""Signed checkpoints of the ledger: the signing key beside the master key, checkpoints written at init, after every
retention run and on demand, and verification against the signing key's public key (the key file's, or one
published elsewhere). See :mod:`faceledger.ledger.signing` for what is signed and why.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from faceledger.gallery.context import GalleryContext, accountable
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.audit import AuditDraft, AuditHead, VerifyResult
from faceledger.ledger.errors import MasterKeyError
from faceledger.ledger.seals import seal_key, verify_records
from faceledger.ledger.signing import (
    SIGNING_KEY_ENV,
    SignedHead,
    SigningKey,
    load_signing_key,
    public_key_from_text,
    sign_head,
    signing_key_file,
)
from faceledger.ledger.store import Transaction, verify_audit
from faceledger.ledger.timeutil import to_text


def key_path(master_key_file: str | os.PathLike[str] | None) -> Path | None:
    """Where the signing key of a gallery lives (None without a master key file to put it beside)."""
    return None if master_key_file is None else signing_key_file(master_key_file)


def signing_key(ctx: GalleryContext, *, create: bool = False) -> SigningKey | None:
    """The gallery's signing key (``FACELEDGER_SIGNING_KEY`` or the file beside the master key), or None."""
    return load_signing_key(key_path(ctx.key_file), create=create)


def signer(ctx: GalleryContext, tx: Transaction) -> SigningKey | None:
    """The key to sign with: the one the ledger records, or a new one (beside the master key) for a ledger that
    records none yet. None when the ledger's key is not available here: a new key is never put in its place,
    which would look exactly like someone signing a rewritten ledger. A different key is refused."""
    recorded = tx.get_meta("signing_key_id")
    key = signing_key(ctx, create=recorded is None)
    if key is not None and recorded is not None and key.id != recorded:
        raise MasterKeyError(
            f"{key.source}: signing key {key.id} is not the one this ledger is signed with ({recorded}); give the "
            f"right key file or {SIGNING_KEY_ENV}"
        )
    return key


def key_drafts(tx: Transaction, key: SigningKey, *, actor: str, purpose: str) -> list[AuditDraft]:
    """The ``ledger.signing_key`` entry to append when this key is not the one the ledger records yet."""
    if tx.get_meta("signing_key_id") == key.id:
        return []
    tx.set_meta("signing_key_id", key.id)
    source = "environment" if os.environ.get(SIGNING_KEY_ENV) else "file"
    details = {"key_id": key.id, "public_key": key.public_b64, "source": source}
    return [AuditDraft(AuditAction.LEDGER_SIGNING_KEY, actor, purpose, details=details)]


def checkpoint_draft(
    tx: Transaction, key: SigningKey, *, actor: str, purpose: str, at: str
) -> tuple[AuditDraft, SignedHead]:
    """The ``audit.checkpoint`` entry signing the current head at ``at``, and the signed head."""
    head = tx.audit_head()
    assert head is not None, "a checkpoint needs at least one entry"
    signed = sign_head(key, head.seq, head.hash, at)
    details = {"seq": signed.seq, "hash": signed.hash, "ts": signed.ts, "key_id": signed.key_id,
               "signature": signed.signature}  # fmt: skip
    return AuditDraft(AuditAction.AUDIT_CHECKPOINT, actor, purpose, details=details), signed


def write_checkpoint(ctx: GalleryContext, tx: Transaction, key: SigningKey, *, actor: str, purpose: str) -> SignedHead:
    """Record the key if needed and a signed checkpoint of the head, inside ``tx``."""
    at = to_text(ctx.now())
    for draft in key_drafts(tx, key, actor=actor, purpose=purpose):
        tx.append_audit(draft, at)
    draft, signed = checkpoint_draft(tx, key, actor=actor, purpose=purpose, at=at)
    tx.append_audit(draft, at)
    return signed


def checkpoint(ctx: GalleryContext, *, actor: str, purpose: str = "audit") -> SignedHead:
    """Sign the ledger's head now (creating the signing key beside the master key on first use) and record the
    checkpoint; returns the signed head, to publish."""
    actor, purpose = accountable(actor, purpose)
    with ctx.write() as tx:
        ctx.check_administrative_purpose(ctx.refresh_policy(tx), purpose, "sign the ledger", gallery=None)
        key = signer(ctx, tx)
        if key is None:
            raise MasterKeyError(
                f"the signing key of this ledger ({tx.get_meta('signing_key_id')}) is not at "
                f"{key_path(ctx.key_file)} and {SIGNING_KEY_ENV} is not set: restore it to sign the ledger"
            )
        return write_checkpoint(ctx, tx, key, actor=actor, purpose=purpose)


def verify(
    ctx: GalleryContext, expected_head: AuditHead | None = None, *, public_key: bytes | None = None
) -> VerifyResult:
    """Verify the chain and its signatures; the trusted public key is ``public_key``, else the signing key file's
    (an administrator who can write the database cannot fake either), else the one the ledger records."""
    if public_key is None:
        key = signing_key(ctx)
        public_key = None if key is None else key.public
    with ctx.store.read() as tx:
        result = verify_audit(tx, expected_head, public_key=public_key)
        return _with_records(ctx, tx, result)


def _with_records(ctx: GalleryContext, tx: Any, result: VerifyResult) -> VerifyResult:
    """``result`` with the sealed records checked against the ledger, when the master key is at hand."""
    from faceledger.gallery.keys import master_key  # keys builds on the context, as this module does

    try:
        key = seal_key(master_key(ctx, tx).key)
    except MasterKeyError:
        return result  # records_checked stays False: an auditor with a copy and no key checks the chain only
    head = result.head.seq if result.head is not None else None
    problems = tuple(verify_records(tx.raw, key, first_seq=result.first_seq, head_seq=head))
    if not problems:
        return replace(result, records_checked=True)
    text = f"{len(problems)} record(s) do not match the ledger; the first: {problems[0]}"
    return replace(
        result, ok=False, records_checked=True, records=problems,
        problem=text if result.ok else f"{result.problem}; and {text}",
    )  # fmt: skip


def verify_published(ctx: GalleryContext, published: SignedHead, *, public_key: bytes | None = None) -> VerifyResult:
    """Verify this database against a head published earlier (``audit head --signed``): the head's signature
    under ``public_key`` (default: the key it names), then the chain, which must still hold that entry."""
    trusted = public_key if public_key is not None else public_key_from_text(published.public_key)
    if not published.valid(trusted):
        return VerifyResult(
            False, 0, None, None, bad_seq=published.seq,
            problem=f"the published head of entry {published.seq} does not carry a valid signature by that key",
        )  # fmt: skip
    return verify(ctx, AuditHead(published.seq, published.hash), public_key=trusted)
