"""The parts of video input every source shares, and decoding of video files.

:mod:`faceledger.vision.video` is the public face of this module: :class:`Frame`, :class:`Gap`, :class:`VideoSource`,
:func:`redact_uri` and :func:`is_video_file` are defined here and re-exported there. Live sources are in
:mod:`faceledger.vision.video_live`, the writer in :mod:`faceledger.vision.video_write`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self
from urllib.parse import unquote

import av
import numpy as np
from av.container import InputContainer
from av.stream import Disposition
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from faceledger.errors import VideoError

__all__ = ["IMAGE_SUFFIXES", "FileSource", "Frame", "Gap", "VideoSource", "is_video_file", "redact_uri"]

log = logging.getLogger("faceledger.vision.video")

IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff", ".pgm",
    ".ppm", ".pbm", ".pnm", ".pfm", ".jp2", ".j2k", ".heic", ".heif", ".avif", ".exr", ".hdr", ".ico", ".sr", ".ras",
    ".tga", ".qoi", ".jxl",
})  # fmt: skip
"""Suffixes of still images: FFmpeg opens most of them as one-frame "videos", faceledger reads them as images."""

# FFmpeg demuxers that read still images, image sequences or text art rather than video.
_NOT_VIDEO_FORMATS = frozenset({"image2", "image2pipe", "gif", "apng", "ico", "tty", "bin", "xbin", "idf", "adf"})


@dataclass(frozen=True)
class Frame:
    """One decoded picture.

    ``index`` counts frames in decode order from 0 (continuing across reconnects of a live source); ``time`` is the
    presentation time in seconds for files, and seconds since the session started for live sources; ``image`` is a
    C-contiguous ``(H, W, 3)`` uint8 BGR array; ``wall`` is :func:`time.monotonic` when the frame was decoded.
    """

    index: int
    time: float
    image: np.ndarray = field(repr=False)
    wall: float


@dataclass(frozen=True)
class Gap:
    """A stretch of a live session without frames: the source stalled or disconnected.

    ``start`` is the session time of the last frame before the loss (or of the failure, when none had come),
    ``end`` that of the first frame after it (or of giving up), ``seconds`` their difference.
    """

    start: float
    end: float
    seconds: float
    reason: str


@dataclass(frozen=True)
class Target:
    """What FFmpeg is asked to open (``raw``, may hold credentials) and how to name it (``uri``, redacted)."""

    raw: str
    uri: str
    kind: Literal["file", "url", "camera"]
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)


class VideoSource:
    """A sequence of :class:`Frame` objects from a file, stream or camera; iterate it, and close it when done.

    ``uri`` is safe to print (no credentials). ``fps`` and ``size`` (width, height) are what the source announces,
    ``None`` when unknown. ``frames_read`` counts decoded frames, ``dropped`` those discarded because the consumer was
    slower than a live source, ``gaps`` and ``reconnects`` what a live source lived through, ``end_reason`` why the
    iteration ended (``None`` while it runs).
    """

    def __init__(self, uri: str, *, live: bool) -> None:
        self.uri = uri
        self.live = live
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None
        self.duration: float | None = None
        self.frames_read = 0
        self.dropped = 0
        self.gaps: list[Gap] = []
        self.reconnects = 0
        self.end_reason: str | None = None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the source; iteration ends. Safe to call more than once and from another thread."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        size = f"{self.size[0]}x{self.size[1]}" if self.size else "?"
        return f"<{type(self).__name__} {self.uri} live={self.live} fps={self.fps} size={size}>"


# ---------------------------------------------------------------------------------------------- credentials

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")
# Some cameras take their password in the path (rtsp://host/user=admin&password=x&channel=1).
_PATH_SECRET = re.compile(r"(?i)\b((?:user(?:name)?|password|passwd|pwd|pass|token|secret|key|auth|sig(?:nature)?)=)"
                          r"[^&;/?#]*")


def _split(uri: str) -> tuple[str, str, str, str, str] | None:
    """``(scheme, userinfo, host, path, query+fragment)`` of a URL, or ``None`` for anything that is not one."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme) or len(scheme) == 1:  # one letter: a Windows drive
        return None
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:query_at], rest[query_at:]
    # The authority ends at the first "/", unless an "@" follows: a password with an unescaped "/" would otherwise
    # end it early and leak, so the last "@" before the query wins.
    at = head.rfind("@")
    auth_end = head.find("/", max(at, 0))
    auth_end = len(head) if auth_end < 0 else auth_end
    authority, path = head[:auth_end], head[auth_end:]
    userinfo, _, host = authority.rpartition("@")
    return scheme, userinfo, host, path, tail


