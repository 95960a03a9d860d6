"""Safe image decoding: one function every door uses to turn a source into an RGB PIL image.

Guards come before decoding: the header's pixel count is checked against a limit (decompression
bombs are refused without allocating), files are size-capped, EXIF orientation is applied, the first
frame of animations is taken, and every mode (CMYK, 16-bit, palette+alpha, LA, I;16 ...) becomes RGB.
Failures raise :class:`DecodeError` with a short ``kind`` so callers can report them as data.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # ~8000×8000; more is refused before decoding
MAX_FILE_BYTES = 100 * 1024 * 1024
# Progressive JPEG scan bombs: each scan re-runs the decoder over the whole coefficient image, so a tiny
# file repeating its last scan 2,000 times costs minutes. Real encoders write ≤ ~20 scans (libjpeg 10).
MAX_JPEG_SCANS = 100
MAX_JPEG_SCAN_PIXELS = 1_500_000_000  # scans × pixels: 64 Mpx may have 23 scans, 16 Mpx 89
# The only Pillow plugins ever tried on a user's bytes (``Image.open(formats=...)``): never EPS/PS (Pillow
# hands those to Ghostscript), PDF, ICNS, SGI ... whatever the file is named.
# HEIF/HEIC (phone photos) come from pillow-heif (a base dependency), AVIF from Pillow itself, JPEG XL from
# pillow-jxl-plugin (the [jxl] extra).
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO", "HEIF", "AVIF", "JXL")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif")
IMAGE_EXTENSIONS += (".heic", ".heif", ".hif", ".avif", ".jxl")
# Formats whose plugin may be missing: how to recognise them, and what to install.
_PLUGIN_FORMATS = (
    (
        "HEIF",
        lambda h: h[4:8] == b"ftyp" and h[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"),
        "pillow-heif",
    ),
    ("AVIF", lambda h: h[4:8] == b"ftyp" and h[8:12] in (b"avif", b"avis"), "Pillow >= 11.3 built with AVIF"),
    (
        "JPEG XL",
        lambda h: h[:2] == b"\xff\x0a" or h[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n",
        'the [jxl] extra: pip install "aivsreal[jxl]"',
    ),
)
_plugins_loaded = False

# Pillow's own bomb check warns at MAX_IMAGE_PIXELS and errors at 2x; we check the header ourselves.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray


class DecodeError(Exception):
    """An input that cannot be turned into an image; ``kind`` is a stable short code."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class DecodedImage:
    """A decoded RGB image and what was learned while decoding it."""

    image: Image.Image
    format: str | None
    original_size: tuple[int, int]
    original_mode: str
    origin: tuple[int, int] = (0, 0)  # where ``image`` sits in the whole image ...
    cropped: bool = False  # ... when only a region of it was decoded (see ``decode(region=)``)

    @property
    def full_size(self) -> tuple[int, int]:
        """Size of the whole (oriented) image; larger than ``image.size`` after a region decode."""
        return self.original_size if self.cropped else self.image.size


def describe_source(source: Any) -> str:
    """A short printable name for a source, used in results and error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<bytes:{len(source)}>"
    if isinstance(source, Image.Image):
        return f"<PIL:{source.mode}:{source.size[0]}x{source.size[1]}>"
    if isinstance(source, np.ndarray):
        return f"<array:{'x'.join(map(str, source.shape))}>"
    return f"<{type(source).__name__}>"


def decode(
    source: ImageSource,
    *,
    max_pixels: int = MAX_PIXELS,
    draft: tuple[int, int] | None = None,
    region: Callable[[int, int], tuple[int, int, int, int] | None] | None = None,
) -> DecodedImage:
    """Decode ``source`` (path, bytes, PIL image or HxW[x3|4] uint8 array) into an RGB image.

    ``draft`` asks the JPEG decoder for a DCT-scaled image no smaller than (w, h): much faster for
    big photos, used only where the model input does not change (resize policies).
    ``region(w, h)`` may name the only box the caller needs; for a plain JPEG the decoder then reads
    just that part (:mod:`aivsreal.jpegcrop`, identical pixels there) and ``origin`` says where it sits.
    """
    if isinstance(source, Image.Image):
        return _finish(source, source.format, max_pixels)
    if isinstance(source, np.ndarray):
        return DecodedImage(_array_to_image(source), None, _array_size(source), "array")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise DecodeError("empty", "empty input (0 bytes)")
        if len(data) > MAX_FILE_BYTES:
            raise DecodeError("too_large", f"input is {len(data)} bytes, over the {MAX_FILE_BYTES} limit")
        return _open(io.BytesIO(data), max_pixels, draft, region)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise DecodeError("not_found", "no such file") from None
        except OSError as e:  # symlink loops, permission on a parent, ...
            raise DecodeError("unreadable", f"cannot stat: {e.strerror or e}") from None
        if path.is_dir():
            raise DecodeError("is_directory", "is a directory")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end: never open it
            raise DecodeError("not_a_file", "not a regular file (named pipe, socket or device)")
        if st.st_size == 0:
            raise DecodeError("empty", "empty file (0 bytes)")
        if st.st_size > MAX_FILE_BYTES:
            raise DecodeError("too_large", f"file is {st.st_size} bytes, over the {MAX_FILE_BYTES} limit")
        try:
            with open(path, "rb") as f:
                return _open(f, max_pixels, draft, region)
        except PermissionError as e:
            raise DecodeError("unreadable", f"permission denied: {e.strerror or e}") from None
        except OSError as e:
            raise DecodeError("unreadable", f"cannot read: {e.strerror or e}") from None
    raise DecodeError("unsupported_input", f"cannot decode a {type(source).__name__}")


def _load_plugins() -> None:
    """Register the optional format plugins once (HEIF from pillow-heif, JPEG XL from pillow-jxl-plugin)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    Image.init()
    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:
        pass
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL plugin on import)
    except ImportError:
        pass
    _plugins_loaded = True


