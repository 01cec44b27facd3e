"""Gallery and ledger commands: init, policy, consent, enroll, subjects, identify, review, erase, purge,
audit, report, keys.

Every command takes ``--db PATH`` (default: the group's ``--db``, else ``$FACELEDGER_DB``, else
``./faceledger.db``) and ``--json`` (one JSON object per line on stdout, stable keys). Commands that touch
people need ``--actor`` and ``--purpose`` (or ``$FACELEDGER_ACTOR`` / ``$FACELEDGER_PURPOSE``).

Exit codes: 0 success; 1 some inputs failed (each named on stderr, the rest processed), a refusal (no consent,
unknown subject) or a failed audit verification; 2 usage error (bad option, missing actor or purpose, a
purpose the policy does not allow).
"""

from __future__ import annotations

import csv
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from faceledger.errors import FaceledgerError
from faceledger.gallery import Gallery, default_key_file
from faceledger.gallery.service import DB_ENV
from faceledger.ledger import (
    EXAMPLE_POLICY,
    ROLES,
    AccountabilityError,
    AuditHead,
    PolicyError,
    PurposeError,
)

__all__ = ["register"]

ACTOR_ENV = "FACELEDGER_ACTOR"
PURPOSE_ENV = "FACELEDGER_PURPOSE"
F = TypeVar("F", bound=Callable[..., Any])


# helpers
def _emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, sort_keys=False, ensure_ascii=False))


def _warn(message: str) -> None:
    click.echo(f"faceledger: {message}", err=True)


def _db_path(ctx: click.Context, db: Path | None) -> Path:
    """Command flag > group flag (``ctx.obj['db']`` or the root's ``db``) > $FACELEDGER_DB > default."""
    if db is not None:
        return db
    obj = ctx.find_root().obj
    if isinstance(obj, dict) and obj.get("db"):
        return Path(obj["db"])
    root_db = ctx.find_root().params.get("db")
    if root_db:
        return Path(root_db)
    return Path(os.environ.get(DB_ENV) or "faceledger.db")


_recognizer = click.option(
    "--recognizer",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="FACELEDGER_RECOGNIZER",
    help="ArcFace-family recognizer ONNX file (default: bundled SFace; $FACELEDGER_RECOGNIZER).",
)


def _common(func: F) -> F:
    """``--db``, ``--key-file`` and ``--json`` on every command."""
    func = click.option("--json", "as_json", is_flag=True, help="One JSON object per line on stdout.")(func)
    func = click.option(
        "--key-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Master key file (default: $FACELEDGER_KEY_FILE, else the database path + '.key'; "
        "$FACELEDGER_MASTER_KEY takes precedence).",
    )(func)
    func = click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Database file (default: ${DB_ENV} or ./faceledger.db).",
    )(func)
    return func


def _who(func: F) -> F:
    """``--actor`` and ``--purpose`` (or the environment)."""
    func = click.option(
        "--purpose",
        envvar=PURPOSE_ENV,
        help=f"Why this is done; must be allowed by the policy (${PURPOSE_ENV}).",
    )(func)
    func = click.option("--actor", envvar=ACTOR_ENV, help=f"Who is doing this (${ACTOR_ENV}).")(func)
    return func


def _engine(recognizer: Path | None) -> Any:
    if recognizer is None:
        return None
    from faceledger.engine import Engine

    return Engine(recognizer=recognizer)


@contextmanager
def _gallery(
    ctx: click.Context, db: Path | None, key_file: Path | None, recognizer: Path | None = None
) -> Iterator[Gallery]:
    path = _db_path(ctx, db)
    with _errors():
        gallery = Gallery.open(path, key_file=key_file or default_key_file(path), engine=_engine(recognizer))
    try:
        with _errors():
            yield gallery
    finally:
        gallery.close()


@contextmanager
def _errors() -> Iterator[None]:
    """Turn faceledger errors into messages on stderr and exit codes (2 usage, 1 otherwise)."""
    try:
        yield
    except (AccountabilityError, PurposeError) as exc:
        raise click.UsageError(str(exc)) from None
    except PolicyError as exc:
        raise click.BadParameter(str(exc)) from None
    except (FaceledgerError, ValueError, OSError) as exc:
        _warn(str(exc))
        sys.exit(1)


