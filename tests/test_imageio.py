"""Tests for faceledger.imageio: decoding every supported format, orientation, inputs, limits and bad files.

Synthetic images are written to ``tmp_path`` with Pillow and numpy; real photos come from the shared face set.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from faceledger import imageio
from faceledger.errors import FaceledgerError, ImageError
from faceledger.imageio import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    SUPPORTED_FORMATS,
    iter_images,
    load_image,
    source_name,
)

if TYPE_CHECKING:
    from conftest import ManifestRow

# An asymmetric 32x48 test card: 2 rows x 3 columns of 16x16 blocks in six distinct colours (RGB).
BLOCK_RGB = np.array(
    [
        [(255, 0, 0), (0, 200, 0), (0, 0, 255)],
        [(255, 255, 0), (255, 0, 255), (40, 40, 40)],
    ],
    dtype=np.uint8,
)


def card_rgb() -> np.ndarray:
    """The test card as an (32, 48, 3) RGB array."""
    return np.repeat(np.repeat(BLOCK_RGB, 16, axis=0), 16, axis=1)


def block_means(image: np.ndarray) -> np.ndarray:
    """Mean colour of the interior of each 16x16 block of a card-shaped image (rows, cols, 3)."""
    rows, cols = image.shape[0] // 16, image.shape[1] // 16
    blocks = image.reshape(rows, 16, cols, 16, 3)[:, 3:13, :, 3:13, :]
    return blocks.mean(axis=(1, 3))


def assert_card(bgr: np.ndarray, tolerance: float = 0.0) -> None:
    """``bgr`` is the upright test card in BGR order, exactly or within ``tolerance`` per block mean."""
    assert bgr.shape == (32, 48, 3)
    assert bgr.dtype == np.uint8
    assert bgr.flags.c_contiguous
    assert bgr.flags.writeable
    expected = card_rgb()[:, :, ::-1]
    if tolerance == 0:
        np.testing.assert_array_equal(bgr, expected)
    else:
        diff = np.abs(block_means(bgr) - block_means(expected))
        assert diff.max() <= tolerance, diff


def save(image: Image.Image, path: Path, fmt: str, **params: Any) -> Path:
    image.save(path, fmt, **params)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bytes(width: int, height: int, raw: bytes = b"", *, depth: int = 8, colour_type: int = 0) -> bytes:
    """A PNG written by hand: any header size (even absurd) with ``raw`` (possibly too short) as pixels."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def expect_error(source: Any, *words: str, name: str | None = None, **kw: Any) -> ImageError:
    """``load_image(source)`` raises ImageError naming the source, with one of ``words`` in the reason."""
    with pytest.raises(ImageError) as info:
        load_image(source, **kw)
    error = info.value
    expected_name = name if name is not None else source_name(source)
    assert error.source == expected_name
    assert str(error).startswith(f"{expected_name}: ")
    assert any(word in error.reason.lower() for word in words), error.reason
    return error


@pytest.fixture(autouse=True)
def _no_limit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from the built-in limits, whatever the developer's environment says."""
    monkeypatch.delenv("FACELEDGER_MAX_PIXELS", raising=False)
    monkeypatch.delenv("FACELEDGER_MAX_BYTES", raising=False)


# ----------------------------------------------------------------------------------------------------
# formats and colour


def test_supported_formats_are_pillow_decoders() -> None:
    Image.init()
    assert set(SUPPORTED_FORMATS) <= set(Image.OPEN)


def test_defaults() -> None:
    assert DEFAULT_MAX_PIXELS == 64_000_000
    assert DEFAULT_MAX_BYTES == 50 * 1024 * 1024
    assert 5472 * 3648 < DEFAULT_MAX_PIXELS < 100_000_000  # a 20 MP photo passes, a 100 MP bomb does not


@pytest.mark.parametrize(
    ("fmt", "suffix", "params", "tolerance"),
    [
        ("PNG", ".png", {}, 0),
        ("BMP", ".bmp", {}, 0),
        ("TIFF", ".tif", {}, 0),
        ("TIFF", ".tiff", {"compression": "tiff_lzw"}, 0),
        ("WEBP", ".webp", {"lossless": True}, 0),
        ("GIF", ".gif", {}, 0),
        ("PPM", ".ppm", {}, 0),
        ("JPEG", ".jpg", {"quality": 95}, 12),
        ("JPEG", ".jpeg", {"quality": 60, "progressive": True}, 24),
        ("WEBP", ".webp", {"quality": 90}, 24),
    ],
)
def test_format_round_trip(
    tmp_path: Path, fmt: str, suffix: str, params: dict[str, Any], tolerance: int
) -> None:
    path = save(Image.fromarray(card_rgb()), tmp_path / f"card{suffix}", fmt, **params)
    assert_card(load_image(path), tolerance)


