"""Entry points: read a file or bytes once and run every extractor on it; never raises for bad input."""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..imageio import MAX_FILE_BYTES, MAX_PIXELS, DecodeError, open_image
from .c2pa import _MIME, _check_c2pa, _sniff_mime
from .items import _guard, _report, item
from .metadata import _check_exif, _check_text_chunks, _check_xmp
from .watermark import WATERMARK_MAX_PIXELS, WATERMARK_MIN_PIXELS, WATERMARK_MIN_SIDE, _check_watermarks


def inspect_path(path: str | os.PathLike) -> dict[str, Any]:
    """Read one file once and look for provenance evidence; file-level problems go in ``error``."""
    name = os.fsdecode(path)
    p = Path(path)
    try:
        st = p.stat()
        if p.is_dir():
            return _report(name, [], {}, {"kind": "is_directory", "message": "is a directory"})
        if not stat.S_ISREG(st.st_mode):  # reading a FIFO blocks forever
            msg = "not a regular file (named pipe, socket or device)"
            return _report(name, [], {}, {"kind": "not_a_file", "message": msg})
        if st.st_size > MAX_FILE_BYTES:
            msg = f"file is {st.st_size} bytes, over the {MAX_FILE_BYTES} limit"
            return _report(name, [], {}, {"kind": "too_large", "message": msg})
        data = p.read_bytes()
    except FileNotFoundError:
        return _report(name, [], {}, {"kind": "not_found", "message": "no such file"})
    except OSError as e:
        return _report(name, [], {}, {"kind": "unreadable", "message": f"cannot read: {e.strerror or e}"})
    return inspect_bytes(data, name)


def inspect_bytes(data: bytes, name: str = "<bytes>") -> dict[str, Any]:
    """Look for provenance evidence in an image's bytes. Never raises for bad input."""
    data = bytes(data)
    if not data:
        return _report(name, [], {}, {"kind": "empty", "message": "empty input (0 bytes)"})
    if len(data) > MAX_FILE_BYTES:
        msg = f"input is {len(data)} bytes, over the {MAX_FILE_BYTES} limit"
        return _report(name, [], {}, {"kind": "too_large", "message": msg})
    items: list[dict[str, Any]] = []
    checks: dict[str, str] = {}
    error = None
    im, fmt = None, None
    try:
        im = open_image(io.BytesIO(data))  # supported formats only: EPS never reaches Ghostscript
        fmt = im.format
    except DecodeError as e:  # a JPEG scan bomb: its pixels are never decoded, its metadata not read
        error = e.as_dict()
        items.append(item("file", "image refused before decoding", "error", e.message))
    except UnidentifiedImageError:
        sniffed = _sniff_mime(data)
        if sniffed is None:
            error = {"kind": "not_an_image", "message": "not a recognised image format"}
        else:  # the signature is right but Pillow refused the structure: bad CRC, broken chunk or segment
            error = {"kind": "corrupt", "message": f"{sniffed} structure could not be parsed (broken chunk?)"}
            items.append(item("file", f"{sniffed} structure could not be parsed", "error", error["message"]))
    except Exception as e:  # broken chunks, bad CRCs, oversized text chunks: Pillow refuses the header
        error = {"kind": "corrupt", "message": f"cannot parse image header: {e}"}
        items.append(item("file", "image header could not be parsed", "error", f"{type(e).__name__}: {e}"))
    _guard(items, "c2pa", lambda: _check_c2pa(data, _MIME.get(fmt or "", _sniff_mime(data)), items, checks))
    if im is not None:
        _check_image(im, items, checks)
    return _report(name, items, checks, error)


def _check_image(im: Image.Image, items: list, checks: dict[str, str]) -> None:
    w, h = im.size
    pixels_ok = 0 < w * h <= MAX_PIXELS
    loaded = False
    if pixels_ok:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()  # also reads text chunks stored after the image data
            loaded = True
        except Exception as e:
            items.append(item("file", "image data could not be decoded", "error", f"{type(e).__name__}: {e}"))
    else:
        items.append(item("file", f"{w}x{h} image exceeds the {MAX_PIXELS}-pixel limit", "error"))
    info = dict(im.info)
    if loaded and im.format == "PNG":
        try:
            info.update(im.text)  # type: ignore[attr-defined]
        except Exception as e:
            items.append(item("png-text", "text chunks could not be read", "error", str(e)))
    _guard(items, "xmp", lambda: _check_xmp(im, info, items))
    _guard(items, "exif", lambda: _check_exif(im, items))
    _guard(items, "text", lambda: _check_text_chunks(im.format, info, items))
    checks["metadata"] = "done"
    if not loaded:
        checks["watermark"] = "skipped: image pixels could not be decoded"
    elif w * h < WATERMARK_MIN_PIXELS or min(w, h) < WATERMARK_MIN_SIDE:
        # by side too: a 1×100000 strip has the pixels but no 8×8 blocks, and its transform took 600 MB
        checks["watermark"] = "skipped: smaller than 256x256 (generators do not mark such images)"
    elif w * h > WATERMARK_MAX_PIXELS:
        checks["watermark"] = f"skipped: larger than {WATERMARK_MAX_PIXELS // 1_000_000} MP"
    else:
        _guard(items, "watermark", lambda: _check_watermarks(im, items, checks))
