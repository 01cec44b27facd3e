"""Video: ``watch`` (identification under a deployment), ``track`` (faces in a video, no database), and
``deployment add|list|change|end`` (the authorisations ``watch`` needs).

``watch --json`` prints one object per line: ``candidate`` when a track raises candidates, ``track`` when a track
ends, ``summary`` at the end. A status line on stderr shows fps, tracks, candidates and dropped frames.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from faceledger.errors import FaceledgerError
from faceledger.gallery import Gallery
from faceledger.interfaces.cli.engine import engine_options, make_engine
from faceledger.interfaces.cli.options import ADMINISTRATION, Call, Who, gallery_command, json_option, registrar
from faceledger.interfaces.cli.render import emit, fail, warn
from faceledger.ledger.records import DeploymentWithState

__all__ = ["deployment_group", "register", "track", "watch"]

WATCHER = Who(actor_is="the operator running the session", purpose=None)


class StatusLine:
    """A one-line status on stderr: rewritten in place on a terminal; otherwise a line every ``every`` seconds and,
    on :meth:`close`, the last status if it was not printed (so a log always ends with the final figures)."""

    def __init__(self, enabled: bool = True, every: float = 10.0) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.every = every
        self._last: float | None = None
        self._unprinted = ""
        self._drawn = False

    def __call__(self, status: Any) -> None:
        if not self.enabled:
            return
        text = (
            f"{status.frames} frames  {status.fps:5.1f} fps  tracks {status.tracks_open} open / {status.tracks} done"
            f"  candidates {status.candidates}  dropped {status.dropped}  gaps {status.gaps}"
        )
        if self.tty:
            click.echo("\r" + text.ljust(100), err=True, nl=False)
            self._drawn = True
        elif self._last is None or time.monotonic() - self._last >= self.every:
            click.echo(text, err=True)
            self._last = time.monotonic()
            self._unprinted = ""
        else:
            self._unprinted = text

    def clear(self) -> None:
        """Blank the line rewritten in place, before a result is printed (the next status draws it again), so the
        result does not start at the end of the status on a terminal that shows stdout and stderr together."""
        if self.enabled and self.tty and self._drawn:
            click.echo("\r" + " " * 100 + "\r", err=True, nl=False)
            self._drawn = False

    def close(self) -> None:
        """End the status: a newline after the line rewritten in place, or the last status not yet printed."""
        if self.enabled and self.tty:
            click.echo("", err=True)
        elif self.enabled and self._unprinted:
            click.echo(self._unprinted, err=True)
            self._unprinted = ""


def _source_arg(source: str) -> str | int:
    return int(source) if source.isdigit() else source


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _text_event(event: dict[str, Any]) -> None:
    kind = event["event"]
    if kind == "candidate":
        names = ", ".join(f"{c['subject']} ({c['similarity']:.3f})" for c in event["candidates"])
        click.echo(f"track {event['track']}: candidate {names} (pending review)")
    elif kind == "track" and event["decision"] == "candidate":
        click.echo(f"track {event['track']} ended: frames {event['first_frame']}-{event['last_frame']}")
    elif kind == "summary":
        click.echo(
            f"{event['frames']} frames ({event['seconds']:.1f} s of video) in {event['wall_s']:.1f} s "
            f"({event['fps']:.1f} fps): {_count(event['tracks'], 'track')}, "
            f"{_count(event['candidates'], 'candidate')}, {event['dropped_frames']} dropped frames"
            + (f", {event['gaps']} gaps" if event.get("gaps") else "")
            + (f"; stopped: {event['reason']}" if event.get("reason", "source ended") != "source ended" else "")
        )


@click.command("watch")
@click.argument("source")
@click.option("--deployment", help="Deployment to run under (default: the one active deployment covering SOURCE).")
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Write the video with every face blurred and tracks drawn."
)
@click.option(
    "--detect-fps",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Detect faces this many times per second (default: every frame; the tracker fills the frames between).",
)
@click.option(
    "--detect-size",
    type=click.IntRange(min=160),
    default=None,
    help="Longer side frames are detected at (default: 0.6 of the frame's, between 640 and 1280; smaller is "
    "faster and misses small faces).",
)
@click.option("--live/--file", "live", default=None, help="Treat SOURCE as live (drop old frames) or as a file.")
@click.option("--quiet", is_flag=True, help="No status line on stderr.")
@gallery_command(who=WATCHER)
def watch(
    g: Gallery,
    call: Call,
    source: str,
    deployment: str | None,
    out: str | None,
    detect_fps: float | None,
    detect_size: int | None,
    live: bool | None,
    quiet: bool,
) -> None:
    """Identify faces in a video file, stream (rtsp://, http://) or camera (/dev/videoN or an index) against the
    watchlist of a deployment valid now, one decision per face track.

    Every candidate waits for human review (`faceledger review list`); faces that match no one leave no trace;
    the session's start, each track with candidates and the stop are on the ledger.
    """
    from faceledger.engine.video import TrackOptions

    status = StatusLine(enabled=not quiet)
    events = g.watch(
        _source_arg(source),
        actor=call.actor,
        deployment=deployment,
        out=out,
        live=live,
        options=TrackOptions(detect_size=detect_size),
        detect_fps=detect_fps,
        on_status=status,
    )
    used = deployment
    try:
        for event in events:
            used = event.get("deployment", used)
            status.clear()
            if call.out.as_json:
                emit(event, compact=True)
            else:
                _text_event(event)
    finally:
        status.close()
    if out is not None:
        shown = any(d.name == used and d.show_candidates for d in g.deployments())
        warn(f"wrote {out} ({'bystanders blurred, candidates shown' if shown else 'every face blurred'})")


@click.command("track")
@click.argument("video_path", metavar="VIDEO")
@json_option("One JSON object per finished track, then a summary, on stdout.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the video with every face blurred.")
@click.option(
    "--detect-size",
    type=click.IntRange(min=160),
    default=None,
    help="Longer side frames are detected at (default: 0.6 of the frame's, between 640 and 1280).",
)
@engine_options
def track(video_path: str, as_json: bool, out: str | None, detect_size: int | None, **engine_kw: Any) -> None:
    """Track the faces of VIDEO (no database, nothing identified): one line per face track."""
    engine = make_engine(**engine_kw)
    started = time.monotonic()
    for event in _tracked(engine, video_path, out, detect_size):
        if as_json:
            emit(event, compact=True)
        elif event["event"] == "track":
            click.echo(
                f"track {event['track']}: frames {event['first_frame']}-{event['last_frame']}, "
                f"best {event['best_frame']}, quality {event['quality']:.2f}"
            )
        else:
            click.echo(f"{event['frames']} frames, {event['tracks']} tracks in {time.monotonic() - started:.1f} s")


def _tracked(engine: Any, path: str, out: str | None, detect_size: int | None) -> Iterator[dict[str, Any]]:
    from faceledger.engine.video import AnonymizedOutput, TrackOptions
    from faceledger.vision.video import VideoWriter, open_video

    try:
        video = open_video(path, live=False)
    except FaceledgerError as exc:
        fail(str(exc))
    started = time.monotonic()
    frames = tracks = 0
    last_time = 0.0
    output: AnonymizedOutput | None = None

    def on_frame(result: Any) -> None:
        nonlocal output, frames, last_time
        frames += 1
        last_time = result.frame.time
        if out is None:
            return
        if output is None:
            height, width = result.frame.image.shape[:2]
            output = AnonymizedOutput(VideoWriter(out, fps=video.fps or 25.0, size=(width, height), audio_from=path))
        output.add(result)

    with video:
        for summary in engine.track(video, options=TrackOptions(detect_size=detect_size), on_frame=on_frame):
            tracks += 1
            yield summary.to_dict()
    if output is not None:
        output.close()
    wall = time.monotonic() - started
    yield {
        "event": "summary",
        "frames": frames,
        "seconds": round(last_time, 3),
        "wall_s": round(wall, 3),
        "fps": round(frames / wall, 2) if wall else 0.0,
        "tracks": tracks,
        "candidates": 0,
        "dropped_frames": video.dropped,
    }


def anonymize_video(engine: Any, path: str, out: str, method: str, as_json: bool) -> None:
    """``faceledger anonymize VIDEO --out FILE``: every face blurred in every frame, audio copied."""
    from faceledger.engine.video import AnonymizedOutput
    from faceledger.vision.video import VideoWriter, open_video

    if Path(out).resolve() == Path(path).resolve():
        fail(f"{out}: the output would overwrite the input")
    try:
        video = open_video(path, live=False)
    except FaceledgerError as exc:
        fail(str(exc))
    started = time.monotonic()
    output: AnonymizedOutput | None = None
    frames = tracks = 0

    def on_frame(result: Any) -> None:
        nonlocal output, frames
        frames += 1
        if output is None:
            height, width = result.frame.image.shape[:2]
            writer = VideoWriter(out, fps=video.fps or 25.0, size=(width, height), audio_from=path)
            output = AnonymizedOutput(writer, method=method, draw=False)
        output.add(result)

    with video:
        for _ in engine.track(video, on_frame=on_frame):
            tracks += 1
    if output is None:
        fail(f"{path}: no frames could be decoded")
    output.close()
    record = {
        "video": path,
        "output": out,
        "frames": frames,
        "faces_tracked": tracks,
        "wall_s": round(time.monotonic() - started, 3),
    }
    if as_json:
        emit(record)
    else:
        click.echo(f"{path} -> {out}: {tracks} faces hidden across {frames} frames")


# ---------------------------------------------------------------------------------------------- deployments
@click.group("deployment")
def deployment_group() -> None:
    """Authorisations for identification in video: who authorised which watchlist, where, when, up to what size."""


@deployment_group.command("add")
@click.argument("name")
@click.option("--gallery", help="The watchlist gallery (default: the policy's only gallery).")
@click.option("--search-purpose", required=True, help="What the watchlist is searched for (allowed by the policy).")
@click.option("--legal-basis", required=True, help="Legal basis of the deployment.")
@click.option("--location", required=True, help="Where the cameras are.")
@click.option(
    "--source",
    "sources",
    multiple=True,
    required=True,
    help="Camera URI, file or pattern (rtsp://10.0.0.*/cam, /footage/*.mp4); repeatable.",
)
@click.option("--authorised-by", required=True, help="The person who authorised the deployment.")
@click.option("--reference", "authorisation_ref", required=True, help="Reference of the authorisation.")
@click.option("--valid-from", help="Start (ISO 8601; default now).")
@click.option("--valid-to", required=True, help="End (ISO 8601).")
@click.option(
    "--max-watchlist", type=click.IntRange(min=1), required=True, help="Largest watchlist the deployment may search."
)
@click.option(
    "--show-candidates",
    is_flag=True,
    help="Let operators see candidates' faces unblurred in output video (bystanders stay blurred).",
)
@click.option(
    "--evaluation",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The report.json of `faceledger evaluate --group-column ...` the deployment relies on (its hash and "
    "per-group error rates are recorded; required when the policy sets identification.max_group_ratio).",
)
@click.option("--evaluation-population", help="Whom the evaluation's data represents (with --evaluation).")
@gallery_command(who=ADMINISTRATION)
def deployment_add(g: Gallery, call: Call, name: str, **fields: Any) -> None:
    """Record deployment NAME (an audit entry); `watch` runs only under a deployment valid now."""
    fields["sources"] = list(fields["sources"])
    record = g.add_deployment(name, actor=call.actor, purpose=call.purpose, **fields)
    _show_deployment(call, record)


@deployment_group.command("list")
@gallery_command()
def deployment_list(g: Gallery, call: Call) -> None:
    """Deployments and their state (scheduled, active, expired, ended), then running video sessions."""
    now = g.now()
    for record in g.deployments():
        if call.out.as_json:
            emit(DeploymentWithState.at(record, now).to_dict(), compact=True)
        else:
            click.echo(
                f"{record.name}  {record.state(now)}  {record.gallery}/{record.purpose}  "
                f"{record.valid_from} .. {record.valid_to}  max {record.max_watchlist}  "
                f"{record.location}  sources: {', '.join(record.sources)}  "
                f"authorised by {record.authorised_by} ({record.authorisation_ref})"
            )
    for item in g.video_sessions():
        if item.state == "stopped":
            continue
        session = item.to_dict()
        if call.out.as_json:
            emit({"event": "session", **session}, compact=True)
        else:
            click.echo(
                f"session {session['id']}  {session['state']}  {session['deployment']}  {session['source']}"
                f"  {session['frames']} frames  {session['candidates']} candidates"
            )


@deployment_group.command("change")
@click.argument("name")
@click.option("--reason", required=True, help="Why it changes.")
@click.option("--valid-to", help="New end (ISO 8601).")
@click.option("--source", "sources", multiple=True, help="Replace the sources; repeatable.")
@click.option("--max-watchlist", type=click.IntRange(min=1), help="New watchlist size limit.")
@gallery_command(who=ADMINISTRATION)
def deployment_change(
    g: Gallery,
    call: Call,
    name: str,
    reason: str,
    valid_to: str | None,
    sources: tuple[str, ...],
    max_watchlist: int | None,
) -> None:
    """Change deployment NAME's end, sources or watchlist size limit (an audit entry with before and after)."""
    record = g.change_deployment(
        name,
        actor=call.actor,
        purpose=call.purpose,
        reason=reason,
        valid_to=valid_to,
        sources=list(sources) or None,
        max_watchlist=max_watchlist,
    )
    _show_deployment(call, record)


@deployment_group.command("end")
@click.argument("name")
@click.option("--reason", required=True, help="Why it ends now.")
@gallery_command(who=ADMINISTRATION)
def deployment_end(g: Gallery, call: Call, name: str, reason: str) -> None:
    """End deployment NAME now; sessions under it stop within a second."""
    _show_deployment(call, g.end_deployment(name, actor=call.actor, purpose=call.purpose, reason=reason))


def _show_deployment(call: Call, record: Any) -> None:
    if call.out.as_json:
        emit(record.to_dict())
    else:
        state = "ended" if record.ended_at else f"valid {record.valid_from} .. {record.valid_to}"
        click.echo(
            f"deployment {record.name}: {record.gallery}/{record.purpose}, {state}, "
            f"watchlist up to {record.max_watchlist}"
        )


register = registrar(watch, track, deployment_group)
