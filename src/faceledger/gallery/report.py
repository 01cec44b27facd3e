"""Transparency report: what the deployment did, counted from the audit ledger, in Markdown and JSON.

Counts per period (day, week, month or year), gallery and purpose: enrollments, searches, faces searched,
candidates, confirmed and rejected matches, erasures, consents recorded and withdrawn, refused searches.
Only entries still on the ledger are counted: the report states the period its entries cover. The database does
the counting (``Transaction.audit_activity``, per day); this module gathers days into periods.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from faceledger.gallery.admin import current_counts
from faceledger.gallery.context import GalleryContext, accountable, moment
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.policy import LoadedPolicy
from faceledger.ledger.records import ActivityRow
from faceledger.ledger.timeutil import from_text, to_text

PERIODS = ("day", "week", "month", "year")
COUNTERS = (
    "enrollments",
    "templates_added",
    "searches",
    "verifications",
    "faces_searched",
    "faces_matched",
    "candidates",
    "confirmed",
    "rejected",
    "erasures",
    "consents_added",
    "consents_withdrawn",
    "consents_expired",
    "refused_searches",
)


CURRENT = ("subjects", "templates", "pending_reviews", "valid_consents")
"""The current state a report shows, in its order."""


def period_of(moment: datetime, period: str) -> str:
    """Label of the period containing ``moment``: ``2025-03-14``, ``2025-W11``, ``2025-03`` or ``2025``."""
    if period == "day":
        return moment.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = moment.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return moment.strftime("%Y-%m")
    if period == "year":
        return moment.strftime("%Y")
    raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")


@dataclass
class ReportRow:
    """Counts for one period, gallery and purpose."""

    period: str
    gallery: str
    purpose: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"period": self.period, "gallery": self.gallery, "purpose": self.purpose, **self.counts}


@dataclass
class TransparencyReport:
    """The report: rows of counts, totals, current state, and what the counts cover."""

    generated_at: str
    period: str
    controller: str
    deployment_purpose: str
    legal_basis: str
    policy_hash: str
    target_fmr: float
    reviewers_required: int
    covers_from: str | None
    covers_to: str | None
    rows: list[ReportRow]
    totals: dict[str, int]
    current: dict[str, int]
    target_fpir: float = 0.01
    deployments: list[dict[str, Any]] = field(default_factory=list)
    """Each video deployment recorded: where, when, which watchlist, and the evaluation it relies on."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with stable keys."""
        return {
            "generated_at": self.generated_at,
            "period": self.period,
            "controller": self.controller,
            "deployment_purpose": self.deployment_purpose,
            "legal_basis": self.legal_basis,
            "policy_hash": self.policy_hash,
            "target_fmr": self.target_fmr,
            "reviewers_required": self.reviewers_required,
            "covers_from": self.covers_from,
            "covers_to": self.covers_to,
            "rows": [r.to_dict() for r in self.rows],
            "totals": self.totals,
            "current": self.current,
            "target_fpir": self.target_fpir,
            "deployments": self.deployments,
        }

    def to_markdown(self) -> str:
        """The report as a Markdown document."""
        lines = [
            "# Transparency report",
            "",
            f"- Controller: {self.controller}",
            f"- Purpose of the deployment: {self.deployment_purpose}",
            f"- Legal basis: {self.legal_basis}",
            f"- Policy: `{self.policy_hash}` (target false-match rate {self.target_fmr:g}, target false positive "
            f"identification rate {self.target_fpir:g} per searched face at the gallery's size, "
            f"{self.reviewers_required} reviewer(s) must confirm a match)",
            f"- Generated: {self.generated_at}",
            f"- Ledger entries counted: {self.covers_from or 'none'} to {self.covers_to or 'none'}",
            "- Faces that matched no one are discarded: they are counted here and stored nowhere.",
            "",
            "## Now",
            "",
            "| enrolled subjects | templates | valid consents | pending reviews |",
            "| ---: | ---: | ---: | ---: |",
            f"| {self.current.get('subjects', 0)} | {self.current.get('templates', 0)} | "
            f"{self.current.get('valid_consents', 0)} | {self.current.get('pending_reviews', 0)} |",
            "",
            f"## Activity per {self.period}",
            "",
        ]
        columns = [
            ("enrollments", "enrolled"),
            ("searches", "searches"),
            ("verifications", "1:1 checks"),
            ("faces_searched", "faces"),
            ("faces_matched", "faces matched"),
            ("candidates", "candidates"),
            ("confirmed", "confirmed"),
            ("rejected", "rejected"),
            ("erasures", "erasures"),
            ("consents_added", "consents"),
            ("consents_withdrawn", "withdrawn"),
            ("refused_searches", "refused"),
        ]
        if not self.rows:
            lines.append("No activity in the period covered.")
        else:
            lines.append("| period | gallery | purpose | " + " | ".join(label for _, label in columns) + " |")
            lines.append("| --- | --- | --- | " + " | ".join("---:" for _ in columns) + " |")
            for row in self.rows:
                values = " | ".join(str(row.counts[key]) for key, _ in columns)
                lines.append(f"| {row.period} | {row.gallery} | {row.purpose} | {values} |")
            totals = " | ".join(str(self.totals[key]) for key, _ in columns)
            lines.append(f"| **total** | | | {totals} |")
        lines += _deployment_lines(self.deployments)
        return "\n".join(lines) + "\n"


