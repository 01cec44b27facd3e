"""Setting a deployment up and running it: ``init``, ``policy``, ``keys`` (API keys, master key), ``purge``."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import click

from faceledger import config
from faceledger.gallery import Gallery
from faceledger.interfaces.cli.options import ADMINISTRATION, ROTATION, Call, gallery_command, json_option, registrar
from faceledger.interfaces.cli.render import Output, emit
from faceledger.interfaces.cli.views import (
    Initialised,
    MasterKeyRotation,
    NewApiKey,
    PolicyChange,
    PolicyValid,
    RevokedApiKey,
)
from faceledger.ledger import EXAMPLE_POLICY, ROLES, WATCHLIST_POLICY, PolicyError
from faceledger.ledger.signing import SIGNING_KEY_ENV, signing_key_file

__all__ = ["init_command", "keys_group", "policy_group", "purge_command", "register"]


@click.command("init")
@gallery_command(opens=False)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy TOML file (default: the commented example policy; see `faceledger policy example`).",
)
@click.option(
    "--actor", envvar=config.ACTOR_ENV, help=f"Who sets this up (${config.ACTOR_ENV}; default: your user name)."
)
def init_command(call: Call, policy_file: Path | None, actor: str | None) -> None:
    """Create a database, its master key file (mode 0600) and its policy."""
    with Gallery.init(call.db, actor=actor or getpass.getuser(), policy=policy_file, key_file=call.key_file) as g:
        head = g.audit_head()
        info = Initialised(
            db=str(call.db.path or call.db),
            master_key="environment" if os.environ.get(config.MASTER_KEY_ENV) else str(call.key_file),
            signing_key="environment" if os.environ.get(SIGNING_KEY_ENV) else str(signing_key_file(call.key_file)),
            policy_hash=g.policy.hash,
            galleries=[place.name for place in g.policy.policy.galleries],
            audit_head=head.to_dict() if head is not None else {},
        )
    call.out.show(info)


# ---------------------------------------------------------------------------------------------- policy
@click.group("policy")
def policy_group() -> None:
    """Show, check or change the policy in force (its hash is recorded with every decision)."""


@policy_group.command("example")
@click.option("--watchlist", is_flag=True, help="The example for a watchlist searched in video (missing persons).")
def policy_example(watchlist: bool) -> None:
    """Print the commented example policy."""
    click.echo(WATCHLIST_POLICY if watchlist else EXAMPLE_POLICY, nl=False)


@policy_group.command("show")
@gallery_command()
def policy_show(g: Gallery, call: Call) -> None:
    """Print the policy in force and its hash."""
    call.out.show(g.policy)


@policy_group.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option("Print one JSON object.")
def policy_check(file: Path, as_json: bool) -> None:
    """Validate a policy file without putting it in force."""
    from faceledger.ledger import load_policy

    out = Output(as_json)
    try:
        loaded = load_policy(file)
    except PolicyError as exc:
        out.failed(str(exc), {"file": str(file), "valid": False, "problems": [list(p) for p in exc.problems]})
        raise SystemExit(1) from None
    out.show(PolicyValid(str(file), True, loaded.hash))


@policy_group.command("threshold")
@click.option("--gallery", help="The gallery (default: the policy's only one).")
@click.option("--purpose", "search_purpose", help="The search purpose (default: any).")
@gallery_command()
def policy_threshold(g: Gallery, call: Call, gallery: str | None, search_purpose: str | None) -> None:
    """Print the 1:N threshold in force now at the gallery's size: searchable subjects and templates, target FPIR,
    the per-comparison false-match rate, the expected FPIR and miss rate (FNIR)."""
    call.out.show(g.search_threshold(gallery=gallery, purpose=search_purpose))


@policy_group.command("accept-extrapolation")
@click.option("--gallery", help="The gallery (default: the policy's only one).")
@click.option("--up-to", "up_to", type=click.IntRange(min=0), required=True,
              help="Searchable subjects up to which extrapolated thresholds are accepted (0 withdraws).")
@click.option("--reason", required=True, help="Why the measured calibration is not enough (on the ledger).")
@gallery_command(who=ADMINISTRATION)
def policy_accept_extrapolation(g: Gallery, call: Call, gallery: str | None, up_to: int, reason: str) -> None:
    """Accept thresholds extrapolated beyond the recognizer's calibration for a gallery up to a size (a
    calibration.extrapolation entry): without it, a gallery too large for the calibration to hold the policy's
    target FPIR is refused. Better: calibrate on more data of your own (`faceledger calibrate`)."""
    accepted = g.accept_extrapolation(gallery=gallery, up_to=up_to, reason=reason, actor=call.actor,
                                      purpose=call.purpose)  # fmt: skip
    if call.out.as_json:
        emit(accepted)
    else:
        click.echo(f"extrapolated thresholds accepted for gallery {accepted['gallery']} up to {up_to:,} subjects "
                   f"(entry {accepted['audit_seq']}); measured, the calibration holds the target FPIR up to "
                   f"{accepted['largest_measured_gallery']:,} templates")  # fmt: skip


@policy_group.command("set")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@gallery_command(who=ADMINISTRATION)
def policy_set(g: Gallery, call: Call, file: Path) -> None:
    """Put a new policy in force (recorded on the ledger)."""
    previous = g.policy.hash
    loaded = g.set_policy(file, actor=call.actor, purpose=call.purpose)
    call.out.show(PolicyChange(previous, loaded.hash))


# ---------------------------------------------------------------------------------------------- retention
@click.command("purge")
@gallery_command()
@click.option("--actor", envvar=config.ACTOR_ENV, default="retention", show_default=True, help="Who runs the purge.")
@click.option("--purpose", envvar=config.PURPOSE_ENV, default="retention", show_default=True)
def purge_command(g: Gallery, call: Call, actor: str, purpose: str) -> None:
    """Apply the policy's retention periods now (expired consents erase their subjects)."""
    call.out.show(g.purge(actor=actor, purpose=purpose))


# ---------------------------------------------------------------------------------------------- keys
@click.group("keys")
def keys_group() -> None:
    """API keys of the REST service."""


@keys_group.command("create")
@click.argument("owner")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the key may do.")
@gallery_command(who=ADMINISTRATION)
def keys_create(g: Gallery, call: Call, owner: str, role: str) -> None:
    """Create an API key for OWNER; the token is printed once and never stored."""
    record, token = g.create_api_key(owner, role, actor=call.actor, purpose=call.purpose)
    call.out.show(NewApiKey(record, token))


@keys_group.command("list")
@gallery_command()
def keys_list(g: Gallery, call: Call) -> None:
    """List API keys (without secrets)."""
    call.out.rows(g.api_keys())


@keys_group.command("revoke")
@click.argument("key_id")
@gallery_command(who=ADMINISTRATION, unknown="`faceledger keys list` shows the ids")
def keys_revoke(g: Gallery, call: Call, key_id: str) -> None:
    """Revoke the API key KEY_ID."""
    call.out.show(RevokedApiKey(g.revoke_api_key(key_id, actor=call.actor, purpose=call.purpose)))


@keys_group.command("rotate-master")
@gallery_command(who=ROTATION)
def keys_rotate_master(g: Gallery, call: Call) -> None:
    """Re-wrap every subject key with a new master key (written to the key file).

    Destroy every copy of the old key file afterwards: backups taken before the rotation then become
    unreadable, including the templates of subjects erased since.
    """
    call.out.show(MasterKeyRotation(g.rotate_master_key(actor=call.actor, purpose=call.purpose)))


register = registrar(init_command, policy_group, purge_command, keys_group)