def _need(actor: str | None, purpose: str | None) -> tuple[str, str]:
    if not actor:
        raise click.UsageError(f"--actor is required (or set {ACTOR_ENV}): who is doing this")
    if not purpose:
        raise click.UsageError(f"--purpose is required (or set {PURPOSE_ENV}): why this is done")
    return actor, purpose


def _progress(items: list[Any], label: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=label, unit="img", disable=quiet or len(items) < 2 or not sys.stderr.isatty())


def _command(func: F) -> F:
    """Wrap a command body so stray faceledger errors still become clean messages."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _errors():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# init/policy
@click.command("init")
@_common
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy TOML file (default: the commented example policy; see `faceledger policy example`).",
)
@click.option("--actor", envvar=ACTOR_ENV, help=f"Who sets this up (${ACTOR_ENV}; default: your user name).")
@click.pass_context
@_command
def init_command(
    ctx: click.Context,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    policy_file: Path | None,
    actor: str | None,
) -> None:
    """Create a database, its master key file (mode 0600) and its policy."""
    path = _db_path(ctx, db)
    key_path = key_file or default_key_file(path)
    actor = actor or getpass.getuser()
    gallery = Gallery.init(path, actor=actor, policy=policy_file, key_file=key_path)
    try:
        master = "environment" if os.environ.get("FACELEDGER_MASTER_KEY") else str(key_path)
        info = {
            "db": str(path),
            "master_key": master,
            "policy_hash": gallery.policy.hash,
            "galleries": [g.name for g in gallery.policy.policy.galleries],
            "audit_head": gallery.audit_head().to_dict(),  # type: ignore[union-attr]
        }
    finally:
        gallery.close()
    if as_json:
        _emit(info)
    else:
        click.echo(f"initialised {path}")
        click.echo(f"master key: {master} (keep it apart from the database and back it up)")
        click.echo(f"policy: {info['policy_hash']} (galleries: {', '.join(info['galleries'])})")


@click.group("policy")
def policy_group() -> None:
    """Show, check or change the policy in force (its hash is recorded with every decision)."""


@policy_group.command("example")
def policy_example() -> None:
    """Print the commented example policy."""
    click.echo(EXAMPLE_POLICY, nl=False)


@policy_group.command("show")
@_common
@click.pass_context
def policy_show(ctx: click.Context, db: Path | None, key_file: Path | None, as_json: bool) -> None:
    """Print the policy in force and its hash."""
    with _gallery(ctx, db, key_file) as g:
        if as_json:
            _emit({"hash": g.policy.hash, "policy": g.policy.policy.model_dump(), "text": g.policy.text})
        else:
            click.echo(f"# policy {g.policy.hash}")
            click.echo(g.policy.text, nl=False)


@policy_group.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def policy_check(file: Path, as_json: bool) -> None:
    """Validate a policy file without putting it in force."""
    from faceledger.ledger import load_policy

    try:
        loaded = load_policy(file)
    except PolicyError as exc:
        if as_json:
            _emit({"file": str(file), "valid": False, "problems": [list(p) for p in exc.problems]})
        _warn(str(exc))
        sys.exit(1)
    if as_json:
        _emit({"file": str(file), "valid": True, "hash": loaded.hash})
    else:
        click.echo(f"{file}: valid, hash {loaded.hash}")


@policy_group.command("set")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_common
@_who
@click.pass_context
def policy_set(
    ctx: click.Context,
    file: Path,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Put a new policy in force (recorded on the ledger)."""
    actor, _ = _need(actor, "administration")
    with _gallery(ctx, db, key_file) as g:
        old = g.policy.hash
        loaded = g.set_policy(file, actor=actor, purpose=purpose or "administration")
    if as_json:
        _emit({"previous_hash": old, "hash": loaded.hash})
    else:
        click.echo(f"policy {loaded.hash} in force (was {old})")


