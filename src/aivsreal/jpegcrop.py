"""Cropped JPEG decoding: only the part of a photo the model will see, through libjpeg-turbo.

A native centre crop needs ~6 % of a 1024×768 photo's pixels, yet a full decode costs the whole image.
libjpeg-turbo's lossless crop (``tjTransform`` with ``TJXOPT_CROP``, via the maintained PyTurboJPEG
binding: the ``[fastjpeg]`` extra, which needs the system ``libturbojpeg``) cuts the DCT blocks around the
region without re-quantising; decoding that small JPEG gives the same pixels as a full decode everywhere
except within a few pixels of its border (chroma upsampling reads neighbours). So the cut is widened by
MARGIN pixels on each side, aligned to 16-pixel MCUs, and only the inner region is used: identical to a
full decode for the region used (``tests/test_jpegcrop.py`` checks that on every subsampling). Without
the binding, or for anything unusual, callers fall back to the full decode.

Measured (``aivsreal bench``, ``bound_gain_region_decode``): with libjpeg-turbo 2.1 the lossless crop still
entropy-decodes the whole file, so a 1024×768 photo costs about what a full decode costs; the Detector
leaves it off by default. TurboJPEG 3's partial decompression (``tj3SetCroppingRegion``) would skip the
IDCT of unused rows and columns, but Debian ships 2.1 and PyTurboJPEG 2.x needs 3.0.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

MCU = 16  # the largest MCU of common subsamplings (4:2:0); 8 and 16×8 divide it
MARGIN = 16  # pixels kept around the region so chroma upsampling at the cut never reaches it
MAX_FRACTION = 0.6  # above this share of the image a full decode costs about the same

_lock = threading.Lock()
_tj: Any = None
_tried = False


def _turbo() -> Any:
    """The PyTurboJPEG handle, or None when the binding or libturbojpeg is missing."""
    global _tj, _tried
    if not _tried:
        with _lock:
            if not _tried:
                try:
                    from turbojpeg import TurboJPEG

                    _tj = TurboJPEG()
                except Exception:  # ImportError, or the shared library not found
                    _tj = None
                _tried = True
    return _tj


def available() -> bool:
    """True when cropped decoding can be used on this machine."""
    return _turbo() is not None


def padded_box(w: int, h: int, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The MCU-aligned cut that holds ``box`` plus MARGIN pixels (clipped to the image)."""
    left, top, right, bottom = box
    return (
        max(0, (left - MARGIN) // MCU * MCU),
        max(0, (top - MARGIN) // MCU * MCU),
        min(w, right + MARGIN),
        min(h, bottom + MARGIN),
    )


def decode_region(
    data: bytes, w: int, h: int, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """RGB pixels (H×W×3 uint8) of a cut around ``box`` and the cut's (left, top), or None to fall back."""
    tj = _turbo()
    if tj is None:
        return None
    left, top, right, bottom = padded_box(w, h, box)
    if (right - left) * (bottom - top) > MAX_FRACTION * w * h:
        return None
    try:
        from turbojpeg import TJPF_RGB

        cut = tj.crop(data, left, top, right - left, bottom - top)
        rgb = tj.decode(cut, pixel_format=TJPF_RGB)
    except Exception:  # OSError from libjpeg-turbo: unusual sampling, arithmetic coding ...
        return None
    if rgb.shape != (bottom - top, right - left, 3):
        return None
    return np.ascontiguousarray(rgb), (left, top)
