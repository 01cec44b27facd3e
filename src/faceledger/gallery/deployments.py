"""Deployments: the authorisation that live or post-event identification in video runs under.

A deployment names who authorised it (person and reference), where (location and sources), which gallery (the
watchlist) for which purpose and on what legal basis, when (valid from/to), and the largest watchlist it allows.
``watch`` refuses to run without one valid now for its source, stops when it expires or is ended, and refuses a
watchlist larger than allowed (the Bridges judgment: no discretion over who is on the list and where it is used).
Adding, changing and ending a deployment are audit entries.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from datetime import datetime

from faceledger.gallery.bias import check_evaluation, read_evaluation
from faceledger.gallery.context import GalleryContext, accountable, moment
from faceledger.gallery.index_sync import allowed_subjects
from faceledger.gallery.thresholds import threshold_for_size
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import DeploymentError, GallerySizeError
from faceledger.ledger.policy import NAME_PATTERN
from faceledger.ledger.records import DeploymentRecord
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import to_text
from faceledger.vision.video import redact_uri

_NAME = re.compile(NAME_PATTERN)


def add_deployment(
    ctx: GalleryContext,
    name: str,
    *,
    actor: str,
    purpose: str,
    gallery: str | None,
    search_purpose: str,
    legal_basis: str,
    location: str,
    sources: Sequence[str],
    authorised_by: str,
    authorisation_ref: str,
    valid_to: datetime | str,
    max_watchlist: int,
    valid_from: datetime | str | None = None,
    show_candidates: bool = False,
    evaluation: str | os.PathLike[str] | None = None,
    evaluation_population: str | None = None,
) -> DeploymentRecord:
    """Record a deployment. ``search_purpose`` is what the watchlist is searched for (one the policy allows for
    ``gallery``); ``sources`` are camera URIs, file paths or shell-style patterns (``rtsp://10.0.0.*/cam``),
    stored with any credentials removed; ``show_candidates`` lets operators see candidates' faces unblurred in
    the output video (bystanders are blurred always). ``evaluation`` is the ``report.json`` of ``faceledger
    evaluate --group-column`` it relies on, and ``evaluation_population`` whom that data represents
    (:mod:`faceledger.gallery.bias`; required when the policy sets ``identification.max_group_ratio``)."""
    actor, purpose = accountable(actor, purpose)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"deployment name {name!r} is not valid: 1-64 letters, digits or _.:- (no spaces)")
    for label, value in (
        ("legal_basis", legal_basis),
        ("location", location),
        ("authorised_by", authorised_by),
        ("authorisation_ref", authorisation_ref),
        ("search_purpose", search_purpose),
    ):
        if not value or not str(value).strip():
            raise ValueError(f"deployment {name!r}: {label} is required")
    patterns = [redact_uri(str(s).strip()) for s in sources if str(s).strip()]
    if not patterns:
        raise ValueError(f"deployment {name!r}: at least one source (camera URI, file or pattern) is required")
    if int(max_watchlist) < 1:
        raise ValueError(f"deployment {name!r}: max_watchlist must be at least 1")
    now = ctx.now()
    start = moment(valid_from, "valid_from") or now
    end = moment(valid_to, "valid_to")
    if end is None or end <= max(start, now):
        raise ValueError(f"deployment {name!r}: valid_to must be later than valid_from and now")
    summary = None if evaluation is None else read_evaluation(evaluation, evaluation_population)
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        gallery_name = ctx.gallery_name(policy, gallery)
        ctx.check_purpose(policy, gallery_name, search_purpose.strip())
        record = DeploymentRecord(
            name=name,
            gallery=gallery_name,
            purpose=search_purpose.strip(),
            legal_basis=str(legal_basis).strip(),
            location=str(location).strip(),
            sources=patterns,
            authorised_by=str(authorised_by).strip(),
            authorisation_ref=str(authorisation_ref).strip(),
            valid_from=to_text(start),
            valid_to=to_text(end),
            max_watchlist=int(max_watchlist),
            show_candidates=bool(show_candidates),
            created_at=to_text(now),
            created_by=actor,
            ended_at=None,
            ended_by=None,
            ended_reason=None,
            evaluation=summary,
        )
        check_watchlist_size(ctx, tx, record)
        tx.add_deployment(record)
        ctx.record(
            tx,
            AuditAction.DEPLOYMENT_ADD,
            actor=actor,
            purpose=purpose,
            at=now,
            gallery=gallery_name,
            policy_hash=policy.hash,
            details=_details(record),
        )
    return record


def change_deployment(
    ctx: GalleryContext,
    name: str,
    *,
    actor: str,
    purpose: str,
    reason: str,
    valid_to: datetime | str | None = None,
    sources: Sequence[str] | None = None,
    max_watchlist: int | None = None,
) -> DeploymentRecord:
    """Change an active or scheduled deployment's end, sources or watchlist size limit (a new authorisation
    should be a new deployment; these are the changes an authoriser makes to the same one)."""
    actor, purpose = accountable(actor, purpose)
    if not reason or not reason.strip():
        raise ValueError("a reason for the change is required")
    changes: dict[str, object] = {}
    if valid_to is not None:
        changes["valid_to"] = to_text(moment(valid_to, "valid_to"))  # type: ignore[arg-type]
    if sources is not None:
        changes["sources"] = [redact_uri(str(s).strip()) for s in sources if str(s).strip()]
        if not changes["sources"]:
            raise ValueError("at least one source is required")
    if max_watchlist is not None:
        if int(max_watchlist) < 1:
            raise ValueError("max_watchlist must be at least 1")
        changes["max_watchlist"] = int(max_watchlist)
    if not changes:
        raise ValueError("nothing to change: give valid_to, sources or max_watchlist")
    now = ctx.now()
    with ctx.write() as tx:
        before = _open(tx, name, now)
        if "valid_to" in changes and str(changes["valid_to"]) <= max(before.valid_from, to_text(now)):
            raise ValueError(f"deployment {name!r}: valid_to must be later than valid_from and now")
        tx.update_deployment(name, **changes)
        after = tx.get_deployment(name)
        assert after is not None
        check_watchlist_size(ctx, tx, after)
        ctx.record(
            tx,
            AuditAction.DEPLOYMENT_CHANGE,
            actor=actor,
            purpose=purpose,
            at=now,
            gallery=before.gallery,
            policy_hash=ctx.refresh_policy(tx).hash,
            details={
                "deployment": name,
                "reason": reason.strip(),
                "before": {k: getattr(before, k) for k in changes},
                "after": {k: getattr(after, k) for k in changes},
            },
        )
    return after


def end_deployment(ctx: GalleryContext, name: str, *, actor: str, purpose: str, reason: str) -> DeploymentRecord:
    """End a deployment now: running sessions under it stop at their next check (within a second)."""
    actor, purpose = accountable(actor, purpose)
    if not reason or not reason.strip():
        raise ValueError("a reason for ending the deployment is required")
    now = ctx.now()
    with ctx.write() as tx:
        record = _open(tx, name, now)
        tx.update_deployment(name, ended_at=to_text(now), ended_by=actor, ended_reason=reason.strip())
        ctx.record(
            tx,
            AuditAction.DEPLOYMENT_END,
            actor=actor,
            purpose=purpose,
            at=now,
            gallery=record.gallery,
            policy_hash=ctx.refresh_policy(tx).hash,
            details={"deployment": name, "reason": reason.strip()},
        )
        ended = tx.get_deployment(name)
    assert ended is not None
    return ended


def deployments(ctx: GalleryContext) -> list[DeploymentRecord]:
    """Every deployment, oldest first (they hold no personal data of the people searched for)."""
    with ctx.store.read() as tx:
        return tx.list_deployments()


def get_deployment(ctx: GalleryContext, name: str) -> DeploymentRecord:
    """One deployment by name; :class:`DeploymentError` names the known ones when there is none."""
    with ctx.store.read() as tx:
        record = tx.get_deployment(name)
        if record is None:
            raise DeploymentError(_unknown(tx, name))
    return record


def check_watchlist_size(ctx: GalleryContext, tx: Transaction, record: DeploymentRecord) -> None:
    """Refuse a deployment whose watchlist, at its size limit, the recognizer's calibration cannot hold to the
    policy's target FPIR (counting one template per entry: the least it can search), or whose evaluation the
    policy's ``max_group_ratio`` does not accept (:func:`faceledger.gallery.bias.check_evaluation`)."""
    try:
        size = record.max_watchlist
        full = threshold_for_size(ctx, tx, record.gallery, subjects=size, comparisons=size)
    except GallerySizeError as exc:
        raise DeploymentError(
            f"deployment {record.name!r} with a watchlist of up to {record.max_watchlist:,}: {exc}"
        ) from None
    # bias checked before use: the evaluation at the threshold the deployment runs at with its watchlist full
    limit = ctx.policy.policy.identification.max_group_ratio
    card = ctx.engine.recognizer.card
    check_evaluation(record, limit, threshold=full.threshold, model_sha256=(card.sha256, *card.same_embeddings_as))


