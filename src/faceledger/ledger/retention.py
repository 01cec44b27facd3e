"""Retention: from a policy and the current time, the cut-off timestamps of each kind of record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from faceledger.ledger.policy import Policy, parse_policy
from faceledger.ledger.timeutil import from_text, to_text


@dataclass(frozen=True)
class Cutoffs:
    """Records created (consents: ended) before these timestamps are past retention; None keeps them."""

    now: str
    templates: str | None
    consents: str
    audit: str | None
    reviews: str


def cutoffs(policy: Policy, now: datetime) -> Cutoffs:
    """Compute the retention cut-offs of ``policy`` at ``now``."""
    keep = policy.retention

    def before(days: int | None) -> str | None:
        return None if days is None else to_text(now - timedelta(days=days))

    consents = before(keep.consents_days)
    reviews = before(keep.reviews_days)
    assert consents is not None and reviews is not None
    return Cutoffs(
        now=to_text(now),
        templates=before(keep.templates_days),
        consents=consents,
        audit=before(keep.audit_days),
        reviews=reviews,
    )


def retention_problem(seq: int, body: dict[str, Any], policy_text: str | None) -> str | None:
    """Why the retention checkpoint ``body`` (entry ``seq``, an ``audit.purge``) was not allowed by the policy in
    force when it was written, or None. That policy is the one the entry names, read from the database's policy
    history and checked against its hash; it must keep audit entries for a limited time, and the checkpoint may
    have purged only entries older than that at its own time."""
    named = str(body.get("policy_hash") or "")
    if policy_text is None:
        return f"retention checkpoint {seq} names policy {named[:12] or 'none'}, which the database does not hold"
    loaded = parse_policy(policy_text, f"policy {named[:12]}")
    if loaded.hash != named:
        return f"retention checkpoint {seq} names policy {named[:12]}, whose stored text was changed outside faceledger"
    days = loaded.policy.retention.audit_days
    if days is None:
        return f"retention checkpoint {seq}: policy {named[:12]} keeps audit entries without limit; none may be purged"
    cutoff = (body.get("details") or {}).get("cutoff")
    allowed = from_text(str(body.get("ts"))) - timedelta(days=days)
    try:
        too_recent = cutoff is None or from_text(str(cutoff)) > allowed
    except ValueError:
        too_recent = True
    if too_recent:
        return (
            f"retention checkpoint {seq} purged entries up to {cutoff}, but policy {named[:12]} (audit_days = {days}) "
            f"allowed only entries before {to_text(allowed)}"
        )
    return None
