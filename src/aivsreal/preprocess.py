"""Card → model input. The one place that turns an RGB image into the tensor a model sees.

Geometry comes from :func:`aivsreal.geometry.plan` (one plan for every policy and view set); this module
applies plans to pixels with Pillow and normalises. Training, evaluation, export checks, the ONNX runtime
and the JavaScript port all follow these numbers; nothing else defines a size, mean or crop. Also holds the robustness tiers (``web``,
``hard``) that re-encode images the way the web does.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from .card import Preprocess
from .geometry import Plan, draft_size, plan
from .imageio import MAX_PIXELS, DecodedImage, ImageSource, decode

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}

# Robustness tiers: (longest side limit, JPEG quality). Applied to every image the same way,
# whatever its class, so format and compression cannot tell the classes apart.
TIERS: dict[str, tuple[int, int] | None] = {"clean": None, "web": (768, 60), "hard": (512, 40)}


def load(source: ImageSource, pp: Preprocess) -> DecodedImage:
    """Decode a source the way this preprocessing wants it (draft mode only where harmless)."""
    return decode(source, draft=draft_size(pp))


# Past this many times the model input's pixels, the scaled image is never built (see apply_plan()).
MAX_SCALED_FACTOR = 64


def apply_plan(
    img: Image.Image, p: Plan, pp: Preprocess, origin: tuple[int, int] = (0, 0)
) -> list[Image.Image]:
    """Cut a plan's views out of an RGB image: the whole-image resize, then each box (mirrored if asked).

    ``origin`` is where ``img`` sits in the planned image when only a region of it was decoded.
    """
    resample = _RESAMPLE[pp.interpolation]
    if p.resize is not None:
        if origin != (0, 0) or img.size != p.source:
            raise ValueError("a resizing plan needs the whole image")
        rw, rh = p.resize
        if rw * rh > MAX_SCALED_FACTOR * pp.size * pp.size:
            return _boxes_from_source(img, p, resample)
        img = img.resize(p.resize, resample)
    ox, oy = origin
    out = []
    for (left, top, right, bottom), flip in zip(p.boxes, p.flips, strict=True):
        v = img.crop((left - ox, top - oy, right - ox, bottom - oy))
        out.append(v.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else v)
    return out


def view_images(
    img: Image.Image, pp: Preprocess, views: str = "center", randint: Callable[[int, int], int] | None = None
) -> list[Image.Image]:
    """The size×size RGB views of ``views`` (see :data:`aivsreal.geometry.VIEWS`) for an RGB image."""
    return apply_plan(img, plan(*img.size, pp, views, randint), pp)


def geometry(img: Image.Image, pp: Preprocess) -> Image.Image:
    """Resize/crop an RGB image to size×size following the card's policy (deterministic, centred)."""
    return view_images(img, pp, "center")[0]


def _boxes_from_source(img: Image.Image, p: Plan, resample: int) -> list[Image.Image]:
    """Each box of a huge resize computed from its own source region (Pillow's ``box``), never the whole
    scaled image: a 1×100000 strip costs one size×size resample per view, not 224×22.4M pixels. Equal to
    resize-then-crop up to the filter's edge rows; used only past MAX_SCALED_FACTOR model inputs."""
    w, h = img.size
    rw, rh = p.resize or p.source
    sx, sy = w / rw, h / rh
    out = []
    for (left, top, right, bottom), flip in zip(p.boxes, p.flips, strict=True):
        v = img.resize(
            (right - left, bottom - top), resample, box=(left * sx, top * sy, right * sx, bottom * sy)
        )
        out.append(v.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else v)
    return out


def short_side_size(w: int, h: int, short: int) -> tuple[int, int]:
    """The size of a (w, h) image whose shorter side is scaled to ``short`` (aspect ratio kept)."""
    if min(w, h) == short:
        return w, h
    if w <= h:
        return short, max(short, int(round(h * short / w)))
    return max(short, int(round(w * short / h))), short


def resized_centre(img: Image.Image, scaled: tuple[int, int], s: int, resample: int) -> Image.Image:
    """The centre s×s of ``img`` resized to ``scaled``, computed from that region of the source only."""
    w, h = img.size
    nw, nh = scaled
    left, top = (nw - s) // 2, (nh - s) // 2
    sx, sy = w / nw, h / nh
    return img.resize((s, s), resample, box=(left * sx, top * sy, (left + s) * sx, (top + s) * sy))


