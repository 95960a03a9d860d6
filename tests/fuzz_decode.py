"""atheris (libFuzzer) target for the decode + preprocess path.

Contract under test: for ANY bytes, ``decode`` returns an RGB image or raises ``DecodeError``, and a
decoded image always preprocesses into a finite float32 (3, s, s) input. Anything else (another
exception type, a wrong shape, NaN) is a crash that libFuzzer reports with the input that caused it.

Run by hand:   python tests/fuzz_decode.py -runs=100000 -max_len=65536 SEED_DIR
(``tests/test_fuzz.py`` writes a seed corpus and runs a bounded number of iterations.)
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["aivsreal", "PIL"]):
    # Pillow loads its format plugins lazily; import them here so their Python parsers are instrumented.
    from PIL import (  # noqa: F401
        BmpImagePlugin,
        GifImagePlugin,
        JpegImagePlugin,
        MpoImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        WebPImagePlugin,
    )

    from aivsreal.card import Preprocess
    from aivsreal.imageio import DecodeError, decode
    from aivsreal.preprocess import to_input

import numpy as np  # noqa: E402

# A lower pixel cap than the product's keeps each iteration fast; the guard logic is the same.
MAX_PIXELS = 4_000_000
POLICIES = [Preprocess(size=32, policy=p) for p in ("native_crop", "center_crop", "resize")]


def test_one_input(data: bytes) -> None:
    try:
        d = decode(data, max_pixels=MAX_PIXELS)
    except DecodeError as e:
        assert e.kind and e.message, "DecodeError without kind or message"
        return
    assert d.image.mode == "RGB", d.image.mode
    assert d.image.size[0] * d.image.size[1] <= MAX_PIXELS
    pp = POLICIES[len(data) % len(POLICIES)]
    x = to_input(d.image, pp)
    assert x.shape == (3, pp.size, pp.size) and x.dtype == np.float32, x.shape
    assert np.isfinite(x).all()


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
