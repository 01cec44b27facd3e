"""The audit ledger and what is counted from it: ``audit verify``, ``audit head``, ``audit show``,
``audit export`` and the transparency ``report``."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import click

from faceledger import config
from faceledger.gallery import Gallery
from faceledger.interfaces.cli.options import PEOPLE, Call, Who, gallery_command, registrar
from faceledger.interfaces.cli.render import fail, warn
from faceledger.interfaces.cli.views import FileWritten, ReportFile
from faceledger.ledger import AuditHead
from faceledger.ledger.signing import SignedHead, public_key_from_text

__all__ = ["audit_group", "register", "report_command"]

RECORDS_SHOWN = 20
"""Records not matching the ledger that ``audit verify`` names on stderr (``--json`` lists every one)."""

READER = Who(actor_is="who reads the ledger", purpose="audit")
"""``audit show``: entries name subjects and actors, so the read is recorded; the purpose defaults to audit."""


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit ledger: verify, show, export, head."""


def _head(ctx: click.Context, param: click.Parameter, value: str | None) -> AuditHead | None:
    """``SEQ:HASH`` as printed by ``audit head``."""
    if not value:
        return None
    seq, sep, digest = value.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise click.BadParameter("expected SEQ:HASH as printed by `audit head`", param_hint="--expect")
    return AuditHead(int(seq), digest)


def _public_key(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        return public_key_from_text(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--public-key") from None


def _published(ctx: click.Context, param: click.Parameter, value: Path | None) -> SignedHead | None:
    if value is None:
        return None
    try:
        return SignedHead.from_dict(json.loads(value.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{value}: {exc}", param_hint="--expect-signed") from None


@audit_group.command("verify")
@click.option(
    "--expect",
    callback=_head,
    help="A head published earlier (SEQ:HASH from `audit head`); the chain must extend it.",
)
@click.option(
    "--expect-signed",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    callback=_published,
    help="A signed head published earlier (the JSON of `audit head --signed`): its signature must hold and the "
    "chain extend it. Checks a copy of the database against what was published.",
)
@click.option(
    "--public-key",
    callback=_public_key,
    help="The signing key's public key (base64, as `audit head --signed` prints it), obtained outside the "
    "database; default: the signing key file beside the master key, else the key the ledger records.",
)
@gallery_command()
def audit_verify(
    g: Gallery, call: Call, expect: AuditHead | None, expect_signed: SignedHead | None, public_key: bytes | None
) -> None:
    """Recompute the chain and check its signed checkpoints; exit 1 and name the first entry altered, removed,
    inserted or reordered."""
    if expect_signed is not None:
        result = g.audit_verify_published(expect_signed, public_key=public_key)
    else:
        result = g.audit_verify(expect, public_key=public_key)
    call.out.show(result)
    if result.ok:
        return
    # one message per line (fail() escapes line breaks), the records capped: a whole gallery altered is thousands
    if result.bad_seq is not None:
        warn(f"audit chain broken at entry {result.bad_seq}: {result.problem}")
    if result.records:
        shown = result.records[:RECORDS_SHOWN]
        more = len(result.records) - len(shown)
        which = f"; the first {len(shown)}:" if more else ":"
        warn(f"{len(result.records)} record(s) do not match the ledger (changed, inserted or deleted outside "
             f"faceledger; each is refused where it is used){which}")  # fmt: skip
        for line in shown:
            warn(f"  {line}")
        if more:
            warn(f"  ... and {more} more (`faceledger audit verify --json` lists every one)")
    sys.exit(1)


@audit_group.command("head")
@click.option(
    "--signed",
    is_flag=True,
    help="Sign the head with the ledger's signing key (a checkpoint on the ledger) and print it as JSON to publish.",
)
@click.option("--actor", envvar=config.ACTOR_ENV, help=f"Who signs (with --signed; ${config.ACTOR_ENV}).")
@gallery_command()
def audit_head(g: Gallery, call: Call, signed: bool, actor: str | None) -> None:
    """Print the last entry's SEQ:HASH, to publish elsewhere as an anchor (--signed: a signed head)."""
    if signed:
        published = g.audit_checkpoint(actor=actor or getpass.getuser())
        click.echo(json.dumps(published.to_dict(), sort_keys=True))  # the publication format, --json or not
        return
    head = g.audit_head()
    if head is None:
        fail("the ledger is empty")
    call.out.show(head)


@audit_group.command("checkpoint")
@gallery_command(who=Who(actor_is="who signs the ledger", purpose="audit"))
def audit_checkpoint(g: Gallery, call: Call) -> None:
    """Write a signed checkpoint of the ledger now (the service writes one after every retention run) and print
    the signed head as JSON."""
    head = g.audit_checkpoint(actor=call.actor, purpose=call.purpose)
    click.echo(json.dumps(head.to_dict(), sort_keys=True))


@audit_group.command("show")
@click.option("--after", type=int, default=0, help="Only entries after this sequence number.")
@click.option("--limit", type=int, help="At most this many entries.")
@click.option("--action", help="Only this action (e.g. identify, review, subject.erase).")
@gallery_command(who=READER)
def audit_show(g: Gallery, call: Call, after: int, limit: int | None, action: str | None) -> None:
    """Print audit entries (the read is recorded: a records.read entry after them; --purpose defaults to audit)."""
    entries = g.audit_entries(after_seq=after, limit=limit, action=action, actor=call.actor, purpose=call.purpose)
    call.out.rows(entries)


@audit_group.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@gallery_command(who=PEOPLE)
def audit_export(g: Gallery, call: Call, output: Path | None) -> None:
    """Export every entry as JSON lines (the export is itself recorded first)."""
    lines = [
        json.dumps(e.to_dict(), ensure_ascii=False) for e in g.audit_export(actor=call.actor, purpose=call.purpose)
    ]
    if output is None:  # JSON lines whatever --json says: they are the export
        for line in lines:
            click.echo(line)
    else:
        output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        call.out.show(FileWritten(str(output), len(lines)))


@click.command("report")
@click.option("--period", type=click.Choice(["day", "week", "month", "year"]), default="month", show_default=True)
@click.option("--since", help="Count from this date (ISO 8601).")
@click.option("--until", help="Count until this date, exclusive (ISO 8601).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write Markdown here.")
@gallery_command(who=PEOPLE)
def report_command(
    g: Gallery, call: Call, period: str, since: str | None, until: str | None, output: Path | None
) -> None:
    """Transparency report: counts per period, gallery and purpose (Markdown, or --json)."""
    report = g.report(actor=call.actor, purpose=call.purpose, period=period, since=since, until=until)
    if output is None:
        call.out.show(report)
    else:
        output.write_text(report.to_markdown(), encoding="utf-8")
        call.out.show(ReportFile(report, output))


register = registrar(audit_group, report_command)
