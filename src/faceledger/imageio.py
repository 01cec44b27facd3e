"""Decode and validate images into BGR ``uint8`` arrays.

Every image that enters faceledger goes through :func:`load_image`: a path, raw bytes, a binary file object
or a numpy array comes out as a C-contiguous ``(H, W, 3)`` ``uint8`` array in BGR order (the OpenCV
convention the detector expects). Anything that cannot be turned into such an array raises
:class:`~faceledger.errors.ImageError`, which names the input and says what is wrong with it: missing file,
empty file, not an image, truncated or corrupt data, a decompression bomb, an absurd size.

Limits (defaults < environment < arguments):

* ``max_pixels``: width x height read from the file header, checked *before* the pixels are decoded, so a
  small file that claims to be enormous is refused without allocating memory for it. Default
  :data:`DEFAULT_MAX_PIXELS`, or the environment variable ``FACELEDGER_MAX_PIXELS``. Pillow's own limit
  (``PIL.Image.MAX_IMAGE_PIXELS``) applies as well: an image Pillow flags as a possible decompression bomb is
  refused with an :class:`ImageError` too.
* ``max_bytes``: size of the encoded file. Default :data:`DEFAULT_MAX_BYTES`, or ``FACELEDGER_MAX_BYTES``.
* pixels per encoded byte: an image of more than :data:`BOMB_MIN_PIXELS` pixels that packs more than
  :data:`MAX_PIXELS_PER_BYTE` pixels into each byte of its file (a 7.8 KB PNG claiming 64 megapixels packs 8,000)
  is refused before decoding: photographs and video frames, even of a flat wall, compress far less, while such a
  file would cost most of a gigabyte to decode and minutes to search. ``FACELEDGER_MAX_PIXELS_PER_BYTE`` changes
  the ratio (0 turns the check off).

Decoding allocates the BGR result and at most one image-sized intermediate: about 3 bytes per pixel plus the
decoder's own buffer (1 byte per pixel for grey or 1-bit images, 3 for colour).

Transparency is composited on a white background (not dropped): a cut-out portrait on a transparent
background comes out on white, the way image viewers show it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import struct
import warnings
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceledger.errors import FaceledgerError, ImageError
from faceledger.imageconvert import composite_on_white, gray_to_bgr, pil_to_bgr, unit_float_to_uint8

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ENV_MAX_BYTES",
    "ENV_MAX_PIXELS",
    "MAX_SIDE",
    "MIN_SIDE",
    "SUPPORTED_FORMATS",
    "BinaryReadable",
    "ImageSource",
    "iter_images",
    "load_image",
    "read_file",
    "source_name",
]

DEFAULT_MAX_PIXELS = 64_000_000
"""Default pixel limit: a 20-megapixel phone photo passes, a 100-megapixel decompression bomb does not."""

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""Default limit on the encoded size of an image (50 MiB)."""

ENV_MAX_PIXELS = "FACELEDGER_MAX_PIXELS"
"""Environment variable overriding :data:`DEFAULT_MAX_PIXELS` (read at each call)."""

ENV_MAX_BYTES = "FACELEDGER_MAX_BYTES"
"""Environment variable overriding :data:`DEFAULT_MAX_BYTES` (read at each call)."""

MAX_PIXELS_PER_BYTE = 1000
"""Most pixels per byte of the encoded file for an image above :data:`BOMB_MIN_PIXELS` (see the module)."""

BOMB_MIN_PIXELS = 4_000_000
"""Images up to this many pixels are never refused for their compression ratio (a uniform 2K frame is fine)."""

ENV_MAX_PIXELS_PER_BYTE = "FACELEDGER_MAX_PIXELS_PER_BYTE"
"""Environment variable overriding :data:`MAX_PIXELS_PER_BYTE` (0: no check)."""

MIN_SIDE = 8
"""Smallest accepted width or height, in pixels: nothing smaller can hold a detectable face."""

MAX_SIDE = 65535
"""Largest accepted width or height, in pixels (the JPEG and WebP maximum)."""

SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
"""Pillow format names :func:`load_image` decodes. JPEG includes MPO, the multi-picture JPEG many phones
write (Pillow opens both through one factory); PPM covers PBM/PGM/PPM. Other formats Pillow knows are refused
rather than handed to less-exercised decoders."""

