"""Face detection: the :class:`Detections` container and the YuNet detector run through onnxruntime."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import cv2
import numpy as np

STRIDES = (8, 16, 32)
UPRIGHT_MODES = ("off", "tilted", "auto")

#: A second look at small, weak detections (:meth:`YuNetDetector.detect`, ``look_again``): below
#: ``score_threshold`` but at least ``LOOK_AGAIN_SCORE``, shorter side from ``LOOK_AGAIN_MIN_SIDE`` to under
#: ``LOOK_AGAIN_SIDE`` pixels of the image, at most ``LOOK_AGAIN_MAX`` per image; each is run again on a window around
#: it enlarged so the face is about ``LOOK_AGAIN_FACE`` pixels (2x to 4x), where a detection overlapping it must
#: score ``LOOK_AGAIN_ACCEPT``. Measured on the development set: faces that are the whole photo, shrunk to 40 px in a
#: 1280x720 frame, scored 0.10-0.56 at their size and 0.81-0.91 on the second look; on the 825 photos, what a looser
#: rule (any score over the threshold, anywhere in the window, leads from 6 px) added was false: 6-10 px specks in
#: group photos and cat faces at 0.64-0.73.
#: The tile pass keeps faces pass 1 saw under this many pixels (it finds larger ones itself), and is run at the scale
#: that makes the smallest face asked for (``min_face_size``) this large, when that is under full resolution: YuNet
#: finds 99 % of faces of 40-48 px, 92 % at 32, 69 % at 24 and 40 % at 20 (the shorter side of the box;
#: ``benchmarks/bench_small_faces.py``)
TILE_MAX_FACE = 48.0
LOOK_AGAIN_SCORE = 0.08
LOOK_AGAIN_MIN_SIDE = 14.0
LOOK_AGAIN_SIDE = 48.0
LOOK_AGAIN_MAX = 8
LOOK_AGAIN_FACE = 96.0
LOOK_AGAIN_ACCEPT = 0.75


@dataclass(frozen=True)
class Face:
    """One detected face, a view into :class:`Detections`.

    ``box`` is ``[x1, y1, x2, y2]`` in pixels of the input image, ``landmarks`` five ``[x, y]`` points (the eye on
    the image's left, the other eye, nose tip, left and right mouth corners), ``quality`` in ``[0, 1]`` with the
    ``reasons`` that lowered it; ``track`` the id of the track it belongs to in a video, ``-1`` when not tracked.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    quality: float
    reasons: tuple[str, ...]
    track: int = -1

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return float(self.box[3] - self.box[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary with stable keys: box, score, landmarks, quality, quality_reasons, and track when
        the face belongs to a track (still images have none, so their output does not carry the key)."""
        out: dict[str, Any] = {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "quality": round(self.quality, 4),
            "quality_reasons": list(self.reasons),
        }
        if self.track >= 0:
            out["track"] = self.track
        return out


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, as parallel arrays (ordered by box area, largest first).

    ``boxes (N, 4)`` float32 ``x1, y1, x2, y2``; ``scores (N,)``; ``landmarks (N, 5, 2)``; ``quality (N,)``;
    ``quality_reasons`` one tuple of strings per face; ``track_ids (N,)`` int64, the track of each face in a video
    (``-1``: not tracked, the default). Index with an int for a :class:`Face`, or with a slice, boolean mask or
    index array for a filtered :class:`Detections`.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    quality: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    quality_reasons: tuple[tuple[str, ...], ...] = ()
    image_size: tuple[int, int] = (0, 0)
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if len(self.track_ids) != n:
            object.__setattr__(self, "track_ids", np.full(n, -1, np.int64))
        if len(self.quality) != n:
            object.__setattr__(self, "quality", np.full(n, np.nan, np.float32))
        if len(self.quality_reasons) != n:
            object.__setattr__(self, "quality_reasons", tuple(() for _ in range(n)))

    @classmethod
    def empty(cls, image_size: tuple[int, int] = (0, 0)) -> Detections:
        """No faces."""
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, 5, 2), np.float32),
            image_size=image_size,
        )

    def __len__(self) -> int:
        return len(self.boxes)

    def __iter__(self) -> Iterator[Face]:
        return (self[i] for i in range(len(self)))

    @overload
    def __getitem__(self, index: int) -> Face: ...

    @overload
    def __getitem__(self, index: slice | np.ndarray | Sequence[int]) -> Detections: ...

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> Face | Detections:
        if isinstance(index, int | np.integer):
            i = int(index)
            return Face(
                self.boxes[i],
                float(self.scores[i]),
                self.landmarks[i],
                float(self.quality[i]),
                self.quality_reasons[i],
                int(self.track_ids[i]),
            )
        idx = np.arange(len(self))[index]
        return Detections(
            self.boxes[idx],
            self.scores[idx],
            self.landmarks[idx],
            self.quality[idx],
            tuple(self.quality_reasons[i] for i in idx),
            self.image_size,
            self.track_ids[idx],
        )

    @property
    def areas(self) -> np.ndarray:
        """Box areas in square pixels."""
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])

    def sorted_by_area(self) -> Detections:
        """The same faces, largest box first (stable for equal areas)."""
        return self[np.argsort(-self.areas, kind="stable")]

    def with_quality(self, quality: np.ndarray, reasons: Sequence[tuple[str, ...]]) -> Detections:
        """A copy carrying quality scores and reasons."""
        return Detections(
            self.boxes,
            self.scores,
            self.landmarks,
            quality.astype(np.float32),
            tuple(reasons),
            self.image_size,
            self.track_ids,
        )

    def with_tracks(self, ids: np.ndarray | Sequence[int]) -> Detections:
        """A copy carrying one track id per face (``-1`` for a face on no track)."""
        track_ids = np.asarray(ids, np.int64).reshape(-1)
        if len(track_ids) != len(self):
            raise ValueError(f"{len(track_ids)} track ids for {len(self)} faces")
        return Detections(
            self.boxes,
            self.scores,
            self.landmarks,
            self.quality,
            self.quality_reasons,
            self.image_size,
            track_ids,
        )

    def to_dicts(self) -> list[dict[str, Any]]:
        """One JSON-ready dictionary per face."""
        return [face.to_dict() for face in self]


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(float).tolist(), 0.0, iou, top_k=limit)
    return np.asarray(keep, np.int64).reshape(-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a (M, 4)`` with every box in ``b (N, 4)``, as ``(M, N)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


class YuNetDetector:
    """YuNet (OpenCV Zoo, 2023mar) run with onnxruntime at any input size, over a pyramid of scales.

    ``session`` is an onnxruntime session of a YuNet-compatible file: one input ``(1, 3, H, W)`` of raw BGR pixels,
    outputs ``cls_8 .. kps_32``. ``card`` is the model card (kept for provenance, not used for computation).
    """

    def __init__(self, session: Any, card: Any = None) -> None:
        self.session = session
        self.card = card
        self.input_name: str = session.get_inputs()[0].name
        names = [o.name for o in session.get_outputs()]
        self._outputs = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES]
        missing = set(self._outputs) - set(names)
        if missing:
            raise ValueError(f"not a YuNet model: outputs {sorted(missing)} missing")

    def run_once(
        self, image: np.ndarray, score_threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One forward pass on ``image`` as it is (padded to a multiple of 32); boxes before NMS."""
        blob = input_blob(image)
        ph, pw = blob.shape[2:]
        outs = self.session.run(self._outputs, {self.input_name: blob})
        # the three strides' anchors as one array (cls_8, cls_16, cls_32, then obj, bbox, kps: ``self._outputs``),
        # so the decoding below is a dozen numpy calls per pass rather than as many per stride
        cls = np.concatenate(outs[0:3], axis=1)[0, :, 0]
        obj = np.concatenate(outs[3:6], axis=1)[0, :, 0]
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        sel = np.flatnonzero(score >= score_threshold)
        if len(sel) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        grid_x, grid_y, stride = (a[sel] for a in anchor_grid(ph, pw))
        bbox = np.concatenate(outs[6:9], axis=1)[0, sel]
        kps = np.concatenate(outs[9:12], axis=1)[0, sel].reshape(-1, 5, 2)
        cx = (grid_x + bbox[:, 0]) * stride
        cy = (grid_y + bbox[:, 1]) * stride
        bw = np.exp(bbox[:, 2]) * stride
        bh = np.exp(bbox[:, 3]) * stride
        boxes = np.column_stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        points = (kps + np.stack([grid_x, grid_y], axis=1)[:, None, :]) * stride[:, None, None]
        return boxes.astype(np.float32), score[sel].astype(np.float32), points.astype(np.float32)

    def detect(
        self,
        image: np.ndarray,
        *,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        min_face_size: float = 0.0,
        base_size: int = 640,
        upscale_small: bool = False,
        tile: bool = True,
        tile_size: int = 640,
        max_faces: int = 1000,
        border: float = 0.15,
        interpolation: int = cv2.INTER_AREA,
        upright: str = "off",
        look_again: bool = True,
    ) -> Detections:
        """Find faces of any size relative to the image.

        * pass 1, whole image resized so its longer side is ``base_size``: finds faces from a few percent of the image
          up to faces that fill it (the raw detector on a 20-megapixel photo misses those);
        * pass 2, when pass 1 shrank the image: the full-resolution image in overlapping ``tile_size`` tiles, for small
          faces that shrinking made too small to see (a 20-pixel face in a crowd);
        * with ``upscale_small``, an image with a longer side below ``base_size`` is also run at twice its size, which
          finds faces of about 10 pixels.

        Results of all passes are merged by non-maximum suppression. ``min_face_size`` drops faces whose shorter box
        side is smaller (pixels) and sets the scale of pass 2 (:func:`tile_scale`). ``border`` pads the first pass
        by that fraction of its longer side (a face that fills a photo or touches its edge is found only with a
        margin; video frames, whose faces are small and tracked, can skip the cost with 0). ``interpolation``
        shrinks the image for pass 1 (``INTER_AREA`` is the sharpest and, for a frame shrunk by a non-integer factor,
        costs several milliseconds; video uses ``INTER_LINEAR``). Faces are returned largest first.

        ``look_again`` takes a second look at small faces the passes above saw only weakly (a face of 30-40 pixels
        with no margin around it scores 0.1-0.5 at its size and 0.7-0.9 at twice it): up to
        :data:`LOOK_AGAIN_MAX` detections under ``score_threshold`` (down to :data:`LOOK_AGAIN_SCORE`) and under
        :data:`LOOK_AGAIN_SIDE` pixels are run again on a window around each, enlarged so the face is about
        :data:`LOOK_AGAIN_FACE` pixels; what scores ``score_threshold`` there is kept. It costs about a millisecond
        per look, and nothing on images without such weak detections.

        ``upright`` handles faces rolled in the image plane, whose landmarks YuNet pulls towards upright (measured
        on the development set: a face rolled by 30° gets landmarks rolled by about 5-12°, so alignment leaves most
        of the roll in the crop): ``"tilted"`` searches again around each face that looks tilted (landmark roll or a
        low score) on upright-rotated crops and keeps the orientation the detector scores best, with the landmarks
        mapped back; ``"auto"`` also, when nothing is found, tries the image turned by 90°, 270°, 180° and ±45°
        (phone photos without EXIF orientation). ``"off"`` is one pass as before. See :func:`upright_faces`.
        """
        if upright not in UPRIGHT_MODES:
            raise ValueError(f"upright must be one of {', '.join(UPRIGHT_MODES)}, got {upright!r}")
        options: dict[str, Any] = {
            "score_threshold": score_threshold, "nms_threshold": nms_threshold, "min_face_size": min_face_size,
            "base_size": base_size, "upscale_small": upscale_small, "tile": tile, "tile_size": tile_size,
            "max_faces": max_faces, "border": border, "interpolation": interpolation, "look_again": look_again,
        }
        found = self._detect(image, **options)
        if upright == "off":
            return found
        from faceledger.vision.upright import upright_faces  # it builds on this module's Detections

        return upright_faces(self, image, found, turn=upright == "auto", options=options)

    def _detect(
        self,
        image: np.ndarray,
        *,
        score_threshold: float,
        nms_threshold: float,
        min_face_size: float,
        base_size: int,
        upscale_small: bool,
        tile: bool,
        tile_size: int,
        max_faces: int,
        border: float,
        interpolation: int,
        look_again: bool = False,
    ) -> Detections:
        h, w = image.shape[:2]
        boxes, scores, kps = [], [], []
        wanted = score_threshold
        if look_again:
            score_threshold = min(score_threshold, LOOK_AGAIN_SCORE)  # the passes keep weak detections as leads

        def add(
            b: np.ndarray, s: np.ndarray, k: np.ndarray, scale: float, dx: float = 0, dy: float = 0
        ) -> None:
            if len(b):
                offset = np.array([dx, dy, dx, dy], np.float32)
                boxes.append(b / scale + offset)
                scores.append(s)
                kps.append(k / scale + np.array([dx, dy], np.float32))

        long_side = max(h, w)
        scale = min(1.0, base_size / long_side)
        small = scaled(image, scale, interpolation)
        # a face that touches the border or fills the frame is found reliably only with a margin around it
        pad = max(16, int(border * max(small.shape[:2]))) if border > 0 else 0
        padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0)) if pad else small
        add(*self.run_once(padded, score_threshold), scale, -pad / scale, -pad / scale)
        level = tile_scale(scale, min_face_size) if tile else scale
        if level > scale:
            # tiles are for the faces pass 1 saw too small (under ~48 px there); larger ones are pass 1's, and a
            # tile cutting through a large face can mistake a part of it (an eye and a brow) for a small face
            source = scaled(image, level, cv2.INTER_AREA)
            self._tiles(source, tile_size, score_threshold, add, scale=level, max_side=TILE_MAX_FACE * level / scale)
        elif upscale_small and scale >= 1.0:  # small images only, as documented
            big = cv2.resize(image, (w * 2, h * 2), interpolation=cv2.INTER_LINEAR)
            add(*self.run_once(big, score_threshold), 2.0)
        if not boxes:
            return Detections.empty((h, w))
        b = np.concatenate(boxes)
        s = np.concatenate(scores)
        k = np.concatenate(kps)
        if look_again:
            b, s, k = self._look_again(image, b, s, k, wanted, nms_threshold)
        keep = _nms(b, s, nms_threshold, max_faces)
        b, s, k = b[keep], s[keep], k[keep]
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
        sides = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        ok = sides >= max(min_face_size, 1.0)
        return Detections(b[ok], s[ok], k[ok], image_size=(h, w)).sorted_by_area()

    def _look_again(
        self, image: np.ndarray, b: np.ndarray, s: np.ndarray, k: np.ndarray, threshold: float, nms: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The detections at or above ``threshold``, and what a closer look at the small weak ones finds there."""
        strong = s >= threshold
        sides = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        weak = np.nonzero(~strong & (sides < LOOK_AGAIN_SIDE) & (sides >= LOOK_AGAIN_MIN_SIDE))[0]
        out_b, out_s, out_k = [b[strong]], [s[strong]], [k[strong]]
        if len(weak):
            weak = weak[_nms(b[weak], s[weak], nms, LOOK_AGAIN_MAX)]
            if strong.any():  # a weak detection inside a face already found is that face
                weak = weak[box_iou(b[weak], b[strong]).max(axis=1) < nms]
        h, w = image.shape[:2]
        for i in weak:
            x1, y1, x2, y2 = b[i]
            side = max(x2 - x1, y2 - y1)
            zoom = float(np.clip(LOOK_AGAIN_FACE / side, 2.0, 4.0))
            half = 2.0 * side  # the face and as much again around it on each side
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            left, top = int(max(0, cx - half)), int(max(0, cy - half))
            right, bottom = int(min(w, cx + half)), int(min(h, cy + half))
            if right - left < 8 or bottom - top < 8:  # a lead off the edge of the image
                continue
            window = cv2.resize(image[top:bottom, left:right], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
            wb, ws, wk = self.run_once(window, max(threshold, LOOK_AGAIN_ACCEPT))
            if len(wb):
                offset = np.array([left, top], np.float32)
                wb = wb / zoom + np.tile(offset, 2)
                there = box_iou(wb, b[i : i + 1])[:, 0] >= 0.3  # the lead itself, not something else in the window
                out_b.append(wb[there])
                out_s.append(ws[there])
                out_k.append(wk[there] / zoom + offset)
        return np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_k)

    def _tiles(
        self, image: np.ndarray, tile: int, score_threshold: float, add: Any, scale: float = 1.0,
        max_side: float = float("inf"),
    ) -> None:
        """Run on overlapping tiles of at most ``tile`` pixels a side; keep faces well inside each tile (those on the
        cut are found by a neighbour) and whose shorter side is below ``max_side`` pixels of ``image``.

        The tiles overlap by ``max_side`` (at most a quarter of ``tile``), enough for every face the pass keeps to be
        whole in one of them, and are the fewest that cover the image, all of one size (:func:`tile_layout`): the
        cost follows the image's pixels (a 1000x750 photo is four tiles of 538x413, not four of 640x640 that cover
        it more than twice)."""
        h, w = image.shape[:2]
        overlap = int(math.ceil(min(max_side, tile / 4)))
        ys = tile_layout(h, tile, overlap)
        xs = tile_layout(w, tile, overlap)
        margin = 2.0
        for y, th in ys:
            for x, tw in xs:
                crop = image[y : y + th, x : x + tw]
                b, s, k = self.run_once(crop, score_threshold)
                if len(b) == 0:
                    continue
                # drop faces cut by an inner tile edge
                inner = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) < max_side
                if x > 0:
                    inner &= b[:, 0] > margin
                if y > 0:
                    inner &= b[:, 1] > margin
                if x + tw < w:
                    inner &= b[:, 2] < tw - margin
                if y + th < h:
                    inner &= b[:, 3] < th - margin
                add(b[inner], s[inner], k[inner], scale, x / scale, y / scale)


def input_blob(image: np.ndarray) -> np.ndarray:
    """YuNet's input for a BGR ``image``: ``(1, 3, H, W)`` float32, ``H`` and ``W`` rounded up to multiples of 32,
    the image at the top left and zeros elsewhere.

    Written by hand because numpy's one-step ``blob[...] = image.transpose(2, 0, 1)`` casts element by element
    through the transposed strides (1.5 ms for the 832x672 first pass of a 640x480 photo), and
    ``cv2.dnn.blobFromImage`` resizes rather than pads; OpenCV's ``split`` into contiguous planes and one contiguous
    cast per plane give the same values in a third of the time.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"YuNet needs a BGR image of shape (H, W, 3), got {image.shape}")
    h, w = image.shape[:2]
    ph, pw = int(math.ceil(h / 32) * 32), int(math.ceil(w / 32) * 32)
    blob = np.empty((1, 3, ph, pw), np.float32)
    blob[0, :, h:, :] = 0
    blob[0, :, :h, w:] = 0
    for channel, plane in enumerate(cv2.split(image)):
        blob[0, channel, :h, :w] = plane
    return blob


