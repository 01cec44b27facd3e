"""Consent: no template exists without a consent record (who collected it, purpose, legal basis, validity).

Recording, listing, withdrawing and expiring consents; a subject left without a valid consent in its gallery is
erased in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from faceledger.gallery.context import (
    GalleryContext,
    accountable,
    bump_consent_version,
    check_subject_id,
    moment,
    subject_gallery,
)
from faceledger.gallery.erasure import erase_in, with_reclaim
from faceledger.gallery.results import ConsentWithdrawal, ErasureReceipt
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.audit import AuditEntry
from faceledger.ledger.errors import ConsentError, DuplicateError, NoConsentError, UnknownSubjectError
from faceledger.ledger.policy import LoadedPolicy
from faceledger.ledger.records import Consent
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import to_text


def add_consent(
    ctx: GalleryContext,
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
    category: str | None = None,
) -> Consent:
    """Record a subject's consent to be enrolled in ``gallery`` and searched for ``purpose``.

    In a watchlist gallery (see :class:`~faceledger.ledger.policy.Watchlist`) the record is the entry's
    authorisation instead: ``collected_by`` is the authorising person, ``evidence_ref`` the reference of the order,
    ``legal_basis`` and ``category`` must be ones the watchlist accepts, and ``expires_at`` is required."""
    subject = check_subject_id(subject)
    actor, purpose = accountable(actor, purpose)
    for name, value in (("collected_by", collected_by), ("legal_basis", legal_basis), ("evidence_ref", evidence_ref)):
        if not value or not str(value).strip():
            raise ConsentError(f"consent for {subject!r}: {name} is required")
    now = ctx.now()
    given = moment(given_at, "given_at") or now
    expires = moment(expires_at, "expires_at")
    if expires is not None and expires <= max(given, now):
        raise ConsentError(f"consent for {subject!r}: expires_at {to_text(expires)} is not after given_at and now")
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        gallery_name = ctx.gallery_name(policy, gallery)
        ctx.check_purpose(policy, gallery_name, purpose)
        check_watchlist_entry(policy, gallery_name, subject, legal_basis, category, given, expires)
        check_one_gallery(tx, subject, gallery_name)
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
            category=None if category is None else str(category).strip(),
        )
        tx.add_consent(record)
        bump_consent_version(tx)
        ctx.record(
            tx,
            AuditAction.CONSENT_ADD,
            actor=actor,
            purpose=purpose,
            at=now,
            gallery=gallery_name,
            subjects=(subject,),
            policy_hash=policy.hash,
            details={
                "consent_id": record.id,
                "legal_basis": record.legal_basis,
                "collected_by": record.collected_by,
                "given_at": record.given_at,
                "expires_at": record.expires_at,
                **({"category": record.category} if record.category is not None else {}),
            },
        )
    return record


def check_watchlist_entry(
    policy: LoadedPolicy,
    gallery: str,
    subject: str,
    legal_basis: str,
    category: str | None,
    given: datetime,
    expires: datetime | None,
) -> None:
    """A watchlist entry must name a legal basis and category its watchlist accepts, and end in time; a consent to
    an ordinary gallery names no category."""
    watchlist = policy.policy.gallery(gallery).watchlist
    if watchlist is None:
        if category is not None:
            raise ConsentError(f"{subject!r}: gallery {gallery!r} is not a watchlist, so entries have no category")
        return
    what = f"watchlist entry {subject!r} in {gallery!r}"
    if str(legal_basis).strip() not in watchlist.legal_bases:
        raise ConsentError(f"{what}: legal basis {legal_basis!r} is not one the watchlist accepts "
                           f"({', '.join(watchlist.legal_bases)})")  # fmt: skip
    if category is None or str(category).strip() not in watchlist.categories:
        raise ConsentError(f"{what}: a category is required, one of {', '.join(watchlist.categories)}"
                           + ("" if category is None else f" (given: {category!r})"))  # fmt: skip
    if expires is None:
        raise ConsentError(f"{what}: an expiry is required")
    if watchlist.max_entry_days is not None and (expires - given).total_seconds() > watchlist.max_entry_days * 86400:
        raise ConsentError(f"{what}: expires more than {watchlist.max_entry_days} days after it was authorised")


def consents(
    ctx: GalleryContext, subject: str | None = None, *, actor: str, purpose: str, gallery: str | None = None
) -> list[Consent]:
    """Consent records (of one subject, or all); the look-up is an audit entry. The purpose must be an administrative
    one or of the gallery's (``gallery``, else the subject's, else any)."""
    actor, purpose = accountable(actor, purpose)
    with ctx.write() as tx:
        scope = gallery or (None if subject is None else subject_gallery(tx, subject))
        ctx.check_administrative_purpose(ctx.refresh_policy(tx), purpose, "list consents", gallery=scope)
        records = tx.list_consents(subject_id=subject, gallery=gallery)
        if subject is not None and not records and tx.get_subject(subject) is None:
            raise UnknownSubjectError(f"no consent or subject {subject!r}")
        ctx.record(
            tx,
            AuditAction.CONSENT_LIST,
            actor=actor,
            purpose=purpose,
            gallery=gallery,
            subjects=(subject,) if subject else (),
            details={"records": len(records)},
        )
    return records


def withdraw_consent(
    ctx: GalleryContext,
    subject: str,
    *,
    actor: str,
    purpose: str,
    consent_id: str | None = None,
    reason: str = "consent withdrawn",
) -> ConsentWithdrawal:
    """Withdraw a subject's consent (all active ones, or ``consent_id``); erase it when none valid is left. The
    purpose must be an administrative one or of the subject's gallery."""
    actor, purpose = accountable(actor, purpose)
    now_dt = ctx.now()
    now = to_text(now_dt)
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        records = tx.list_consents(subject_id=subject)
        scope = records[0].gallery if records else None
        ctx.check_administrative_purpose(policy, purpose, "withdraw consent", gallery=scope)
        if not records:
            raise UnknownSubjectError(f"no consent recorded for subject {subject!r}")
        active = [c for c in records if c.state(now_dt) in ("valid", "not_yet_valid")]
        if consent_id is not None:
            active = [c for c in active if c.id == consent_id]
            if not any(c.id == consent_id for c in records):
                raise UnknownSubjectError(f"subject {subject!r} has no consent {consent_id!r}")
        if not active:
            raise ConsentError(f"subject {subject!r} has no active consent to withdraw")
        entry, erasure = end_consents(
            ctx, tx, subject, active, action=AuditAction.CONSENT_WITHDRAW, ended_at=now, ended_reason=reason,
            details={"reason": reason}, erase_reason=reason, actor=actor, purpose=purpose, policy=policy,
            now_dt=now_dt,
        )  # fmt: skip
    if erasure is not None:
        erasure = with_reclaim(erasure, ctx.reclaim())
    return ConsentWithdrawal(subject, [c.id for c in active], entry.seq, erasure)


