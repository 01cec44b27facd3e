"""Watching video: identification on a file, stream or camera under a deployment, one decision per face track.

:func:`watch` checks the deployment (valid now, covers the source, watchlist not larger than allowed), puts the
session's start on the ledger, and runs :class:`~faceledger.engine.video.TrackPipeline` over the frames. A track
is searched when it has enough good faces, and again only if a clearly better face arrives, until it raises
candidates: then one ``watch.track`` entry names the subjects and similarities, and the candidates join the review
queue with the camera and time, each with the track's best face as evidence (aligned crop and context crop, the
frame's other faces blurred, encrypted). Tracks that match no one are only counted: no frame, crop, template or
score of them is kept. Every second the session's heartbeat and counts are stored and the deployment re-read, so
ending it (or its expiry) stops the session. The stop is on the ledger with frames, tracks, candidates, dropped
frames and gaps, so the audit grows with tracks and sessions, not frames.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from faceledger.engine.video import AnonymizedOutput, TrackEvidence, TrackOptions, TrackPipeline, TrackSummary
from faceledger.errors import FaceledgerError
from faceledger.gallery.context import GalleryContext, accountable
from faceledger.gallery.deployments import authorise
from faceledger.gallery.evidence import store_evidence
from faceledger.gallery.index_sync import allowed_subjects, search_mask, sync_index
from faceledger.gallery.thresholds import search_threshold, threshold_for_search
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.audit import AuditEntry
from faceledger.ledger.errors import DeploymentError, GallerySizeError
from faceledger.ledger.records import CandidateRecord, DeploymentRecord, SessionWithState, VideoSessionRecord
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import to_text
from faceledger.vision.video import VideoSource, VideoWriter, open_video, redact_uri


@dataclass
class WatchStatus:
    """Live figures of a running session (what the CLI's status line prints)."""

    frames: int = 0
    fps: float = 0.0
    tracks_open: int = 0
    tracks: int = 0
    candidates: int = 0
    dropped: int = 0
    gaps: int = 0
    wall_s: float = 0.0


@dataclass
class _Session:
    id: str
    deployment: DeploymentRecord
    source: str
    actor: str
    threshold: float
    policy_hash: str
    top_k: int
    started: float
    candidate_tracks: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    searched_tracks: set[int] = field(default_factory=set)
    tracks: int = 0
    unusable: int = 0
    no_match: int = 0
    candidates: int = 0


def watch(
    ctx: GalleryContext,
    source: str | int | os.PathLike[str],
    *,
    actor: str,
    deployment: str | None = None,
    out: str | os.PathLike[str] | None = None,
    options: TrackOptions | None = None,
    detect_fps: float | None = None,
    live: bool | None = None,
    on_status: Callable[[WatchStatus], None] | None = None,
    status_every: float = 1.0,
    video: VideoSource | None = None,
) -> Iterator[dict[str, Any]]:
    """Identify the faces of ``source`` against the deployment's watchlist; yields JSON-ready events:

    * ``{"event": "candidate", ...}`` as soon as a track raises candidates (within about a second of a usable face);
    * ``{"event": "track", ...}`` when a track ends: frames, best face box, ``decision`` (``candidate``,
      ``no_match`` or ``unusable``) and its candidates;
    * ``{"event": "summary", ...}`` at the end: frames, seconds, wall time, fps, tracks, candidates, dropped frames.

    ``detect_fps`` detects faces that many times a second (default: every frame). ``video`` is an already open
    source (tests; it is not closed). ``out`` writes the video with every face blurred (candidates too, unless
    the deployment lets operators see them) and the track boxes drawn. A file is read frame by frame without
    dropping; a live source keeps only the newest frames. Raises :class:`DeploymentError` (on the ledger as
    ``watch.refused``) without a deployment that authorises this source now.
    """
    actor = accountable(actor, "video identification")[0]
    raw = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    redacted = redact_uri(raw)
    ctx.threshold()  # a policy the calibration cannot hold is refused before the source is opened
    now = ctx.now()
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        try:
            record, size = authorise(ctx, tx, deployment, raw, now)
            basis = search_threshold(ctx, tx, record.gallery, record.purpose, now)  # at the watchlist's size
        except (DeploymentError, GallerySizeError) as exc:
            refused = str(exc)
        else:
            refused = ""
            session = _Session(
                id=uuid.uuid4().hex,
                deployment=record,
                source=redacted,
                actor=actor,
                threshold=basis.threshold,
                policy_hash=policy.hash,
                top_k=policy.policy.identification.top_k,
                started=time.monotonic(),
            )
            stamp = to_text(now)
            tx.add_video_session(
                VideoSessionRecord(session.id, record.name, redacted, actor, stamp, stamp, None, None, 0, 0, 0, 0, 0)
            )
            _session_entry(
                ctx,
                tx,
                session,
                AuditAction.WATCH_START,
                now,
                {
                    "model": ctx.model_id(),
                    "target_fmr": policy.policy.identification.target_fmr,
                    "threshold_basis": basis.details(),
                    "watchlist_size": size,
                    "max_watchlist": record.max_watchlist,
                },
            )
    if refused:
        with ctx.write() as tx:
            ctx.record(
                tx,
                AuditAction.WATCH_REFUSED,
                actor=actor,
                purpose="video identification",
                at=now,
                policy_hash=policy.hash,
                details={"source": redacted, "deployment": deployment, "reason": refused},
            )
        raise DeploymentError(refused)
    yield from _run(
        ctx,
        session,
        raw,
        out=out,
        options=options,
        detect_fps=detect_fps,
        live=live,
        on_status=on_status,
        status_every=status_every,
        video=video,
    )


def _run(
    ctx: GalleryContext,
    session: _Session,
    raw: str,
    *,
    out: str | os.PathLike[str] | None,
    options: TrackOptions | None,
    detect_fps: float | None,
    live: bool | None,
    on_status: Callable[[WatchStatus], None] | None,
    status_every: float,
    video: VideoSource | None,
) -> Iterator[dict[str, Any]]:
    reason = "source ended"
    frames_seen = 0
    last_time = 0.0
    source: VideoSource | None = video
    output: AnonymizedOutput | None = None
    pipeline: TrackPipeline | None = None
    try:
        if source is None:
            source = open_video(raw, live=live)
        options = options or TrackOptions()
        if detect_fps is not None:
            options = replace(options, detect_every=max(1, round((source.fps or 25.0) / detect_fps)))
        pipeline = TrackPipeline(ctx.engine, fps=source.fps, options=options)
        show = session.deployment.show_candidates
        next_check = time.monotonic() + status_every
        for result in pipeline.run(source):
            frame = result.frame
            frames_seen += 1
            last_time = frame.time
            yield from _decide(ctx, session, result.evidence)
            yield from _ended(session, result.ended)
            if out is not None:
                if output is None:
                    height, width = frame.image.shape[:2]
                    writer = VideoWriter(
                        out, fps=source.fps or 25.0, size=(width, height), audio_from=None if source.live else raw
                    )
                    output = AnonymizedOutput(writer, show=(lambda t: t in session.candidate_tracks) if show else None)
                output.add(result)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + status_every
                stop = _heartbeat(ctx, session, frames_seen, source)
                if on_status is not None:
                    on_status(_status(session, pipeline, source, frames_seen))
                if stop:
                    reason = stop
                    break
        else:
            ended_why = getattr(source, "end_reason", None)
            if ended_why not in (None, "end of file", "closed"):
                reason = ended_why  # e.g. a stream given up after its gaps
        evidence, ended = pipeline.finish()
        yield from _decide(ctx, session, evidence)
        yield from _ended(session, ended)
    except BaseException as exc:
        if isinstance(exc, GeneratorExit | KeyboardInterrupt):
            reason = "interrupted"
        else:  # faceledger's messages carry no credentials; anything else is named by its type only
            reason = f"failed: {exc}" if isinstance(exc, FaceledgerError) else f"failed: {type(exc).__name__}"
        raise
    finally:
        if source is not None and video is None:
            source.close()
        if output is not None:
            output.close()
        summary = _stop(ctx, session, reason, frames_seen, last_time, source)
        if on_status is not None and pipeline is not None and source is not None:
            on_status(_status(session, pipeline, source, frames_seen))
    yield summary


def _decide(ctx: GalleryContext, session: _Session, evidence: list[TrackEvidence]) -> Iterator[dict[str, Any]]:
    """Search the tracks that are ready; raise candidates for those at or above the threshold."""
    todo = [e for e in evidence if e.track not in session.candidate_tracks]
    if not todo:
        return
    d = session.deployment
    vectors = np.stack([e.embedding for e in todo]).astype(np.float32)
    with ctx.write() as tx:
        now_dt = ctx.now()
        index = sync_index(ctx, tx)
        allowed = allowed_subjects(ctx, tx, d.gallery, d.purpose, now_dt)
        # the threshold follows the watchlist's size (entries added or expired during the session)
        session.threshold = threshold_for_search(ctx, tx, d.gallery, index, allowed).threshold
        hits = index.search(
            vectors, session.top_k, allowed=search_mask(index, allowed), min_similarity=session.threshold
        )
        raised = []
        for ev, face_hits in zip(todo, hits, strict=True):
            session.searched_tracks.add(ev.track)
            if not face_hits:
                continue
            now = to_text(now_dt)
            cands: list[dict[str, Any]] = [
                {"subject": h.subject, "similarity": round(float(h.similarity), 4), "candidate_id": uuid.uuid4().hex}
                for h in face_hits
            ]
            box = [round(float(v), 1) for v in ev.box]
            entry = _session_entry(
                ctx,
                tx,
                session,
                AuditAction.WATCH_TRACK,
                now,
                {
                    "track": ev.track,
                    "first_frame": ev.first_frame,
                    "first_s": round(ev.first_time, 3),
                    "best_frame": ev.best_frame,
                    "seen_at_s": round(ev.best_time, 3),
                    "raised_at_s": round(ev.time, 3),
                    "faces": ev.faces,
                    "quality": round(ev.quality, 4),
                    "candidates": [
                        {"subject": c["subject"], "similarity": c["similarity"], "id": c["candidate_id"]} for c in cands
                    ],
                },
                probe_sha256=ev.frame_sha256,
                subjects=tuple(c["subject"] for c in cands),
            )
            for rank, c in enumerate(cands, start=1):
                tx.add_candidate(
                    CandidateRecord(
                        id=c["candidate_id"],
                        search_id=session.id,
                        audit_seq=entry.seq,
                        gallery=d.gallery,
                        purpose=d.purpose,
                        actor=session.actor,
                        probe_sha256=ev.frame_sha256,
                        face_index=ev.best_frame,
                        box=box,
                        subject_id=c["subject"],
                        similarity=c["similarity"],
                        rank=rank,
                        threshold=session.threshold,
                        policy_hash=session.policy_hash,
                        status="pending",
                        created_at=now,
                        decided_at=None,
                        source=session.source,
                        track=ev.track,
                        seen_at=_seen_at(now_dt, ev),
                    )
                )
            if ev.crops is not None:
                ids = [c["candidate_id"] for c in cands]
                store_evidence(ctx, tx, ids, ev.crops, quality=float(ev.quality), now=now)
            session.candidate_tracks[ev.track] = cands
            session.candidates += len(cands)
            raised.append(
                {
                    "event": "candidate",
                    "track": ev.track,
                    "frame": ev.frame,
                    "best_frame": ev.best_frame,
                    "box": box,
                    "candidates": cands,
                }
            )
    yield from raised


def _session_entry(
    ctx: GalleryContext,
    tx: Transaction,
    session: _Session,
    action: AuditAction,
    at: datetime | str,
    details: dict[str, Any],
    *,
    probe_sha256: str | None = None,
    subjects: tuple[str, ...] = (),
) -> AuditEntry:
    """A session's audit entry: its actor, the deployment's purpose and gallery, the threshold and policy in force,
    and details that begin with the session, deployment and source."""
    d = session.deployment
    return ctx.record(
        tx,
        action,
        actor=session.actor,
        purpose=d.purpose,
        at=at,
        gallery=d.gallery,
        probe_sha256=probe_sha256,
        subjects=subjects,
        threshold=session.threshold,
        policy_hash=session.policy_hash,
        details={"session": session.id, "deployment": d.name, "source": session.source, **details},
    )


def _seen_at(now: datetime, ev: TrackEvidence) -> str:
    # the wall-clock moment of the best face: for a live source close to now; for a file, the position in it
    return f"{to_text(now)} (video {ev.best_time:.2f} s)"


def _ended(session: _Session, ended: list[TrackSummary]) -> Iterator[dict[str, Any]]:
    for summary in ended:
        session.tracks += 1
        cands = session.candidate_tracks.get(summary.track, [])
        if cands:
            decision = "candidate"
        elif not summary.usable:
            decision = "unusable"
            session.unusable += 1
        else:
            decision = "no_match"
            session.no_match += 1
        yield summary.to_dict(decision, cands)


def _heartbeat(ctx: GalleryContext, session: _Session, frames: int, source: VideoSource) -> str:
    """Store counts and heartbeat; the reason to stop if the deployment no longer authorises the session."""
    now = ctx.now()
    with ctx.write() as tx:
        tx.update_video_session(
            session.id,
            heartbeat_at=to_text(now),
            frames=frames,
            tracks=session.tracks,
            candidates=session.candidates,
            dropped=source.dropped,
            gaps=len(source.gaps),
        )
        current = tx.get_deployment(session.deployment.name)
        if current is None:
            return "deployment removed"
        state = current.state(now)
        if state != "active":
            return f"deployment {state}"
        # entries added while the session runs count too: the watchlist may not outgrow its authorisation
        size = len(allowed_subjects(ctx, tx, current.gallery, current.purpose, now).subjects)
    if size > current.max_watchlist:
        return f"watchlist of {size} is larger than the {current.max_watchlist} authorised"
    return ""


def _status(session: _Session, pipeline: TrackPipeline, source: VideoSource, frames: int) -> WatchStatus:
    wall = time.monotonic() - session.started
    return WatchStatus(
        frames=frames,
        fps=frames / wall if wall > 0 else 0.0,
        tracks_open=pipeline.open_tracks,
        tracks=session.tracks,
        candidates=session.candidates,
        dropped=source.dropped,
        gaps=len(source.gaps),
        wall_s=wall,
    )


def _stop(
    ctx: GalleryContext, session: _Session, reason: str, frames: int, last_time: float, source: VideoSource | None
) -> dict[str, Any]:
    wall = time.monotonic() - session.started
    dropped = source.dropped if source is not None else 0
    gaps = list(source.gaps) if source is not None else []
    now = ctx.now()
    d = session.deployment
    counts = {
        "frames": frames,
        "seconds": round(last_time, 3),
        "wall_s": round(wall, 3),
        "fps": round(frames / wall, 2) if wall > 0 else 0.0,
        "tracks": session.tracks,
        "candidates": session.candidates,
        "dropped_frames": dropped,
    }
    with ctx.write() as tx:
        tx.update_video_session(
            session.id,
            heartbeat_at=to_text(now),
            stopped_at=to_text(now),
            stop_reason=reason,
            frames=frames,
            tracks=session.tracks,
            candidates=session.candidates,
            dropped=dropped,
            gaps=len(gaps),
        )
        _session_entry(
            ctx,
            tx,
            session,
            AuditAction.WATCH_STOP,
            now,
            {
                "reason": reason,
                **counts,
                "tracks_with_candidates": len(session.candidate_tracks),
                "tracks_no_match": session.no_match,
                "tracks_unusable": session.unusable,
                "gaps": [{"start_s": round(g.start, 3), "end_s": round(g.end, 3), "reason": g.reason} for g in gaps],
                "reconnects": getattr(source, "reconnects", 0),
            },
        )
    return {
        "event": "summary",
        **counts,
        "session": session.id,
        "deployment": d.name,
        "reason": reason,
        "gaps": len(gaps),
    }


def sessions(ctx: GalleryContext, running_only: bool = False, stale_after_s: float = 30.0) -> list[SessionWithState]:
    """Video sessions with their state: ``running``, ``stopped``, or ``lost`` (no heartbeat for ``stale_after_s``:
    the process died without stopping)."""
    now = ctx.now()
    with ctx.store.read() as tx:
        records = tx.list_video_sessions(running_only)
    return [SessionWithState(r, r.state(now, stale_after_s)) for r in records]