def test_bgr_order_pure_red(tmp_path: Path) -> None:
    red = Image.new("RGB", (24, 16), (255, 0, 0))
    exact = load_image(save(red, tmp_path / "red.png", "PNG"))
    assert (exact == np.array([0, 0, 255], dtype=np.uint8)).all()
    lossy = load_image(save(red, tmp_path / "red.jpg", "JPEG", quality=95)).astype(int)
    assert np.abs(lossy - [0, 0, 255]).max() <= 3


def test_grayscale_formats(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 240, 5, dtype=np.uint8), (32, 1))  # 32x48 horizontal ramp
    for fmt, suffix in [("PNG", ".png"), ("PPM", ".pgm"), ("TIFF", ".tif"), ("BMP", ".bmp")]:
        out = load_image(save(Image.fromarray(gray, "L"), tmp_path / f"gray{suffix}", fmt))
        assert out.shape == (32, 48, 3)
        for channel in range(3):
            np.testing.assert_array_equal(out[:, :, channel], gray)
    jpeg = load_image(save(Image.fromarray(gray, "L"), tmp_path / "gray.jpg", "JPEG", quality=95)).astype(int)
    assert np.abs(jpeg[:, :, 0] - gray).max() <= 4
    assert (jpeg[:, :, 0] == jpeg[:, :, 2]).all()


def test_bilevel_pbm(tmp_path: Path) -> None:
    bits = np.zeros((16, 24), dtype=bool)
    bits[:, 12:] = True
    out = load_image(save(Image.fromarray(bits), tmp_path / "bits.pbm", "PPM"))
    assert (out[:, :12] == 0).all()
    assert (out[:, 12:] == 255).all()


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((16, 24, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red everywhere
    rgba[:, :8, 3] = 255  # opaque
    rgba[:, 8:16, 3] = 0  # fully transparent
    rgba[:, 16:, 3] = 128  # half
    for fmt, suffix, params in [
        ("PNG", ".png", {}),
        ("WEBP", ".webp", {"lossless": True}),
        ("TIFF", ".tif", {}),
    ]:
        out = load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / f"alpha{suffix}", fmt, **params))
        assert (out[:, :8] == [0, 0, 255]).all()
        assert (out[:, 8:16] == [255, 255, 255]).all()
        half = round(255 * (255 - 128) / 255)  # white behind half-transparent red
        assert np.abs(out[:, 16:].astype(int) - [half, half, 255]).max() <= 1


def test_gray_alpha(tmp_path: Path) -> None:
    la = np.zeros((16, 24, 2), dtype=np.uint8)
    la[..., 0] = 50
    la[:, :12, 1] = 255
    out = load_image(save(Image.fromarray(la, "LA"), tmp_path / "la.png", "PNG"))
    assert (out[:, :12] == 50).all()
    assert (out[:, 12:] == 255).all()


def test_colour_key_transparency(tmp_path: Path) -> None:
    rgb = np.zeros((16, 24, 3), dtype=np.uint8)
    rgb[:, :12] = (0, 0, 255)
    rgb[:, 12:] = (255, 0, 0)
    path = save(Image.fromarray(rgb), tmp_path / "key.png", "PNG", transparency=(255, 0, 0))
    out = load_image(path)
    assert (out[:, :12] == [255, 0, 0]).all()  # blue, in BGR
    assert (out[:, 12:] == 255).all()  # the keyed red is transparent -> white


def palette_card() -> Image.Image:
    indices = np.repeat(np.repeat(np.arange(6, dtype=np.uint8).reshape(2, 3), 16, axis=0), 16, axis=1)
    image = Image.fromarray(indices, "P")
    image.putpalette(BLOCK_RGB.reshape(-1).tolist())
    return image


def test_palette(tmp_path: Path) -> None:
    for fmt, suffix in [("PNG", ".png"), ("GIF", ".gif"), ("BMP", ".bmp"), ("TIFF", ".tif")]:
        path = save(palette_card(), tmp_path / f"palette{suffix}", fmt)
        with Image.open(path) as check:
            assert check.mode == "P"
        assert_card(load_image(path))


