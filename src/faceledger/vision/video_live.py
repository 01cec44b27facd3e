"""Live video: network streams and cameras, decoded by a reader thread that never lets the consumer fall behind.

A reader thread decodes into a small queue that keeps the newest frames: when the consumer is slower than the source,
the oldest waiting frame is discarded (and counted in ``dropped``), so what the consumer gets is always close to now.
When no frame comes within ``read_timeout``, or the stream ends or fails, the reader reconnects with exponential
backoff (0.5 s, doubling up to ``max_backoff``), records a :class:`~faceledger.vision.video_io.Gap` once frames come
again, and goes on numbering frames where it left off. Use :func:`faceledger.vision.video.open_video` to make one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import av
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from faceledger.errors import VideoError
from faceledger.vision.video_io import (
    Frame,
    Gap,
    Target,
    VideoSource,
    checked_stream,
    describe,
    log,
    open_input,
    stream_rate,
    stream_size,
    to_bgr,
)

__all__ = ["LiveSource"]

FIRST_BACKOFF = 0.5
"""Seconds before the first reconnection attempt; each failed attempt doubles the wait, up to ``max_backoff``."""

CLOSE_WAIT = 1.0
"""Seconds :meth:`LiveSource.close` waits for the reader thread. A reader blocked in FFmpeg (a stalled read, a slow
connect) cannot be interrupted from outside: it exits by itself when that call returns, within the timeouts."""


@dataclass(frozen=True)
class _Decoded:
    """A frame as the reader queues it: converted to BGR only when the consumer takes it, so dropped frames cost no
    conversion."""

    index: int
    time: float
    wall: float
    frame: VideoFrame


class LiveSource(VideoSource):
    """A network stream or camera read by a background thread; iterating yields the newest frames as they come.

    The connection is made in the constructor, so a wrong address fails at once with :class:`VideoError`; later
    losses are handled by reconnecting (see the module docstring). Iteration ends when the source is closed, when
    ``reconnect`` is off and the stream fails, or after ``max_reconnect_seconds`` without frames; it raises nothing
    then, and ``end_reason`` says why. A local file opened as live plays at its own frame rate and ends at its end.
    Close it (or use it in a ``with`` block): the reader thread runs until then.
    """

    def __init__(
        self,
        target: Target,
        *,
        queue_size: int = 4,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        reconnect: bool = True,
        max_backoff: float = 10.0,
        max_reconnect_seconds: float | None = None,
    ) -> None:
        super().__init__(target.uri, live=True)
        self._target = target
        self._queue_size = queue_size
        self._timeout = (open_timeout, read_timeout)
        self._reconnect = reconnect
        self._max_backoff = max_backoff
        self._max_reconnect_seconds = max_reconnect_seconds
        self._queue: deque[_Decoded] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._finished = False
        self._index = 0
        self._t0 = time.monotonic()
        self._last_wall = self._t0  # when the last frame came (or the session started)
        self._last_time: float | None = None
        self._pending: tuple[float, str] | None = None  # an open gap: its start and reason
        self._pace_origin: tuple[float, float] | None = None  # files played live: (wall, pts) of the first frame
        container, stream = self._open()
        self.fps = stream_rate(stream)
        self.size = stream_size(stream)
        self._thread = threading.Thread(target=self._run, args=(container, stream), daemon=True,
                                        name=f"faceledger video reader {self.uri}")
        self._thread.start()

    # ------------------------------------------------------------------------------------------ consumer side

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                while not self._queue and not self._finished and not self._stop.is_set():
                    self._cond.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
            yield Frame(item.index, item.time, to_bgr(item.frame), item.wall)

    def close(self) -> None:
        """Stop the reader and end iteration at once, from any thread. The thread itself is waited for up to
        :data:`CLOSE_WAIT` seconds (it closes its connection when it next gets control)."""
        self._stop.set()
        self._finish("closed")
        with self._cond:
            self._queue.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(CLOSE_WAIT)

    # ------------------------------------------------------------------------------------------ reader side

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _open(self) -> tuple[InputContainer, VideoStream]:
        container = open_input(self._target, timeout=self._timeout)
        return container, checked_stream(container, self._target)

    def _run(self, container: InputContainer, stream: VideoStream) -> None:
        try:
            while True:
                reason = self._pump(container, stream)
                container.close()
                if reason is None:
                    return
                if self._target.kind == "file":  # a file does not come back: its end is the end
                    self._finish("end of file" if reason.endswith("the stream ended") else reason)
                    return
                if not self._reconnect:
                    self._finish(reason)
                    log.warning("%s: %s; not reconnecting", self.uri, reason)
                    return
                if self._pending is None:  # a connection that failed before its first frame continues the gap
                    self._pending = (self._last_time if self._last_time is not None else self._now(), reason)
                    log.warning("%s: %s; reconnecting", self.uri, reason)
                opened = self._reopen()
                if opened is None:
                    return
                container, stream = opened
                self.size = stream_size(stream) or self.size  # a camera may come back at another resolution
        except Exception as exc:  # a bug must not leave the consumer waiting forever; say what it was
            self._finish(f"reader failed: {describe(exc, self._target.raw)}")
            log.error("%s: reader thread failed: %s", self.uri, self.end_reason)
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _pump(self, container: InputContainer, stream: VideoStream) -> str | None:
        """Decode until the stream ends, fails or stalls, and say which; ``None`` when the source was closed."""
        read_timeout = self._timeout[1]
        started = time.monotonic()
        last = started
        try:
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return None
                try:
                    frames = packet.decode()
                except av.InvalidDataError:
                    frames = []  # a damaged packet (lost network data): the next keyframe repairs the picture
                for frame in frames:
                    self._deliver(frame)
                    last = time.monotonic()
                # The read timeout only catches silence; a stream that sends data yet no pictures stalls as well.
                if time.monotonic() - last > read_timeout:
                    return f"stalled: no frame for {read_timeout:g} s"
        except av.ExitError:  # PyAV's interrupt callback: no data within the read timeout
            return None if self._stop.is_set() else f"stalled: no data for {read_timeout:g} s"
        except (av.FFmpegError, OSError) as exc:
            return None if self._stop.is_set() else f"disconnected: {describe(exc, self._target.raw)}"
        return None if self._stop.is_set() else "disconnected: the stream ended"

    def _deliver(self, frame: VideoFrame) -> None:
        if self._target.kind == "file" and frame.time is not None:
            # A file played as live: hold each frame until its presentation time, as a camera would deliver it.
            if self._pace_origin is None:
                self._pace_origin = (time.monotonic(), frame.time)
            wall0, pts0 = self._pace_origin
            self._stop.wait(max(0.0, wall0 + frame.time - pts0 - time.monotonic()))
        wall = time.monotonic()
        now = wall - self._t0
        if self._pending is not None:
            start, reason = self._pending
            self._pending = None
            gap = Gap(start, now, now - start, reason)
            self.gaps.append(gap)
            log.warning("%s: frames again after %.1f s (%s)", self.uri, gap.seconds, reason)
        if self.size is None:
            self.size = (frame.width, frame.height)
        item = _Decoded(self._index, now, wall, frame)
        self._index += 1
        self._last_wall, self._last_time = wall, now
        with self._cond:
            self.frames_read += 1
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(item)
            self._cond.notify()

    def _reopen(self) -> tuple[InputContainer, VideoStream] | None:
        """Reconnect with exponential backoff; ``None`` when closed meanwhile or when it gave up."""
        delay = FIRST_BACKOFF
        last_error = ""
        limit = self._max_reconnect_seconds
        while True:
            if limit is not None:
                left = self._last_wall + limit - time.monotonic()
                if left <= 0:
                    self._give_up(limit, last_error)
                    return None
                delay = min(delay, left)
            if self._stop.wait(delay):
                return None
            try:
                opened = self._open()
            except VideoError as exc:
                last_error = str(exc).removeprefix(f"{self.uri}: ")
                log.info("%s: reconnection failed: %s", self.uri, last_error)
                delay = min(delay * 2, self._max_backoff)
                continue
            if self._stop.is_set():
                opened[0].close()
                return None
            self.reconnects += 1
            return opened

    def _give_up(self, limit: float, last_error: str) -> None:
        start, reason = self._pending or (self._now(), "lost")
        self._pending = None
        now = self._now()
        self.gaps.append(Gap(start, now, now - start, reason))
        attempt = f"; last attempt: {last_error}" if last_error else ""
        self._finish(f"gave up after {limit:g} s without frames ({reason}{attempt})")
        log.warning("%s: %s", self.uri, self.end_reason)

    def _finish(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
