"""Anonymized video output: every face hidden in every frame, from before the detector first found it.

:mod:`faceledger.engine.video` decides which boxes to hide in each frame (and re-exports :class:`AnonymizedOutput`);
this module writes the frames with them hidden.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from faceledger.vision.anonymize import anonymize

if TYPE_CHECKING:
    from faceledger.engine.video import FrameResult


class AnonymizedOutput:
    """Writes frames with faces hidden, ``delay`` frames late so that a track's first box can be painted backwards
    over the frames just before the detector first found the face (a face entering the view is hidden from its
    first frame, not from its first detection).

    ``writer`` is anything with ``write(image)`` and ``close()`` (a :class:`~faceledger.vision.video.VideoWriter`).
    ``show`` says, per track id, whether its face may stay visible (a deployment that lets operators see
    candidates); by default every face is hidden. ``draw`` adds each track's box and id.
    """

    def __init__(
        self,
        writer: Any,
        *,
        delay: int = 12,
        method: str = "blur",
        draw: bool = True,
        show: Callable[[int], bool] | None = None,
        threaded: bool = True,
    ) -> None:
        self.writer = writer
        self.delay = max(0, delay)
        self.method = method
        self.draw = draw
        self.show = show
        self._buffer: deque[tuple[np.ndarray, list[np.ndarray], list[int]]] = deque()
        self._seen: set[int] = set()
        self.written = 0
        # blurring and encoding run on a thread of their own (OpenCV and FFmpeg release the GIL), so writing the
        # output does not hold up the frames being analysed; the queue is short, so memory stays bounded
        self._queue: queue.Queue[tuple[np.ndarray, list[np.ndarray], list[int]] | None] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._drain, name="faceledger-output", daemon=True)
            self._thread.start()

    def add(self, result: FrameResult) -> None:
        """Queue one frame's result; writes the frame that leaves the buffer."""
        boxes = [b for b in result.hide]
        ids = [int(t) for t in result.hide_tracks]
        for box, tid in zip(boxes, ids, strict=True):
            if tid >= 0 and tid not in self._seen:
                self._seen.add(tid)
                self._backfill(box, tid)
        self._buffer.append((result.frame.image, boxes, ids))
        while len(self._buffer) > self.delay:
            self._emit(self._buffer.popleft())

    def close(self) -> None:
        """Write what is buffered and close the writer (raises what writing raised)."""
        try:
            while self._buffer and self._error is None:
                self._emit(self._buffer.popleft())
        finally:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
            self.writer.close()
        if self._error is not None:
            raise self._error

    def _emit(self, item: tuple[np.ndarray, list[np.ndarray], list[int]]) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._write(*item)
        else:
            self._queue.put(item)

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # handed to the caller at its next add() or close()
                    self._error = exc

    def __enter__(self) -> AnonymizedOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _backfill(self, box: np.ndarray, tid: int) -> None:
        # the frames before a track's first detection: hide the same place (grown a little) unless already hidden
        grown = _grow(box, 0.3)
        for _, boxes, ids in reversed(self._buffer):
            if any(_iou(grown, b) > 0.3 for b in boxes):
                break
            boxes.append(grown)
            ids.append(tid)

    def _write(self, image: np.ndarray, boxes: list[np.ndarray], ids: list[int]) -> None:
        keep = np.array([tid >= 0 and self.show is not None and self.show(tid) for tid in ids], bool)
        box_array = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = anonymize(image, box_array, keep, self.method) if len(box_array) else image.copy()
        if self.draw:
            for j, (box, tid) in enumerate(zip(box_array, ids, strict=True)):
                if tid < 0:
                    continue
                x1, y1, x2, y2 = (round(float(v)) for v in box)
                colour = (0, 200, 255) if keep[j] else (80, 220, 80)
                cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
                cv2.putText(out, str(tid), (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
        self.writer.write(out)
        self.written += 1


def _grow(box: np.ndarray, margin: float) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return np.array([x1 - mx, y1 - my, x2 + mx, y2 + my], np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