def test_palette_transparency(tmp_path: Path) -> None:
    for fmt, suffix in [("PNG", ".png"), ("GIF", ".gif")]:
        path = save(palette_card(), tmp_path / f"transparent{suffix}", fmt, transparency=2)  # the blue block
        out = load_image(path)
        assert (out[:16, 32:] == 255).all()
        assert (out[:16, :16] == [0, 0, 255]).all()


def test_sixteen_bit_gray(tmp_path: Path) -> None:
    values = (np.arange(32 * 48, dtype=np.uint32).reshape(32, 48) * 43 % 65536).astype(np.uint16)
    expected = np.rint(values.astype(float) * 255 / 65535)
    for fmt, suffix in [("PNG", ".png"), ("TIFF", ".tif"), ("PPM", ".pgm")]:
        path = save(Image.fromarray(values), tmp_path / f"deep{suffix}", fmt)
        with Image.open(path) as check:
            assert check.mode in {"I;16", "I;16B", "I"}
        out = load_image(path)
        assert out.shape == (32, 48, 3)
        assert np.abs(out[:, :, 1].astype(float) - expected).max() <= 1, fmt  # scaled, not clipped at 255


def test_sixteen_bit_colour_png() -> None:
    rgb16 = card_rgb().astype(np.uint16) * 257  # 0..65535
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    out = load_image(png_bytes(48, 32, rows, depth=16, colour_type=2))
    assert_card(out)


def test_cmyk(tmp_path: Path) -> None:
    cmyk = Image.fromarray(card_rgb()).convert("CMYK")
    for fmt, suffix, tolerance in [("JPEG", ".jpg", 16), ("TIFF", ".tif", 0)]:
        path = save(cmyk, tmp_path / f"cmyk{suffix}", fmt)
        with Image.open(path) as check:
            assert check.mode == "CMYK"
        assert_card(load_image(path), tolerance)


def test_gif_first_frame(tmp_path: Path) -> None:
    first = Image.fromarray(card_rgb())
    second = Image.new("RGB", (48, 32), (0, 0, 255))
    path = tmp_path / "anim.gif"
    first.save(path, "GIF", save_all=True, append_images=[second], duration=100)
    with Image.open(path) as check:
        assert check.n_frames == 2
    assert_card(load_image(path))


# ----------------------------------------------------------------------------------------------------
# EXIF orientation

# How each EXIF orientation stores an upright image (EXIF 2.32, tag 0x0112): stored = STORE[k](upright).
STORE = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # row 0 = left side, column 0 = top
    6: lambda a: np.rot90(a, 1),  # row 0 = right side, column 0 = top (viewer rotates 90 clockwise)
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),  # row 0 = right side, column 0 = bottom
    8: lambda a: np.rot90(a, -1),  # row 0 = left side, column 0 = bottom (viewer rotates 90 anticlockwise)
}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    ("fmt", "params", "tolerance"),
    [("JPEG", {"quality": 95}, 12), ("PNG", {}, 0), ("WEBP", {"lossless": True}, 0), ("TIFF", {}, 0)],
)
def test_exif_orientation(
    tmp_path: Path, orientation: int, fmt: str, params: dict[str, Any], tolerance: int
) -> None:
    stored = np.ascontiguousarray(STORE[orientation](card_rgb()))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(Image.fromarray(stored), tmp_path / f"o{orientation}.{fmt.lower()}", fmt, exif=exif, **params)
    with Image.open(path) as check:
        assert check.getexif().get(0x0112) == orientation
        if fmt != "TIFF":  # Pillow's TIFF reader reports the size already oriented
            assert check.size == (stored.shape[1], stored.shape[0])
    assert_card(load_image(path), tolerance)


def test_damaged_exif_is_ignored(tmp_path: Path) -> None:
    card = Image.fromarray(card_rgb())
    path = save(card, tmp_path / "badexif.jpg", "JPEG", quality=95, exif=b"Exif\x00\x00garbage")
    assert_card(load_image(path), 12)


# ----------------------------------------------------------------------------------------------------
# input kinds


