"""What the gallery commands share: their options, the open :class:`Gallery` they are handed, and how errors
become messages and exit codes.

A gallery command is written as::

    @click.command("erase")
    @click.argument("subject")
    @gallery_command(who=PEOPLE, unknown="`faceledger subjects` lists them")
    def erase_command(g: Gallery, call: Call, subject: str) -> None:
        call.out.show(g.erase(subject, actor=call.actor, purpose=call.purpose))

:func:`gallery_command` adds ``--db``, ``--key-file`` and ``--json`` (and with ``who``, ``--actor`` and
``--purpose``) where it stands among the command's decorators (so where they stand in ``--help``), checks the
actor and purpose, resolves the database and key file with :mod:`faceledger.config`, opens the gallery, runs
the command and closes the gallery. A command that declares ``--recognizer`` (:data:`recognizer_option`) gets a
gallery that embeds with that model.

Exit codes: 0 success; 1 a refusal or failure (message on stderr, prefixed ``faceledger:``); 2 a usage error
(bad option, missing actor or purpose, a purpose the policy does not allow, a database location that cannot be
understood).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from faceledger import config
from faceledger.errors import FaceledgerError
from faceledger.gallery import Gallery
from faceledger.interfaces.cli.render import Output, warn
from faceledger.ledger.errors import (
    AccountabilityError,
    AlreadyInitialisedError,
    DatabaseMissingError,
    MasterKeyError,
    NoConsentError,
    NotInitialisedError,
    PolicyError,
    PurposeError,
    UnknownSubjectError,
)

F = TypeVar("F", bound=Callable[..., Any])
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
REQUIRED = "required"
"""A :class:`Who` whose purpose is ``REQUIRED`` refuses to run without one."""


# ---------------------------------------------------------------------------------------------- options
def json_option(help: str = "One JSON object per line on stdout.") -> Callable[[F], F]:
    """``--json`` (parameter ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def db_option(
    help: str = f"Database: a file, or a postgresql:// URL (default: ${config.DB_ENV} or ./{config.DEFAULT_DB}).",
) -> Callable[[F], F]:
    """``--db``: a path or a URL, kept as given (:func:`faceledger.config.database` reads it)."""
    return click.option("--db", metavar="FILE|URL", type=click.Path(dir_okay=False), help=help)


def key_file_option(
    help: str = (
        f"Master key file (default: ${config.KEY_FILE_ENV}, else the database path + '.key'; "
        f"${config.MASTER_KEY_ENV} takes precedence)."
    ),
    envvar: str | None = None,
) -> Callable[[F], F]:
    """``--key-file``."""
    return click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), envvar=envvar, help=help)


recognizer_option = click.option(
    "--recognizer",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=config.RECOGNIZER_ENV,
    help=f"ArcFace-family recognizer ONNX file, or a bundled one by name: sface_2021dec_int8, sface_2021dec "
    f"(default: the one the gallery's templates were made with, else sface_2021dec_int8; ${config.RECOGNIZER_ENV}).",
)
"""``--recognizer`` of the gallery commands that embed faces; :func:`gallery_command` builds the engine from it."""


def executor_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--executor``, ``--ray-address`` and ``--workers`` of the batch commands (see :func:`open_executor`)."""
    command = click.option(
        "--workers",
        type=click.IntRange(min=1),
        envvar="FACELEDGER_WORKERS",
        help="Image workers: threads here, or Ray actors (default: the CPUs of this process or of the cluster).",
    )(command)
    command = click.option(
        "--ray-address",
        envvar="FACELEDGER_RAY_ADDRESS",
        help="Ray cluster to run on (ray://host:10001, or host:6379 on a node of it); default: start a local one.",
    )(command)
    return click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Where the image work runs: threads of this process, or Ray workers (pip install 'faceledger[ray]'), "
        "which read the images by path and return their embeddings to this process, storing nothing.",
    )(command)


@contextmanager
def open_executor(kind: str, engine: Any, workers: int | None, address: str | None) -> Iterator[Any]:
    """The executor the options name, closed (its local Ray cluster stopped) when the command ends."""
    from faceledger.engine.executors import make_executor  # here: importing the engine loads onnxruntime

    if address and kind != "ray":
        raise click.UsageError("--ray-address needs --executor ray")
    executor = make_executor(kind, engine, workers=workers, address=address)
    try:
        yield executor
    finally:
        executor.close()


@dataclass(frozen=True)
class Who:
    """The ``--actor`` and ``--purpose`` a command needs.

    ``actor_is`` ends the message when the actor is missing; ``purpose`` is :data:`REQUIRED`, a default used
    when none is given, or None for an optional purpose.
    """

    actor_is: str = "who is doing this"
    purpose: str | None = REQUIRED

    def resolve(self, actor: str | None, purpose: str | None) -> tuple[str, str]:
        """``(actor, purpose)``, or a usage error naming the one missing (purpose ``""``: none given)."""
        if not actor:
            raise click.UsageError(f"--actor is required (or set {config.ACTOR_ENV}): {self.actor_is}")
        if not purpose and self.purpose == REQUIRED:
            raise click.UsageError(f"--purpose is required (or set {config.PURPOSE_ENV}): why this is done")
        return actor, purpose or self.purpose or ""

    def options(self, func: F) -> F:
        """Add ``--actor`` and ``--purpose`` to ``func``."""
        func = click.option(
            "--purpose",
            envvar=config.PURPOSE_ENV,
            help=f"Why this is done; must be allowed by the policy (${config.PURPOSE_ENV}).",
        )(func)
        return click.option("--actor", envvar=config.ACTOR_ENV, help=f"Who is doing this (${config.ACTOR_ENV}).")(func)


PEOPLE = Who()
"""Commands that touch people: actor and purpose required."""
ADMINISTRATION = Who(purpose="administration")
ROTATION = Who(purpose="key rotation")
REVIEWER = Who(actor_is="the reviewer's identity", purpose=None)
"""Reviews: the actor is the reviewer; the purpose defaults to the search's."""


