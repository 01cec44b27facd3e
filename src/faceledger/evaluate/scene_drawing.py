"""Drawing the scenes of :mod:`faceledger.evaluate.scenes`: people cut from photos, a corridor, a pillar, and where
each face stays visible. Pure numpy and OpenCV: which faces and photos to use is the scenes module's business."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["MIN_VISIBLE", "PALETTE", "Cover", "Placer", "Sprite", "corridor", "cut_sprite", "pillar", "visible_box"]

#: A face less visible than this (fraction of its box in view and uncovered) has no box in the truth: a detector
#: still finds a face half hidden behind a pillar, but not a sliver of one.
MIN_VISIBLE = 0.3
REF_FACE = 200  # sprites keep at most this face height: the scenes never need more
#: Clothes, walls and trousers.
PALETTE = ((60, 45, 35), (90, 90, 95), (40, 40, 120), (50, 90, 50), (140, 150, 160), (30, 30, 30), (120, 80, 40))


@dataclass(frozen=True)
class Sprite:
    """A person to paste: BGRA pixels and where the face is in them."""

    bgra: np.ndarray  # uint8, alpha in the 4th channel
    box: np.ndarray  # the face box in sprite pixels


def cut_sprite(image: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> Sprite:
    """Head and shoulders of photo ``image`` around face ``box``, on a drawn neck, torso and legs, with soft alpha."""
    b = np.asarray(box, np.float64)
    if (k := REF_FACE / (b[3] - b[1])) < 1:
        image, b = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA), b * k
    w, h = b[2] - b[0], b[3] - b[1]
    x0, y0 = math.floor(b[0] - 0.8 * w), math.floor(b[1] - 0.8 * h)
    x1, y1 = math.ceil(b[2] + 0.8 * w), math.ceil(b[3] + 5.8 * h)  # room for a body below the photo's shoulders
    ih, iw = image.shape[:2]
    pads = (max(0, -y0), max(0, y1 - ih), max(0, -x0), max(0, x1 - iw))
    padded = cv2.copyMakeBorder(image, *pads, cv2.BORDER_REPLICATE)
    canvas = padded[y0 + pads[0] : y1 + pads[0], x0 + pads[2] : x1 + pads[2]].astype(np.float32)
    sigma = max(1.5, 0.06 * w)
    # the photo's own edges must never show: its valid area shrinks by the feather, and when the head reaches past
    # a tight crop, an ellipse inside the crop rounds it off instead of leaving a square
    valid: np.ndarray = np.zeros(canvas.shape[:2], np.float32)
    vx0, vy0, vx1, vy1 = max(0, -x0), max(0, -y0), min(iw - x0, x1 - x0), min(ih - y0, y1 - y0)
    valid[vy0:vy1, vx0:vx1] = 1
    valid = cv2.erode(valid, np.ones((int(2 * sigma) | 1,) * 2, np.uint8))
    fx, fy = (b[0] + b[2]) / 2 - x0, (b[1] + b[3]) / 2 - y0  # face centre in canvas pixels

    def ellipse(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
        mask = np.zeros_like(valid)
        cv2.ellipse(mask, (round(cx), round(cy)), (max(1, round(ax)), max(1, round(ay))), 0, 0, 360, 1, -1)
        return mask

    head = ellipse(fx, fy - 0.1 * h, 0.7 * w, 0.82 * h)
    if (head * valid).sum() < 0.97 * head.sum():
        valid *= ellipse((vx0 + vx1) / 2, (vy0 + vy1) / 2, (vx1 - vx0) / 2 - sigma, (vy1 - vy0) / 2 - sigma)
    shoulders = ellipse(fx, fy + 1.45 * h, 1.2 * w, 0.9 * h)
    shoulders[round(fy + 1.9 * h) :] = 0
    photo_alpha = cv2.GaussianBlur(np.maximum(head, shoulders) * valid, (0, 0), sigma)[..., None]
    # clothes take the colour of the photo's shoulders when it shows them, else a plain colour
    worn = (shoulders * valid) > 0
    if worn.sum() > 0.2 * shoulders.sum():
        clothes = np.median(canvas[worn], axis=0).astype(np.float32)
    else:
        clothes = np.array(PALETTE[rng.integers(len(PALETTE))], np.float32)
    trousers = np.array(PALETTE[rng.choice([0, 1, 5])], np.float32)
    middle = canvas[round(fy - 0.2 * h) : round(fy + 0.2 * h), round(fx - 0.2 * w) : round(fx + 0.2 * w)]
    skin = np.median(middle.reshape(-1, 3), axis=0)
    chin, bottom = fy + 0.5 * h, canvas.shape[0] - 2 * sigma
    body, neck = np.zeros_like(valid), np.zeros_like(valid)
    torso = [(-0.9, 0.3), (0.9, 0.3), (1.15, 0.6), (1.05, 3.3), (-1.05, 3.3), (-1.15, 0.6)]
    cv2.fillPoly(body, [np.array([(fx + u * w, chin + v * h) for u, v in torso], np.int32)], 1)
    for side in (-1, 1):  # legs, marked 2 to be drawn in trousers
        leg = ((round(fx + side * 0.08 * w), round(chin + 3.1 * h)), (round(fx + side * 0.9 * w), round(bottom)))
        cv2.rectangle(body, *leg, 2, -1)
    cv2.rectangle(
        neck, (round(fx - 0.22 * w), round(fy + 0.2 * h)), (round(fx + 0.22 * w), round(chin + 0.4 * h)), 1, -1
    )
    shade = np.linspace(1.0, 0.7, canvas.shape[0], dtype=np.float32)[:, None, None]  # lit from above
    drawn = np.where((body == 2)[..., None], trousers, clothes)
    drawn = np.where((neck > 0)[..., None], skin, drawn) * shade
    body_alpha = cv2.GaussianBlur(np.maximum(body > 0, neck).astype(np.float32), (0, 0), sigma)
    colour = canvas * photo_alpha + drawn * (1 - photo_alpha)
    alpha = np.maximum(photo_alpha[..., 0], body_alpha)
    bgra = np.dstack([np.clip(colour, 0, 255), alpha * 255]).round().astype(np.uint8)
    return Sprite(bgra, b - np.array([x0, y0, x0, y0], np.float64))


def corridor(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A static corridor: wall, floor with joints in perspective, doors, windows, a bench; nobody in it."""
    horizon = round(0.42 * height)
    wall = np.array(PALETTE[4], np.float32) * rng.uniform(0.9, 1.25, 3).astype(np.float32)
    floor = np.array((95, 105, 110), np.float32) * rng.uniform(0.7, 1.1, 3).astype(np.float32)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = np.where(ramp < horizon / height, wall * (0.85 + 0.25 * ramp), floor * (0.8 + 0.35 * ramp))
    img = np.broadcast_to(img, (height, width, 3)).copy()
    vx = width * rng.uniform(0.35, 0.65)
    for i in range(-12, 13):  # joints converging on a vanishing point
        cv2.line(img, (round(vx), horizon), (round(vx + i * width / 5), height), (70, 75, 80), 2, cv2.LINE_AA)
    for y in np.geomspace(1, height - horizon, 9):
        cv2.line(img, (0, horizon + round(y)), (width, horizon + round(y)), (75, 80, 85), 1, cv2.LINE_AA)
    cv2.rectangle(img, (0, horizon - 8), (width, horizon), (60, 60, 62), -1)  # skirting
    for x in rng.choice(np.arange(40, width - 200, 60), size=4, replace=False):
        door = bool(rng.integers(0, 2))
        corner = (int(x) + int(rng.integers(90, 180)), horizon - 8 if door else round(0.3 * height))
        top = (int(x), round((0.08 if door else 0.12) * height))
        cv2.rectangle(img, top, corner, (45, 65, 95) if door else (200, 185, 160), -1)
        cv2.rectangle(img, top, corner, (40, 40, 40), 3)
    bench = int(rng.integers(50, width - 350))
    cv2.rectangle(img, (bench, horizon + 30), (bench + 300, horizon + 55), (40, 60, 90), -1)
    img += rng.normal(0, 3, img.shape).astype(np.float32)  # plaster and floor texture
    return cv2.GaussianBlur(np.clip(img, 0, 255), (3, 3), 0).astype(np.uint8)


