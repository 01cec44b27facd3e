"""Erasure: a subject's templates, reference faces, data key, candidates, their evidence and reviews destroyed in
one transaction, its consents ended, the database space reclaimed, and a receipt naming the audit entry that
records it.

Consent records stay (they prove past processing was lawful) until the policy's consent retention ends.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from faceledger.gallery.context import GalleryContext, accountable, bump_consent_version, subject_gallery
from faceledger.gallery.index_sync import index_applied
from faceledger.gallery.keys import forget
from faceledger.gallery.results import ErasureReceipt
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import UnknownSubjectError
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import to_text


def erase(
    ctx: GalleryContext, subject: str, *, actor: str, purpose: str, reason: str = "erasure request"
) -> ErasureReceipt:
    """Erase a subject (see the module); the receipt says whether the space could be reclaimed at once. The purpose
    must be an administrative one or of the subject's gallery."""
    actor, purpose = accountable(actor, purpose)
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        scope = subject_gallery(tx, subject)
        ctx.check_administrative_purpose(policy, purpose, "erase a subject", gallery=scope)
        receipt = erase_in(ctx, tx, subject, reason=reason, actor=actor, purpose=purpose, now=ctx.now())
    return with_reclaim(receipt, ctx.reclaim())


def erase_in(
    ctx: GalleryContext, tx: Transaction, subject: str, *, reason: str, actor: str, purpose: str, now: datetime
) -> ErasureReceipt:
    """Erase ``subject`` inside ``tx`` (withdrawal, expiry and retention call this in their own transaction, after
    checking their purpose: none is checked here)."""
    stamp = to_text(now)
    record = tx.get_subject(subject)
    consents = tx.list_consents(subject_id=subject)
    if record is None and not consents:
        raise UnknownSubjectError(f"no subject {subject!r}: nothing to erase")
    template_ids = [t.id for t in tx.templates_of(subject)]
    references = len(tx.reference_faces_of(subject))
    evidence = tx.evidence_count(subject)
    key = tx.get_subject_key(subject)
    candidates = tx.delete_candidates_of(subject)  # their evidence and reviews go with them (foreign keys)
    tx.delete_subject(subject)  # templates, reference faces and the data key go with it
    ended = []
    for consent in consents:
        if consent.state(now) in ("valid", "not_yet_valid"):
            tx.end_consent(consent.id, stamp, reason)
            ended.append(consent.id)
    index_applied(ctx, tx.bump_data_version(), remove=template_ids)
    bump_consent_version(tx)
    ctx.owe_reclaim(tx, stamp)  # with the receipt: a crash before the reclaim leaves the debt recorded
    gallery = record.gallery if record is not None else consents[0].gallery
    entry = ctx.record(
        tx,
        AuditAction.SUBJECT_ERASE,
        actor=actor,
        purpose=purpose,
        at=stamp,
        gallery=gallery,
        subjects=(subject,),
        policy_hash=ctx.policy.hash,
        details={
            "reason": reason,
            "templates_destroyed": len(template_ids),
            "reference_faces_destroyed": references,
            "evidence_destroyed": evidence,
            "key_id": None if key is None else key.id,
            "key_destroyed": key is not None,
            "candidates_deleted": candidates,
            "consents_ended": ended,
        },
    )
    forget(ctx, subject)
    return ErasureReceipt(
        subject=subject,
        gallery=gallery,
        erased_at=stamp,
        reason=reason,
        templates_destroyed=len(template_ids),
        key_id=None if key is None else key.id,
        candidates_deleted=candidates,
        consents_ended=ended,
        audit_seq=entry.seq,
        audit_hash=entry.hash,
        reference_faces_destroyed=references,
        evidence_destroyed=evidence,
    )


def with_reclaim(receipt: ErasureReceipt, reclaimed: bool) -> ErasureReceipt:
    """The receipt with whether the freed space was made unrecoverable."""
    return replace(receipt, reclaimed=reclaimed)
