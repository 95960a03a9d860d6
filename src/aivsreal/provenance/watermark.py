"""Invisible ``dwtDct`` watermarks of Stable Diffusion v1/v2 and SDXL (``invisible-watermark``, the [provenance] extra)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ..imageio import to_rgb
from .items import EXTRA_HINT, item

WATERMARK_MAX_PIXELS = 8_000_000  # the dwtDct decoder is a Python loop; generators mark at <= ~4 MP
WATERMARK_MIN_PIXELS = 256 * 256  # the encoder refuses smaller images
WATERMARK_MIN_SIDE = 64  # and an extreme strip has no room for its blocks

# Invisible watermarks written by Stability's reference scripts with invisible-watermark's dwtDct method.
_SDXL_BITS = [int(b) for b in bin(0b101100111110110010010000011110111011000110011110)[2:]]
WATERMARKS: dict[str, list[int]] = {
    "Stable Diffusion v1 (StableDiffusionV1)": np.unpackbits(
        np.frombuffer(b"StableDiffusionV1", np.uint8)
    ).tolist(),
    "Stable Diffusion v2 (SDV2)": np.unpackbits(np.frombuffer(b"SDV2", np.uint8)).tolist(),
    "SDXL (48-bit mark)": _SDXL_BITS,
}
WM_STRONG_P, WM_MODERATE_P = 1e-9, 1e-5  # chance of matching this well by luck, per mark and channel order


def binomial_tail(k: int, n: int) -> float:
    """P(at least k of n fair coin flips match): the chance a random image matches this well."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


def block_bits(bgr: np.ndarray) -> np.ndarray:
    """The bit every 8×8 pixel block carries under invisible-watermark's dwtDct scheme, in its order.

    Decoding with a watermark length equal to the number of blocks gives one block per slot, so one
    pass of the library's decoder serves every mark length (a mark of length L averages slots n mod L).
    """
    from imwatermark.maxDct import EmbedMaxDct

    rows, cols = bgr.shape[0] // 4 * 4 // 2, bgr.shape[1] // 4 * 4 // 2
    n_blocks = (rows // 4) * (cols // 4)
    dec = EmbedMaxDct(watermarks=[], wmLen=n_blocks, scales=[0, 36, 36], block=4)
    return np.asarray(dec.decode(bgr), dtype=np.float64)


def match_marks(bits: np.ndarray) -> list[tuple[str, int, int, float]]:
    """For each known mark: (name, matching bits, mark length, chance probability)."""
    out = []
    for name, expected in WATERMARKS.items():
        n = len(expected)
        if bits.size < n:
            continue
        idx = np.arange(bits.size) % n
        means = np.bincount(idx, weights=bits, minlength=n) / np.bincount(idx, minlength=n)
        decoded = means * 255 > 127  # the library's rounding
        k = int((decoded == np.asarray(expected, dtype=bool)).sum())
        out.append((name, k, n, binomial_tail(k, n)))
    return out


def _check_watermarks(im: Image.Image, items: list, checks: dict[str, str]) -> None:
    try:
        import cv2  # noqa: F401
        import imwatermark.maxDct  # noqa: F401
    except Exception as e:  # ImportError, or OpenCV failing to load its shared libraries
        checks["watermark"] = (
            f"unavailable: invisible-watermark not importable ({type(e).__name__}; {EXTRA_HINT})"
        )
        return
    frame = im.convert("RGB") if im.mode in ("RGB", "RGBA", "P", "L") else to_rgb(im)
    rgb = np.asarray(frame, dtype=np.uint8)
    best: dict[str, tuple[int, int, float, str]] = {}
    for order, arr in (("BGR", rgb[:, :, ::-1]), ("RGB", rgb)):  # some pipelines pass RGB as if BGR
        for name, k, n, p in match_marks(block_bits(np.ascontiguousarray(arr))):
            if name not in best or p < best[name][2]:
                best[name] = (k, n, p, order)
    checks["watermark"] = "done"
    for name, (k, n, p, order) in best.items():
        if p < WM_MODERATE_P:
            strength = "strong" if p < WM_STRONG_P else "moderate"
            detail = f"dwtDct mark, {k}/{n} bits match (chance {p:.1e}); channel order {order}"
            items.append(item("watermark", f"invisible watermark: {name}", strength, detail, "ai"))
