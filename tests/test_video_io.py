"""Video in and out, for real: clips made here with PyAV's encoders, an MJPEG server and an RTSP server in the test.

Files must come back whole and in order in every common container and codec; live sources must survive a server that
goes away (one gap, frame numbers running on), must not fall behind a slow consumer, and must never show the
password of their URL; the writer must produce files that read back with the right frames, rate and sound.
"""

from __future__ import annotations

import functools
import http.server
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from faceledger.errors import VideoError
from faceledger.vision.video import (
    FileSource,
    Frame,
    LiveSource,
    VideoWriter,
    frame_rate,
    is_video_file,
    open_video,
    redact_uri,
)

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
SIZE = (128, 96)  # width, height: small enough to be quick, large enough for x265's smallest block


# ------------------------------------------------------------------------------------------------ clips


def colour(i: int) -> tuple[int, int, int]:
    """A background colour (BGR) that differs visibly from frame to frame."""
    return (40 + (i * 37) % 180, 40 + (i * 71) % 180, 40 + (i * 113) % 180)


def picture(i: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Frame ``i``: a solid colour with a white 16-pixel square that moves 6 pixels right per frame."""
    width, height = size
    image = np.empty((height, width, 3), np.uint8)
    image[:] = colour(i)
    x = (6 * i) % (width - 16)
    image[height // 2 - 8 : height // 2 + 8, x : x + 16] = 255
    return image


def square_x(image: np.ndarray) -> int:
    """Left edge of the white square in the middle row."""
    row = image[image.shape[0] // 2].min(axis=1)
    return int(np.argmax(row > 200))


def sine(seconds: float, rate: int, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]


ENCODER_OPTIONS = {
    "libx264": {"preset": "veryfast"},  # keeps B-frames: decode order differs from presentation order
    "libx265": {"preset": "ultrafast", "x265-params": "log-level=none"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
}


def make_clip(path: Path, codec: str = "libx264", *, n: int = 12, fps: int = 25, audio: str | None = None) -> Path:
    """A clip of ``n`` :func:`picture` frames, with a 440 Hz tone in ``audio`` codec if given."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = SIZE
        video.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        video.options = ENCODER_OPTIONS.get(codec, {})
        sound = out.add_stream(audio, rate=44100, layout="mono") if audio else None
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(picture(i), format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
            if sound is not None:
                block = av.AudioFrame.from_ndarray(sine(1 / fps, 44100, i * 44100 // fps), format="flt", layout="mono")
                block.sample_rate, block.pts = 44100, i * 44100 // fps
                out.mux(sound.encode(block))
        out.mux(video.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return path


# ------------------------------------------------------------------------------------------------ files

COMBOS = [
    ("mp4", "libx264"),
    ("mov", "libx264"),
    ("mkv", "libx265"),
    ("mp4", "libx265"),
    ("webm", "libvpx-vp9"),
    ("avi", "mpeg4"),
    ("mkv", "mpeg4"),
    ("mov", "mjpeg"),
    ("avi", "mjpeg"),
]


@pytest.mark.parametrize(("ext", "codec"), COMBOS, ids=[f"{e}-{c}" for e, c in COMBOS])
def test_files_decode_every_frame_in_order(tmp_path: Path, ext: str, codec: str) -> None:
    path = make_clip(tmp_path / f"clip.{ext}", codec)
    with open_video(path) as source:
        assert isinstance(source, FileSource) and not source.live
        assert source.fps == pytest.approx(25) and source.size == SIZE
        frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    times = [f.time for f in frames]
    assert times[0] == pytest.approx(0, abs=0.05)
    assert np.diff(times) == pytest.approx([0.04] * 11, abs=0.002)
    for i, f in enumerate(frames):
        assert f.image.shape == (SIZE[1], SIZE[0], 3) and f.image.dtype == np.uint8 and f.image.flags.c_contiguous
        corner = f.image[:8, -24:].reshape(-1, 3).mean(axis=0)
        assert np.abs(corner - colour(i)).max() < 16, f"frame {i}: background {corner} instead of {colour(i)}"
        assert abs(square_x(f.image) - square_x(picture(i))) <= 2, f"frame {i}: the square is not where it was"
    assert (source.frames_read, source.dropped, source.gaps, source.end_reason) == (12, 0, [], "end of file")
    assert np.diff([f.wall for f in frames]).min() >= 0


def test_file_url_and_pathlike_and_close_midway(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "clip.mp4")
    with open_video(f"file://{path}") as source:
        assert source.uri == str(path) and source.duration == pytest.approx(12 / 25, abs=0.01)
        first = next(iter(source))
    assert first.index == 0 and isinstance(first, Frame)
    source = open_video(path)
    seen = []
    for frame in source:
        seen.append(frame.index)
        if frame.index == 3:
            source.close()  # closing inside the loop ends it cleanly at the next frame
    assert seen == [0, 1, 2, 3] and source.end_reason == "closed"


def test_is_video_file(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", "mpeg4")
    cv2.imwrite(str(tmp_path / "photo.png"), picture(0))
    cv2.imwrite(str(tmp_path / "photo.jpg"), picture(0))
    shutil.copy(tmp_path / "photo.jpg", tmp_path / "renamed.mp4")  # a photo by content, a video by name
    (tmp_path / "notes.txt").write_text("just some text\n" * 50)
    (tmp_path / "notes.mp4").write_text("not a video at all\n")
    assert is_video_file(clip) and is_video_file(str(clip))
    for name in ("photo.png", "photo.jpg", "renamed.mp4", "notes.txt", "notes.mp4", "missing.mp4", "."):
        assert not is_video_file(tmp_path / name), name


def test_files_that_are_not_videos_say_so(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "photo.jpg"), picture(0))
    (tmp_path / "clip.mp4").write_text("not a video at all\n")
    cases = {
        str(tmp_path / "photo.jpg"): "not a video file (an image",
        str(tmp_path / "clip.mp4"): "not a video file (",
        str(tmp_path / "missing.mp4"): "no such file",
        str(tmp_path): "is a directory",
        "/dev/video97": "no such camera device",
    }
    for source, message in cases.items():
        with pytest.raises(VideoError, match="^" + re.escape(source) + ": ") as caught:
            open_video(source)
        assert message in str(caught.value)
    with pytest.raises(VideoError, match=r"^/dev/video97: no such camera device"):
        open_video(97)  # a camera index is the V4L2 device of that number
    with pytest.raises(VideoError, match=r"^/dev/video98: no such camera device"):
        open_video("98")


# ------------------------------------------------------------------------------------------------ redaction

REDACTIONS = [
    ("rtsp://user:pass@host:554/x?token=abc", "rtsp://***@host:554/x?token=***"),
    ("rtsps://admin:p%40ss@10.0.0.2/stream", "rtsps://***@10.0.0.2/stream"),
    ("rtsp://admin:pa/ss@cam.local/live", "rtsp://***@cam.local/live"),  # an unescaped "/" in the password
    ("rtsp://cam/user=admin&password=12345&channel=1", "rtsp://cam/user=***&password=***&channel=1"),
    ("https://cdn.example/live.m3u8?sig=abc&exp=1#t=3", "https://cdn.example/live.m3u8?sig=***&exp=***#t=3"),
    ("http://[::1]:8080/video.mjpg", "http://[::1]:8080/video.mjpg"),
    ("/home/ana/clip.mp4", "/home/ana/clip.mp4"),
    ("C:\\videos\\a@b.mp4", "C:\\videos\\a@b.mp4"),
    ("file:///tmp/clip.mp4", "file:///tmp/clip.mp4"),
    ("0", "0"),
]


@pytest.mark.parametrize(("uri", "expected"), REDACTIONS)
def test_redact_uri(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected


def test_failing_urls_never_show_their_credentials(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    closed = free_port()
    for url in (f"rtsp://user:secret@127.0.0.1:{closed}/x", f"http://user:secret@127.0.0.1:{closed}/x?token=tok123"):
        with pytest.raises(VideoError) as caught:
            open_video(url, open_timeout=2)
        error = caught.value
        assert str(error).startswith(f"{redact_uri(url)}: could not connect"), str(error)
        assert error.__context__ is None and error.__cause__ is None  # the original text (with the URL) is not kept
        for text in (str(error), repr(error), caplog.text):
            assert "secret" not in text and "user" not in text and "tok123" not in text


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(VideoError) as caught:
            open_video(f"rtsp://user:secret@127.0.0.1:{port}/cam", open_timeout=1)
    assert str(caught.value) == f"rtsp://***@127.0.0.1:{port}/cam: could not connect within 1 s"
    assert time.monotonic() - started < 3


# ------------------------------------------------------------------------------------------------ MJPEG over HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MjpegServer:
    """A camera's MJPEG stream: ``multipart/x-mixed-replace`` JPEG parts at 25 fps. Each start is a new
    ``generation`` whose frames carry its number (as grey level) so the test can tell them apart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.generation = 0
        self.running = threading.Event()
        self.paused = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        outer = self
        self.generation += 1
        generation = self.generation

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 60 * generation, np.uint8))[1].tobytes()
                try:
                    while outer.running.is_set():
                        if not outer.paused.is_set():
                            head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                            self.wfile.write(head.encode() + jpeg + b"\r\n")
                        time.sleep(0.04)
                except OSError:
                    pass  # the client went away

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self.running.set()
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        """Go away: stop accepting and end every stream being served."""
        self.running.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str = "/stream.mjpg") -> str:
        return f"http://user:secret@127.0.0.1:{self.port}{path}"


@pytest.fixture
def mjpeg() -> Iterator[MjpegServer]:
    server = MjpegServer()
    server.start()
    yield server
    server.stop()


def generation(frame: Frame) -> int:
    return round(float(frame.image.mean()) / 60)


@pytest.mark.slow
def test_mjpeg_reconnects_after_the_server_comes_back(mjpeg: MjpegServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outage = 1.5
    frames: list[Frame] = []
    with open_video(mjpeg.url(), open_timeout=2, read_timeout=2, max_backoff=0.5) as source:
        assert isinstance(source, LiveSource) and source.live and source.size == (160, 120)
        assert source.uri == f"http://***@127.0.0.1:{mjpeg.port}/stream.mjpg"
        deadline = time.monotonic() + 15
        for frame in source:
            frames.append(frame)
            if len(frames) == 15:
                mjpeg.stop()
                threading.Timer(outage, mjpeg.start).start()
            if sum(generation(f) == 2 for f in frames) == 10 or time.monotonic() > deadline:
                break
    before = [f for f in frames if generation(f) == 1]
    after = [f for f in frames if generation(f) == 2]
    assert len(after) == 10, "no frames from the restarted server"
    assert [generation(f) for f in frames] == [1] * len(before) + [2] * len(after)
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)), "frame numbers must keep increasing, without repeats"
    assert [f.time for f in frames] == sorted(f.time for f in frames)
    assert len(source.gaps) == 1, source.gaps
    gap = source.gaps[0]
    assert gap.reason.startswith("disconnected")
    assert outage - 0.1 < gap.seconds < outage + 1.2, gap  # backoff of 0.5 s: found again within half a second
    assert gap.start >= before[-1].time - 1e-9 and gap.end <= after[0].time + 1e-9
    assert gap.seconds == pytest.approx(gap.end - gap.start)
    assert source.reconnects == 1 and source.end_reason == "closed"
    for text in (gap.reason, repr(source), caplog.text):
        assert "secret" not in text


@pytest.mark.slow
def test_a_slow_consumer_gets_recent_frames_and_the_rest_are_dropped(mjpeg: MjpegServer) -> None:
    latencies, indices = [], []
    with open_video(mjpeg.url(), queue_size=2) as source:
        for frame in source:
            latencies.append(time.monotonic() - frame.wall)
            indices.append(frame.index)
            time.sleep(0.2)  # five times slower than the 25 fps the server sends
            if len(indices) == 10:
                break
        assert source.dropped > 10 and source.frames_read >= source.dropped + 10
    assert max(latencies[1:]) < 0.3, latencies  # never more than the two waiting frames behind
    assert np.diff(indices).min() > 1  # frames in between were skipped, in order


@pytest.mark.slow
def test_a_stalled_stream_is_one_gap_however_many_attempts(mjpeg: MjpegServer) -> None:
    with open_video(mjpeg.url(), open_timeout=0.5, read_timeout=0.5, max_backoff=0.5) as source:
        for seen, _ in enumerate(source, 1):
            if seen == 5:
                mjpeg.paused.set()  # the connection stays open; nothing comes through it
                threading.Timer(2.0, mjpeg.paused.clear).start()
            if seen == 15:
                break
    assert len(source.gaps) == 1 and source.gaps[0].reason.startswith("stalled"), source.gaps
    assert 1.5 < source.gaps[0].seconds < 3.5 and source.reconnects >= 1


def test_giving_up_and_not_reconnecting_end_quietly(mjpeg: MjpegServer) -> None:
    with open_video(mjpeg.url(), max_reconnect_seconds=1.0, max_backoff=0.5) as source:
        started = time.monotonic()
        for n, _ in enumerate(source):
            if n == 3:
                mjpeg.stop()  # for good
        assert time.monotonic() - started < 3
    assert source.end_reason is not None and source.end_reason.startswith("gave up after 1 s without frames")
    assert "secret" not in source.end_reason and len(source.gaps) == 1
    mjpeg.start()
    with open_video(mjpeg.url(), reconnect=False) as source:
        for n, _ in enumerate(source):
            if n == 3:
                mjpeg.stop()
    # (FFmpeg reports a closed HTTP connection as the stream's end or as an I/O error, depending on timing)
    assert source.end_reason is not None and source.end_reason.startswith("disconnected: ")
    assert source.reconnects == 0 and source.gaps == []


def test_close_from_another_thread_ends_a_waiting_consumer(mjpeg: MjpegServer) -> None:
    source = open_video(mjpeg.url(), read_timeout=1)
    mjpeg.paused.set()  # the consumer will be left waiting for a frame
    threading.Timer(0.3, source.close).start()
    started = time.monotonic()
    for _ in source:
        pass
    assert time.monotonic() - started < 1.5
    assert source.end_reason == "closed"
    source._thread.join(2)  # the reader leaves by itself once its read times out
    assert not source._thread.is_alive()


def test_a_file_played_live_keeps_its_pace(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "clip.mp4")
    started = time.monotonic()
    with open_video(path, live=True) as source:
        frames = list(source)
    assert isinstance(source, LiveSource) and len(frames) == 12 and source.end_reason == "end of file"
    assert time.monotonic() - started >= 11 * 0.04 - 0.02  # real time, not as fast as it decodes
    assert np.diff([f.time for f in frames]) == pytest.approx([0.04] * 11, abs=0.03)


def test_hls_is_read_whole_or_live(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", n=50)
    (tmp_path / "hls").mkdir()
    with av.open(str(clip)) as src, av.open(str(tmp_path / "hls" / "live.m3u8"), "w", format="hls",
                                             options={"hls_time": "1", "hls_playlist_type": "vod"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    handler = functools.partial(QuietFiles, directory=str(tmp_path / "hls"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/live.m3u8?token=abc123"
        with open_video(url, live=False) as whole:  # a finished playlist read as a file: every frame
            assert whole.uri.endswith("/live.m3u8?token=***") and not whole.live
            assert [f.index for f in whole] == list(range(50))
        with open_video(url) as live:  # as live: the newest frames, and as fast as they come
            assert live.live and live.size == SIZE
            assert next(iter(live)).image.shape == (SIZE[1], SIZE[0], 3)
    finally:
        server.shutdown()
        server.server_close()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


# ------------------------------------------------------------------------------------------------ RTSP


def ffmpeg() -> str:
    """The system's ffmpeg; its absence fails the test in CI (which installs it) and skips it elsewhere."""
    path = shutil.which("ffmpeg") or ("/usr/bin/ffmpeg" if os.access("/usr/bin/ffmpeg", os.X_OK) else None)
    if path is None:
        message = "ffmpeg is not installed (apt-get install ffmpeg)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


class RtspServer:
    """A one-stream RTSP server: ffmpeg packs a looping clip into RTP (``-f rtp``, ``-re``), this relays it to each
    client that says PLAY, interleaved over its RTSP connection (``Transport: RTP/AVP/TCP``). ffmpeg cannot serve
    RTSP itself: its RTSP muxer only pushes to a server."""

    def __init__(self, clip: Path, workdir: Path) -> None:
        self._rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._rtp.bind(("127.0.0.1", 0))
        rtp_port = self._rtp.getsockname()[1]
        sdp = workdir / "stream.sdp"
        self._ffmpeg = subprocess.Popen(
            [ffmpeg(), "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
             "-f", "rtp", "-sdp_file", str(sdp), f"rtp://127.0.0.1:{rtp_port}?rtcpport={rtp_port}"],
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not (sdp.exists() and "m=video" in sdp.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not sdp.exists():
            self._ffmpeg.kill()
            self._ffmpeg.wait()
            pytest.fail("ffmpeg did not start sending RTP within 10 s")
        lines = [line for line in sdp.read_text().splitlines() if line]
        at = next(i for i, line in enumerate(lines) if line.startswith("m=video")) + 1
        self._sdp = "\r\n".join([*lines[:at], "a=control:track0", *lines[at:]]) + "\r\n"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._players: list[socket.socket] = []
        threading.Thread(target=self._relay, daemon=True).start()
        threading.Thread(target=self._accept, daemon=True).start()

    def _relay(self) -> None:
        while True:
            try:
                data = self._rtp.recv(65536)
            except OSError:
                return
            if data[1] & 0x7F >= 72 and data[1] & 0x7F <= 76:
                continue  # RTCP (sent to the same port): the client does without
            for player in list(self._players):
                try:
                    player.sendall(b"$\x00" + len(data).to_bytes(2, "big") + data)
                except OSError:
                    self._players.remove(player)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                request, *fields = head.decode().split("\r\n")
                method, url, _ = request.split(" ")
                cseq = next(f.split(":", 1)[1].strip() for f in fields if f.lower().startswith("cseq:"))
                body, extra = "", ""
                if method == "OPTIONS":
                    extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
                elif method == "DESCRIBE":
                    body = self._sdp
                    extra = f"Content-Base: {url.rstrip('/')}/\r\nContent-Type: application/sdp\r\n"
                elif method == "SETUP":
                    extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4242\r\n"
                elif method == "PLAY":
                    extra = "Session: 4242\r\n"
                reply = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}"
                conn.sendall(reply.encode())
                if method == "PLAY":
                    self._players.append(conn)
                elif method == "TEARDOWN":
                    return

    def stop(self) -> None:
        self._ffmpeg.kill()
        self._ffmpeg.wait()
        self._listener.close()
        self._rtp.close()


@pytest.mark.slow
def test_rtsp_stream(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = RtspServer(make_clip(tmp_path / "clip.mp4", n=50), tmp_path)
    try:
        url = f"rtsp://user:secret@127.0.0.1:{server.port}/cam"
        frames = []
        with open_video(url, open_timeout=5) as source:
            assert source.live and source.uri == f"rtsp://***@127.0.0.1:{server.port}/cam"
            assert source.size == SIZE and source.fps == pytest.approx(25)
            for frame in source:
                frames.append(frame)
                if len(frames) == 50:
                    break
    finally:
        server.stop()
    assert len(frames) == 50 and all(f.image.shape == (SIZE[1], SIZE[0], 3) for f in frames)
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    assert source.gaps == [] and "secret" not in caplog.text + repr(source)
    # what came through is the clip: the square moves 6 pixels per frame
    steps = np.diff([square_x(f.image) for f in frames[-10:]])
    assert ((steps == 6) | (steps < 0)).mean() >= 0.6, steps  # (a skipped frame or the loop's restart aside)


# ------------------------------------------------------------------------------------------------ writing


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_writer_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    with VideoWriter(path, fps=25, size=SIZE) as writer:
        for i in range(20):
            writer.write(picture(i))
    assert writer.frames_written == 20 and writer.size == SIZE
    with open_video(path) as source:
        frames = list(source)
        assert source.size == SIZE and source.fps == pytest.approx(25)
    assert len(frames) == 20
    for i, f in enumerate(frames):
        assert np.abs(f.image[:8, -24:].reshape(-1, 3).mean(axis=0) - colour(i)).max() < 16
        assert abs(square_x(f.image) - square_x(picture(i))) <= 2
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == ("vp9" if suffix == ".webm" else "h264")


def test_writer_pads_odd_sizes_and_keeps_ntsc_rates(tmp_path: Path) -> None:
    odd = (121, 91)
    with VideoWriter(tmp_path / "odd.mp4", fps=29.97, size=odd) as writer:
        for i in range(30):
            writer.write(np.ascontiguousarray(picture(i)[:91, :121]))
    assert writer.size == (122, 92) and writer.fps == Fraction(30000, 1001)
    with av.open(str(tmp_path / "odd.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(30000, 1001) and (stream.width, stream.height) == (122, 92)
        images = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    assert len(images) == 30
    # the added column and row repeat their neighbours, so no black edge appears
    assert np.abs(images[0][:, -1].astype(int) - images[0][:, -2]).mean() < 6
    assert np.abs(images[0][-1].astype(int) - images[0][-2]).mean() < 6


@pytest.mark.parametrize(
    ("fps", "rate"),
    [(25, Fraction(25)), (25.0, Fraction(25)), (29.97, Fraction(30000, 1001)), (23.976, Fraction(24000, 1001)),
     (59.94, Fraction(60000, 1001)), (12.5, Fraction(25, 2)), (Fraction(15, 2), Fraction(15, 2))],
)  # fmt: skip
def test_frame_rate(fps: float, rate: Fraction) -> None:
    assert frame_rate(fps) == rate


def test_writer_copies_the_sound_untouched(tmp_path: Path) -> None:
    source_path = make_clip(tmp_path / "talk.mp4", n=50, audio="aac")
    out = tmp_path / "blurred.mp4"
    with open_video(source_path) as source, VideoWriter(out, fps=25, size=SIZE, audio_from=source_path) as writer:
        for frame in source:
            writer.write(255 - frame.image)
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height) == SIZE and audio.codec_context.name == "aac"
        assert sum(1 for _ in container.decode(video)) == 50
        container.seek(0)
        copied = [bytes(p) for p in container.demux(audio) if p.size]
        duration = float(audio.duration * audio.time_base) if audio.duration and audio.time_base else 0.0
    assert duration == pytest.approx(2.0, abs=0.1)  # as long as the 50 frames at 25 fps
    with av.open(str(source_path)) as container:
        original = [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]
    assert copied[:20] == original[:20], "the audio was re-encoded instead of copied"


def test_writer_reencodes_sound_the_container_cannot_hold(tmp_path: Path) -> None:
    wav = tmp_path / "voice.wav"
    with av.open(str(wav), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray((sine(1.0, 16000) * 32767).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with VideoWriter(tmp_path / "out.webm", fps=25, size=SIZE, audio_from=wav) as writer:
        for i in range(25):
            writer.write(picture(i))
    with av.open(str(tmp_path / "out.webm")) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "opus"  # WebM holds no PCM: the sound was encoded again
        decoded = sum(f.samples for f in container.decode(audio))
    assert decoded / 48000 == pytest.approx(1.0, abs=0.1)  # resampled to 48 kHz, still one second


def test_writer_without_sound_and_with_wrong_frames(tmp_path: Path) -> None:
    silent = make_clip(tmp_path / "silent.mp4")
    with VideoWriter(tmp_path / "out.mp4", fps=25, size=SIZE, audio_from=silent, codec="mpeg4") as writer:
        writer.write(picture(0))
        with pytest.raises(VideoError, match="frame is 64x48, the writer is 128x96"):
            writer.write(np.zeros((48, 64, 3), np.uint8))
        with pytest.raises(VideoError, match=r"uint8 BGR arrays, not float64 \(96, 128, 3\)"):
            writer.write(np.zeros((96, 128, 3)))
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert not container.streams.audio and container.streams.video[0].codec_context.name == "mpeg4"
    with pytest.raises(VideoError, match="the writer is closed"):
        writer.write(picture(1))
    with pytest.raises(VideoError, match="cannot write a video here"):
        VideoWriter(tmp_path / "missing" / "out.mp4", fps=25, size=SIZE)