def scaled(image: np.ndarray, scale: float, interpolation: int) -> np.ndarray:
    """``image`` resized by ``scale`` (below 1) with ``interpolation``; ``image`` itself at 1 or more."""
    if scale >= 1.0:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interpolation)


@functools.lru_cache(maxsize=256)
def anchor_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column, row and stride of every YuNet anchor of a ``height`` x ``width`` input (multiples of 32), in the order
    of its outputs: stride 8 row by row, then 16, then 32 (float32, read-only; cached per input size)."""
    xs, ys, strides = [], [], []
    for s in STRIDES:
        rows, cols = height // s, width // s
        xs.append(np.tile(np.arange(cols, dtype=np.float32), rows))
        ys.append(np.repeat(np.arange(rows, dtype=np.float32), cols))
        strides.append(np.full(rows * cols, s, np.float32))
    out = (np.concatenate(xs), np.concatenate(ys), np.concatenate(strides))
    for a in out:
        a.flags.writeable = False
    return out


def tile_scale(first: float, min_face_size: float) -> float:
    """The scale of the tile pass for a first pass at ``first``: full resolution, or less when the smallest face asked
    for is larger than :data:`TILE_MAX_FACE`; ``first`` (no tile pass) when pass 1 sees every face that large."""
    level = 1.0 if min_face_size <= TILE_MAX_FACE else TILE_MAX_FACE / min_face_size
    return max(first, level)


def tile_layout(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the fewest tiles of at most ``tile`` pixels covering ``length`` pixels with at least
    ``overlap`` pixels shared by neighbours, all of one size and evenly spaced."""
    if length <= tile:
        return [(0, length)]
    overlap = min(overlap, tile // 2)
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, math.ceil((length + (count - 1) * overlap) / count))
    return [(round(i * (length - size) / (count - 1)), size) for i in range(count)]
