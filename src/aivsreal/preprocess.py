"""Card → model input. The one place that turns an RGB image into the tensor a model sees.

Training, evaluation, export checks, the ONNX runtime and the JavaScript port all follow these
numbers; nothing else defines a size, mean or crop. Also holds the robustness tiers (``web``,
``hard``) that re-encode images the way the web does.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .card import Preprocess
from .imageio import DecodedImage, ImageSource, decode

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}

# Robustness tiers: (longest side limit, JPEG quality). Applied to every image the same way,
# whatever its class, so format and compression cannot tell the classes apart.
TIERS: dict[str, tuple[int, int] | None] = {"clean": None, "web": (768, 60), "hard": (512, 40)}


def draft_size(pp: Preprocess) -> tuple[int, int] | None:
    """JPEG draft target for this policy, or None when the model must see native pixels."""
    if pp.policy == "native_crop":
        return None
    side = pp.size if pp.policy == "resize" else int(round(pp.size / pp.crop_pct))
    # Ask for at least twice the model side so DCT scaling never replaces the final resample.
    return (2 * side, 2 * side)


def load(source: ImageSource, pp: Preprocess) -> DecodedImage:
    """Decode a source the way this preprocessing wants it (draft mode only where harmless)."""
    return decode(source, draft=draft_size(pp))


# Past this many times the model input's pixels, the scaled image is never built (see geometry()).
MAX_SCALED_FACTOR = 64


def geometry(img: Image.Image, pp: Preprocess) -> Image.Image:
    """Resize/crop an RGB image to size×size following the card's policy (deterministic, centred).

    The work is bounded by the output, not the input: where the policy scales the shorter side and takes
    the centre and the scaled image would exceed MAX_SCALED_FACTOR model inputs, only the source region
    under that centre is resampled (Pillow's ``box``; equal to scale-then-crop up to the filter's edge
    rows), so a 1×100000 strip costs one size×size resize (its scaled image would be 224×22.4M).
    """
    s = pp.size
    resample = _RESAMPLE[pp.interpolation]
    w, h = img.size
    if pp.policy == "resize":
        return img if (w, h) == (s, s) else img.resize((s, s), resample)
    if pp.policy == "center_crop":
        short = int(round(s / pp.crop_pct))
    elif min(w, h) < s:  # native_crop on a small image: upscale just enough
        short = s
    else:
        return center_crop(img, s)
    nw, nh = short_side_size(w, h, short)
    if (nw, nh) == (w, h):
        return center_crop(img, s)
    if nw * nh <= MAX_SCALED_FACTOR * s * s:  # the usual case: the exact scale-then-crop of every release
        return center_crop(img.resize((nw, nh), resample), s)
    return resized_centre(img, (nw, nh), s, resample)


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
    """RGB image → model input (3, size, size) float32."""
    return normalize(geometry(img, pp), pp)


def tta_views(img: Image.Image, pp: Preprocess) -> list[np.ndarray]:
    """Test-time views: the centre input, its mirror and, for native crops of big images, 4 corners."""
    views = [geometry(img, pp)]
    views.append(views[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    w, h = img.size
    s = pp.size
    if pp.policy == "native_crop" and w >= s and h >= s and (w > s or h > s):
        for x, y in ((0, 0), (w - s, 0), (0, h - s), (w - s, h - s)):
            views.append(img.crop((x, y, x + s, y + s)))
    return [normalize(v, pp) for v in views]


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


def batch_inputs(
    sources: Sequence[ImageSource | os.PathLike], pp: Preprocess, tier: str = "clean"
) -> np.ndarray:
    """Decode and preprocess several sources into one (N, 3, s, s) batch (raises on a bad one)."""
    return np.stack([to_input(apply_tier(load(s, pp).image, tier), pp) for s in sources])
