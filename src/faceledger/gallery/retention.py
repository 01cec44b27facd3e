"""Retention: nothing is kept longer than the policy says. One function per step, each step its own
transaction(s) with its audit entry, run in order by :func:`purge`:

1. :func:`expire_consents`: consents past their expiry end; a subject left without a valid one is erased;
2. :func:`purge_templates`: templates older than their retention go (a subject left with none is erased);
3. :func:`purge_consents`: ended consent records older than their retention go (subject already erased);
4. :func:`purge_evidence`: the evidence (face crops) of candidates decided longer ago than ``evidence_days`` goes;
5. :func:`purge_reviews`: candidates and their reviews older than their retention go (their evidence with them);
6. :func:`purge_audit`: audit entries older than their retention go, replaced by a checkpoint that keeps the
   rest of the chain verifiable;

then a ``purge`` entry summarises the run and the freed space is reclaimed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from faceledger.gallery import signatures
from faceledger.gallery.consent import end_consents
from faceledger.gallery.context import GalleryContext, accountable
from faceledger.gallery.erasure import erase_in
from faceledger.gallery.index_sync import index_applied
from faceledger.gallery.results import PurgeReport
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.policy import LoadedPolicy
from faceledger.ledger.records import Consent
from faceledger.ledger.retention import Cutoffs, cutoffs
from faceledger.ledger.signing import purge_statement
from faceledger.ledger.timeutil import to_text


class _Run:
    """One retention run: who runs it, the policy and time it runs under, and the report it fills."""

    def __init__(self, ctx: GalleryContext, actor: str, purpose: str, policy: LoadedPolicy, now: datetime) -> None:
        self.ctx, self.actor, self.purpose, self.policy, self.now = ctx, actor, purpose, policy, now
        self.report = PurgeReport(ran_at=to_text(now))
        self.cut: Cutoffs = cutoffs(policy.policy, now)


def purge(ctx: GalleryContext, *, actor: str = "retention", purpose: str = "retention") -> PurgeReport:
    """Apply the policy's retention (see the module). Safe to run often (the REST service runs it on a schedule).
    The purpose must be an administrative one or a gallery's; the steps' erasures are not checked again."""
    actor, purpose = accountable(actor, purpose)
    now = ctx.now()
    with ctx.store.read() as tx:
        policy = ctx.refresh_policy(tx)
    ctx.check_administrative_purpose(policy, purpose, "apply retention", gallery=None)
    run = _Run(ctx, actor, purpose, policy, now)
    expire_consents(run)
    purge_templates(run)
    purge_consents(run)
    purge_evidence(run)
    purge_reviews(run)
    purge_audit(run)
    report = run.report
    with ctx.write() as tx:
        summary = {
            k: v for k, v in report.to_dict().items() if k not in ("audit_seqs", "reclaimed", "checkpoint_seq")
        }
        entry = ctx.record(
            tx,
            AuditAction.PURGE,
            actor=actor,
            purpose=purpose,
            at=report.ran_at,
            policy_hash=policy.hash,
            details=summary,
        )
        report.audit_seqs.append(entry.seq)
        key = signatures.signer(ctx, tx)
        if key is not None:  # every retention run ends with a signed checkpoint: the regular ones
            report.checkpoint_seq = signatures.write_checkpoint(ctx, tx, key, actor=actor, purpose=purpose).seq
        else:
            report.notes.append("no checkpoint signed: the ledger's signing key is not available here")
    removed = (
        report.subjects_erased
        or report.templates_deleted
        or report.consents_deleted
        or report.candidates_deleted
        or report.evidence_deleted
        or report.audit_entries_purged
    )
    # Reclaim when this run deleted something, or when an earlier erasure or rejection still owes it; never
    # claim a reclamation that did not happen.
    report.reclaimed = ctx.reclaim() if removed or ctx.reclaim_pending() else True
    return report


def expire_consents(run: _Run) -> None:
    """Step 1: mark expired consents; erase subjects left without a valid consent (one transaction each)."""
    with run.ctx.store.read() as tx:
        consents = tx.list_consents()
    by_subject: dict[str, list[Consent]] = {}
    for consent in consents:
        if consent.state(run.now) == "expired" and consent.ended_reason is None:
            by_subject.setdefault(consent.subject_id, []).append(consent)
    for subject, expired in sorted(by_subject.items()):
        with run.ctx.write() as tx:
            entry, receipt = end_consents(
                run.ctx, tx, subject, expired, action=AuditAction.CONSENT_EXPIRE, ended_at=None,
                ended_reason="expired", details={}, erase_reason="consent expired", actor=run.actor,
                purpose=run.purpose, policy=run.policy, now_dt=run.now, logged_at=run.report.ran_at,
            )  # fmt: skip
            run.report.audit_seqs.append(entry.seq)
            run.report.consents_expired += [c.id for c in expired]
            if receipt is not None:
                run.report.subjects_erased.append(receipt)
                run.report.audit_seqs.append(receipt.audit_seq)


def purge_templates(run: _Run) -> None:
    """Step 2: delete templates past retention, one transaction per subject; erase a subject left with none."""
    if run.cut.templates is None:
        return
    with run.ctx.store.read() as tx:
        old = tx.templates_created_before(run.cut.templates)
    by_subject: dict[str, list[str]] = {}
    for ref in old:
        by_subject.setdefault(ref.subject_id, []).append(ref.id)
    for subject, ids in sorted(by_subject.items()):
        with run.ctx.write() as tx:
            for template_id in ids:
                tx.delete_template(template_id)
            index_applied(run.ctx, tx.bump_data_version(), remove=ids)
            run.ctx.owe_reclaim(tx, run.report.ran_at)
            record = tx.get_subject(subject)
            entry = run.ctx.record(
                tx,
                AuditAction.TEMPLATE_PURGE,
                actor=run.actor,
                purpose=run.purpose,
                at=run.report.ran_at,
                gallery=None if record is None else record.gallery,
                subjects=(subject,),
                policy_hash=run.policy.hash,
                details={"templates_deleted": len(ids), "cutoff": run.cut.templates},
            )
            run.report.templates_deleted += len(ids)
            run.report.audit_seqs.append(entry.seq)
            if record is not None and not tx.templates_of(subject):
                receipt = erase_in(
                    run.ctx,
                    tx,
                    subject,
                    reason="templates past retention",
                    actor=run.actor,
                    purpose=run.purpose,
                    now=run.now,
                )
                run.report.subjects_erased.append(receipt)
                run.report.audit_seqs.append(receipt.audit_seq)


def purge_consents(run: _Run) -> None:
    """Step 3: delete consent records that ended longer ago than their retention (of subjects no longer enrolled)."""
    with run.ctx.write() as tx:
        gone = [
            c
            for c in tx.list_consents()
            if c.state(run.now) in ("withdrawn", "expired")
            and (c.ended_at() or c.recorded_at) < run.cut.consents
            and tx.get_subject(c.subject_id) is None
        ]
        if not gone:
            return
        for consent in gone:
            tx.delete_consent(consent.id)
        entry = run.ctx.record(
            tx,
            AuditAction.CONSENT_PURGE,
            actor=run.actor,
            purpose=run.purpose,
            at=run.report.ran_at,
            subjects=tuple(sorted({c.subject_id for c in gone})),
            policy_hash=run.policy.hash,
            details={"consents_deleted": len(gone), "cutoff": run.cut.consents},
        )
        run.report.consents_deleted = len(gone)
        run.report.audit_seqs.append(entry.seq)


def purge_evidence(run: _Run) -> None:
    """Step 4: destroy the evidence of candidates decided (confirmed; a rejection destroyed it already) more than
    ``evidence_days`` ago."""
    cutoff = to_text(run.now - timedelta(days=run.policy.policy.retention.evidence_days))
    with run.ctx.write() as tx:
        deleted = tx.delete_evidence_decided_before(cutoff)
        if not deleted:
            return
        run.ctx.owe_reclaim(tx, run.report.ran_at)
        entry = run.ctx.record(
            tx,
            AuditAction.EVIDENCE_PURGE,
            actor=run.actor,
            purpose=run.purpose,
            at=run.report.ran_at,
            policy_hash=run.policy.hash,
            details={"evidence_deleted": deleted, "cutoff": cutoff},
        )
        run.report.evidence_deleted = deleted
        run.report.audit_seqs.append(entry.seq)


def purge_reviews(run: _Run) -> None:
    """Step 5: delete candidates and their reviews created before the review retention's cutoff."""
    with run.ctx.write() as tx:
        deleted = tx.delete_candidates_before(run.cut.reviews)
        if not deleted:
            return
        entry = run.ctx.record(
            tx,
            AuditAction.REVIEW_PURGE,
            actor=run.actor,
            purpose=run.purpose,
            at=run.report.ran_at,
            policy_hash=run.policy.hash,
            details={"candidates_deleted": deleted, "cutoff": run.cut.reviews},
        )
        run.report.candidates_deleted = deleted
        run.report.audit_seqs.append(entry.seq)