def redact_uri(uri: str) -> str:
    """``uri`` without credentials: user and password become ``***``, and so does every query value.

    ``rtsp://user:pass@host:554/x?token=abc`` → ``rtsp://***@host:554/x?token=***``. Plain paths, ``file://`` URLs
    and camera indexes come back unchanged.
    """
    text = str(uri)
    parts = _split(text)
    if parts is None or parts[0].lower() == "file":
        return text
    scheme, userinfo, host, path, tail = parts
    query, hash_, fragment = tail.partition("#")
    if query.startswith("?"):
        query = "?" + "&".join(f"{p.partition('=')[0]}=***" if "=" in p else p for p in query[1:].split("&"))
    path = _PATH_SECRET.sub(r"\1***", path)
    return f"{scheme}://{'***@' if userinfo else ''}{host}{path}{query}{hash_}{fragment}"


def _secrets(raw: str) -> list[str]:
    """The credential strings in a URL, longest first, as written and percent-decoded."""
    parts = _split(raw)
    if parts is None:
        return []
    _, userinfo, _, path, tail = parts
    found = [userinfo, *userinfo.split(":", 1)] if userinfo else []
    found += [v for p in tail.lstrip("?").partition("#")[0].split("&") if (v := p.partition("=")[2])]
    found += [m.group(0).partition("=")[2] for m in _PATH_SECRET.finditer(path)]
    found += [unquote(s) for s in found]
    # Very short values would turn ordinary words of the message into stars without protecting anything.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub(text: str, raw: str | None = None) -> str:
    """``text`` (an FFmpeg message, often echoing the URL) with the URL ``raw`` redacted and its secrets starred."""
    if raw:
        text = text.replace(raw, redact_uri(raw))
        for secret in _secrets(raw):
            text = text.replace(secret, "***")
    return _USERINFO.sub(r"\g<scheme>***@", text)


def describe(exc: BaseException, raw: str | None = None) -> str:
    """A short, credential-free account of an FFmpeg (or OS) error."""
    strerror = getattr(exc, "strerror", None)  # av's errors have one; their str() would append the URL
    if isinstance(strerror, str) and strerror:
        return scrub(strerror, raw)
    return scrub(str(exc) or type(exc).__name__, raw)


# ---------------------------------------------------------------------------------------------- opening


def video_stream(container: InputContainer) -> VideoStream | None:
    """The first video stream that is not cover art (an MP3's picture is a "video stream" to FFmpeg)."""
    for stream in container.streams.video:
        if not stream.disposition & Disposition.attached_pic and stream.codec_context.name != "ansi":
            return stream
    return None


def is_image_format(container: InputContainer) -> bool:
    """Whether FFmpeg opened the file with a demuxer for still images or text, not video."""
    names = set(container.format.name.split(","))
    return bool(names & _NOT_VIDEO_FORMATS) or any(n.endswith("_pipe") for n in names)


def open_input(target: Target, *, timeout: tuple[float, float] | None = None) -> InputContainer:
    """Open ``target`` with PyAV, or raise :class:`VideoError` with a clear, credential-free message."""
    failure = ""
    started = time.monotonic()
    try:
        return av.open(target.raw, "r", format=target.format, options=target.options or None, timeout=timeout)
    except (av.FFmpegError, OSError, ValueError) as exc:
        # When PyAV's interrupt callback ends a slow open, FFmpeg reports an exit or (RTSP) invalid data: tell by
        # the clock that it was the timeout.
        if timeout is not None and (isinstance(exc, av.ExitError) or time.monotonic() - started >= timeout[0]):
            failure = f"could not connect within {timeout[0]:g} s"
        else:
            failure = _open_failure(exc, target)
    # Raised out here, not in the except clause, so that the original error (whose text may hold the password)
    # is not chained to it as __context__.
    raise VideoError(f"{target.uri}: {failure}")


