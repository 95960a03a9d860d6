"""Probe originals and cut native-resolution patches: lossless JPEG crops (jpegtran), PNG for the rest.

Patches are never resized or re-compressed. A JPEG patch's top-left corner lies on the image's iMCU grid
(8 or 16 px, from its sampling factors), so ``jpegtran -crop`` copies the DCT coefficients unchanged; its
pixels decode to the original's region (up to the one-pixel border that chroma up-sampling reads from
outside the crop in 4:2:0 images). Metadata is never copied (``-copy none``; PNGs are written without
text, ICC or EXIF chunks). Pixels are taken as stored: EXIF orientation is not applied (traces do not
depend on it, and a JPEG crop cannot rotate without re-encoding partial blocks).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..imageio import MAX_PIXELS, to_rgb
from . import fsio

JPEG_FORMATS = ("JPEG", "MPO")
PATCH_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF")
JPEGTRAN_JOBS = 3
_heif_ready: bool | None = None


class PatchError(RuntimeError):
    """An original cannot be probed or cut; ``kind`` is a short code recorded in the report."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _register_heif() -> bool:
    global _heif_ready
    if _heif_ready is None:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif_ready = True
        except Exception:
            _heif_ready = False
    return _heif_ready


def jpegtran() -> str:
    """The jpegtran binary (Debian package libjpeg-turbo-progs); a clear error when it is missing."""
    exe = shutil.which("jpegtran")
    if exe is None:
        raise PatchError(
            "no_jpegtran", "jpegtran not found: install libjpeg-turbo-progs (scripts/setup-dev.sh)"
        )
    return exe


@dataclass
class Probe:
    format: str
    width: int
    height: int
    mode: str
    mcu: tuple[int, int]
    make: str
    model: str
    software: str
    dhash: int


def _open(data: bytes) -> Image.Image:
    _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except Exception as e:
        raise PatchError("not_an_image", f"not a recognised image: {e}") from None
    fmt = im.format or "?"
    if fmt not in PATCH_FORMATS:
        raise PatchError("unsupported_format", f"unsupported format {fmt}")
    w, h = im.size
    if w <= 0 or h <= 0 or w * h > MAX_PIXELS:
        raise PatchError("too_many_pixels", f"size {w}x{h} outside the limits")
    return im


def _text(v: object) -> str:
    if isinstance(v, bytes):
        v = v.decode("latin-1", errors="replace")
    return str(v or "").replace("\x00", "").strip()


def camera_text(v: object) -> str:
    """A camera Make/Model value, or "" for what is not one: ComfyUI stores its whole workflow and prompt
    JSON in the EXIF Make/Model tags of the WebP files it saves."""
    t = _text(v)
    return t if len(t) <= 64 and t.isprintable() and "{" not in t else ""


def probe(data: bytes) -> Probe:
    """Format, size, JPEG iMCU size, camera EXIF and a perceptual hash of an original's bytes."""
    from ..data import dhash

    im = _open(data)
    fmt = "JPEG" if im.format in JPEG_FORMATS else (im.format or "?")
    w, h = im.size
    mcu = (8, 8)
    if fmt == "JPEG":
        layers = getattr(im, "layer", None) or []
        if layers:
            mcu = (8 * max(lay[1] for lay in layers), 8 * max(lay[2] for lay in layers))
    try:
        exif = im.getexif()
        make, model = (camera_text(exif.get(t)) for t in (271, 272))
        software = _text(exif.get(305))
    except Exception:
        make = model = software = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "JPEG":
                im.draft("L", (64, 64))
            im.load()
            dh = dhash(to_rgb(im))
    except Exception as e:
        raise PatchError("corrupt", f"cannot decode: {e}") from None
    return Probe(fmt, w, h, im.mode, mcu, make, model, software, dh)


def plan_boxes(
    w: int, h: int, patch: int, max_patches: int, mcu: tuple[int, int] = (8, 8)
) -> list[tuple[int, int, int, int]]:
    """Non-overlapping (x, y, w, h) patch boxes on a centred grid whose corners lie on the iMCU grid.

    An original smaller than a patch on a side gives one patch (all of it on that side). From a grid
    of more tiles than ``max_patches``, evenly spaced ones are taken (row-major order).
    """
    pw, ph = min(patch, w), min(patch, h)
    nx, ny = max(1, w // patch), max(1, h // patch)

    def start(total: int, n: int, size: int, step: int) -> int:
        return ((total - n * size) // 2) // step * step

    x0, y0 = start(w, nx, pw, mcu[0]), start(h, ny, ph, mcu[1])
    tiles = [(x0 + i * pw, y0 + j * ph, pw, ph) for j in range(ny) for i in range(nx)]
    k = min(max_patches, len(tiles))
    if k >= len(tiles):
        return tiles
    return [tiles[int((i + 0.5) * len(tiles) / k)] for i in range(k)]


def png_bytes(im: Image.Image) -> bytes:
    """A PNG of the pixels only (no text, ICC or EXIF chunks), with fixed settings so bytes repeat."""
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def cut(data: bytes, fmt: str, boxes: list[tuple[int, int, int, int]], outs: list[Path]) -> list[str]:
    """Cut ``boxes`` of an original into files ``outs``; returns each patch's sha256."""
    shas = []
    if fmt == "JPEG":
        exe = jpegtran()
        with tempfile.TemporaryDirectory(prefix="aivsreal-cut-") as td:
            src = Path(td) / "in.jpg"
            src.write_bytes(data)

            def one(job: tuple[int, tuple[int, int, int, int]]) -> bytes:
                n, (x, y, bw, bh) = job
                dst = Path(td) / f"out{n}.jpg"
                r = subprocess.run(
                    [exe, "-copy", "none", "-crop", f"{bw}x{bh}+{x}+{y}", "-outfile", str(dst), str(src)],
                    capture_output=True,
                )
                if r.returncode or not dst.is_file():
                    raise PatchError("jpeg_crop_failed", r.stderr.decode(errors="replace").strip()[-200:])
                b = dst.read_bytes()
                with Image.open(io.BytesIO(b)) as chk:
                    if chk.size != (bw, bh):
                        raise PatchError("jpeg_crop_failed", f"crop gave {chk.size}, wanted {(bw, bh)}")
                return b

            with ThreadPoolExecutor(JPEGTRAN_JOBS) as ex:  # jpegtran re-reads the whole file per crop
                results = list(ex.map(one, enumerate(boxes)))
            for b, out in zip(results, outs):
                fsio.write_bytes(out, b)
                shas.append(hashlib.sha256(b).hexdigest())
        return shas
    im = _open(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        im.load()
        rgb = to_rgb(im)
    for (x, y, bw, bh), out in zip(boxes, outs):
        b = png_bytes(rgb.crop((x, y, x + bw, y + bh)))
        fsio.write_bytes(out, b)
        shas.append(hashlib.sha256(b).hexdigest())
    return shas
