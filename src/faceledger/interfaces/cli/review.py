"""Human review of candidates: ``review list``, ``review confirm``, ``review reject``."""

from __future__ import annotations

import click

from faceledger.gallery import Gallery
from faceledger.interfaces.cli.options import PEOPLE, REVIEWER, Call, gallery_command, registrar

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
