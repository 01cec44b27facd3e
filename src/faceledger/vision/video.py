"""Video in and out: frames from files, network streams and cameras; frames into video files.

:func:`open_video` takes a path, a ``file://`` URL, a network URL (``rtsp://``, ``rtsps://``, ``http(s)://`` MJPEG or
HLS, ``rtmp://``, ``srt://``, ``udp://``), a camera device (``/dev/video0``) or a camera index (``0`` or ``"0"``), and
returns a :class:`VideoSource` that yields :class:`Frame` objects: ``(H, W, 3)`` uint8 BGR images, as everywhere in
faceledger.

* **Files** are decoded completely, in order, with FFmpeg's threads: every frame, none dropped; ``Frame.time`` is the
  presentation time.
* **Live sources** are read by a background thread that keeps only the newest frames, so a consumer slower than the
  source skips frames (counted in ``dropped``) instead of falling behind; ``Frame.time`` is seconds since the session
  started. Stalls and disconnections are survived by reconnecting; each is recorded as a :class:`Gap`.

Credentials in a URL never leave this module: ``uri`` attributes, error messages, gap reasons and log lines carry the
URL through :func:`redact_uri`. :class:`VideoWriter` writes BGR frames as H.264 MP4, keeping the source's sound.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from faceledger.errors import VideoError
from faceledger.vision.video_io import FileSource, Frame, Gap, Target, VideoSource, is_video_file, redact_uri
from faceledger.vision.video_live import LiveSource
from faceledger.vision.video_write import VideoWriter, frame_rate

__all__ = [
    "LIVE_SCHEMES",
    "VIDEO_SUFFIXES",
    "FileSource",
    "Frame",
    "Gap",
    "LiveSource",
    "VideoError",
    "VideoSource",
    "VideoWriter",
    "frame_rate",
    "is_video_file",
    "open_video",
    "redact_uri",
]

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "rtp", "tcp"})
"""URL schemes read as live sources unless ``live=False`` says otherwise."""

VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts", ".wmv", ".flv", ".3gp",
    ".ogv",
})  # fmt: skip
"""Suffixes of video files: an ``http(s)`` URL ending in one is a file to read whole, not a live stream."""

_CAMERA = re.compile(r"/dev/video\d+")


def _target(source: str | int | os.PathLike[str]) -> tuple[Target, bool]:
    """What to open and whether it is live by default."""
    if isinstance(source, bool):
        raise TypeError("a video source is a path, a URL or a camera index, not a bool")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        index = int(source)
        if index < 0:
            raise VideoError(f"camera {index}: camera indexes start at 0")
        source = f"/dev/video{index}"
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise TypeError(f"a video source is a path, a URL or a camera index, not {source!r}")
    if _CAMERA.fullmatch(source):
        return Target(source, source, "camera", format="v4l2"), True
    scheme = source.partition("://")[0].lower() if "://" in source else ""
    if scheme == "file":
        return _file_target(unquote(urlsplit(source).path)), False
    if len(scheme) > 1:  # a one-letter "scheme" is a Windows drive
        uri = redact_uri(source)
        options = {"rtsp_transport": "tcp"} if scheme in ("rtsp", "rtsps") else {}  # UDP loses packets through NAT
        path = urlsplit(source).path.lower()
        live = scheme in LIVE_SCHEMES and not (scheme.startswith("http") and Path(path).suffix in VIDEO_SUFFIXES)
        return Target(source, uri, "url", options=options), live
    return _file_target(source), False


def _file_target(path: str) -> Target:
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{path}: no such file")
    if p.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    return Target(path, path, "file")


def open_video(
    source: str | int | os.PathLike[str],
    *,
    live: bool | None = None,
    queue_size: int = 4,
    open_timeout: float = 10.0,
    read_timeout: float = 5.0,
    reconnect: bool = True,
    max_backoff: float = 10.0,
    max_reconnect_seconds: float | None = None,
) -> VideoSource:
    """Open a video file, stream or camera; iterate the result for :class:`Frame` objects, close it when done.

    ``live`` overrides the guess from ``source`` (URLs of the :data:`LIVE_SCHEMES` and cameras are live, files are
    not): a URL opened with ``live=False`` is read whole, every frame; a file opened with ``live=True`` plays at its
    own frame rate, as a camera would. For live sources, ``queue_size`` is how many frames may wait for the consumer
    (the oldest are discarded past it), ``open_timeout`` and ``read_timeout`` bound connecting and waiting for a
    frame, ``reconnect`` says whether a lost source is reconnected (with backoff from 0.5 s doubling up to
    ``max_backoff``), and ``max_reconnect_seconds`` ends the session after that long without frames (``None``:
    try forever). Raises :class:`VideoError` when the source cannot be opened at all.
    """
    if queue_size < 1:
        raise ValueError(f"queue_size must be at least 1, not {queue_size}")
    if not (open_timeout > 0 and read_timeout > 0 and max_backoff > 0):
        raise ValueError("open_timeout, read_timeout and max_backoff must be positive")
    if max_reconnect_seconds is not None and max_reconnect_seconds < 0:
        raise ValueError(f"max_reconnect_seconds must be >= 0 or None, not {max_reconnect_seconds}")
    target, default_live = _target(source)
    if target.kind == "camera" and not os.path.exists(target.raw):
        raise VideoError(f"{target.uri}: no such camera device (is it plugged in? try `ls /dev/video*`)")
    if not (default_live if live is None else live):
        return FileSource(target, timeout=None if target.kind == "file" else (open_timeout, read_timeout))
    return LiveSource(
        target,
        queue_size=queue_size,
        open_timeout=open_timeout,
        read_timeout=read_timeout,
        reconnect=reconnect,
        max_backoff=max_backoff,
        max_reconnect_seconds=max_reconnect_seconds,
    )
