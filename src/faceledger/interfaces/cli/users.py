"""Web UI accounts: ``faceledger users add|list|disable``. The web UI (``faceledger serve``, then ``/ui``)
signs people in with these accounts or with an API key token."""

from __future__ import annotations

import sys

import click

from faceledger.gallery import Gallery
from faceledger.interfaces.cli.options import ADMINISTRATION, Call, gallery_command, registrar
from faceledger.ledger import ROLES

__all__ = ["register", "users_group"]


@click.group("users")
def users_group() -> None:
    """Accounts of people who sign in to the web UI (passwords hashed with argon2id)."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))


@users_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the person may do (as for API keys).")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input (scripts)."
)
@gallery_command(who=ADMINISTRATION)
def users_add(g: Gallery, call: Call, name: str, role: str, password_stdin: bool) -> None:
    """Create the account NAME; asks for its password (at least 12 characters) unless --password-stdin."""
    call.out.show(g.add_user(name, role=role, password=_read_password(password_stdin), actor=call.actor))


@users_group.command("list")
@gallery_command()
def users_list(g: Gallery, call: Call) -> None:
    """List accounts (never their password hashes)."""
    call.out.rows(g.users())


@users_group.command("disable")
@click.argument("name")
@gallery_command(who=ADMINISTRATION, unknown="`faceledger users list` shows the names")
def users_disable(g: Gallery, call: Call, name: str) -> None:
    """Disable the account NAME; its open sessions end at once."""
    call.out.show(g.disable_user(name, actor=call.actor, purpose=call.purpose))


register = registrar(users_group)