def pillar(height: int, width: int) -> np.ndarray:
    """A foreground concrete pillar, ``(height, width, 3)``, lit from the left."""
    x = np.linspace(-1, 1, width, dtype=np.float32)
    light = 0.55 + 0.45 * np.sqrt(np.clip(1 - x**2, 0, 1)) - 0.15 * x
    return np.broadcast_to(light[None, :, None] * np.array([150, 155, 160], np.float32), (height, width, 3)).astype(
        np.uint8
    )


Cover = tuple[int, int, np.ndarray | None]  # where a drawn sprite's alpha lies: left, top, alpha (None: off-frame)


class Placer:
    """Draws one sprite frame after frame: scaled once to the largest face its path needs, then kept as its last
    resized copy, since a walker keeps its size for several frames."""

    def __init__(self, sprite: Sprite, size: float) -> None:
        sh, sw = sprite.bgra.shape[:2]
        if (k := 1.1 * size / (sprite.box[3] - sprite.box[1])) < 1:
            nw, nh = max(1, round(sw * k)), max(1, round(sh * k))
            bgra = cv2.resize(sprite.bgra, (nw, nh), interpolation=cv2.INTER_AREA)
            sprite = Sprite(bgra, sprite.box * np.array([nw / sw, nh / sh, nw / sw, nh / sh]))
        self.sprite, self.size = sprite, (0, 0)
        self.bgr: np.ndarray = sprite.bgra[..., :3]
        self.alpha: np.ndarray = np.zeros(0, np.float32)

    def place(self, frame: np.ndarray, cx: float, cy: float, size: float) -> tuple[np.ndarray, Cover]:
        """Blend into ``frame`` with the face (``size`` px high) centred at (cx, cy); the true face box and the drawn
        alpha (which hides farther faces)."""
        sprite, (sh, sw) = self.sprite, self.sprite.bgra.shape[:2]
        scale = min(size / (sprite.box[3] - sprite.box[1]), 2.5)  # never blow a photo face up beyond recognition
        nw, nh = max(1, round(sw * scale)), max(1, round(sh * scale))
        sx, sy = nw / sw, nh / sh
        x0 = round(cx - (sprite.box[0] + sprite.box[2]) / 2 * sx)
        y0 = round(cy - (sprite.box[1] + sprite.box[3]) / 2 * sy)
        box = sprite.box * np.array([sx, sy, sx, sy]) + np.array([x0, y0, x0, y0])
        a0, b0, a1, b1 = max(0, x0), max(0, y0), min(frame.shape[1], x0 + nw), min(frame.shape[0], y0 + nh)
        if a0 >= a1 or b0 >= b1:
            return box, (a0, b0, None)
        if (nw, nh) != self.size:
            # area averaging only where linear would alias: it costs several times as much
            interp = cv2.INTER_AREA if nw < 0.6 * sw else cv2.INTER_LINEAR
            bgra = cv2.resize(sprite.bgra, (nw, nh), interpolation=interp)
            self.size, self.bgr, self.alpha = (nw, nh), bgra[..., :3].copy(), bgra[..., 3].astype(np.float32) / 255
        window = (slice(b0 - y0, b1 - y0), slice(a0 - x0, a1 - x0))
        bgr, alpha = np.ascontiguousarray(self.bgr[window]), np.ascontiguousarray(self.alpha[window])
        frame[b0:b1, a0:a1] = cv2.blendLinear(bgr, np.ascontiguousarray(frame[b0:b1, a0:a1]), alpha, 1 - alpha)
        return box, (a0, b0, alpha)


