"""Pixels of any Pillow mode to the C-contiguous BGR ``uint8`` arrays the engine takes (a part of
:mod:`faceledger.imageio`, which decodes and checks the files)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from faceledger.errors import ImageError

__all__ = ["composite_on_white", "gray_to_bgr", "pil_to_bgr", "unit_float_to_uint8"]

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def pil_to_bgr(image: Image.Image, name: str) -> np.ndarray:
    """Convert a decoded Pillow image of any mode into a C-contiguous BGR ``uint8`` array."""
    mode = image.mode
    try:
        if mode.startswith("I;16") or mode == "I":
            # 16-bit (and 32-bit integer) grayscale: Pillow's own convert("L") clips instead of scaling.
            wide = np.asarray(image).astype(np.int64)
            gray = ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
            return gray_to_bgr(gray)
        if mode == "F":
            values = np.asarray(image, dtype=np.float32)
            if not np.isfinite(values).all():
                raise ImageError(name, "floating-point image contains NaN or infinite values")
            return gray_to_bgr(unit_float_to_uint8(np.clip(values, 0.0, 1.0)))
        has_alpha = mode in _ALPHA_MODES or "transparency" in image.info
        if has_alpha:
            source = image.convert("LA") if mode == "La" else image
            rgba = np.asarray(source.convert("RGBA"))
            return composite_on_white(rgba[:, :, 2::-1], rgba[:, :, 3])
        if mode in ("L", "1"):
            # Grey and 1-bit: one byte per pixel from Pillow, then the BGR result (no colour intermediate).
            return gray_to_bgr(np.asarray(image if mode == "L" else image.convert("L")))
        rgb = image if mode == "RGB" else image.convert("RGB")
        # Pillow packs the pixels straight into BGR order, faster than reversing the channels of an RGB array
        # in numpy (a strided copy) after np.asarray's own copy. The bytearray keeps the result writable.
        packed = bytearray(rgb.tobytes("raw", "BGR"))
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(
            name, f"pixel mode {mode} cannot be converted to colour ({exc}); convert the image to RGB first"
        ) from None
    width, height = rgb.size
    return np.frombuffer(packed, dtype=np.uint8).reshape(height, width, 3)


def gray_to_bgr(gray: np.ndarray) -> np.ndarray:
    """A (H, W) grey image as (H, W, 3) BGR, allocated once."""
    out = np.empty((*gray.shape[:2], 3), dtype=np.uint8)
    out[...] = gray.reshape(*gray.shape[:2], 1)
    return out


def composite_on_white(bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend ``bgr`` (H, W, 3) uint8 over a white background; ``alpha`` is (H, W) uint8."""
    if alpha.min() == 255:
        return np.ascontiguousarray(bgr)
    a = alpha.astype(np.uint16)[:, :, None]
    blended = (bgr.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255  # at most 65152: fits uint16
    return blended.astype(np.uint8)


def unit_float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as uint8 0..255, rounded."""
    return np.rint(values.astype(np.float32) * np.float32(255.0)).astype(np.uint8)