def test_all_input_kinds_agree(tmp_path: Path) -> None:
    path = save(Image.fromarray(card_rgb()), tmp_path / "card.png", "PNG")
    data = path.read_bytes()
    reference = load_image(str(path))
    assert_card(reference)
    with open(path, "rb") as handle:
        from_file = load_image(handle)
    others = [
        load_image(path),
        load_image(data),
        load_image(bytearray(data)),
        load_image(memoryview(data)),
        load_image(io.BytesIO(data)),
        from_file,
        load_image(reference),
        load_image(reference.astype(np.float32) / 255),
    ]
    for other in others:
        np.testing.assert_array_equal(other, reference)


def test_stream_is_read_from_its_position() -> None:
    data = png_bytes(8, 8, b"\x00" * (9 * 8))
    stream = io.BytesIO(b"JUNK" + data)
    stream.seek(4)
    assert load_image(stream).shape == (8, 8, 3)


def test_source_names(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    assert source_name("photos/a.jpg") == "photos/a.jpg"
    assert source_name(path) == str(path)
    assert source_name(b"\x89PNG") == "<bytes>"
    assert source_name(bytearray(b"1")) == "<bytes>"
    assert source_name(memoryview(b"1")) == "<bytes>"
    assert source_name(np.zeros((8, 8), np.uint8)) == "<array>"
    assert source_name(io.BytesIO(b"")) == "<stream>"
    path.write_bytes(b"")
    with open(path, "rb") as handle:
        assert source_name(handle) == str(path)
    assert source_name(42) == "<int>"


# ----------------------------------------------------------------------------------------------------
# numpy arrays


def test_array_bgr_uint8_is_returned_as_is() -> None:
    bgr = np.ascontiguousarray(card_rgb()[:, :, ::-1])
    assert load_image(bgr) is bgr
    view = bgr[:, ::-1]  # not contiguous
    out = load_image(view)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, view)


def test_array_gray_and_single_channel() -> None:
    gray = np.tile(np.arange(48, dtype=np.uint8) * 5, (32, 1))
    for array in (gray, gray[:, :, None]):
        out = load_image(array)
        assert out.shape == (32, 48, 3)
        for channel in range(3):
            np.testing.assert_array_equal(out[:, :, channel], gray)


def test_array_bgra_composited_on_white() -> None:
    bgra = np.zeros((16, 24, 4), dtype=np.uint8)
    bgra[..., 0] = 255  # blue
    bgra[:, :12, 3] = 255
    out = load_image(bgra)
    assert out.shape == (16, 24, 3)
    assert (out[:, :12] == [255, 0, 0]).all()
    assert (out[:, 12:] == 255).all()


def test_array_float_in_unit_range() -> None:
    values = np.linspace(0, 1, 16 * 24 * 3).reshape(16, 24, 3)
    for dtype in (np.float16, np.float32, np.float64):
        out = load_image(values.astype(dtype))
        assert out.dtype == np.uint8
        assert np.abs(out.astype(float) - values * 255).max() <= 1


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((16, 16, 3), np.uint16), ("dtype uint16",)),
        (np.zeros((16, 16, 3), np.int64), ("dtype int64",)),
        (np.zeros((16, 16), bool), ("dtype bool",)),
        (np.full((16, 16, 3), 1.5, np.float32), ("[0, 1]",)),
        (np.full((16, 16, 3), -0.1, np.float64), ("[0, 1]",)),
        (np.full((16, 16, 3), np.nan, np.float32), ("nan",)),
        (np.full((16, 16), np.inf, np.float32), ("infinite",)),
        (np.zeros((0, 0, 3), np.uint8), ("empty",)),
        (np.zeros((0,), np.uint8), ("empty",)),
        (np.zeros((3, 32, 32), np.uint8), ("transpose",)),
        (np.zeros((16, 16, 2), np.uint8), ("shape",)),
        (np.zeros((2, 16, 16, 3), np.uint8), ("shape",)),
        (np.zeros(16, np.uint8), ("shape",)),
        (np.zeros((4, 40, 3), np.uint8), ("too small",)),
    ],
)
def test_array_rejections(array: np.ndarray, words: tuple[str, ...]) -> None:
    expect_error(array, *words, name="<array>")


def test_array_pixel_limit() -> None:
    expect_error(np.zeros((100, 100), np.uint8), "limit", max_pixels=5_000)


def test_unsupported_source_type() -> None:
    expect_error(42, "cannot read an image from a int", name="<int>")
    expect_error([[0, 1]], "numpy array", name="<list>")