def missing_plugin(head: bytes) -> str | None:
    """For bytes of a known format whose plugin is not installed: a message saying what to install."""
    for name, test, what in _PLUGIN_FORMATS:
        if test(head):
            return f"{name} image, but this install cannot decode it: needs {what}"
    return None


def open_image(fp: Any) -> Image.Image:
    """``Image.open`` restricted to :data:`SUPPORTED_FORMATS`: the one way user bytes reach Pillow.

    Other plugins are never even tried, so an EPS file (named ``.jpg`` or not) is not an image here and
    never reaches Ghostscript. Raises what ``Image.open`` raises (``UnidentifiedImageError`` ...).
    """
    _load_plugins()
    # MPO has no opener of its own (the JPEG plugin returns MPO images); a plugin registered later (HEIF)
    # counts once it is in Image.OPEN.
    formats = [f for f in SUPPORTED_FORMATS if f in Image.OPEN]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im = Image.open(fp, formats=formats)
    if im.format in ("JPEG", "MPO"):
        check_jpeg_scans(im.fp, im.size)  # the file Pillow opened (fp may be a path)
    return im


def check_jpeg_scans(fp: Any, size: tuple[int, int]) -> int:
    """Count a JPEG's scans (SOS markers) before it is decoded; refuse a scan bomb with ``too_many_scans``.

    ``FF DA`` cannot occur inside entropy-coded data (a data 0xFF is always followed by 0x00), so counting it
    over the file is exact, plus one per embedded thumbnail. The file position is restored.
    """
    pos = fp.tell()
    n, tail = 0, b""
    try:
        fp.seek(0)
        while block := fp.read(1 << 20):
            n += (tail + block[:1]).count(b"\xff\xda") + block.count(b"\xff\xda")
            tail = block[-1:]
    finally:
        fp.seek(pos)
    w, h = size
    if n > MAX_JPEG_SCANS or n * w * h > MAX_JPEG_SCAN_PIXELS:
        raise DecodeError(
            "too_many_scans",
            f"JPEG with {n} scans at {w}x{h} (limits: {MAX_JPEG_SCANS} scans, "
            f"{MAX_JPEG_SCAN_PIXELS:.1e} scan-pixels): a progressive-scan bomb",
        )
    return n


def _png_without_icc(fp: Any) -> bytes | None:
    """The PNG in ``fp`` with its iCCP (colour profile) chunks removed, or None when it is not a PNG or has
    none. A profile inflating past Pillow's MAX_TEXT_CHUNK makes the whole header unreadable, yet the
    pixels are fine and decoding never applies the profile."""
    fp.seek(0)
    data = fp.read(MAX_FILE_BYTES + 1)
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    out, i, dropped = [data[:8]], 8, False
    while i + 8 <= len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        kind, end = data[i + 4 : i + 8], i + 12 + n
        if kind == b"iCCP":
            dropped = True
        else:
            out.append(data[i:end])
        i = end
        if kind == b"IEND":
            break
    out.append(data[i:])
    return b"".join(out) if dropped else None


