"""Writing video files: BGR frames in, H.264 MP4 (or MKV, MOV, WebM by suffix) out, with the source's sound kept.

Re-exported by :mod:`faceledger.vision.video`; see :class:`VideoWriter`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Self, cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from faceledger.errors import VideoError
from faceledger.vision.video_io import describe, log, video_stream

__all__ = ["VideoWriter", "frame_rate"]

_FASTSTART = {".mp4", ".m4v", ".mov"}  # moov atom first: the file plays while it downloads
_MPEG4_LAMBDA = 118  # FFmpeg's FF_QP2LAMBDA: mpeg4's quantiser is set as a "global quality" in lambda units


def frame_rate(fps: float | Fraction) -> Fraction:
    """``fps`` as the exact rate a container stores: 25 → 25, 12.5 → 25/2, the NTSC rates 29.97 → 30000/1001,
    23.976 → 24000/1001, 59.94 → 60000/1001."""
    if isinstance(fps, Fraction):
        rate = fps
    elif not (isinstance(fps, int | float) and math.isfinite(fps)):
        raise ValueError(f"fps must be a finite number, not {fps!r}")
    elif float(fps).is_integer():
        rate = Fraction(int(fps))
    elif abs(fps * 1.001 - round(fps * 1.001)) < 0.005:  # an NTSC rate, written to two or three decimals
        rate = Fraction(round(fps * 1.001) * 1000, 1001)
    else:
        rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be positive, not {fps!r}")
    return rate


def _encoder_exists(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return False
    return True


class VideoWriter:
    """Encode BGR frames into a video file; use as a context manager, or call :meth:`close` at the end.

    The codec is H.264 (libx264, ``yuv420p``, preset "veryfast", quality ``crf``), or mpeg4 where libx264 is missing;
    ``.webm`` files get VP9. An odd width or height is padded by one pixel (H.264 in 4:2:0 needs even sizes), by
    repeating the last column or row: ``size`` is the encoded size, ``frames_written`` counts frames.

    With ``audio_from`` (usually the video the frames came from), the first audio stream of that file is copied into
    the output packet by packet, untouched, interleaved with the video and cut where the video ends; when the output
    container cannot hold that codec, the sound is re-encoded (AAC, or Opus in WebM). A file without sound adds none.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float | Fraction,
        size: tuple[int, int],
        audio_from: str | os.PathLike[str] | None = None,
        codec: str | None = None,
        crf: int = 23,
    ) -> None:
        self.path = Path(path)
        self.fps = frame_rate(fps)
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"size must be positive (width, height), not {size!r}")
        self._input_size = (width, height)
        self.size = (width + width % 2, height + height % 2)
        self.frames_written = 0
        self._closed = False
        suffix = self.path.suffix.lower()
        codec = codec or ("libvpx-vp9" if suffix == ".webm" else "libx264" if _encoder_exists("libx264") else "mpeg4")
        failure = ""
        if not self.path.parent.is_dir():  # FFmpeg would only find out at the first frame
            raise VideoError(f"{self.path}: cannot write a video here (no folder {self.path.parent})")
        try:
            self._out: OutputContainer = av.open(
                str(self.path), "w", options={"movflags": "+faststart"} if suffix in _FASTSTART else None
            )
        except (av.FFmpegError, OSError, ValueError) as exc:
            failure = f"{self.path}: cannot write a video here ({describe(exc)})"
        if failure:
            raise VideoError(failure)
        try:
            self._video = cast(VideoStream, self._out.add_stream(codec, rate=self.fps))
        except (av.FFmpegError, ValueError) as exc:
            failure = f"{self.path}: cannot encode with {codec!r} ({describe(exc)})"
        if failure:
            self._out.close()
            raise VideoError(failure)
        self._video.width, self._video.height = self.size
        self._video.pix_fmt = "yuv420p"
        self._video.options = self._codec_options(codec, crf)
        self._audio_in: InputContainer | None = None
        self._audio_out: AudioStream | None = None
        self._audio_packets: Iterator[Packet[AudioStream]] = iter(())
        self._audio_next: Packet[AudioStream] | None = None
        self._audio_offset = 0  # in the input audio's time base: the input video's start, so sync is kept
        self._transcode = False
        if audio_from is not None:
            try:
                self._add_audio(Path(audio_from), suffix)
            except BaseException:
                self._out.close()
                raise

    @staticmethod
    def _codec_options(codec: str, crf: int) -> dict[str, object]:
        if codec in ("libx264", "libx265"):
            extra = {"x265-params": "log-level=error"} if codec == "libx265" else {}
            return {"crf": str(crf), "preset": "veryfast", **extra}
        if codec == "libvpx-vp9":  # b=0 makes crf a constant quality rather than a cap on a bit rate
            return {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
        if codec == "mpeg4":  # no crf: a fixed quantiser (2 best .. 31 worst) of about the same quality
            qscale = min(31, max(2, round(crf / 7)))
            return {"flags": "+qscale", "global_quality": str(qscale * _MPEG4_LAMBDA)}
        return {}

    def _add_audio(self, source: Path, suffix: str) -> None:
        """Open ``source`` and add its first audio stream to the output (streams must all exist before the first
        packet is written, so this happens here and the packets follow the video as it is written)."""
        failure = ""
        try:
            audio_in = av.open(str(source), "r")
        except (av.FFmpegError, OSError, ValueError) as exc:
            failure = f"{source}: cannot read its sound ({describe(exc)})"
        if failure:
            raise VideoError(failure)
        if not audio_in.streams.audio:
            log.info("%s: no audio stream; %s gets none", source, self.path)
            audio_in.close()
            return
        template = audio_in.streams.audio[0]
        video_in = video_stream(audio_in)
        if video_in is not None and video_in.start_time is not None and video_in.time_base and template.time_base:
            self._audio_offset = round(video_in.start_time * video_in.time_base / template.time_base)
        try:
            self._audio_out = self._out.add_stream_from_template(template)
        except ValueError:  # this container cannot hold that codec (PCM in MP4, AAC in WebM): re-encode
            webm = suffix == ".webm"
            rate = 48000 if webm else template.rate  # Opus knows only a few sample rates; 48 kHz is one of them
            self._audio_out = self._out.add_stream("libopus" if webm else "aac", rate=rate)
            self._audio_out.layout = template.layout
            self._transcode = True
        self._audio_in = audio_in
        self._audio_packets = audio_in.demux(template)

    def write(self, image: np.ndarray) -> None:
        """Encode one ``(H, W, 3)`` uint8 BGR frame of the size the writer was opened for."""
        if self._closed:
            raise VideoError(f"{self.path}: the writer is closed")
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise VideoError(f"{self.path}: frames must be (H, W, 3) uint8 BGR arrays, not {got}")
        width, height = self._input_size
        if image.shape[:2] != (height, width):
            raise VideoError(f"{self.path}: frame is {image.shape[1]}x{image.shape[0]}, the writer is {width}x{height}")
        if (width, height) != self.size:
            image = np.pad(image, ((0, self.size[1] - height), (0, self.size[0] - width), (0, 0)), mode="edge")
        frame = VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = self.frames_written
        frame.time_base = 1 / self.fps
        failure = ""
        try:  # the first frame also opens the file and writes the header: a full disk or a bad path shows here
            self._out.mux(self._video.encode(frame))
            self.frames_written += 1
            self._copy_audio(until=float(self.frames_written / self.fps))
        except (av.FFmpegError, OSError, ValueError) as exc:
            failure = f"{self.path}: could not write frame {self.frames_written} ({describe(exc)})"
        if failure:
            raise VideoError(failure)

    def _copy_audio(self, until: float) -> None:
        """Move the input's audio packets that start before ``until`` seconds (output time) into the output."""
        out = self._audio_out
        if out is None:
            return
        while True:
            packet = self._audio_next or next(self._audio_packets, None)
            self._audio_next = None
            if packet is None:
                return
            if packet.dts is None or packet.pts is None or packet.time_base is None:
                continue  # the demuxer's end-of-stream marker
            if float((packet.pts - self._audio_offset) * packet.time_base) >= until:
                self._audio_next = packet
                return
            if self._transcode:
                for decoded in packet.decode():
                    if decoded.pts is not None:
                        decoded.pts -= self._audio_offset
                    self._out.mux(out.encode(decoded))
            else:
                packet.pts -= self._audio_offset
                packet.dts -= self._audio_offset
                packet.stream = out  # mux rescales the timestamps from the input's time base to the output's
                self._out.mux(packet)

    def close(self) -> None:
        """Flush the encoder, add the rest of the sound (up to the end of the video) and finish the file."""
        if self._closed:
            return
        self._closed = True
        failure = ""
        try:
            self._out.mux(self._video.encode(None))
            self._copy_audio(until=float(self.frames_written / self.fps))
            if self._audio_out is not None and self._transcode:
                self._out.mux(self._audio_out.encode(None))
            self._out.close()
        except (av.FFmpegError, OSError, ValueError) as exc:
            failure = f"{self.path}: could not finish the video ({describe(exc)})"
        finally:
            if self._audio_in is not None:
                self._audio_in.close()
        if failure:
            raise VideoError(failure)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VideoWriter {self.path} {self.size[0]}x{self.size[1]} @ {self.fps} fps, {self.frames_written} frames>"
