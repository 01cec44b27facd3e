"""Consent: ``consent add``, ``consent list``, ``consent withdraw`` (enrollment is refused without a valid one)."""

from __future__ import annotations

import click

from faceledger.gallery import Gallery
from faceledger.interfaces.cli.options import PEOPLE, Call, gallery_command, registrar

__all__ = ["consent_group", "register"]


@click.group("consent")
def consent_group() -> None:
    """Record, list and withdraw consent (enrollment is refused without it)."""


@consent_group.command("add")
@click.argument("subject")
@click.option("--collected-by", required=True, help="Who collected the consent.")
@click.option("--legal-basis", required=True, help="Legal basis, e.g. 'explicit consent (GDPR 9(2)(a))'.")
@click.option("--evidence", "evidence_ref", required=True, help="Reference to the signed form or recording.")
@click.option("--given-at", help="When consent was given (ISO 8601; default now).")
@click.option("--expires-at", help="When it expires (ISO 8601; default: no expiry).")
@click.option("--gallery", help="Gallery (default: the policy's only gallery).")
@click.option(
    "--category",
    help="Watchlist entries only: the entry category the watchlist accepts (then --collected-by is the "
    "authorising person, --evidence the order's reference, and --expires-at is required).",
)
@gallery_command(who=PEOPLE)
def consent_add(
    g: Gallery,
    call: Call,
    subject: str,
    collected_by: str,
    legal_basis: str,
    evidence_ref: str,
    given_at: str | None,
    expires_at: str | None,
    gallery: str | None,
    category: str | None,
) -> None:
    """Record SUBJECT's consent to be enrolled and searched for --purpose."""
    record = g.add_consent(
        subject,
        actor=call.actor,
        collected_by=collected_by,
        legal_basis=legal_basis,
        purpose=call.purpose,
        evidence_ref=evidence_ref,
        given_at=given_at,
        expires_at=expires_at,
        gallery=gallery,
        category=category,
    )
    call.out.show(record)


@consent_group.command("withdraw")
@click.argument("subject")
@click.option("--consent", "consent_id", help="Withdraw only this consent record.")
@click.option("--reason", default="consent withdrawn", show_default=True)
@gallery_command(who=PEOPLE)
def consent_withdraw(g: Gallery, call: Call, subject: str, consent_id: str | None, reason: str) -> None:
    """Withdraw SUBJECT's consent; with no valid consent left, the subject is erased."""
    call.out.show(
        g.withdraw_consent(subject, actor=call.actor, purpose=call.purpose, consent_id=consent_id, reason=reason)
    )


@consent_group.command("list")
@click.argument("subject", required=False)
@click.option("--gallery", help="Only this gallery.")
@gallery_command(who=PEOPLE)
def consent_list(g: Gallery, call: Call, subject: str | None, gallery: str | None) -> None:
    """List consent records (of SUBJECT, or all)."""
    call.out.rows(g.consents(subject, actor=call.actor, purpose=call.purpose, gallery=gallery))


register = registrar(consent_group)
