"""Retention: from a policy and the current time, the cut-off timestamps of each kind of record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from faceledger.ledger.policy import Policy
from faceledger.ledger.timeutil import to_text


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
