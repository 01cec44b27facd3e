"""What the commands print: one JSON emitter, and one human-readable renderer per result type.

A command hands its result to :class:`Output`: with ``--json`` the result's JSON form goes to stdout as one
object on one line (stable keys); without, the renderer registered for its type prints it for a person.
Results listed one per line (consents, subjects, API keys, audit entries...) have a row renderer instead.
Messages for a person about what went wrong go to stderr (:func:`warn`), each on one line starting with
``faceledger: `` and, when it is about a file, its name next (``faceledger: photo.jpg: no face found``); progress
bars go to stderr too (:func:`progress`), shown only on a terminal, and everything printed while one is shown
goes through :func:`beside_bars`, so a bar never ends up inside a result line.
The results that exist only on the command line are in :mod:`.views`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click
from tqdm import tqdm

from faceledger.gallery.report import TransparencyReport
from faceledger.gallery.results import (
    ConsentWithdrawal,
    EnrollmentResult,
    ErasureReceipt,
    Identification,
    PendingReview,
    PurgeReport,
    ReviewOutcome,
    SearchThreshold,
    SubjectInfo,
    SubjectVerification,
)
from faceledger.interfaces.cli.views import (
    Anonymized,
    Calibrated,
    Compared,
    Detected,
    Evaluated,
    FileWritten,
    Initialised,
    MasterKeyRotation,
    NewApiKey,
    PolicyChange,
    PolicyValid,
    ReportFile,
    RevokedApiKey,
)
from faceledger.ledger.audit import AuditEntry, AuditHead, VerifyResult
from faceledger.ledger.policy import LoadedPolicy
from faceledger.ledger.records import ApiKey, Consent, UserAccount
from faceledger.ledger.timeutil import utcnow

T = TypeVar("T")
Renderer = Callable[[Any], None]

PREFIX = "faceledger: "
"""What every message of every command on stderr starts with."""


# ---------------------------------------------------------------------------------------------- streams
class _Writes:
    depth = 0
    """How many :func:`beside_bars` blocks are open (only the outermost clears and redraws the bars)."""


@contextmanager
def beside_bars() -> Iterator[None]:
    """Print to stdout or stderr without splicing into a progress bar: a bar being shown is cleared first and
    drawn again after the block (tqdm's external write mode); nested blocks clear it once."""
    if _Writes.depth:
        yield
        return
    _Writes.depth += 1
    try:
        if getattr(tqdm, "_instances", None):  # a bar is shown (disabled bars are not registered)
            with tqdm.external_write_mode(file=sys.stdout):
                yield
        else:
            yield
    finally:
        _Writes.depth -= 1


def emit(obj: Any, *, compact: bool = False) -> None:
    """Print one JSON object on one line of stdout.

    ``compact`` is the style of the evaluation reports: no spaces after separators, non-ASCII escaped.
    """
    separators = (",", ":") if compact else None
    with beside_bars():
        click.echo(json.dumps(obj, ensure_ascii=compact, allow_nan=False, separators=separators))


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``, ``\\x1b``): a file name with a
    newline or a terminal escape in it cannot forge a second message or repaint the terminal."""
    return _CONTROL.sub(lambda m: {"\n": "\\n", "\r": "\\r"}.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def warn(message: str) -> None:
    """Print a message for a person on stderr: one line starting with :data:`PREFIX`, whatever the names in it
    hold."""
    with beside_bars():
        click.echo(f"{PREFIX}{one_line(message)}", err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    warn(message)
    sys.exit(code)


def reason_of(exc: BaseException, name: str) -> str:
    """Why ``name`` failed, without the name: what JSON records carry as ``error`` (messages put the name first).

    An :class:`~faceledger.errors.ImageError` has its ``reason``; other errors lose a leading ``NAME: `` (or the
    ``<image>: `` the engine writes for an input that is not a path).
    """
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot be read: {exc.strerror}"
    text = str(exc)
    for prefix in (f"{name}: ", "<image>: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def progress(
    items: Iterable[T], label: str, quiet: bool = False, *, total: int | None = None, unit: str = "img"
) -> Iterator[T]:
    """Iterate with a progress bar on stderr, shown for several items when stderr is a terminal. ``total`` is the
    count when ``items`` has no length (results coming back from workers)."""
    count = total if total is not None else len(items)  # type: ignore[arg-type]
    return iter(
        tqdm(items, desc=label, unit=unit, total=count, disable=True if quiet or count < 2 else None, file=sys.stderr)
    )


# ---------------------------------------------------------------------------------------------- dispatch
_TEXT: dict[type, Renderer] = {}
_ROWS: dict[type, Renderer] = {}
_JSON: dict[type, Callable[[Any], Any]] = {}


def _register(table: dict[type, Any], kind: type) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    def add(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        table[kind] = func
        return func

    return add


def _lookup(table: dict[type, T], obj: object, what: str) -> T:
    for kind in type(obj).__mro__:
        if kind in table:
            return table[kind]
    raise TypeError(f"no {what} renderer for {type(obj).__name__}")


def json_form(obj: Any) -> Any:
    """What ``--json`` prints for ``obj``: its registered JSON form, else ``obj.to_dict()``."""
    for kind in type(obj).__mro__:
        if kind in _JSON:
            return _JSON[kind](obj)
    return obj.to_dict()


@dataclass(frozen=True)
class Output:
    """Where a command's results go: JSON lines (``as_json``) or text for a person.

    ``compact`` prints JSON without spaces (the evaluation reports).
    """

    as_json: bool = False
    compact: bool = False

    def show(self, result: Any) -> None:
        """Print one result."""
        with beside_bars():
            if self.as_json:
                emit(json_form(result), compact=self.compact)
                _AFTER_JSON.get(type(result), _nothing)(result)
            else:
                _lookup(_TEXT, result, "text")(result)

    def rows(self, items: Iterable[Any]) -> None:
        """Print results one per line."""
        for item in items:
            with beside_bars():
                if self.as_json:
                    emit(json_form(item), compact=self.compact)
                else:
                    _lookup(_ROWS, item, "row")(item)

    def failed(self, message: str, record: dict[str, Any]) -> None:
        """One input failed: ``message`` on stderr, and with ``--json`` its ``record`` (with the error) on stdout."""
        with beside_bars():
            warn(message)
            if self.as_json:
                emit(record, compact=self.compact)

    def failed_image(self, image: str, error: str, hint: str = "", **empty: Any) -> None:
        """Image ``image`` failed: ``faceledger: IMAGE: ERROR`` (then ``hint``) on stderr and, with ``--json``, the
        failure record ``{"image", **empty, "error"}`` on stdout (``empty``: the command's other keys, empty)."""
        self.failed(f"{image}: {error}{hint}", {"image": image, **empty, "error": error})


_AFTER_JSON: dict[type, Renderer] = {}
"""What a result also says on stderr when printed as JSON (its text renderer says it in its own place)."""


def _nothing(result: Any) -> None:
    pass


# ---------------------------------------------------------------------------------------------- JSON forms
_JSON[Consent] = lambda record: record.to_dict(utcnow())
_JSON[LoadedPolicy] = lambda loaded: {
    "hash": loaded.hash,
    "policy": loaded.policy.model_dump(),
    "text": loaded.text,
}


# ---------------------------------------------------------------------------------------------- text: administration
@_register(_TEXT, Initialised)
def _initialised(info: Initialised) -> None:
    click.echo(f"initialised {info.db}")
    click.echo(f"master key: {info.master_key} (keep it apart from the database and back it up)")
    click.echo(f"signing key: {info.signing_key} (signs the ledger's checkpoints; keep it apart from the database)")
    click.echo(f"policy: {info.policy_hash} (galleries: {', '.join(info.galleries)})")


@_register(_TEXT, LoadedPolicy)
def _policy(loaded: LoadedPolicy) -> None:
    click.echo(f"# policy {loaded.hash}")
    click.echo(loaded.text, nl=False)


@_register(_TEXT, SearchThreshold)
def _search_threshold(t: SearchThreshold) -> None:
    fnir = "not measured there" if t.expected_fnir is None else f"{t.expected_fnir:.3f}"
    click.echo(
        f"threshold {t.threshold:.4f} for {t.subjects:,} searchable subject(s) ({t.comparisons:,} template(s)): FMR "
        f"{t.comparison_fmr:.2e} per comparison, the stricter of the 1:1 target ({t.target_fmr:g}) and what the "
        f"target FPIR of {t.target_fpir:g} per searched face allows at this size; expected FPIR "
        f"{t.expected_fpir:.2e}, expected FNIR {fnir}"
        + ("; EXTRAPOLATED beyond the calibration (accepted on the ledger)" if t.extrapolated else "")
    )
    click.echo(f"calibration: {t.calibration}")


@_register(_TEXT, PolicyValid)
def _policy_valid(check: PolicyValid) -> None:
    click.echo(f"{check.file}: valid, hash {check.hash}")


@_register(_TEXT, PolicyChange)
def _policy_change(change: PolicyChange) -> None:
    click.echo(f"policy {change.hash} in force (was {change.previous_hash})")


@_register(_TEXT, NewApiKey)
def _new_key(new: NewApiKey) -> None:
    click.echo(f"key {new.record.id} for {new.record.owner} ({new.record.role}); token (shown once):")
    click.echo(new.token)


@_register(_TEXT, RevokedApiKey)
def _revoked_key(revoked: RevokedApiKey) -> None:
    click.echo(f"key {revoked.record.id} revoked")


@_register(_ROWS, ApiKey)
def _key_row(key: ApiKey) -> None:
    state = "active" if key.active else f"revoked {key.revoked_at}"
    click.echo(f"{key.id}  {key.owner}  {key.role}  {state}  created {key.created_at} by {key.created_by}")


@_register(_TEXT, UserAccount)
def _user(user: UserAccount) -> None:
    if user.active:
        click.echo(f"user {user.name} ({user.role}) active; signs in at /ui of `faceledger serve`")
    else:
        click.echo(f"user {user.name} ({user.role}) disabled since {user.disabled_at}; its sessions ended")


@_register(_ROWS, UserAccount)
def _user_row(user: UserAccount) -> None:
    state = "active" if user.active else f"disabled {user.disabled_at}"
    click.echo(f"{user.name}  {user.role}  {state}  created {user.created_at} by {user.created_by}")


@_register(_TEXT, MasterKeyRotation)
def _rotation(rotation: MasterKeyRotation) -> None:
    info = rotation.info
    click.echo(
        f"master key {info['old_master_key_id']} -> {info['new_master_key_id']}: "
        f"{info['subject_keys']} subject key(s) re-wrapped; new key in {info['key_file']}"
    )


@_register(_TEXT, PurgeReport)
def _purge(report: PurgeReport) -> None:
    click.echo(
        f"expired consents: {len(report.consents_expired)}, "
        f"subjects erased: {len(report.subjects_erased)}, "
        f"templates deleted: {report.templates_deleted}, "
        f"consent records deleted: {report.consents_deleted}, "
        f"candidates deleted: {report.candidates_deleted}, "
        f"audit entries purged: {report.audit_entries_purged}"
    )


# ---------------------------------------------------------------------------------------------- text: consent, people
@_register(_TEXT, Consent)
def _consent_recorded(record: Consent) -> None:
    click.echo(f"consent {record.id} recorded for {record.subject_id} ({record.gallery}/{record.purpose})")


@_register(_ROWS, Consent)
def _consent_row(record: Consent) -> None:
    until = record.expires_at or "no expiry"
    click.echo(
        f"{record.id}  {record.subject_id}  {record.gallery}/{record.purpose}  {record.state(utcnow())}  "
        f"given {record.given_at}  until {until}  by {record.collected_by}"
    )


@_register(_TEXT, ConsentWithdrawal)
def _withdrawal(result: ConsentWithdrawal) -> None:
    click.echo(f"withdrew {len(result.withdrawn)} consent(s) of {result.subject}")
    if result.erasure is not None:
        e = result.erasure
        click.echo(
            f"erased {result.subject}: {e.templates_destroyed} template(s), key destroyed (audit #{e.audit_seq})"
        )


def _name_rejected(result: EnrollmentResult) -> None:
    for outcome in result.rejected:
        warn(f"{outcome.source}: {outcome.reason}")


_AFTER_JSON[EnrollmentResult] = _name_rejected


@_register(_TEXT, EnrollmentResult)
def _enrollment(result: EnrollmentResult) -> None:
    _name_rejected(result)
    for warning in result.warnings:
        warn(f"warning: {warning}")
    click.echo(
        f"{result.subject}: {len(result.enrolled)} enrolled, {len(result.skipped)} already enrolled, "
        f"{len(result.rejected)} rejected; {result.templates_total} template(s) in {result.gallery}"
    )


@_register(_ROWS, SubjectInfo)
def _subject_row(s: SubjectInfo) -> None:
    click.echo(f"{s.id}  {s.gallery}  {s.templates} template(s)  consent {s.consent}  since {s.created_at}")


@_register(_TEXT, ErasureReceipt)
def _erasure(receipt: ErasureReceipt) -> None:
    click.echo(
        f"erased {receipt.subject}: {receipt.templates_destroyed} template(s), data key "
        f"{'destroyed' if receipt.key_id else 'none'}, {receipt.candidates_deleted} candidate(s); "
        f"receipt: audit #{receipt.audit_seq} {receipt.audit_hash}"
    )
    if not receipt.reclaimed:
        warn("another process kept the database open: space not fully reclaimed yet; run `purge` later")


# ---------------------------------------------------------------------------------------------- text: searches, reviews
@_register(_TEXT, Identification)
def _identification(result: Identification) -> None:
    click.echo(f"{result.source}: {len(result.faces)} face(s), threshold {result.threshold:.3f}")
    for face in result.faces:
        box = ", ".join(f"{v:.0f}" for v in face.box)
        if face.candidates:
            names = ", ".join(f"{c.subject} ({c.similarity:.3f}, candidate {c.candidate_id})" for c in face.candidates)
            click.echo(f"  face {face.index} [{box}]: {names}  -> pending review")
        else:
            click.echo(f"  face {face.index} [{box}]: no match")


@_register(_TEXT, SubjectVerification)
def _subject_verification(result: SubjectVerification) -> None:
    verdict = "match" if result.match else "no match"
    click.echo(
        f"{result.source}: {verdict} for {result.subject} "
        f"(similarity {result.similarity:.3f}, threshold {result.threshold:.3f})"
    )


@_register(_ROWS, PendingReview)
def _pending_row(item: PendingReview) -> None:
    c = item.candidate
    seen = (
        f"track {c.track} of {c.source}, seen {c.seen_at}"
        if c.source is not None
        else f"face {c.face_index} of probe {c.probe_sha256[:12]}"
    )
    click.echo(
        f"{c.id}  {c.subject_id}  similarity {c.similarity:.3f}  {seen}  {c.gallery}/{c.purpose}  "
        f"{item.confirmations}/{item.required} confirmed  {c.created_at}"
    )


@_register(_TEXT, ReviewOutcome)
def _review(outcome: ReviewOutcome) -> None:
    click.echo(
        f"candidate {outcome.candidate.id} ({outcome.candidate.subject_id}): {outcome.status} "
        f"({outcome.confirmations}/{outcome.required} confirmations)"
    )


# ---------------------------------------------------------------------------------------------- text: audit, reports
@_register(_TEXT, VerifyResult)
def _audit_verified(result: VerifyResult) -> None:
    if result.ok:  # a broken chain is named on stderr by the command, in both formats
        head = result.head
        where = f"head {head.seq}:{head.hash}" if head else "empty"
        records = "records match the ledger" if result.records_checked else "records not checked (no master key)"
        click.echo(f"ok: {result.entries} entries verified, {where}; {records}")


@_register(_TEXT, AuditHead)
def _audit_head(head: AuditHead) -> None:
    click.echo(f"{head.seq}:{head.hash}")


@_register(_ROWS, AuditEntry)
def _audit_row(entry: AuditEntry) -> None:
    data = entry.to_dict()
    subjects = ",".join(data["subjects"]) or "-"
    click.echo(
        f"#{data['seq']} {data['ts']} {data['action']} actor={data['actor']} purpose={data['purpose']} "
        f"gallery={data['gallery'] or '-'} subjects={subjects} {entry.hash[:16]}"
    )


@_register(_TEXT, FileWritten)
def _file_written(written: FileWritten) -> None:
    click.echo(f"{written.entries} entries written to {written.file}")


@_register(_TEXT, TransparencyReport)
def _report(report: TransparencyReport) -> None:
    click.echo(report.to_markdown(), nl=False)


@_register(_TEXT, ReportFile)
def _report_file(written: ReportFile) -> None:
    click.echo(f"report written to {written.path}")


# ---------------------------------------------------------------------------------------------- text: engine
@_register(_TEXT, Detected)
def _detected(result: Detected) -> None:
    click.echo(f"{result.image}: {len(result.faces)} face(s)")
    for i, face in enumerate(result.faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        why = f"  ({', '.join(face.reasons)})" if face.reasons else ""
        click.echo(f"  #{i} box=({x1},{y1},{x2},{y2}) score={face.score:.2f} quality={face.quality:.2f}{why}")


@_register(_TEXT, Compared)
def _compared(compared: Compared) -> None:
    result = compared.verification
    verdict = "same person" if result.match else "different people"
    fmr_text = f" (false-match rate at the threshold: {result.fmr_text})" if result.fmr_text else ""
    click.echo(f"{verdict}: similarity {result.similarity:.3f}, threshold {result.threshold:.3f}{fmr_text}")
    if result.faces is not None and max(result.faces) > 1:
        click.echo(f"compared the largest face of each image ({result.faces[0]} and {result.faces[1]} faces found)")


@_register(_TEXT, Anonymized)
def _anonymized(result: Anonymized) -> None:
    click.echo(f"{result.image}: {result.hidden} of {result.faces} face(s) hidden -> {result.output}")


# ---------------------------------------------------------------------------------------------- text: evaluation
@_register(_TEXT, Evaluated)
def _evaluated(result: Evaluated) -> None:
    for line in result.report["summary"]:
        click.echo(line)
    click.echo("")
    click.echo(f"Report: {result.outputs['markdown']}  (JSON: {result.outputs['json']})")


@_register(_TEXT, Calibrated)
def _calibrated(calibrated: Calibrated) -> None:
    cal = calibrated.result.calibration
    low, high = cal.fmr_ci
    click.echo(f"threshold {cal.threshold:.6f} for a false-match rate of {calibrated.target_fmr:g}")
    click.echo(
        f"  measured FMR {cal.fmr:.3g} ({cal.false_matches} of {cal.impostor_pairs:,} impostor comparisons); "
        f"{cal.confidence:.0%} interval {low:.3g} - {high:.3g} (Clopper-Pearson)"
    )
    if cal.tar is not None:
        click.echo(f"  true accept rate {cal.tar:.4f} on {cal.genuine_pairs:,} genuine comparisons")
    if not cal.supported:
        warn(f"warning: {cal.reason}")
    for path in calibrated.written:
        click.echo(f"written to {path}")