# ----------------------------------------------------------------------------------------------------
# bad files


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    expect_error(missing, "not found")
    expect_error(str(missing), "not found")
    expect_error("https://example.org/a.jpg", "urls are not downloaded")


def test_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link.jpg"
    link.symlink_to(tmp_path / "gone.jpg")
    expect_error(link, "broken symbolic link")


def test_directory(tmp_path: Path) -> None:
    expect_error(tmp_path, "is a directory")


def test_zero_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    expect_error(empty, "empty (0 bytes)")
    expect_error(b"", "empty (0 bytes)")
    expect_error(io.BytesIO(b""), "empty (0 bytes)")


def test_consumed_stream() -> None:
    stream = io.BytesIO(png_bytes(8, 8, b"\x00" * 72))
    stream.read()
    expect_error(stream, "seek(0)")


def test_text_mode_stream(tmp_path: Path) -> None:
    expect_error(io.StringIO("not bytes"), "text mode")
    path = save(Image.fromarray(card_rgb()), tmp_path / "card.png", "PNG")
    with open(path, encoding="utf-8") as handle:  # text mode on binary data
        expect_error(handle, "text mode")


def test_permission_denied_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(Image.fromarray(card_rgb()), tmp_path / "secret.png", "PNG")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imageio, "open", refuse, raising=False)
    expect_error(path, "permission denied")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are my holiday notes, not a photo\n" * 5)
    expect_error(path, "not an image")


