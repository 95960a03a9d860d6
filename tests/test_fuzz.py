"""Fuzzing the decode + preprocess path: hypothesis properties here, libFuzzer via atheris (slow).

The contract: any bytes or array either decode to an RGB image or raise ``DecodeError`` (never any
other exception), nothing over the pixel limit is ever decoded, and every decoded image becomes a
finite float32 (3, s, s) model input under every preprocessing policy.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hostile import good_images, png_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from aivsreal.card import Preprocess
from aivsreal.imageio import DecodeError, decode
from aivsreal.preprocess import to_input

HERE = Path(__file__).parent
SEEDS = good_images()
SEED_NAMES = sorted(SEEDS)
MAX_PIXELS = 4_000_000
POLICIES = [Preprocess(size=32, policy=p) for p in ("native_crop", "center_crop", "resize")]
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


def check_contract(data) -> str:
    """Decode ``data`` and preprocess it; returns "ok" or the error kind. Fails on anything else."""
    try:
        d = decode(data, max_pixels=MAX_PIXELS)
    except DecodeError as e:
        assert e.kind and e.message
        return e.kind
    assert d.image.mode == "RGB"
    assert d.image.size[0] * d.image.size[1] <= MAX_PIXELS
    for pp in POLICIES:
        x = to_input(d.image, pp)
        assert x.shape == (3, pp.size, pp.size) and x.dtype == np.float32
        assert np.isfinite(x).all()
    return "ok"


def test_seed_corpus_decodes():
    """The mutation seeds are all valid (else mutating them would only test the error path)."""
    assert {check_contract(b) for b in SEEDS.values()} == {"ok"}


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    check_contract(data)


@st.composite
def mutated_image(draw) -> bytes:
    """A valid seed image with a few byte flips, inserts, deletes and maybe a truncation."""
    data = bytearray(SEEDS[draw(st.sampled_from(SEED_NAMES))])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@FUZZ
@given(mutated_image())
def test_mutated_images(data):
    check_contract(data)


@FUZZ
@given(
    w=st.integers(0, 200_000),
    h=st.integers(0, 200_000),
    depth=st.sampled_from([1, 2, 4, 8, 16, 3, 0]),
    color=st.sampled_from([0, 2, 3, 4, 6, 1, 5]),
)
def test_png_headers_never_decode_past_the_limit(w, h, depth, color):
    """A hand-made PNG with any IHDR: over the limit it is refused as such, never decoded."""
    kind = check_contract(png_bytes(w, h, color, depth, b"\x00" * 64))
    valid_header = w > 0 and h > 0 and (color, depth) in {(0, 8), (2, 8), (4, 8), (6, 8), (0, 16), (2, 16)}
    if valid_header and w * h > MAX_PIXELS:
        assert kind == "too_many_pixels"


@FUZZ
@given(w=st.integers(1, 65535), h=st.integers(1, 65535))
def test_gif_logical_screen_sizes(w, h):
    data = bytearray(SEEDS["animated.gif"])
    struct.pack_into("<HH", data, 6, w, h)
    kind = check_contract(bytes(data))
    if w * h > MAX_PIXELS:
        assert kind in ("too_many_pixels", "corrupt")


@FUZZ
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=40),
    )
)
def test_arrays(a):
    """Arrays of any dtype and shape (NaN and inf included): an RGB image or a DecodeError."""
    kind = check_contract(a)
    ok_shape = a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))
    if kind == "ok":
        assert ok_shape and 0 not in a.shape
        assert decode(a).image.size == (a.shape[1], a.shape[0])
    else:
        assert kind == "bad_array"


@FUZZ
@given(
    w=st.integers(1, 700),
    h=st.integers(1, 700),
    size=st.integers(16, 96),
    policy=st.sampled_from(["native_crop", "center_crop", "resize"]),
    mode=st.sampled_from(["RGB", "L", "RGBA", "P", "I;16", "CMYK", "LA", "1", "F"]),
)
def test_preprocess_any_geometry_and_mode(w, h, size, policy, mode):
    """Every size × mode × policy gives a deterministic (3, size, size) finite input."""
    im = Image.new(mode, (w, h))
    pp = Preprocess(size=size, policy=policy)
    x = to_input(decode(im).image, pp)
    assert x.shape == (3, size, size) and np.isfinite(x).all()
    assert np.array_equal(x, to_input(decode(im).image, pp))


@pytest.mark.parametrize(
    "exc", [struct.error("unpack_from requires ..."), KeyError("tile"), AttributeError("fp")]
)
def test_unexpected_parser_errors_become_decode_errors(monkeypatch, exc):
    """Pillow's plugins raise more than OSError on hostile data; each must still be one file's error."""
    from PIL import ImageFile

    def broken(self):
        raise exc

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken)
    with pytest.raises(DecodeError) as ei:
        decode(SEEDS["plain.jpg"])
    assert ei.value.kind == "corrupt"


# ---- atheris (libFuzzer) ---------------------------------------------------------------------------
ATHERIS_RUNS = 8000
# Run a command as the child of a fresh shell (the trailing `exit` keeps the shell from exec-ing it), so its
# peak-RSS accounting starts from the shell's few MB instead of this process's high-water mark.
FRESH_RSS = ["sh", "-c", '"$0" "$@"; exit $?']


def test_fuzzer_peak_rss_is_its_own():
    """After this process has touched 600 MB, a child started through FRESH_RSS still reports a small peak
    RSS (on Linux a direct child reports ≥ 600 MB): the fuzzer's memory limit is not eaten by pytest's."""
    ballast = bytearray(600 * 2**20)
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    probe = [
        sys.executable,
        "-c",
        "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
    ]
    fresh = int(subprocess.run([*FRESH_RSS, *probe], capture_output=True, text=True, check=True).stdout)
    del ballast
    assert fresh < 200 * 1024, f"child started through a shell reports {fresh // 1024} MB peak RSS"


@pytest.mark.slow
def test_atheris_decode_target(tmp_path):
    """Coverage-guided fuzzing of tests/fuzz_decode.py for a bounded number of runs, seeded with the
    valid corpus; libFuzzer exits non-zero and writes a crash-* file if the contract ever breaks."""
    pytest.importorskip("atheris", reason="atheris not installed (pip install -e '.[dev]')")
    seeds, work, art = tmp_path / "seeds", tmp_path / "work", tmp_path / "artifacts"
    for d in (seeds, work, art):
        d.mkdir()
    for i, data in enumerate(SEEDS.values()):
        (seeds / f"seed{i}").write_bytes(data)
    # libFuzzer's -rss_limit_mb reads getrusage's peak RSS, and Linux carries a process's peak across
    # fork + exec: launched straight from a pytest process that once held 2 GB, the fuzzer "starts" at 2 GB
    # and reports an out-of-memory on its first check. A shell in between forks the fuzzer from a small
    # process, so the limit measures the fuzzer alone (test_fuzzer_peak_rss_is_its_own checks this).
    cmd = [
        *FRESH_RSS, sys.executable, str(HERE / "fuzz_decode.py"), f"-runs={ATHERIS_RUNS}", "-seed=1", "-max_len=16384",
        "-rss_limit_mb=2048", "-timeout=30", "-max_total_time=240", f"-artifact_prefix={art}/",
        str(work), str(seeds),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    log = p.stdout + p.stderr
    crashes = list(art.iterdir())
    assert p.returncode == 0 and not crashes, f"fuzzer found a failure ({crashes}):\n{log[-4000:]}"
    m = re.search(r"Done (\d+) runs", log)
    assert m and int(m.group(1)) >= ATHERIS_RUNS, log[-2000:]
    assert len(list(work.iterdir())) > 0  # the fuzzer grew a corpus: it was really exploring
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_zlib_bomb_seed_is_refused_quickly():
    """A PNG whose IDAT inflates to 100 MB of zeros but whose header says 8×8: only 8×8 is decoded."""
    raw = zlib.compress(b"\x00" * 100_000_000, 9)
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    assert check_contract(png) == "ok"
    assert decode(png).image.size == (8, 8)
