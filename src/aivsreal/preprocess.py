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


def geometry(img: Image.Image, pp: Preprocess) -> Image.Image:
    """Resize/crop an RGB image to size×size following the card's policy (deterministic, centred)."""
    s = pp.size
    resample = _RESAMPLE[pp.interpolation]
    w, h = img.size
    if pp.policy == "resize":
        return img if (w, h) == (s, s) else img.resize((s, s), resample)
    if pp.policy == "center_crop":
        short = int(round(s / pp.crop_pct))
        img = resize_short_side(img, short, resample)
    elif min(w, h) < s:  # native_crop on a small image: upscale just enough
        img = resize_short_side(img, s, resample)
    return center_crop(img, s)


def resize_short_side(img: Image.Image, short: int, resample: int) -> Image.Image:
    w, h = img.size
    if min(w, h) == short:
        return img
    if w <= h:
        nw, nh = short, max(short, int(round(h * short / w)))
    else:
        nw, nh = max(short, int(round(w * short / h))), short
    return img.resize((nw, nh), resample)


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
