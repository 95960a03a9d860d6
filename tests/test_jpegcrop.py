"""Cropped JPEG decoding gives exactly the full decode's pixels for the region the plan uses."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import make_image
from PIL import Image

from aivsreal import jpegcrop
from aivsreal.card import Preprocess
from aivsreal.imageio import decode
from aivsreal.preprocess import load_views

needs_turbo = pytest.mark.skipif(
    not jpegcrop.available(), reason="PyTurboJPEG/libturbojpeg not installed (the [fastjpeg] extra)"
)
PP = Preprocess(size=64, policy="native_crop")


def jpeg(w: int, h: int, seed: int = 0, **save) -> bytes:
    img = make_image("ai" if seed % 2 else "real", h, seed=seed, w=w)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **{"quality": 90, **save})
    return buf.getvalue()


CASES = [
    ("4:2:0", dict(subsampling=2)),
    ("4:2:2", dict(subsampling=1)),
    ("4:4:4", dict(subsampling=0)),
    ("progressive", dict(progressive=True)),
    ("restart markers", dict(restart_marker_blocks=3)),
    ("quality 40", dict(quality=40)),
]


@needs_turbo
@pytest.mark.parametrize("label,save", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("size", [(301, 203), (200, 417), (96, 97)])
def test_region_decode_equals_full_decode_in_the_region(label, save, size):
    w, h = size
    data = jpeg(w, h, seed=w + h, **save)
    full = decode(data)
    for box in [
        ((w - 64) // 2, (h - 64) // 2, (w - 64) // 2 + 64, (h - 64) // 2 + 64),
        (0, 0, 64, 64),
        (w - 64, h - 64, w, h),
    ]:
        part = decode(data, region=lambda _w, _h, box=box: box)
        if not part.cropped:  # a cut over MAX_FRACTION of a small image falls back to the full decode
            assert part.image.size == full.image.size
            continue
        ox, oy = part.origin
        left, t, r, b = box
        got = np.asarray(part.image)[t - oy : b - oy, left - ox : r - ox]
        want = np.asarray(full.image)[t:b, left:r]
        assert part.full_size == (w, h)
        assert np.array_equal(got, want), (label, size, box)


@needs_turbo
def test_load_views_are_identical_with_and_without_region_decode():
    data = jpeg(640, 480, seed=3)
    for views in ("center", "tta", "patches"):
        a = load_views(data, PP, views=views, region_decode=True)
        b = load_views(data, PP, views=views, region_decode=False)
        assert a.shape == b.shape and np.array_equal(a, b), views
    d = decode(data, region=lambda w, h: (288, 208, 352, 272))
    assert d.cropped and d.image.size[0] * d.image.size[1] < 0.1 * 640 * 480  # it really read less


def test_unusual_jpegs_fall_back_to_the_full_decode():
    """Rotated (EXIF), CMYK and grayscale JPEGs are decoded whole; so is everything without the binding."""
    img = make_image("real", 200, seed=1, w=300)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    cmyk, gray = io.BytesIO(), io.BytesIO()
    img.convert("CMYK").save(cmyk, format="JPEG")
    img.convert("L").save(gray, format="JPEG")
    for data in (buf.getvalue(), cmyk.getvalue(), gray.getvalue()):
        d = decode(data, region=lambda w, h: (0, 0, 64, 64))
        assert not d.cropped and d.full_size == d.image.size
    assert decode(buf.getvalue()).image.size == (200, 300)  # oriented