def _open(fp: Any, max_pixels: int, draft: tuple[int, int] | None, region: Any = None) -> DecodedImage:
    try:
        im = open_image(fp)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        fp.seek(0)
        hint = missing_plugin(fp.read(32))
        if hint:
            raise DecodeError("unsupported_format", hint) from None
        raise DecodeError("not_an_image", "not a recognised image format") from None
    except MemoryError:
        raise DecodeError("too_many_pixels", "image header too large to parse in memory") from None
    except Exception as e:  # Pillow's parsers also raise struct.error, IndexError, KeyError ... on bad data
        stripped = _png_without_icc(fp)
        if (
            stripped is not None
        ):  # only the colour profile was over Pillow's limit: score the pixels without it
            return _open(io.BytesIO(stripped), max_pixels, draft, region)
        raise DecodeError("corrupt", f"cannot parse image header: {e}") from None
    if im.format not in SUPPORTED_FORMATS:
        raise DecodeError("unsupported_format", f"unsupported image format {im.format}")
    w, h = im.size
    if w <= 0 or h <= 0:
        raise DecodeError("corrupt", f"invalid image size {w}x{h}")
    if w * h > max_pixels:
        raise DecodeError("too_many_pixels", f"{w}x{h} = {w * h} pixels exceeds the {max_pixels} limit")
    if draft is not None and im.format == "JPEG":
        im.draft("RGB", draft)
    if region is not None and im.format == "JPEG" and im.mode == "RGB":
        got = _region_decode(fp, im, region)
        if got is not None:
            return got
    return _finish(im, im.format, max_pixels)


def _region_decode(fp: Any, im: Image.Image, region: Any) -> DecodedImage | None:
    """Decode only the region the caller needs (plain upright YCbCr JPEG), else None for a full decode."""
    from . import jpegcrop

    if not jpegcrop.available():
        return None
    try:
        if im.getexif().get(0x0112, 1) != 1:  # rotated photos: the box is in oriented coordinates
            return None
    except Exception:
        return None
    w, h = im.size
    box = region(w, h)
    if box is None:
        return None
    fp.seek(0)
    got = jpegcrop.decode_region(fp.read(MAX_FILE_BYTES + 1), w, h, box)
    if got is None:
        fp.seek(0)
        return None
    rgb, origin = got
    return DecodedImage(Image.fromarray(rgb, "RGB"), im.format, (w, h), im.mode, origin, cropped=True)


def _finish(im: Image.Image, fmt: str | None, max_pixels: int) -> DecodedImage:
    original_size, original_mode = im.size, im.mode
    if im.size[0] * im.size[1] > max_pixels:
        raise DecodeError("too_many_pixels", f"{im.size[0]}x{im.size[1]} exceeds the {max_pixels} limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if im.tell() != 0:  # not n_frames: counting frames parses the whole file (slow on hostile GIFs)
                im.seek(0)
            im.load()
            im = _exif_transpose(im)
            rgb = to_rgb(im)
    except DecodeError:
        raise
    except MemoryError:
        raise DecodeError("too_many_pixels", "image too large to decode in memory") from None
    except Exception as e:  # any parser failure on hostile data (fuzzing found struct.error in GIF frames)
        raise DecodeError("corrupt", f"cannot decode image data: {e}") from None
    return DecodedImage(rgb, fmt, original_size, original_mode)


def _exif_transpose(im: Image.Image) -> Image.Image:
    """Apply EXIF orientation; a bogus or corrupt orientation tag is ignored, not fatal."""
    try:
        orientation = im.getexif().get(0x0112)
    except Exception:  # corrupt EXIF: decode the pixels as stored
        return im
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return im
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        return im


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white, 16-bit is rescaled."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a8 = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a8 = np.clip(a * (255.0 if a.max(initial=0) <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def _array_size(a: np.ndarray) -> tuple[int, int]:
    return (int(a.shape[1]), int(a.shape[0])) if a.ndim >= 2 else (0, 0)


def _array_to_image(a: np.ndarray) -> Image.Image:
    """HxW, HxWx1, HxWx3 or HxWx4 arrays (uint8, or float in [0, 1]) → RGB image."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise DecodeError("bad_array", f"expected HxW, HxWx3 or HxWx4 array, got shape {a.shape}")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise DecodeError("too_many_pixels", f"array of {a.shape[1]}x{a.shape[0]} exceeds the limit")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise DecodeError("bad_array", "array holds NaN or infinite values")
            a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # clip first: no overflow
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    mode = "L" if a.ndim == 2 else ("RGB" if a.shape[2] == 3 else "RGBA")
    return to_rgb(Image.fromarray(np.ascontiguousarray(a), mode))


def is_image_path(path: str | os.PathLike) -> bool:
    return os.fsdecode(path).lower().endswith(IMAGE_EXTENSIONS)
