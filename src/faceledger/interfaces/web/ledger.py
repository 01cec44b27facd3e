"""The ledger and the transparency report: entries with filters, the chain's verification and the head hash to
publish, an export, and the report with its plots."""

from __future__ import annotations

import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from faceledger.interfaces.web.render import page
from faceledger.interfaces.web.session import LEDGER_ROLES, Viewer, viewer
from faceledger.ledger.actions import AuditAction

router = APIRouter()

PAGE = 100
LEDGER_PURPOSE = "audit"
"""The purpose of reading the entries (they name subjects and actors, so the read is on the ledger)."""


def _matches(data: dict[str, Any], *, action: str, actor: str, subject: str, since: str, until: str) -> bool:
    if action and data.get("action") != action:
        return False
    if actor and actor.lower() not in str(data.get("actor", "")).lower():
        return False
    if subject and subject not in (data.get("subjects") or []):
        return False
    ts = str(data.get("ts", ""))
    return not (since and ts < since) and not (until and ts[: len(until)] > until)


@router.get("/ui/ledger")
async def ledger_page(
    request: Request,
    who: Annotated[Viewer, Depends(viewer)],
    action: str = "",
    actor: str = "",
    subject: str = "",
    since: str = "",
    until: str = "",
    before: int = 0,
) -> Response:
    """Entries newest first (filtered), whether the chain verifies, and the head to publish."""
    who.require(LEDGER_ROLES, "read the audit ledger")
    verified = await who.call(who.gallery.audit_verify)
    head = await who.call(who.gallery.audit_head)
    entries = await who.call(who.gallery.audit_entries, actor=who.actor, purpose=LEDGER_PURPOSE)  # a records.read
    filters = {"action": action, "actor": actor.strip(), "subject": subject.strip(), "since": since, "until": until}
    shown = []
    for entry in reversed(entries):
        if before and entry.seq >= before:
            continue
        data = entry.data
        if _matches(data, **filters):
            shown.append((entry, data))
            if len(shown) > PAGE:
                break
    more = shown[PAGE][0].seq + 1 if len(shown) > PAGE else 0
    return page(
        request, "ledger.html", who, title="Ledger", verified=verified, head=head, shown=shown[:PAGE], more=more,
        filters=filters, actions=[a.value for a in AuditAction], total=len(entries),
        describe={a.value: a.describe() for a in AuditAction},
    )  # fmt: skip


@router.get("/ui/ledger/export")
async def export(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """Every entry as JSON Lines (the export is itself an audit entry, written first)."""
    who.require(LEDGER_ROLES, "export the audit ledger")
    entries = await who.call(who.gallery.audit_export, actor=who.actor, purpose="ledger export")
    body = "".join(json.dumps(e.to_dict(), sort_keys=True) + "\n" for e in entries)
    return Response(
        body,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="faceledger-audit.jsonl"', "Cache-Control": "no-store"},
    )


def _plot(report: Any) -> bytes | None:
    """Searches, candidates and decisions per period, as a PNG (matplotlib, drawn off screen)."""
    if not report.rows:
        return None
    from matplotlib.figure import Figure  # the object API, not pyplot: safe in the service's worker threads

    periods = sorted({r.period for r in report.rows})
    series = {
        "searches": "searches", "faces_searched": "faces searched", "candidates": "candidates",
        "confirmed": "confirmed", "rejected": "rejected",
    }  # fmt: skip
    figure = Figure(figsize=(min(10.0, 4.0 + 1.2 * len(periods)), 3.2), dpi=100)
    axis = figure.add_subplot()
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series.items()):
        values = [sum(r.counts[key] for r in report.rows if r.period == p) for p in periods]
        axis.bar([x + i * width for x in range(len(periods))], values, width, label=label)
    axis.set_xticks([x + 0.4 - width / 2 for x in range(len(periods))], periods)
    axis.set_ylabel("count")
    axis.set_title(f"Activity per {report.period}")
    axis.set_xlim(-0.3, len(periods) - 0.1)
    axis.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside, never on the bars
    axis.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@router.get("/ui/report")
async def report_page(request: Request, who: Annotated[Viewer, Depends(viewer)], period: str = "month") -> Response:
    """The transparency report (generating it is an audit entry) with its plot."""
    who.require(LEDGER_ROLES, "see the transparency report")
    report = await who.call(who.gallery.report, actor=who.actor, purpose="transparency report", period=period)
    plot = await who.call(_plot, report)
    return page(request, "report.html", who, title="Transparency report", report=report, plot=plot, period=period)