def source_allowed(record: DeploymentRecord, source: str) -> bool:
    """Whether ``source`` (compared without credentials) is one of the deployment's sources or patterns."""
    bare = _bare(source)
    return any(bare == _bare(p) or fnmatch.fnmatchcase(bare, _bare(p)) for p in record.sources)


def _bare(uri: str) -> str:
    """``uri`` without credentials at all (``rtsp://***@host/x`` and ``rtsp://host/x`` are the same camera)."""
    return redact_uri(uri).replace("://***@", "://", 1)


def authorise(
    ctx: GalleryContext, tx: Transaction, name: str | None, source: str, now: datetime
) -> tuple[DeploymentRecord, int]:
    """The deployment that authorises identification on ``source`` now, and the watchlist size it will search.

    With ``name`` None, the one active deployment whose sources cover ``source`` (several: the caller must
    choose). Raises :class:`DeploymentError` saying what is missing."""
    redacted = redact_uri(source)
    if name is None:
        covering = [d for d in tx.list_deployments() if d.state(now) == "active" and source_allowed(d, source)]
        if not covering:
            raise DeploymentError(
                f"no deployment active now covers {redacted}: identification in video needs one "
                "(`faceledger deployment add`)"
            )
        if len(covering) > 1:
            raise DeploymentError(
                f"several deployments cover {redacted}; choose one with --deployment: "
                + ", ".join(d.name for d in covering)
            )
        record = covering[0]
    else:
        found = tx.get_deployment(name)
        if found is None:
            raise DeploymentError(_unknown(tx, name))
        record = found
    state = record.state(now)
    if state != "active":
        when = {
            "scheduled": f"starts {record.valid_from}",
            "expired": f"expired {record.valid_to}",
            "ended": f"was ended {record.ended_at}: {record.ended_reason}",
        }[state]
        raise DeploymentError(f"deployment {record.name!r} is not active now: it {when}")
    if not source_allowed(record, source):
        raise DeploymentError(
            f"deployment {record.name!r} does not cover {redacted}; its sources: {', '.join(record.sources)}"
        )
    check_evaluation(record, ctx.policy.policy.identification.max_group_ratio)  # the policy may have changed
    size = len(allowed_subjects(ctx, tx, record.gallery, record.purpose, now).subjects)
    if size > record.max_watchlist:
        raise DeploymentError(
            f"gallery {record.gallery!r} holds {size} searchable subjects; deployment {record.name!r} allows at "
            f"most {record.max_watchlist}"
        )
    return record, size


def _open(tx: Transaction, name: str, now: datetime) -> DeploymentRecord:
    record = tx.get_deployment(name)
    if record is None:
        raise DeploymentError(_unknown(tx, name))
    if record.state(now) in ("ended", "expired"):
        raise DeploymentError(f"deployment {name!r} is {record.state(now)}; record a new one instead")
    return record


def _unknown(tx: Transaction, name: str) -> str:
    known = [d.name for d in tx.list_deployments()]
    return f"no deployment {name!r}" + (f"; deployments: {', '.join(known)}" if known else "; none is recorded")


def _details(record: DeploymentRecord) -> dict[str, object]:
    body = record.to_dict()
    for key in ("created_at", "created_by", "ended_at", "ended_by", "ended_reason"):
        body.pop(key, None)
    body["deployment"] = body.pop("name")
    return body