def test_random_bytes(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = tmp_path / "noise.png"
    path.write_bytes(noise)
    expect_error(path, "not an image")
    expect_error(noise, "not an image")


def test_recognised_non_images(tmp_path: Path) -> None:
    expect_error(b"<!DOCTYPE html><html><body>404</body></html>", "html page")
    expect_error(b"%PDF-1.7\n" + b"x" * 100, "pdf")
    expect_error(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64, "heic")
    expect_error(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "svg")


def test_unsupported_pillow_format_refused(tmp_path: Path) -> None:
    path = save(Image.fromarray(card_rgb()), tmp_path / "card.tga", "TGA")
    with Image.open(path) as check:
        assert check.format == "TGA"  # Pillow could decode it, faceledger refuses it
    expect_error(path, "not a supported format")


def test_truncated_synthetic(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for fmt, suffix in [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("GIF", ".gif")]:
        data = save(Image.fromarray(noise), tmp_path / f"full{suffix}", fmt).read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        expect_error(cut, "truncated", "corrupt")
    jpeg_head = (tmp_path / "full.jpg").read_bytes()[:40]  # cut inside the header
    expect_error(jpeg_head, "truncated", "damaged")


def test_corrupt_png_data(tmp_path: Path) -> None:
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = bytearray(save(Image.fromarray(noise), tmp_path / "ok.png", "PNG").read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 40] = b"\xff" * 30  # garbage inside the compressed stream
    expect_error(bytes(data), "corrupt")


def test_too_small_and_absurd_sizes(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (4, 4), (10, 20, 30)), tmp_path / "tiny.png", "PNG")
    expect_error(path, "too small")
    expect_error(png_bytes(0, 10), "a side of 0")
    expect_error(png_bytes(10, 0), "a side of 0")
    expect_error(png_bytes(70_000, 8), "absurd")
    expect_error(png_bytes(8, 70_000), "absurd")
    assert load_image(png_bytes(8, 8, b"\x00" * 72)).shape == (8, 8, 3)  # 8 px is enough


# ----------------------------------------------------------------------------------------------------
# decompression bombs and limits


@pytest.mark.parametrize("side", [9_000, 10_000, 20_000])  # ours only / Pillow warns too / Pillow refuses too
def test_bomb_header_rejected_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    path = tmp_path / f"bomb{side}.png"
    path.write_bytes(png_bytes(side, side, b"\x00" * 1000))
    assert path.stat().st_size < 200
    decoded: list[bool] = []
    original_load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        decoded.append(True)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    started = time.perf_counter()
    error = expect_error(path, "decompression bomb")
    assert time.perf_counter() - started < 0.5
    assert not decoded
    assert f"{side * side:,} pixels" in error.reason
    assert "64,000,000" in error.reason
    assert "FACELEDGER_MAX_PIXELS" in error.reason


def test_genuine_large_image_follows_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(Image.effect_noise((3000, 2000), 40), tmp_path / "big.png", "PNG")  # 6 MP of photo-like noise
    expect_error(path, "limit of 1,000,000 pixels", max_pixels=1_000_000)
    assert load_image(path).shape == (2000, 3000, 3)

    monkeypatch.setenv("FACELEDGER_MAX_PIXELS", "1_000_000")
    expect_error(path, "limit of 1,000,000 pixels")
    # the argument beats the environment
    assert load_image(path, max_pixels=6_000_000).shape == (2000, 3000, 3)


def test_pillow_bomb_limit_also_applies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    filters_before = list(warnings.filters)
    warned = save(Image.new("RGB", (40, 40)), tmp_path / "warn.png", "PNG")  # 1600 px: Pillow warns
    refused = save(Image.new("RGB", (48, 48)), tmp_path / "error.png", "PNG")  # 2304 px: Pillow raises
    for path in (warned, refused):
        error = expect_error(path, "max_image_pixels")
        assert "decompression-bomb" in error.reason
    assert warnings.filters == filters_before


def test_no_global_state_changes(tmp_path: Path) -> None:
    filters_before = list(warnings.filters)
    limit_before = Image.MAX_IMAGE_PIXELS
    bad = [png_bytes(20_000, 20_000), png_bytes(10_000, 10_000), b"junk" * 10]
    for source in bad:
        with pytest.raises(ImageError):
            load_image(source)
    assert warnings.filters == filters_before
    assert limit_before == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_max_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noise = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = save(Image.fromarray(noise), tmp_path / "noise.png", "PNG")
    size = path.stat().st_size
    data = path.read_bytes()
    for source in (path, data, io.BytesIO(data)):
        expect_error(source, "above the limit", "larger than the limit", max_bytes=size - 1)
    for source in (path, data, io.BytesIO(data)):
        assert load_image(source, max_bytes=size).shape == (64, 64, 3)
    monkeypatch.setenv("FACELEDGER_MAX_BYTES", str(size - 1))
    error = expect_error(path, "above the limit")
    assert "FACELEDGER_MAX_BYTES" in error.reason
    assert load_image(path, max_bytes=size).shape == (64, 64, 3)


def test_endless_stream_stops_at_max_bytes() -> None:
    class Endless(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            n = min(len(buffer), 4096)
            buffer[:n] = b"\x00" * n
            self.served += n
            return n

    stream = Endless()
    expect_error(stream, "larger than the limit", name="<stream>", max_bytes=100_000)
    assert stream.served <= 100_000 + 4096


def test_bad_limits() -> None:
    data = png_bytes(8, 8, b"\x00" * 72)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            load_image(data, max_pixels=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="positive integer"):
            load_image(data, max_bytes=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("variable", ["FACELEDGER_MAX_PIXELS", "FACELEDGER_MAX_BYTES"])
def test_bad_environment_limit(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "lots")
    with pytest.raises(FaceledgerError, match=variable):
        load_image(png_bytes(8, 8, b"\x00" * 72))
    with pytest.raises(FaceledgerError, match=variable):
        iter_images([])


# ----------------------------------------------------------------------------------------------------
# batches


def test_iter_images_continues_after_bad_items(tmp_path: Path) -> None:
    good = save(Image.fromarray(card_rgb()), tmp_path / "good.png", "PNG")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    sources: list[Any] = [good, tmp_path / "missing.jpg", empty, b"junk", good.read_bytes(), 42, str(good)]
    results = list(iter_images(sources))
    assert [name for name, _, _ in results] == [source_name(s) for s in sources]
    ok = [image is not None for _, image, _ in results]
    assert ok == [True, False, False, False, True, False, True]
    for (_, image, error), loaded in zip(results, ok, strict=True):
        assert (error is None) == loaded
        if image is not None:
            assert_card(image)
    assert results[1][2] is not None and "not found" in results[1][2].reason


def test_iter_images_wraps_unexpected_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = save(Image.fromarray(card_rgb()), tmp_path / "good.png", "PNG")

    def explode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(imageio, "_decode", explode)
    results = list(iter_images([good, np.zeros((8, 8), np.uint8)]))
    assert results[0][1] is None and results[0][2] is not None
    assert "decoder bug" in results[0][2].reason
    assert results[1][1] is not None  # the next item still loads


def test_iter_images_limits(tmp_path: Path) -> None:
    path = save(Image.new("L", (100, 100)), tmp_path / "a.png", "PNG")
    [(_, image, error)] = list(iter_images([path], max_pixels=5_000))
    assert image is None and error is not None and "limit" in error.reason


# ----------------------------------------------------------------------------------------------------
# real photos


@pytest.mark.shared_data
def test_every_manifest_photo_loads(manifest: list[ManifestRow]) -> None:
    assert len(manifest) >= 825
    started = time.perf_counter()
    results = list(iter_images(row.path for row in manifest))
    elapsed = time.perf_counter() - started
    failures = [(name, str(error)) for name, _, error in results if error is not None]
    assert not failures
    for row, (name, image, _) in zip(manifest, results, strict=True):
        assert name == str(row.path)
        assert image is not None
        with Image.open(row.path) as check:
            width, height = check.size
            if check.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
            gray = check.mode in ("L", "LA", "I;16", "I")
        assert image.shape == (height, width, 3), row.path
        assert image.dtype == np.uint8 and image.flags.c_contiguous and image.flags.writeable
        if gray:
            assert (image[:, :, 0] == image[:, :, 2]).all()
    assert elapsed < 30, f"loading {len(manifest)} photos took {elapsed:.1f} s"


@pytest.mark.shared_data
def test_real_photo_colours_match_pillow(manifest: list[ManifestRow]) -> None:
    row = next(r for r in manifest if r.path.suffix.lower() == ".jpg" and r.source == "opencv_course")
    with Image.open(row.path) as check:
        rgb = np.asarray(check.convert("RGB"))
    np.testing.assert_array_equal(load_image(row.path), rgb[:, :, ::-1])


@pytest.mark.shared_data
def test_real_photos_cut_in_half(manifest: list[ManifestRow], tmp_path: Path) -> None:
    jpegs = [r.path for r in manifest if r.path.suffix.lower() in {".jpg", ".jpeg"}][:5]
    pngs = [r.path for r in manifest if r.path.suffix.lower() == ".png"][:3]
    assert jpegs and pngs
    for index, original in enumerate(jpegs + pngs):
        data = original.read_bytes()
        cut = tmp_path / f"cut{index}{original.suffix}"
        cut.write_bytes(data[: len(data) // 2])
        expect_error(cut, "truncated")
        assert load_image(data).ndim == 3  # the whole file is fine


def test_mpo_multi_picture_jpeg_first_image(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    Image.fromarray(card_rgb()).save(
        path, "MPO", save_all=True, append_images=[Image.new("RGB", (48, 32), (0, 0, 255))], quality=95
    )
    with Image.open(path) as check:
        assert check.format == "MPO"
    assert_card(load_image(path), 12)


def test_a_small_file_claiming_megapixels_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = save(Image.new("1", (8000, 7999), 0), tmp_path / "bomb.png", "PNG")  # 64 MP in about 8 KB
    assert bomb.stat().st_size < 20_000
    error = expect_error(bomb, "possible decompression bomb")
    assert "63,992,000 pixels" in error.reason and "FACELEDGER_MAX_PIXELS_PER_BYTE=0" in error.reason
    # Small uniform frames are not bombs, whatever their ratio.
    flat = save(Image.new("RGB", (1920, 1080), (90, 90, 90)), tmp_path / "flat.png", "PNG")
    assert load_image(flat).shape == (1080, 1920, 3)
    monkeypatch.setenv("FACELEDGER_MAX_PIXELS_PER_BYTE", "0")
    assert load_image(bomb).shape == (7999, 8000, 3)
    monkeypatch.setenv("FACELEDGER_MAX_PIXELS_PER_BYTE", "ten")
    expect_error(bomb, "is not a whole number")


def test_grey_and_one_bit_images_decode_without_a_colour_intermediate(tmp_path: Path) -> None:
    import tracemalloc

    for mode in ("1", "L"):
        path = save(Image.effect_noise((4000, 4000), 60).convert(mode), tmp_path / f"{mode}.png", "PNG")
        tracemalloc.start()
        try:
            image = load_image(path, max_pixels=20_000_000)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert image.shape == (4000, 4000, 3)
        # The BGR result (3 bytes per pixel) and the grey plane (1): a colour detour would add 6 more.
        assert peak < 4.5 * 4000 * 4000 + path.stat().st_size * 2, (mode, peak)