# consent
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
@_common
@_who
@click.pass_context
def consent_add(
    ctx: click.Context,
    subject: str,
    collected_by: str,
    legal_basis: str,
    evidence_ref: str,
    given_at: str | None,
    expires_at: str | None,
    gallery: str | None,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Record SUBJECT's consent to be enrolled and searched for --purpose."""
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file) as g:
        record = g.add_consent(
            subject,
            actor=actor,
            collected_by=collected_by,
            legal_basis=legal_basis,
            purpose=purpose,
            evidence_ref=evidence_ref,
            given_at=given_at,
            expires_at=expires_at,
            gallery=gallery,
        )
        now = g._now()
    if as_json:
        _emit(record.to_dict(now))
    else:
        click.echo(f"consent {record.id} recorded for {subject} ({record.gallery}/{record.purpose})")


@consent_group.command("withdraw")
@click.argument("subject")
@click.option("--consent", "consent_id", help="Withdraw only this consent record.")
@click.option("--reason", default="consent withdrawn", show_default=True)
@_common
@_who
@click.pass_context
def consent_withdraw(
    ctx: click.Context,
    subject: str,
    consent_id: str | None,
    reason: str,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Withdraw SUBJECT's consent; with no valid consent left, the subject is erased."""
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file) as g:
        result = g.withdraw_consent(subject, actor=actor, purpose=purpose, consent_id=consent_id, reason=reason)
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(f"withdrew {len(result.withdrawn)} consent(s) of {subject}")
        if result.erasure is not None:
            e = result.erasure
            click.echo(f"erased {subject}: {e.templates_destroyed} template(s), key destroyed (audit #{e.audit_seq})")


@consent_group.command("list")
@click.argument("subject", required=False)
@click.option("--gallery", help="Only this gallery.")
@_common
@_who
@click.pass_context
def consent_list(
    ctx: click.Context,
    subject: str | None,
    gallery: str | None,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """List consent records (of SUBJECT, or all)."""
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file) as g:
        records = g.consents(subject, actor=actor, purpose=purpose, gallery=gallery)
        now = g._now()
    for record in records:
        if as_json:
            _emit(record.to_dict(now))
        else:
            until = record.expires_at or "no expiry"
            click.echo(
                f"{record.id}  {record.subject_id}  {record.gallery}/{record.purpose}  {record.state(now)}  "
                f"given {record.given_at}  until {until}  by {record.collected_by}"
            )


# enroll
def _enroll_text(result: Any) -> None:
    for outcome in result.outcomes:
        if outcome.status == "rejected":
            _warn(f"{outcome.source}: {outcome.reason}")
    for warning in result.warnings:
        _warn(f"warning: {warning}")
    click.echo(
        f"{result.subject}: {len(result.enrolled)} enrolled, {len(result.skipped)} already enrolled, "
        f"{len(result.rejected)} rejected; {result.templates_total} template(s) in {result.gallery}"
    )