def resize_short_side(
    img: Image.Image, short: int, resample: int, max_long: int | None = None
) -> Image.Image:
    """Scale the shorter side to ``short``; with ``max_long``, only the centre ``max_long`` of the longer
    side is produced (from that source region alone), so extreme aspect ratios cost bounded memory."""
    w, h = img.size
    nw, nh = short_side_size(w, h, short)
    if (nw, nh) == (w, h):
        return img
    if max_long is None or max(nw, nh) <= max_long:
        return img.resize((nw, nh), resample)
    out_w, out_h = (nw, max_long) if nw <= nh else (max_long, nh)
    left, top = (nw - out_w) // 2, (nh - out_h) // 2
    sx, sy = w / nw, h / nh
    box = (left * sx, top * sy, (left + out_w) * sx, (top + out_h) * sy)
    return img.resize((out_w, out_h), resample, box=box)


def center_crop(img: Image.Image, s: int) -> Image.Image:
    w, h = img.size
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def normalize(img: Image.Image, pp: Preprocess) -> np.ndarray:
    """RGB image → float32 CHW array, (x/255 - mean) / std."""
    a = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
    a = (a - np.asarray(pp.mean, dtype=np.float32)) / np.asarray(pp.std, dtype=np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def to_input(img: Image.Image, pp: Preprocess) -> np.ndarray:
    """RGB image → model input (3, size, size) float32: the policy's centre view."""
    return normalize(geometry(img, pp), pp)


def inputs(img: Image.Image, pp: Preprocess, views: str = "center") -> np.ndarray:
    """RGB image → the model inputs of a view set, (k, 3, size, size) float32."""
    return np.stack([normalize(v, pp) for v in view_images(img, pp, views)])


def tta_views(img: Image.Image, pp: Preprocess) -> list[np.ndarray]:
    """Test-time views: the centre input, its mirror and, for native crops of big images, 4 corners."""
    return list(inputs(img, pp, "tta"))


def jpeg_reencode(img: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` (4:2:0 like most of the web) and decode again."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = Image.open(buf, formats=("JPEG",))
    out.load()
    return out.convert("RGB")


def limit_longest_side(img: Image.Image, limit: int) -> Image.Image:
    w, h = img.size
    if max(w, h) <= limit:
        return img
    scale = limit / max(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)


def apply_tier(img: Image.Image, tier: str) -> Image.Image:
    """Degrade an image as the named robustness tier does (``clean`` leaves it as is)."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose from {', '.join(TIERS)}")
    spec = TIERS[tier]
    if spec is None:
        return img
    limit, quality = spec
    return jpeg_reencode(limit_longest_side(img, limit), quality)


def decode_views(
    source: ImageSource,
    pp: Preprocess,
    *,
    tier: str = "clean",
    views: str = "center",
    max_pixels: int = MAX_PIXELS,
    region_decode: bool = False,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode a source once: the model inputs of ``views`` (k, 3, size, size) and the image's original size.

    Raises DecodeError.

    With ``region_decode`` (and a clean tier) a JPEG whose plan keeps native pixels is decoded only around
    the plan's boxes (:mod:`aivsreal.jpegcrop`): the same inputs as a full decode, at a fraction of the cost.
    """

    def region(w: int, h: int) -> tuple[int, int, int, int] | None:
        p = plan(w, h, pp, views)
        return None if p.resize is not None else p.region()

    use_region = region_decode and tier == "clean"
    d = decode(source, max_pixels=max_pixels, draft=draft_size(pp), region=region if use_region else None)
    if d.cropped:
        p = plan(*d.full_size, pp, views)
        return np.stack(
            [normalize(v, pp) for v in apply_plan(d.image, p, pp, origin=d.origin)]
        ), d.original_size
    img = d.image if tier == "clean" else apply_tier(d.image, tier)
    return inputs(img, pp, views), d.original_size


def load_views(
    source: ImageSource,
    pp: Preprocess,
    *,
    tier: str = "clean",
    views: str = "center",
    max_pixels: int = MAX_PIXELS,
    region_decode: bool = False,
) -> np.ndarray:
    """The model inputs of ``views`` for a source, (k, 3, size, size) (see :func:`decode_views`)."""
    return decode_views(
        source, pp, tier=tier, views=views, max_pixels=max_pixels, region_decode=region_decode
    )[0]


def batch_inputs(
    sources: Sequence[ImageSource | os.PathLike], pp: Preprocess, tier: str = "clean"
) -> np.ndarray:
    """Decode and preprocess several sources into one (N, 3, s, s) batch (raises on a bad one)."""
    return np.stack([to_input(apply_tier(load(s, pp).image, tier), pp) for s in sources])
