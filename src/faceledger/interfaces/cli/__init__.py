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

import importlib
from types import ModuleType

import click

from faceledger import __version__, config

__all__ = ["COMMANDS", "GROUP_MODULES", "main", "register"]

GROUP_MODULES = (
    "engine", "video", "admin", "users", "consent", "enroll", "identify", "review", "audit", "evaluate", "serve",
    "demo",
)  # fmt: skip
"""The modules whose commands make up ``faceledger``; each has ``register(group)``."""

#: Every command: the module that defines it and the first paragraph of its help, which ``faceledger --help`` lists.
#: The modules load only when one of their commands runs (they import the gallery, numpy, OpenCV: about a second),
#: so ``--version`` and ``--help`` start at once. ``tests/test_cli.py`` checks this index against the commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "detect": ("engine", "Find faces in IMAGES: boxes, detector scores, five landmarks and a quality score."),
    "embed": ("engine", "Embeddings of every face in IMAGES (largest face first), as JSON lines."),
    "verify": ("engine", "Are the largest faces of IMAGE_A and IMAGE_B the same person?"),
    "anonymize": ("engine", "Blur, pixelate or fill every face in IMAGES and write the copies to --out."),
    "watch": ("video", "Identify faces in a video file, stream (rtsp://, http://) or camera (/dev/videoN or an index) "
              "against the\nwatchlist of a deployment valid now, one decision per face track."),
    "track": ("video", "Track the faces of VIDEO (no database, nothing identified): one line per face track."),
    "deployment": ("video", "Authorisations for identification in video: who authorised which watchlist, where, "
                   "when, up to what size."),
    "init": ("admin", "Create a database, its master key file (mode 0600) and its policy."),
    "policy": ("admin", "Show, check or change the policy in force (its hash is recorded with every decision)."),
    "purge": ("admin", "Apply the policy's retention periods now (expired consents erase their subjects)."),
    "keys": ("admin", "API keys of the REST service."),
    "users": ("users", "Accounts of people who sign in to the web UI (passwords hashed with argon2id)."),
    "consent": ("consent", "Record, list and withdraw consent (enrollment is refused without it)."),
    "enroll": ("enroll", "Enroll SUBJECT from one or more IMAGES (one transaction; needs a valid consent)."),
    "enroll-batch": ("enroll", "Enroll many subjects from a CSV with columns ``subject,image`` (paths relative to "
                     "the CSV)."),
    "subjects": ("enroll", "List enrolled subjects with their template count and consent state."),
    "erase": ("enroll", "Erase SUBJECT: templates and data key destroyed, space reclaimed, receipt on the ledger."),
    "identify": ("identify", "Search every face of each IMAGE against the gallery (1:N)."),
    "verify-subject": ("identify", "1:1: is the largest face in IMAGE the enrolled SUBJECT? (recorded on the ledger)"),
    "review": ("review", "Human review of candidates: a match counts only after the policy's number of reviewers "
               "confirm."),
    "audit": ("audit", "The hash-chained audit ledger: verify, show, export, head."),
    "report": ("audit", "Transparency report: counts per period, gallery and purpose (Markdown, or --json)."),
    "evaluate": ("evaluate", "Measure recognition error rates on DATASET and write a report with plots."),
    "calibrate": ("evaluate", "Find the threshold that meets --target-fmr on DATASET, with its confidence interval."),
    "serve": ("serve", "Run the REST service (OpenAPI docs at /docs, routes under /v1)."),
    "demo": ("demo", "Run the whole job on the bundled example photo, printing each step."),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"faceledger.interfaces.cli.{name}")


class LazyGroup(click.Group):
    """A group that imports a command's module when the command is run (or asked for its own ``--help``).

    click has no lazy loading of its own; its documentation shows this pattern (overriding ``list_commands`` and
    ``get_command``). The top-level ``--help`` is written from :data:`COMMANDS` without importing anything."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            _module(COMMANDS[cmd_name][0]).register(self)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # the listing click would write, from the index: a stand-in command carries the help's first paragraph
        rows = [(name, self.commands.get(name) or click.Command(name, help=COMMANDS[name][1]))
                for name in self.list_commands(ctx)]  # fmt: skip
        rows = [(name, command) for name, command in rows if not command.hidden]
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    """Add every faceledger command to ``group`` (importing every command module)."""
    for name in GROUP_MODULES:
        _module(name).register(group)