# ---------------------------------------------------------------------------------------------- errors
MASTER_KEY_HINT = f" (--key-file or {config.MASTER_KEY_ENV})"


def describe(exc: BaseException, unknown: str | None = None) -> str:
    """The message of ``exc`` with what to do next on the command line (``unknown``: the hint for an unknown id).

    The gallery's messages name no flag or command (HTTP clients read them too); the hints do.
    """
    return with_hint(str(exc), _hint(exc, unknown))


def with_hint(message: str, hint: str) -> str:
    """``message`` followed by ``hint``, unless it already says it."""
    return message if not hint or hint.strip(" ;.()") in message else message + hint


def _hint(exc: BaseException, unknown: str | None) -> str:
    if isinstance(exc, AccountabilityError):
        flags = {"actor": f"--actor or {config.ACTOR_ENV}", "purpose": f"--purpose or {config.PURPOSE_ENV}"}
        return f" ({flags[exc.missing]})" if exc.missing in flags else ""
    if isinstance(exc, DatabaseMissingError):  # "...: no faceledger database here; initialise one first"
        return f" with `faceledger --db {exc.location} init`"
    if isinstance(exc, NotInitialisedError):
        return f"; run `faceledger --db {exc.location} init`"
    if isinstance(exc, AlreadyInitialisedError):
        return "; open it instead (or choose another --db)"
    if isinstance(exc, NoConsentError):
        return (
            f". Record it first with `faceledger consent add {exc.subject} "
            "--collected-by ... --legal-basis ... --evidence ...`"
        )
    if isinstance(exc, MasterKeyError):
        return MASTER_KEY_HINT
    if isinstance(exc, UnknownSubjectError) and unknown:
        return f" ({unknown})"
    return ""


@contextmanager
def errors(unknown: str | None = None) -> Iterator[None]:
    """Turn faceledger errors into a message on stderr and an exit code (2 usage, 1 otherwise)."""
    try:
        yield
    except (AccountabilityError, PurposeError, config.ConfigError) as exc:
        raise click.UsageError(describe(exc)) from None
    except PolicyError as exc:
        raise click.BadParameter(str(exc)) from None
    except (FaceledgerError, ValueError, OSError) as exc:
        warn(describe(exc, unknown))
        raise SystemExit(EXIT_FAILED) from None


# ---------------------------------------------------------------------------------------------- the decorator
@dataclass(frozen=True)
class Call:
    """What a gallery command is handed besides its own options and the gallery."""

    out: Output
    db: config.Database
    key_file: Path
    actor: str
    """The actor (``""`` for a command without ``--actor``)."""
    purpose: str
    """The purpose (``""`` for a command without ``--purpose``, or an optional one not given)."""


def database(value: str | None) -> config.Database:
    """The database of this invocation: the command's ``--db``, else the main group's (or ``obj['db']`` of the
    root context), else what :func:`faceledger.config.database` defaults to."""
    if value is None:
        root = click.get_current_context().find_root()
        obj = root.obj
        value = (obj.get("db") if isinstance(obj, dict) else None) or root.params.get("db") or None
    return config.database(value)


def gallery_command(
    *, who: Who | None = None, unknown: str | None = None, opens: bool = True
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add the shared options to a command and hand it ``(gallery, call, **its own options)``.

    ``who``: the command takes ``--actor`` and ``--purpose`` (checked before anything is opened). ``unknown``: the
    hint added when an id is unknown. ``opens=False``: the command gets only ``call`` (``init`` creates the
    gallery itself).
    """

    def decorate(body: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(body)
        def command(db: str | None, key_file: Path | None, as_json: bool, **own: Any) -> None:
            actor, purpose = who.resolve(own.pop("actor"), own.pop("purpose")) if who is not None else ("", "")
            with errors(unknown):
                location = database(db)
                call = Call(Output(as_json), location, config.key_file(location, key_file), actor, purpose)
                if not opens:
                    return body(call, **own)
                engine = _engine(own.pop("recognizer", None))
                with Gallery.open(location, key_file=call.key_file, engine=engine) as gallery:
                    body(gallery, call, **own)

        if who is not None:
            command = who.options(command)
        return db_option()(key_file_option()(json_option()(command)))

    return decorate


def _engine(recognizer: Path | None) -> Any:
    if recognizer is None:
        return None
    from faceledger.engine import Engine

    return Engine(recognizer=recognizer)


def registrar(*commands: click.Command) -> Callable[[click.Group], None]:
    """A ``register(group)`` function adding ``commands`` to a group (the ``faceledger`` main group)."""

    def register(group: click.Group) -> None:
        for command in commands:
            group.add_command(command)

    return register