def purge_audit(run: _Run) -> None:
    """Step 6: delete audit entries past retention and append the checkpoint (range and last hash removed)."""
    if run.cut.audit is None:
        return
    with run.ctx.write() as tx:
        key = signatures.signer(run.ctx, tx)
        if key is None and tx.get_meta("signing_key_id") is not None:
            # A signed ledger accepts only signed retention checkpoints: without the key, deleting old entries
            # would look exactly like an administrator deleting them by hand.
            run.report.notes.append("audit entries not purged: the ledger's signing key is not available here")
            return
        purged = tx.purge_audit_before(run.cut.audit)
        if purged is None:
            return
        first, last, last_hash = purged
        details: dict[str, object] = {
            "purged_from_seq": first, "purged_to_seq": last, "last_hash": last_hash, "cutoff": run.cut.audit,
        }  # fmt: skip
        if key is not None:
            for draft in signatures.key_drafts(tx, key, actor=run.actor, purpose=run.purpose):
                tx.append_audit(draft, run.report.ran_at)
            details.update(
                signature=key.sign(purge_statement(last, last_hash, run.report.ran_at)),
                key_id=key.id,
                public_key=key.public_b64,
            )
        entry = run.ctx.record(
            tx,
            AuditAction.AUDIT_PURGE,
            actor=run.actor,
            purpose=run.purpose,
            at=run.report.ran_at,
            policy_hash=run.policy.hash,
            details=details,
        )
        run.report.audit_entries_purged = last - first + 1
        run.report.audit_seqs.append(entry.seq)