_FORMATS_TEXT = "JPEG, PNG, WebP, BMP, TIFF, GIF, PGM/PPM"
_ORIENTATION_TAG = 0x0112


@runtime_checkable
class BinaryReadable(Protocol):
    """Anything with a ``read`` method returning bytes: ``open(path, "rb")``, ``io.BytesIO``, an upload."""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes (all remaining bytes when ``size`` is negative)."""
        ...


ImageSource: TypeAlias = (
    "str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryReadable | np.ndarray"
)
"""What :func:`load_image` accepts."""


# ----------------------------------------------------------------------------------------------------
# names and limits


def source_name(source: object) -> str:
    """The name used for ``source`` in errors and in command-line output.

    A path is named as given (``str`` unchanged, ``os.PathLike`` through :func:`os.fspath`); bytes are
    ``"<bytes>"``; a numpy array is ``"<array>"``; a file object is its ``name`` when it has a string one (as
    files from ``open()`` do), otherwise ``"<stream>"``; anything else is ``"<typename>"``.
    """
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, str):
        return source
    if isinstance(source, os.PathLike):
        return os.fsdecode(os.fspath(source))
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        return name if isinstance(name, str) and name else "<stream>"
    return f"<{type(source).__name__}>"


def _resolve_limit(value: int | None, env: str, default: int, what: str) -> int:
    """The effective limit: the argument if given, else the environment variable if set, else the default."""
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
        return value
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        parsed = int(raw)
    except ValueError:
        parsed = 0
    if parsed <= 0:
        raise FaceledgerError(
            f"environment variable {env}={raw!r} is not a positive integer; "
            f"unset it or set a number such as {default}"
        )
    return parsed


def _check_size(name: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse absurd sizes and decompression bombs from the dimensions alone (no pixel is decoded here)."""
    if width <= 0 or height <= 0:
        raise ImageError(
            name, f"image claims a size of {width}x{height} pixels (a side of 0); the file is damaged"
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(
            name,
            f"image is too small ({width}x{height} pixels); needs at least {MIN_SIDE} px on each side",
        )
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageError(
            name,
            f"image claims an absurd size ({width}x{height} pixels; the largest side allowed is {MAX_SIDE}); "
            "the file is damaged or crafted",
        )
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(name, _bomb_reason(width, height, pixels, max_pixels))


def _bomb_reason(width: int | None, height: int | None, pixels: int, max_pixels: int) -> str:
    size = f"{width}x{height} = " if width is not None and height is not None else ""
    return (
        f"image is {size}{pixels:,} pixels, above the limit of {max_pixels:,} pixels "
        "(possible decompression bomb); "
        f"if the image is genuine, raise the limit with max_pixels= or {ENV_MAX_PIXELS}"
    )


# ----------------------------------------------------------------------------------------------------
# reading bytes


def read_file(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> bytes:
    """The bytes of an image file (or a named pipe), once, with the same checks and messages as :func:`load_image`:
    for callers that must hash exactly the bytes they decode."""
    return _read_path(path, os.fspath(path), _resolve_limit(max_bytes, ENV_MAX_BYTES, DEFAULT_MAX_BYTES, "max_bytes"))


def _read_path(path: str | os.PathLike[str], name: str, max_bytes: int) -> bytes:
    """Read a whole file, with errors a user can act on."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise ImageError(name, "file not found: the path is a broken symbolic link") from None
        hint = " (URLs are not downloaded; save the image to a file first)" if _looks_like_url(name) else ""
        raise ImageError(name, f"file not found; check the path{hint}") from None
    except PermissionError:
        raise ImageError(name, "permission denied; check the file's permissions") from None
    except OSError as exc:
        raise ImageError(name, f"cannot access the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(name, "is a directory, not an image file; pass the image files inside it")
    regular = stat.S_ISREG(info.st_mode)
    if regular:
        _check_bytes(name, info.st_size, max_bytes)
    try:
        with open(path, "rb") as handle:
            data = handle.read() if regular else _read_stream(handle, name, max_bytes)
    except PermissionError:
        raise ImageError(name, "permission denied; check the file's permissions") from None
    except IsADirectoryError:
        raise ImageError(name, "is a directory, not an image file; pass the image files inside it") from None
    except OSError as exc:
        raise ImageError(name, f"cannot read the file: {exc.strerror or exc}") from None
    _check_bytes(name, len(data), max_bytes)
    return data


def _looks_like_url(name: str) -> bool:
    return name.lower().startswith(("http://", "https://", "ftp://", "data:"))


def _check_bytes(name: str, size: int, max_bytes: int) -> None:
    if size == 0:
        raise ImageError(name, "file is empty (0 bytes); the download or copy probably failed")
    if size > max_bytes:
        raise ImageError(
            name,
            f"file is {_mib(size)}, above the limit of {_mib(max_bytes)}; "
            f"if the image is genuine, raise the limit with max_bytes= or {ENV_MAX_BYTES}",
        )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB ({size:,} bytes)"


def _read_stream(stream: BinaryReadable, name: str, max_bytes: int) -> bytes:
    """Read a binary stream to its end, stopping as soon as it is longer than ``max_bytes``."""
    buffer = bytearray()
    while len(buffer) <= max_bytes:
        try:
            chunk = stream.read(min(1 << 20, max_bytes + 1 - len(buffer)))
        except UnicodeDecodeError:
            raise ImageError(name, "the file object is in text mode; open the image with mode 'rb'") from None
        except (OSError, ValueError) as exc:
            raise ImageError(name, f"cannot read the stream: {exc}") from None
        if chunk is None:
            raise ImageError(name, "the stream returned no data (non-blocking?); pass the bytes instead")
        if isinstance(chunk, str):
            raise ImageError(name, "the file object is in text mode; open the image with mode 'rb'")
        if not chunk:
            break
        buffer += chunk
    if not buffer:
        raise ImageError(name, "the stream is empty (0 bytes); was it already read to the end? seek(0) first")
    if len(buffer) > max_bytes:
        raise ImageError(
            name,
            f"stream is larger than the limit of {_mib(max_bytes)}; "
            f"if the image is genuine, raise the limit with max_bytes= or {ENV_MAX_BYTES}",
        )
    return bytes(buffer)


# ----------------------------------------------------------------------------------------------------
# recognising what the bytes are, for error messages

_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document, not an image; export the page as PNG or JPEG"),
    (b"PK\x03\x04", "a ZIP archive, not an image; extract the images first"),
    (b"\x1f\x8b", "a gzip archive, not an image; decompress it first"),
)


def _sniff_image(data: bytes) -> str | None:
    """Format name when ``data`` starts like an image faceledger decodes, else ``None``."""
    for signature, fmt in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if len(data) > 2 and data[0:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return "PBM/PGM/PPM"
    return None


def _describe_non_image(data: bytes) -> str:
    """Reason for bytes Pillow cannot identify, as specific as the first bytes allow."""
    fmt = _sniff_image(data)
    if fmt is not None:
        size = _header_size(data, fmt)
        if size is not None and (size[0] <= 0 or size[1] <= 0):
            return f"image claims a size of {size[0]}x{size[1]} pixels (a side of 0); the file is damaged"
        return f"starts like a {fmt} file but its header is damaged or truncated; get the file again"
    for signature, what in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return f"is {what}"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftyphevc"):
        return f"is a HEIC/HEIF image, not supported; convert it to JPEG (supported: {_FORMATS_TEXT})"
    if data[4:12] == b"ftypavif":
        return f"is an AVIF image, not supported; convert it to JPEG (supported: {_FORMATS_TEXT})"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "is an HTML page, not an image (a failed download?); download the image itself"
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "is an SVG drawing, which is not supported; export it as PNG"
    return f"not an image, or not a supported format (supported: {_FORMATS_TEXT})"


def _header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height read straight from a PNG, GIF or BMP header (used only to explain a refusal)."""
    try:
        if fmt == "PNG" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if fmt == "GIF":
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
        if fmt == "BMP":
            width, height = struct.unpack("<ii", data[18:26])
            return int(width), abs(int(height))
    except struct.error:
        return None
    return None


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


# ----------------------------------------------------------------------------------------------------
# decoding


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode encoded image bytes: header checks first, then pixels, EXIF orientation, conversion to BGR."""
    stream = io.BytesIO(data)
    try:
        # Scoped: Pillow's bomb warning is an exception in this block only; Pillow's globals stay untouched.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(name, _pillow_bomb_reason(exc, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageError(name, _describe_non_image(data)) from None
    except Exception as exc:
        raise ImageError(name, _decode_failure_reason(exc, _sniff_image(data) or "image")) from None

    with image:
        fmt = image.format or "image"
        width, height = image.size
        _check_size(name, width, height, max_pixels)  # from the header: nothing decoded yet
        _check_ratio(name, width * height, len(data), fmt)
        try:
            image.load()
        except Exception as exc:
            raise ImageError(name, _decode_failure_reason(exc, fmt)) from None
        with contextlib.suppress(Exception):  # a damaged EXIF block must not make a readable photo unreadable
            ImageOps.exif_transpose(image, in_place=True)
        return pil_to_bgr(image, name)


def _check_ratio(name: str, pixels: int, size: int, fmt: str) -> None:
    """Refuse a small file that decodes to an enormous image (see the module), from the header alone."""
    raw = os.environ.get(ENV_MAX_PIXELS_PER_BYTE, "")
    try:
        limit = int(raw) if raw.strip() else MAX_PIXELS_PER_BYTE
    except ValueError:
        raise ImageError(name, f"{ENV_MAX_PIXELS_PER_BYTE}={raw!r} is not a whole number") from None
    if limit > 0 and pixels > BOMB_MIN_PIXELS and pixels > limit * max(size, 1):
        raise ImageError(
            name,
            f"possible decompression bomb: a {size:,}-byte {fmt} file claims {pixels:,} pixels "
            f"({pixels // max(size, 1):,} per byte; photographs have fewer than {limit:,}); refused before "
            f"decoding (set {ENV_MAX_PIXELS_PER_BYTE}=0 to accept it)",
        )


def _pillow_bomb_reason(exc: Exception, max_pixels: int) -> str:
    match = _BOMB_PIXELS.search(str(exc))
    pixels = int(match.group(1)) if match else None
    if pixels is not None and pixels > max_pixels:
        return _bomb_reason(None, None, pixels, max_pixels)
    limit = Image.MAX_IMAGE_PIXELS
    counted = f"{pixels:,} pixels" if pixels is not None else "too many pixels"
    return (
        f"image has {counted}, above Pillow's decompression-bomb limit "
        f"(PIL.Image.MAX_IMAGE_PIXELS = {limit:,}); "
        "if the image is genuine, raise that limit in your application"
        if limit
        else f"Pillow refused the image as a possible decompression bomb ({exc})"
    )


def _decode_failure_reason(exc: Exception, fmt: str) -> str:
    message = str(exc)
    if isinstance(exc, EOFError) or "truncated" in message.lower():
        return f"{fmt} file is truncated: the image data ends early (incomplete download?); get it again"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode the image; lower its resolution"
    return f"corrupt {fmt} data ({type(exc).__name__}: {message}); the file is damaged, get it again"


# ----------------------------------------------------------------------------------------------------
# numpy input


_SHAPES_TEXT = "(H, W) gray, (H, W, 1) gray, (H, W, 3) BGR or (H, W, 4) BGRA"


def _from_array(array: np.ndarray, name: str, max_pixels: int) -> np.ndarray:
    """Validate and normalise an array given directly (no decoding involved)."""
    if array.size == 0:
        raise ImageError(name, f"array is empty (shape {array.shape}); expected {_SHAPES_TEXT}")
    if array.ndim == 2:
        channels = 1
    elif array.ndim == 3 and array.shape[2] in (1, 3, 4):
        channels = array.shape[2]
    else:
        hint = ""
        if array.ndim == 3 and array.shape[0] in (1, 3, 4):
            hint = "; channels-first arrays must be transposed with a.transpose(1, 2, 0)"
        raise ImageError(name, f"array has shape {array.shape}; expected {_SHAPES_TEXT}{hint}")
    height, width = int(array.shape[0]), int(array.shape[1])
    _check_size(name, width, height, max_pixels)

    if array.dtype == np.uint8:
        pixels = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(name, "array contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(
                name,
                f"float array values must lie in [0, 1], got [{low:g}, {high:g}]; "
                "divide 0-255 data by 255 or pass a uint8 array",
            )
        pixels = unit_float_to_uint8(array)
    else:
        raise ImageError(
            name,
            f"array dtype {array.dtype} is not supported; pass uint8 (0-255) or float (0-1) "
            "(16-bit data: (a >> 8).astype(np.uint8))",
        )

    if channels == 1:
        return gray_to_bgr(pixels.reshape(height, width))
    if channels == 4:
        return composite_on_white(pixels[:, :, :3], pixels[:, :, 3])
    return np.ascontiguousarray(pixels)


# ----------------------------------------------------------------------------------------------------
# public API


def load_image(
    source: ImageSource, *, max_pixels: int | None = None, max_bytes: int | None = None
) -> np.ndarray:
    """Read an image into a C-contiguous ``(H, W, 3)`` ``uint8`` array in BGR order.

    Args:
        source: a path (``str`` or ``os.PathLike``); encoded image bytes (``bytes``, ``bytearray``,
            ``memoryview``); a binary file object (anything with ``read``, read from its current position to
            the end); or a numpy array of shape (H, W) or (H, W, 1) gray, (H, W, 3) BGR or (H, W, 4) BGRA,
            with dtype ``uint8`` or float in [0, 1]. A C-contiguous ``uint8`` (H, W, 3) array is returned as
            is (not copied).
        max_pixels: refuse images with more pixels than this (width x height from the header, checked before
            decoding). Default: ``FACELEDGER_MAX_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`. Applies to
            arrays too.
        max_bytes: refuse encoded files larger than this. Default: ``FACELEDGER_MAX_BYTES`` if set, else
            :data:`DEFAULT_MAX_BYTES`.

    Formats are JPEG, PNG, WebP, BMP, TIFF, GIF (first frame) and PBM/PGM/PPM, in any pixel layout Pillow
    reads: gray, 16-bit (scaled to 8 bits), 32-bit float (read as 0-1 intensities), palette, CMYK, with or
    without alpha. Transparent pixels are composited on white (alpha is not simply dropped). The EXIF
    orientation tag is applied, so the array is upright as displayed. A damaged EXIF block is ignored rather
    than failing the image.

    Returns:
        The BGR image, ready for the detector.

    Raises:
        ImageError: the input cannot be read; ``.source`` is :func:`source_name` of the input and ``.reason``
            says why (file not found, is a directory, permission denied, empty, not an image, truncated,
            corrupt, too many pixels, too large a file, too small or absurd dimensions, unsupported array).
        ValueError: ``max_pixels`` or ``max_bytes`` is not a positive integer.
        FaceledgerError: ``FACELEDGER_MAX_PIXELS`` or ``FACELEDGER_MAX_BYTES`` is set to something that is
            not a positive integer.
    """
    pixel_limit = _resolve_limit(max_pixels, ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS, "max_pixels")
    byte_limit = _resolve_limit(max_bytes, ENV_MAX_BYTES, DEFAULT_MAX_BYTES, "max_bytes")
    return _load(source, pixel_limit, byte_limit)


def _load(source: object, max_pixels: int, max_bytes: int) -> np.ndarray:
    name = source_name(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, name, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source.tobytes() if isinstance(source, memoryview) else bytes(source)
        _check_bytes(name, len(data), max_bytes)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(source, name, max_bytes)
    elif isinstance(source, BinaryReadable):
        data = _read_stream(source, name, max_bytes)
    else:
        raise ImageError(
            name,
            f"cannot read an image from a {type(source).__name__}; pass a path, bytes, a binary file object "
            "or a numpy array",
        )
    return _decode(data, name, max_pixels)


def iter_images(
    sources: Iterable[ImageSource], *, max_pixels: int | None = None, max_bytes: int | None = None
) -> Iterator[tuple[str, np.ndarray | None, ImageError | None]]:
    """Load many images, one at a time, never stopping at a bad one.

    Yields ``(name, image, None)`` for each image that loads and ``(name, None, error)`` for each that does
    not, in the order given. ``name`` is :func:`source_name` of the item. Limits are as in :func:`load_image`;
    they are resolved once, when this function is called (a bad ``max_pixels`` or environment variable raises
    here, before any item).
    """
    pixel_limit = _resolve_limit(max_pixels, ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS, "max_pixels")
    byte_limit = _resolve_limit(max_bytes, ENV_MAX_BYTES, DEFAULT_MAX_BYTES, "max_bytes")

    def generate() -> Iterator[tuple[str, np.ndarray | None, ImageError | None]]:
        for source in sources:
            name = source_name(source)
            try:
                yield name, _load(source, pixel_limit, byte_limit), None
            except ImageError as exc:
                yield name, None, exc
            except Exception as exc:  # an unforeseen decoder failure must not stop the batch either
                reason = f"unexpected error while reading ({type(exc).__name__}: {exc})"
                yield name, None, ImageError(name, reason)

    return generate()