def _open_failure(exc: BaseException, target: Target) -> str:
    """Why opening failed, in words for the person who gave the path or URL."""
    if isinstance(exc, FileNotFoundError):
        return "no such camera device" if target.kind == "camera" else "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a video file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, av.InvalidDataError):
        what = "not a video file" if target.kind == "file" else "no video found"
        return f"{what} ({describe(exc, target.raw)})"
    verb = "could not open" if target.kind == "file" else "could not connect"
    return f"{verb} ({describe(exc, target.raw)})"


def checked_stream(container: InputContainer, target: Target) -> VideoStream:
    """The video stream to decode; closes ``container`` and raises :class:`VideoError` when there is none."""
    stream = video_stream(container)
    if stream is not None and not (target.kind == "file" and is_image_format(container)):
        stream.thread_type = "AUTO"  # frame and slice threads: several times faster on multi-core machines
        return stream
    long_name = container.format.long_name
    container.close()
    if stream is not None:
        raise VideoError(f"{target.uri}: not a video file (an image: {long_name}); read it with load_image")
    raise VideoError(f"{target.uri}: not a video file (no video stream)")


def stream_rate(stream: VideoStream) -> float | None:
    """Nominal frames per second of a stream, when the container says."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None


def stream_size(stream: VideoStream) -> tuple[int, int] | None:
    """``(width, height)`` of a stream, when known before decoding."""
    width, height = stream.codec_context.width, stream.codec_context.height
    return (width, height) if width and height else None


def to_bgr(frame: VideoFrame) -> np.ndarray:
    """A decoded frame as a C-contiguous BGR array (rows of padded frames come out as views, hence the copy)."""
    return np.ascontiguousarray(frame.to_ndarray(format="bgr24"))


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a video file faceledger can decode: probed with PyAV, still images excluded.

    FFmpeg opens a JPEG or PNG as a one-frame video; those (by suffix, and by the demuxer FFmpeg picks, so a renamed
    photo is caught too) are not videos here. Missing files, folders and unreadable files are not videos either.
    """
    p = Path(os.fspath(path))
    if p.suffix.lower() in IMAGE_SUFFIXES or not p.is_file():
        return False
    try:
        with av.open(str(p), "r") as container:
            return not is_image_format(container) and video_stream(container) is not None
    except (av.FFmpegError, OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------- files


class FileSource(VideoSource):
    """Every frame of a video file (or of a URL opened with ``live=False``), in order, none dropped."""

    def __init__(self, target: Target, *, timeout: tuple[float, float] | None = None) -> None:
        super().__init__(target.uri, live=False)
        self._target = target
        self._lock = threading.Lock()  # decoding and closing never overlap, whichever thread closes
        self._closed = False
        self._container = open_input(target, timeout=timeout)
        self._stream = checked_stream(self._container, target)
        self.fps = stream_rate(self._stream)
        self.size = stream_size(self._stream)
        if self._stream.duration is not None and self._stream.time_base:
            self.duration = float(self._stream.duration * self._stream.time_base)
        elif self._container.duration:
            self.duration = self._container.duration / av.time_base

    def __iter__(self) -> Iterator[Frame]:
        packets = self._container.demux(self._stream)
        step = 1.0 / self.fps if self.fps else 0.0
        last: float | None = None
        damaged = 0
        error = ""
        while not error:
            with self._lock:
                if self._closed:
                    return
                try:
                    packet = next(packets, None)
                    if packet is None:
                        break
                    frames = packet.decode()
                except av.InvalidDataError:
                    # One damaged packet (a cut download, a bad sector) should not cost the rest of the file.
                    damaged += 1
                    continue
                except (av.FFmpegError, OSError) as exc:
                    error = describe(exc, self._target.raw)
                    continue
            for decoded in frames:
                when = decoded.time if decoded.time is not None else (last + step if last is not None else 0.0)
                image = to_bgr(decoded)
                last = when
                self.frames_read += 1
                yield Frame(self.frames_read - 1, when, image, time.monotonic())
        if damaged:
            log.warning("%s: skipped %d damaged packet(s)", self.uri, damaged)
        if error:  # raised outside the except clause: the original error's text may hold the URL's password
            self.end_reason = f"read error: {error}"
            raise VideoError(f"{self.uri}: read error after frame {self.frames_read} ({error})")
        self.end_reason = "end of file"

    def close(self) -> None:
        """Close the file; a running iteration ends at its next frame."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._container.close()
                self.end_reason = self.end_reason or "closed"