@click.command("enroll")
@click.argument("subject")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--consent", "consent_id", help="Consent record to rely on (default: the valid one for --purpose).")
@click.option("--face", "face_index", type=int, help="Face to enroll when an image has several (0 = largest).")
@click.option("--gallery", help="Gallery (default: the policy's only gallery).")
@_recognizer
@_common
@_who
@click.pass_context
def enroll_command(
    ctx: click.Context,
    subject: str,
    images: tuple[Path, ...],
    consent_id: str | None,
    face_index: int | None,
    gallery: str | None,
    recognizer: Path | None,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Enroll SUBJECT from one or more IMAGES (one transaction; needs a valid consent).

    Each image must show exactly one usable face (or use --face). Images already enrolled are skipped, so
    rerunning resumes. Exit code 1 when an image was rejected (named on stderr) or consent is missing.
    """
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file, recognizer) as g:
        result = g.enroll(
            subject,
            list(images),
            actor=actor,
            purpose=purpose,
            gallery=gallery,
            consent_id=consent_id,
            face_index=face_index,
        )
    if as_json:
        _emit(result.to_dict())
        for outcome in result.rejected:
            _warn(f"{outcome.source}: {outcome.reason}")
    else:
        _enroll_text(result)
    if result.rejected:
        sys.exit(1)


@click.command("enroll-batch")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gallery", help="Gallery (default: the policy's only gallery).")
@_recognizer
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_common
@_who
@click.pass_context
def enroll_batch_command(
    ctx: click.Context,
    manifest: Path,
    gallery: str | None,
    recognizer: Path | None,
    quiet: bool,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Enroll many subjects from a CSV with columns ``subject,image`` (paths relative to the CSV).

    One transaction per subject: an interruption leaves no half-enrolled subject, and running the same
    command again resumes where it stopped.
    """
    actor, purpose = _need(actor, purpose)
    groups: dict[str, list[Path]] = {}
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"subject", "image"} <= set(reader.fieldnames):
            raise click.BadParameter(f"{manifest}: needs the columns subject,image", param_hint="MANIFEST")
        for row in reader:
            image = Path(row["image"])
            groups.setdefault(row["subject"].strip(), []).append(
                image if image.is_absolute() else manifest.parent / image
            )
    failed = False
    with _gallery(ctx, db, key_file, recognizer) as g:
        items = list(groups.items())
        bar = _progress(items, "enrolling", quiet)
        for subject, outcome in g.enroll_batch(bar, actor=actor, purpose=purpose, gallery=gallery):
            if isinstance(outcome, FaceledgerError):
                failed = True
                _warn(f"{subject}: {outcome}")
                if as_json:
                    _emit({"subject": subject, "error": str(outcome)})
                continue
            failed = failed or bool(outcome.rejected)
            if as_json:
                _emit(outcome.to_dict())
                for rejected in outcome.rejected:
                    _warn(f"{rejected.source}: {rejected.reason}")
            else:
                _enroll_text(outcome)
    if failed:
        sys.exit(1)


@click.command("subjects")
@click.option("--gallery", help="Only this gallery.")
@_common
@_who
@click.pass_context
def subjects_command(
    ctx: click.Context,
    gallery: str | None,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """List enrolled subjects with their template count and consent state."""
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file) as g:
        subjects = g.subjects(actor=actor, purpose=purpose, gallery=gallery)
    for s in subjects:
        if as_json:
            _emit(s.to_dict())
        else:
            click.echo(f"{s.id}  {s.gallery}  {s.templates} template(s)  consent {s.consent}  since {s.created_at}")


