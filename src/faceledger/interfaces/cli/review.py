"""Human review of candidates: ``review list``, ``review evidence``, ``review confirm``, ``review reject``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from faceledger.gallery import Gallery
from faceledger.interfaces.cli.options import PEOPLE, REVIEWER, Call, gallery_command, registrar
from faceledger.interfaces.cli.render import emit

__all__ = ["register", "review_group"]


@click.group("review")
def review_group() -> None:
    """Human review of candidates: a match counts only after the policy's number of reviewers confirm."""


@review_group.command("list")
@click.option("--gallery", help="Only this gallery.")
@gallery_command(who=PEOPLE)
def review_list(g: Gallery, call: Call, gallery: str | None) -> None:
    """List candidates awaiting review."""
    call.out.rows(g.pending_reviews(actor=call.actor, purpose=call.purpose, gallery=gallery))


@review_group.command("evidence")
@click.argument("candidate")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write face.jpg, context.jpg and reference-N.jpg into (created, readable by you only).",
)
@gallery_command(who=REVIEWER, unknown="`faceledger review list` lists the pending ones")
def review_evidence(g: Gallery, call: Call, candidate: str, out_dir: Path) -> None:
    """Write what a reviewer looks at for CANDIDATE: the face the search found (aligned, and in its context with
    other faces blurred) and the subject's enrolled faces. The look is on the ledger (reviewer = --actor)."""
    found = g.evidence(candidate, actor=call.actor, purpose=call.purpose or None)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    images = [("face.jpg", found.face), ("context.jpg", found.context)]
    images += [(f"reference-{i}.jpg", ref.image) for i, ref in enumerate(found.references, start=1)]
    written = []
    for name, data in images:
        if data is None:
            continue
        path = out_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # faces: readable by their owner only
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        written.append({"file": str(path), "bytes": len(data)})
    c = found.candidate
    summary = {
        "candidate_id": c.id,
        "subject": c.subject_id,
        "status": c.status,
        "similarity": round(c.similarity, 6),
        "fmr": found.fmr,
        "quality": None if found.quality is None else round(found.quality, 4),
        "confirmations": found.confirmations,
        "required": found.required,
        "evidence": found.state,
        "missing": found.missing,
        "files": written,
        "audit_seq": found.audit_seq,
    }
    if call.out.as_json:
        emit(summary)
        return
    for item in written:
        click.echo(f"wrote {item['file']} ({item['bytes']} bytes)")
    if found.missing:
        click.echo(f"no face or context: {found.missing}")
    fmr = "uncalibrated" if found.fmr is None else f"FMR {found.fmr:.1e}"
    click.echo(
        f"candidate {c.id}: subject {c.subject_id}, similarity {c.similarity:.3f} ({fmr}), {c.status}, "
        f"{found.confirmations}/{found.required} confirmations; viewing recorded as audit entry #{found.audit_seq}"
    )


def _decision(decision: str, help: str, reason_help: str) -> click.Command:
    """``review confirm`` or ``review reject``: the reviewer is --actor."""

    @review_group.command(decision, help=help)
    @click.argument("candidate")
    @click.option("--reason", required=True, help=reason_help)
    @gallery_command(who=REVIEWER)
    def command(g: Gallery, call: Call, candidate: str, reason: str) -> None:
        outcome = g.review(
            candidate, reviewer=call.actor, decision=decision, reason=reason, purpose=call.purpose or None
        )
        call.out.show(outcome)

    return command


review_confirm = _decision(
    "confirm", "Confirm CANDIDATE as the same person (reviewer = --actor).", "What the reviewer checked."
)
review_reject = _decision("reject", "Reject CANDIDATE (reviewer = --actor).", "Why it is not the same person.")

register = registrar(review_group)
