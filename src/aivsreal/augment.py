"""Training-time augmentation on PIL images, seeded per (seed, epoch, index) so runs reproduce.

The notebook's geometric ones (flip, rotation, zoom, shift) and the forensic ones applied to BOTH
classes alike (JPEG re-encoding at random quality, down/up-scaling, blur, random crops), so that
compression and resampling traces stop telling the classes apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageFilter

from .card import Preprocess
from .preprocess import _RESAMPLE, jpeg_reencode, view_images


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5
    rotate: float = 0.2  # probability; angle uniform in ±rotate_deg
    rotate_deg: float = 15.0
    zoom: float = 0.2  # probability; scale uniform in [1-zoom_range, 1+zoom_range]
    zoom_range: float = 0.15
    jpeg: float = 0.5  # probability of a JPEG re-encode, quality uniform in jpeg_quality
    jpeg_quality: tuple[int, int] = (30, 95)
    rescale: float = 0.3  # probability of down-scaling by a factor in rescale_range
    rescale_range: tuple[float, float] = (0.5, 0.95)
    blur: float = 0.15
    blur_sigma: tuple[float, float] = (0.2, 1.5)
    forensic: bool = True
    geometric: bool = True


def rng_for(seed: int, epoch: int, index: int) -> random.Random:
    return random.Random((seed * 1_000_003 + epoch) * 10_000_019 + index)


MAX_ASPECT = 16  # a training view never sees more of a strip than this many short sides of its length


def _limit_aspect(img: Image.Image, s: int) -> Image.Image:
    """The centre of an extreme strip (1×100000): the augmentations' cost and JPEG's 65535 limit stay bounded."""
    w, h = img.size
    cap = max(s, MAX_ASPECT * min(w, h))
    if max(w, h) <= cap:
        return img
    nw, nh = min(w, cap), min(h, cap)
    left, top = (w - nw) // 2, (h - nh) // 2
    return img.crop((left, top, left + nw, top + nh))


def train_view(img: Image.Image, pp: Preprocess, cfg: AugmentConfig, rng: random.Random) -> Image.Image:
    """One augmented size×size training view of an RGB image, following the card's policy."""
    resample = _RESAMPLE[pp.interpolation]
    img = _limit_aspect(img, pp.size)
    if cfg.geometric:
        if rng.random() < cfg.rotate:
            img = img.rotate(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg), resample=resample)
        if rng.random() < cfg.zoom:
            z = rng.uniform(1 - cfg.zoom_range, 1 + cfg.zoom_range)
            w, h = img.size
            img = img.resize((max(8, round(w * z)), max(8, round(h * z))), resample)
    if cfg.forensic:
        if rng.random() < cfg.rescale:
            f = rng.uniform(*cfg.rescale_range)
            w, h = img.size
            img = img.resize((max(8, round(w * f)), max(8, round(h * f))), Image.Resampling.BILINEAR)
        if rng.random() < cfg.blur:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(*cfg.blur_sigma)))
        if rng.random() < cfg.jpeg:
            img = jpeg_reencode(img, rng.randint(*cfg.jpeg_quality))
    # geometry with a random box of the same plan instead of the centre one
    img = view_images(img, pp, "random", rng.randint)[0]
    if cfg.geometric and rng.random() < cfg.flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img