# identify
@click.command("identify")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gallery", help="Gallery to search (default: the policy's only gallery).")
@click.option("--top-k", type=click.IntRange(1, 100), help="Candidates per face (default: the policy's top_k).")
@_recognizer
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_common
@_who
@click.pass_context
def identify_command(
    ctx: click.Context,
    images: tuple[Path, ...],
    gallery: str | None,
    top_k: int | None,
    recognizer: Path | None,
    quiet: bool,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Search every face of each IMAGE against the gallery (1:N).

    Per face: its box and the candidates at or above the policy threshold (``subject``, ``similarity``),
    pending human review. Faces that match no one are discarded and leave no trace.
    """
    actor, purpose = _need(actor, purpose)
    failed = False
    with _gallery(ctx, db, key_file, recognizer) as g:
        for image in _progress(list(images), "identifying", quiet):
            try:
                result = g.identify(image, actor=actor, purpose=purpose, gallery=gallery, top_k=top_k)
            except (AccountabilityError, PurposeError):
                raise
            except (FaceledgerError, OSError) as exc:
                failed = True
                _warn(f"{image}: {exc}" if str(image) not in str(exc) else str(exc))
                if as_json:
                    _emit({"image": str(image), "error": str(exc), "faces": []})
                continue
            if as_json:
                _emit(result.to_dict())
            else:
                click.echo(f"{image}: {len(result.faces)} face(s), threshold {result.threshold:.3f}")
                for face in result.faces:
                    box = ", ".join(f"{v:.0f}" for v in face.box)
                    if face.candidates:
                        names = ", ".join(
                            f"{c.subject} ({c.similarity:.3f}, candidate {c.candidate_id})" for c in face.candidates
                        )
                        click.echo(f"  face {face.index} [{box}]: {names}  -> pending review")
                    else:
                        click.echo(f"  face {face.index} [{box}]: no match")
    if failed:
        sys.exit(1)


@click.command("verify-subject")
@click.argument("subject")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gallery", help="Gallery of the subject (default: the policy's only gallery).")
@_recognizer
@_common
@_who
@click.pass_context
def verify_subject_command(
    ctx: click.Context,
    subject: str,
    image: Path,
    gallery: str | None,
    recognizer: Path | None,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """1:1: is the largest face in IMAGE the enrolled SUBJECT? (recorded on the ledger)"""
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file, recognizer) as g:
        result = g.verify_subject(subject, image, actor=actor, purpose=purpose, gallery=gallery)
    if as_json:
        _emit(result.to_dict())
    else:
        verdict = "match" if result.match else "no match"
        click.echo(
            f"{image}: {verdict} for {subject} (similarity {result.similarity:.3f}, threshold {result.threshold:.3f})"
        )


# review
@click.group("review")
def review_group() -> None:
    """Human review of candidates: a match counts only after the policy's number of reviewers confirm."""


@review_group.command("list")
@click.option("--gallery", help="Only this gallery.")
@_common
@_who
@click.pass_context
def review_list(
    ctx: click.Context,
    gallery: str | None,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """List candidates awaiting review."""
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file) as g:
        pending = g.pending_reviews(actor=actor, purpose=purpose, gallery=gallery)
    for item in pending:
        c = item.candidate
        if as_json:
            _emit(item.to_dict())
        else:
            click.echo(
                f"{c.id}  {c.subject_id}  similarity {c.similarity:.3f}  face {c.face_index} of probe "
                f"{c.probe_sha256[:12]}  {c.gallery}/{c.purpose}  "
                f"{item.confirmations}/{item.required} confirmed  {c.created_at}"
            )


def _review(
    ctx: click.Context,
    decision: str,
    candidate: str,
    reason: str,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    if not actor:
        raise click.UsageError(f"--actor is required (or set {ACTOR_ENV}): the reviewer's identity")
    with _gallery(ctx, db, key_file) as g:
        outcome = g.review(candidate, reviewer=actor, decision=decision, reason=reason, purpose=purpose)
    if as_json:
        _emit(outcome.to_dict())
    else:
        click.echo(
            f"candidate {candidate} ({outcome.candidate.subject_id}): {outcome.status} "
            f"({outcome.confirmations}/{outcome.required} confirmations)"
        )


@review_group.command("confirm")
@click.argument("candidate")
@click.option("--reason", required=True, help="What the reviewer checked.")
@_common
@_who
@click.pass_context
def review_confirm(
    ctx: click.Context,
    candidate: str,
    reason: str,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Confirm CANDIDATE as the same person (reviewer = --actor)."""
    _review(ctx, "confirm", candidate, reason, db, key_file, as_json, actor, purpose)


@review_group.command("reject")
@click.argument("candidate")
@click.option("--reason", required=True, help="Why it is not the same person.")
@_common
@_who
@click.pass_context
def review_reject(
    ctx: click.Context,
    candidate: str,
    reason: str,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Reject CANDIDATE (reviewer = --actor)."""
    _review(ctx, "reject", candidate, reason, db, key_file, as_json, actor, purpose)


# erase/purge
@click.command("erase")
@click.argument("subject")
@click.option("--reason", default="erasure request", show_default=True)
@_common
@_who
@click.pass_context
def erase_command(
    ctx: click.Context,
    subject: str,
    reason: str,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Erase SUBJECT: templates and data key destroyed, space reclaimed, receipt on the ledger."""
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file) as g:
        receipt = g.erase(subject, actor=actor, purpose=purpose, reason=reason)
    if as_json:
        _emit(receipt.to_dict())
    else:
        click.echo(
            f"erased {subject}: {receipt.templates_destroyed} template(s), data key "
            f"{'destroyed' if receipt.key_id else 'none'}, {receipt.candidates_deleted} candidate(s); "
            f"receipt: audit #{receipt.audit_seq} {receipt.audit_hash}"
        )
        if not receipt.reclaimed:
            _warn("another process kept the database open: space not fully reclaimed yet; run `purge` later")


@click.command("purge")
@_common
@click.option("--actor", envvar=ACTOR_ENV, default="retention", show_default=True, help="Who runs the purge.")
@click.option("--purpose", envvar=PURPOSE_ENV, default="retention", show_default=True)
@click.pass_context
def purge_command(
    ctx: click.Context, db: Path | None, key_file: Path | None, as_json: bool, actor: str, purpose: str
) -> None:
    """Apply the policy's retention periods now (expired consents erase their subjects)."""
    with _gallery(ctx, db, key_file) as g:
        report = g.purge(actor=actor, purpose=purpose)
    if as_json:
        _emit(report.to_dict())
    else:
        click.echo(
            f"expired consents: {len(report.consents_expired)}, "
            f"subjects erased: {len(report.subjects_erased)}, "
            f"templates deleted: {report.templates_deleted}, "
            f"consent records deleted: {report.consents_deleted}, "
            f"candidates deleted: {report.candidates_deleted}, "
            f"audit entries purged: {report.audit_entries_purged}"
        )


# audit
@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit ledger: verify, show, export, head."""


def _parse_head(value: str | None) -> AuditHead | None:
    if not value:
        return None
    seq, sep, digest = value.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise click.BadParameter("expected SEQ:HASH as printed by `audit head`", param_hint="--expect")
    return AuditHead(int(seq), digest)


@audit_group.command("verify")
@click.option("--expect", help="A head published earlier (SEQ:HASH from `audit head`); the chain must extend it.")
@_common
@click.pass_context
def audit_verify(ctx: click.Context, expect: str | None, db: Path | None, key_file: Path | None, as_json: bool) -> None:
    """Recompute the chain; exit 1 and name the first entry altered, removed, inserted or reordered."""
    anchor = _parse_head(expect)
    with _gallery(ctx, db, key_file) as g:
        result = g.audit_verify(anchor)
    if as_json:
        _emit(result.to_dict())
    elif result.ok:
        head = result.head
        where = f"head {head.seq}:{head.hash}" if head else "empty"
        click.echo(f"ok: {result.entries} entries verified, {where}")
    if not result.ok:
        _warn(f"audit chain broken at entry {result.bad_seq}: {result.problem}")
        sys.exit(1)


@audit_group.command("head")
@_common
@click.pass_context
def audit_head(ctx: click.Context, db: Path | None, key_file: Path | None, as_json: bool) -> None:
    """Print the last entry's SEQ:HASH, to publish elsewhere as an anchor."""
    with _gallery(ctx, db, key_file) as g:
        head = g.audit_head()
    if head is None:
        _warn("the ledger is empty")
        sys.exit(1)
    if as_json:
        _emit(head.to_dict())
    else:
        click.echo(f"{head.seq}:{head.hash}")


@audit_group.command("show")
@click.option("--after", type=int, default=0, help="Only entries after this sequence number.")
@click.option("--limit", type=int, help="At most this many entries.")
@click.option("--action", help="Only this action (e.g. identify, review, subject.erase).")
@_common
@click.pass_context
def audit_show(
    ctx: click.Context,
    after: int,
    limit: int | None,
    action: str | None,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
) -> None:
    """Print audit entries."""
    with _gallery(ctx, db, key_file) as g:
        entries = g.audit_entries(after_seq=after, limit=limit, action=action)
    for entry in entries:
        data = entry.to_dict()
        if as_json:
            _emit(data)
        else:
            subjects = ",".join(data["subjects"]) or "-"
            click.echo(
                f"#{data['seq']} {data['ts']} {data['action']} actor={data['actor']} "
                f"purpose={data['purpose']} "
                f"gallery={data['gallery'] or '-'} subjects={subjects} {entry.hash[:16]}"
            )


@audit_group.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@_common
@_who
@click.pass_context
def audit_export(
    ctx: click.Context,
    output: Path | None,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Export every entry as JSON lines (the export is itself recorded first)."""
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file) as g:
        entries = g.audit_export(actor=actor, purpose=purpose)
    lines = [json.dumps(e.to_dict(), ensure_ascii=False) for e in entries]
    if output is None:
        for line in lines:
            click.echo(line)
    else:
        output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if as_json:
            _emit({"file": str(output), "entries": len(lines)})
        else:
            click.echo(f"{len(lines)} entries written to {output}")


# report
@click.command("report")
@click.option("--period", type=click.Choice(["day", "week", "month", "year"]), default="month", show_default=True)
@click.option("--since", help="Count from this date (ISO 8601).")
@click.option("--until", help="Count until this date, exclusive (ISO 8601).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write Markdown here.")
@_common
@_who
@click.pass_context
def report_command(
    ctx: click.Context,
    period: str,
    since: str | None,
    until: str | None,
    output: Path | None,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Transparency report: counts per period, gallery and purpose (Markdown, or --json)."""
    actor, purpose = _need(actor, purpose)
    with _gallery(ctx, db, key_file) as g:
        report = g.report(actor=actor, purpose=purpose, period=period, since=since, until=until)
    if output is not None:
        output.write_text(report.to_markdown(), encoding="utf-8")
    if as_json:
        _emit(report.to_dict())
    elif output is None:
        click.echo(report.to_markdown(), nl=False)
    else:
        click.echo(f"report written to {output}")


# keys
@click.group("keys")
def keys_group() -> None:
    """API keys of the REST service."""


@keys_group.command("create")
@click.argument("owner")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the key may do.")
@_common
@_who
@click.pass_context
def keys_create(
    ctx: click.Context,
    owner: str,
    role: str,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Create an API key for OWNER; the token is printed once and never stored."""
    actor, _ = _need(actor, "administration")
    with _gallery(ctx, db, key_file) as g:
        record, token = g.create_api_key(owner, role, actor=actor, purpose=purpose or "administration")
    if as_json:
        _emit({**record.to_dict(), "token": token})
    else:
        click.echo(f"key {record.id} for {owner} ({role}); token (shown once):")
        click.echo(token)


@keys_group.command("list")
@_common
@click.pass_context
def keys_list(ctx: click.Context, db: Path | None, key_file: Path | None, as_json: bool) -> None:
    """List API keys (without secrets)."""
    with _gallery(ctx, db, key_file) as g:
        keys = g.api_keys()
    for key in keys:
        if as_json:
            _emit(key.to_dict())
        else:
            state = "active" if key.active else f"revoked {key.revoked_at}"
            click.echo(f"{key.id}  {key.owner}  {key.role}  {state}  created {key.created_at} by {key.created_by}")


@keys_group.command("revoke")
@click.argument("key_id")
@_common
@_who
@click.pass_context
def keys_revoke(
    ctx: click.Context,
    key_id: str,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Revoke the API key KEY_ID."""
    actor, _ = _need(actor, "administration")
    with _gallery(ctx, db, key_file) as g:
        record = g.revoke_api_key(key_id, actor=actor, purpose=purpose or "administration")
    if as_json:
        _emit(record.to_dict())
    else:
        click.echo(f"key {record.id} revoked")


@keys_group.command("rotate-master")
@_common
@_who
@click.pass_context
def keys_rotate_master(
    ctx: click.Context,
    db: Path | None,
    key_file: Path | None,
    as_json: bool,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Re-wrap every subject key with a new master key (written to the key file).

    Destroy every copy of the old key file afterwards: backups taken before the rotation then become
    unreadable, including the templates of subjects erased since.
    """
    actor, _ = _need(actor, "key rotation")
    with _gallery(ctx, db, key_file) as g:
        info = g.rotate_master_key(actor=actor, purpose=purpose or "key rotation")
    if as_json:
        _emit(info)
    else:
        click.echo(
            f"master key {info['old_master_key_id']} -> {info['new_master_key_id']}: "
            f"{info['subject_keys']} subject key(s) re-wrapped; new key in {info['key_file']}"
        )


COMMANDS: list[click.Command] = [
    init_command,
    policy_group,
    consent_group,
    enroll_command,
    enroll_batch_command,
    subjects_command,
    identify_command,
    verify_subject_command,
    review_group,
    erase_command,
    purge_command,
    audit_group,
    report_command,
    keys_group,
]


def register(group: click.Group) -> None:
    """Add the gallery and ledger commands to ``group`` (the ``faceledger`` main group)."""
    for command in COMMANDS:
        group.add_command(command)