def build_report(
    activity: tuple[list[ActivityRow], str | None, str | None],
    *,
    period: str,
    generated_at: str,
    policy: LoadedPolicy,
    current: dict[str, int],
    deployments: list[dict[str, Any]] | None = None,
) -> TransparencyReport:
    """A :class:`TransparencyReport` of the ``activity`` the database counted (``Transaction.audit_activity``):
    its days are gathered here into periods, its actions into the report's counters."""
    period_of(from_text(generated_at), period)  # validates the period name
    groups, first, last = activity
    rows: dict[tuple[str, str, str], ReportRow] = {}
    for group in groups:
        counted = _count(group)
        if not counted:
            continue
        key = (period_of(from_text(group.day), period), group.gallery, group.purpose)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ReportRow(*key)
        for name, value in counted.items():
            row.counts[name] += value
    ordered = [rows[k] for k in sorted(rows)]
    totals: defaultdict[str, int] = defaultdict(int)
    for row in ordered:
        for name, value in row.counts.items():
            totals[name] += value
    p = policy.policy
    return TransparencyReport(
        generated_at=generated_at,
        period=period,
        controller=p.deployment.controller,
        deployment_purpose=p.deployment.purpose,
        legal_basis=p.deployment.legal_basis,
        policy_hash=policy.hash,
        target_fmr=p.identification.target_fmr,
        reviewers_required=p.identification.reviewers_required,
        covers_from=first,
        covers_to=last,
        rows=ordered,
        totals={name: totals[name] for name in COUNTERS},
        current=current,
        target_fpir=p.identification.target_fpir,
        deployments=list(deployments or []),
    )


def _deployment_lines(deployments: list[dict[str, Any]]) -> list[str]:
    """The report's section on video deployments and the evaluations behind them."""
    if not deployments:
        return []
    lines = ["", "## Video deployments and the evaluations they rely on", "",
             "| deployment | gallery / purpose | where | valid | watchlist up to | authorised by | evaluation |",
             "| --- | --- | --- | --- | ---: | --- | --- |"]  # fmt: skip
    for d in deployments:
        ev = d.get("evaluation")
        if ev is None:
            shown = "none"
        else:
            worst = ev.get("worst")
            spread = (f"largest ratio {worst['ratio']:.2f}x ({worst['rate']}, group {worst['group']})" if worst
                      else "no groups compared")  # fmt: skip
            shown = f"`{str(ev.get('sha256'))[:16]}` on {ev.get('population')}: {spread}, at {ev.get('threshold')}"
        lines.append(
            f"| {d['name']} | {d['gallery']} / {d['purpose']} | {d['location']} | {d['valid_from']} .. "
            f"{d['ended_at'] or d['valid_to']} | {d['max_watchlist']} | {d['authorised_by']} "
            f"({d['authorisation_ref']}) | {shown} |"
        )
    return lines


def _count(group: ActivityRow) -> dict[str, int]:
    """The report's counters for one group of entries of one action."""
    action = group.action
    if action == AuditAction.ENROLL:
        return {"enrollments": group.with_templates, "templates_added": group.templates_added}
    if action == AuditAction.IDENTIFY:
        return {
            "searches": group.entries,
            "faces_searched": group.faces,
            "faces_matched": group.matched_faces,
            "candidates": group.candidates,
        }
    if action == AuditAction.VERIFY:
        return {"verifications": group.entries}
    if action in (AuditAction.REVIEW_CONFIRM, AuditAction.REVIEW_REJECT):
        return {"confirmed": group.confirmed, "rejected": group.rejected}
    if action == AuditAction.SUBJECT_ERASE:
        return {"erasures": group.entries}
    if action == AuditAction.CONSENT_ADD:
        return {"consents_added": group.entries}
    if action == AuditAction.CONSENT_WITHDRAW:
        return {"consents_withdrawn": group.consent_ids}
    if action == AuditAction.CONSENT_EXPIRE:
        return {"consents_expired": group.consent_ids}
    if action == AuditAction.IDENTIFY_REFUSED:
        return {"refused_searches": group.entries}
    return {}


def transparency_report(
    ctx: GalleryContext,
    *,
    actor: str,
    purpose: str,
    period: str = "month",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> TransparencyReport:
    """The report of the whole ledger still held, with the current counts; generating it is an audit entry. The
    purpose must be an administrative one or a gallery's."""
    actor, purpose = accountable(actor, purpose)
    now = ctx.now()
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        ctx.check_administrative_purpose(policy, purpose, "generate the transparency report", gallery=None)
        counts = current_counts(tx, now)
        start, end = moment(since, "since"), moment(until, "until")
        report = build_report(
            tx.audit_activity(None if start is None else to_text(start), None if end is None else to_text(end)),
            period=period,
            generated_at=to_text(now),
            policy=policy,
            current={k: counts[k] for k in CURRENT},
            deployments=[d.to_dict() for d in tx.list_deployments()],
        )
        details = {"period": period, "rows": len(report.rows)}
        ctx.record(tx, AuditAction.REPORT, actor=actor, purpose=purpose, at=now, details=details)
    return report


__all__ = [
    "PERIODS",
    "ReportRow",
    "TransparencyReport",
    "build_report",
    "period_of",
    "to_text",
    "transparency_report",
]
