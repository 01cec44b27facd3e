"""Anonymization: blur or pixelate faces so that neither people nor the engine itself can recognise them."""

from __future__ import annotations

import cv2
import numpy as np


def anonymize(
    image: np.ndarray,
    boxes: np.ndarray,
    keep: np.ndarray | None = None,
    method: str = "blur",
    margin: float = 0.25,
) -> np.ndarray:
    """A copy of ``image`` with every face in ``boxes (N, 4)`` hidden, except where ``keep`` (bool ``(N,)``) is true.

    The region is the box grown by ``margin`` on each side (hair, ears and jaw identify people too) and is destroyed,
    not softened: ``"blur"`` averages it with a kernel half the face's size, three times, inside an ellipse;
    ``"pixelate"`` reduces it to 4 blocks across; ``"fill"`` paints it solid grey.
    """
    if method not in {"blur", "pixelate", "fill"}:
        raise ValueError(f"unknown anonymization method {method!r}; use 'blur', 'pixelate' or 'fill'")
    out = image.copy()
    h, w = image.shape[:2]
    for i, box in enumerate(boxes):
        if keep is not None and keep[i]:
            continue
        x1, y1, x2, y2 = box.astype(np.float64)
        mx, my = (x2 - x1) * margin, (y2 - y1) * margin
        x1, y1 = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
        x2, y2 = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
        if x2 <= x1 or y2 <= y1:
            continue
        region = out[y1:y2, x1:x2]
        rh, rw = region.shape[:2]
        if method == "fill":
            hidden = np.full_like(region, 128)
        elif method == "pixelate":
            blocks = 4
            tiny = cv2.resize(region, (blocks, max(1, round(blocks * rh / rw))), interpolation=cv2.INTER_AREA)
            hidden = cv2.resize(tiny, (rw, rh), interpolation=cv2.INTER_NEAREST)
        else:
            k = max(3, (min(rw, rh) // 2) | 1)
            hidden = region
            for _ in range(3):
                hidden = cv2.blur(hidden, (k, k))
        if method == "blur":
            mask = np.zeros((rh, rw), np.uint8)
            cv2.ellipse(mask, (rw // 2, rh // 2), (rw // 2, rh // 2), 0, 0, 360, 255, -1)
            region[mask > 0] = hidden[mask > 0]
        else:
            region[:] = hidden
    return out