def visible_box(
    box: np.ndarray, covers: list[Cover], span: tuple[int, int] | None, W: int, H: int
) -> tuple[np.ndarray, float]:
    """``box`` clipped to the frame (NaN when less than :data:`MIN_VISIBLE` of it is seen) and the fraction of it in
    view and not covered by ``covers`` (nearer people) or the pillar's columns ``span``."""
    x1, y1, x2, y2 = (round(v) for v in box)
    c1, r1, c2, r2 = max(0, x1), max(0, y1), min(W, x2), min(H, y2)
    if c1 >= c2 or r1 >= r2:
        return np.full(4, np.nan), 0.0
    cover = np.zeros((r2 - r1, c2 - c1), np.float32)
    for a0, b0, alpha in covers:  # nearer people, drawn over this face
        if alpha is not None:
            u1, v1, u2, v2 = max(c1, a0), max(r1, b0), min(c2, a0 + alpha.shape[1]), min(r2, b0 + alpha.shape[0])
            if u1 < u2 and v1 < v2:
                window = cover[v1 - r1 : v2 - r1, u1 - c1 : u2 - c1]
                np.maximum(window, alpha[v1 - b0 : v2 - b0, u1 - a0 : u2 - a0], out=window)
    if span is not None:
        cover[:, max(0, span[0] - c1) : max(0, span[1] - c1)] = 1
    seen = float((cover < 0.5).sum()) / max(1, (x2 - x1) * (y2 - y1))
    return (np.array([c1, r1, c2, r2], np.float64) if seen >= MIN_VISIBLE else np.full(4, np.nan)), seen
