"""The ``faceledger`` command line: the :func:`main` group and the command groups, one module each.

``engine`` (detect, embed, verify, anonymize) and ``demo`` need no database; ``video`` has ``watch`` (under a
deployment), ``track`` (no database) and ``deployment``; ``admin`` (init, policy, keys,
purge), ``consent``, ``enroll`` (enroll, enroll-batch, subjects, erase), ``identify`` (identify,
verify-subject), ``review`` and ``audit`` (audit, report) work on a gallery; ``evaluate`` (evaluate, calibrate)
measures error rates on your data; ``serve`` runs the REST service. What the gallery commands share (options,
the open gallery, errors and exit codes) is in ``options``; what every command prints, in ``render``.

Conventions for every command: ``--help``; ``--json`` prints one JSON object per line with stable keys; a
progress bar on stderr for many files; exit code 0 on success, 1 when some inputs failed or a request was
refused (each named on stderr, the rest processed), 2 on a usage error.
"""

from __future__ import annotations

import click

from faceledger import __version__, config
from faceledger.interfaces.cli import (
    admin,
    audit,
    consent,
    demo,
    engine,
    enroll,
    evaluate,
    identify,
    review,
    serve,
    users,
    video,
)

__all__ = ["GROUPS", "main", "register"]

GROUPS = (engine, video, admin, users, consent, enroll, identify, review, audit, evaluate, serve, demo)
"""The modules whose commands make up ``faceledger``; each has ``register(group)``."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceledger")
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Gallery database for the commands that use one (default: ${config.DB_ENV} or ./{config.DEFAULT_DB}).",
)
def main(db: str | None) -> None:
    """faceledger: face recognition with consent, review, an audit ledger and provable erasure.

    Start with `faceledger demo`, then `faceledger detect IMAGE...` and `faceledger verify A B`.
    """


def register(group: click.Group) -> None:
    """Add every faceledger command to ``group``."""
    for module in GROUPS:
        module.register(group)


register(main)
