"""One geometry plan for every policy: ``plan(w, h, preprocess) → (resize, boxes)``. Stdlib only.

Inference views, TTA and multi-patch views, random training crops, the JPEG draft size and the region
a cropped decode must cover are all derived from :func:`plan`; ``preprocess`` applies a plan to pixels
with Pillow and ``web/src/preprocess.js`` follows the same arithmetic (held to it by test vectors).

A plan says: resize the whole image to ``resize`` first (``None``: keep native pixels), then cut each
``size×size`` box ``(left, top, right, bottom)`` of the resized image, mirrored where ``flips`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # card imports this module; only the annotation needs Preprocess
    from .card import Preprocess

POLICIES: dict[str, str] = {
    "resize": "resize the whole image to size×size (aspect ratio not kept)",
    "center_crop": "resize the shorter side to size/crop_pct, then take the centre size×size",
    "native_crop": "the centre size×size at native resolution (smaller images upscaled to a short side of size)",
}
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")
# View sets: which boxes of the (resized) image the model sees. ``center`` is what scoring uses;
# ``tta`` adds the mirror (and the four corners for native crops); ``patches`` spreads up to
# PATCH_GRID×PATCH_GRID native boxes over the whole image (the multi-patch recipe); ``random`` is one
# training crop drawn with a seeded ``randint``. Several views are aggregated by ``decision.aggregate``.
VIEWS = ("center", "tta", "patches", "random")
PATCH_GRID = 3

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Plan:
    """What to do with a w×h image: an optional whole-image resize, then size×size boxes (maybe mirrored)."""

    source: tuple[int, int]
    resize: tuple[int, int] | None
    boxes: tuple[Box, ...]
    flips: tuple[bool, ...]

    @property
    def scaled(self) -> tuple[int, int]:
        """The size of the image the boxes refer to (after the resize, if any)."""
        return self.resize or self.source

    def region(self) -> Box:
        """The part of the source image the views need, (left, top, right, bottom) in source pixels.

        With a resize the whole image is needed (resampling reads every pixel); otherwise the union
        of the boxes, which is what a cropped decode may restrict itself to.
        """
        if self.resize is not None:
            return (0, 0, *self.source)
        return (
            min(b[0] for b in self.boxes),
            min(b[1] for b in self.boxes),
            max(b[2] for b in self.boxes),
            max(b[3] for b in self.boxes),
        )


def _short_side(w: int, h: int, short: int) -> tuple[int, int]:
    """Size after resizing the shorter side to ``short`` (Python rounding, as Pillow callers use)."""
    if w <= h:
        return short, max(short, int(round(h * short / w)))
    return max(short, int(round(w * short / h))), short


def resize_target(w: int, h: int, pp: Preprocess) -> tuple[int, int] | None:
    """The whole-image resize a policy asks for, or None when native pixels are kept."""
    s = pp.size
    if pp.policy == "resize":
        return None if (w, h) == (s, s) else (s, s)
    if pp.policy == "center_crop":
        short = max(s, int(round(s / pp.crop_pct)))
    elif pp.policy == "native_crop":
        short = s
        if min(w, h) >= s:  # native pixels: no resampling at all
            return None
    else:
        raise ValueError(f"unknown preprocessing policy {pp.policy!r}; choose from {', '.join(POLICIES)}")
    return None if min(w, h) == short else _short_side(w, h, short)


def _centre(rw: int, rh: int, s: int) -> Box:
    left, top = (rw - s) // 2, (rh - s) // 2
    return (left, top, left + s, top + s)


def _spread(n: int, length: int, s: int) -> list[int]:
    """``n`` offsets from 0 to length − s, evenly spread (integer arithmetic, identical in JS)."""
    if n <= 1:
        return [(length - s) // 2]
    return [i * (length - s) // (n - 1) for i in range(n)]


def plan(
    w: int,
    h: int,
    pp: Preprocess,
    views: str = "center",
    randint: Callable[[int, int], int] | None = None,
) -> Plan:
    """The geometry of ``views`` (see :data:`VIEWS`) for a w×h image under the card's policy.

    ``randint(a, b)`` (inclusive, like ``random.Random.randint``) draws the offset of the ``random``
    training view; a seeded generator makes it reproducible, and JS tests replay its draws.
    """
    if w <= 0 or h <= 0:
        raise ValueError(f"invalid image size {w}x{h}")
    s = pp.size
    resize = resize_target(w, h, pp)
    rw, rh = resize or (w, h)
    if views == "center":
        boxes = [_centre(rw, rh, s)]
        flips = [False]
    elif views == "tta":
        boxes = [_centre(rw, rh, s)] * 2
        flips = [False, True]
        if pp.policy == "native_crop" and resize is None and (w > s or h > s):
            boxes += [(x, y, x + s, y + s) for x, y in ((0, 0), (w - s, 0), (0, h - s), (w - s, h - s))]
            flips += [False] * 4
    elif views == "patches":
        nx, ny = (min(PATCH_GRID, math.ceil(n / s)) for n in (rw, rh))
        boxes = [(x, y, x + s, y + s) for y in _spread(ny, rh, s) for x in _spread(nx, rw, s)]
        flips = [False] * len(boxes)
    elif views == "random":
        if randint is None:
            raise ValueError("random views need a seeded randint")
        # the resize policy has one possible box: no draw, so the generator's stream is left as it was
        x, y = (0, 0) if pp.policy == "resize" else (randint(0, rw - s), randint(0, rh - s))
        boxes, flips = [(x, y, x + s, y + s)], [False]
    else:
        raise ValueError(f"unknown views {views!r}; choose from {', '.join(VIEWS)}")
    return Plan((w, h), resize, tuple(boxes), tuple(flips))


def draft_size(pp: Preprocess) -> tuple[int, int] | None:
    """JPEG draft (DCT-scaling) target for this policy, or None when the model must see native pixels.

    Only policies that resample anyway may decode at a reduced scale, and at least twice the model side
    is asked for so that DCT scaling never replaces the final resample.
    """
    if pp.policy == "native_crop":
        return None
    side = pp.size if pp.policy == "resize" else max(pp.size, int(round(pp.size / pp.crop_pct)))
    return (2 * side, 2 * side)