def end_consents(
    ctx: GalleryContext,
    tx: Transaction,
    subject: str,
    ended: Sequence[Consent],
    *,
    action: AuditAction,
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
    """End ``ended`` consents of one subject with their audit entry; erase the subject, in the same transaction,
    when no valid consent is left in its gallery (withdrawal and expiry share this)."""
    for consent in ended:
        tx.end_consent(consent.id, ended_at, ended_reason)
    bump_consent_version(tx)
    entry = ctx.record(
        tx,
        action,
        actor=actor,
        purpose=purpose,
        at=logged_at or now_dt,
        gallery=ended[0].gallery,
        subjects=(subject,),
        policy_hash=policy.hash,
        details={"consent_ids": [c.id for c in ended], **details},
    )
    erasure = None
    enrolled = tx.get_subject(subject)
    if enrolled is not None and not has_valid_consent(tx, subject, enrolled.gallery, now_dt):
        erasure = erase_in(ctx, tx, subject, reason=erase_reason, actor=actor, purpose=purpose, now=now_dt)
    return entry, erasure


def has_valid_consent(tx: Transaction, subject: str, gallery: str, now: datetime) -> bool:
    """Whether ``subject`` has a consent valid now in ``gallery`` (any purpose)."""
    return any(c.gallery == gallery and c.state(now) == "valid" for c in tx.list_consents(subject_id=subject))


def valid_consent(
    tx: Transaction, subject: str, gallery: str, purpose: str, consent_id: str | None, now: datetime
) -> Consent:
    """The consent an enrollment relies on (``consent_id``, or the valid one for the gallery and purpose)."""
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
        raise NoConsentError(f"no consent recorded for subject {subject!r}: enrollment refused", subject)
    states = ", ".join(f"{c.id[:8]} ({c.gallery}/{c.purpose}: {c.state(now)})" for c in (candidates or records))
    raise ConsentError(
        f"subject {subject!r} has no valid consent for gallery {gallery!r} and purpose {purpose!r} "
        f"(found: {states}): enrollment refused"
    )


def check_one_gallery(tx: Transaction, subject: str, gallery: str) -> None:
    """Refuse a subject id already enrolled in another gallery (ids are unique across galleries)."""
    existing = tx.get_subject(subject)
    if existing is not None and existing.gallery != gallery:
        raise DuplicateError(
            f"subject {subject!r} is enrolled in gallery {existing.gallery!r}; subject ids are unique across galleries"
        )
