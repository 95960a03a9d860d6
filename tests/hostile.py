"""A corpus of hostile and awkward inputs, generated on the fly (nothing binary is committed).

``make_corpus(root)`` writes every case into ``root`` and returns a list of :class:`Case` saying
what each file is and what the product must do with it: decode it (``ok``), or refuse it with one
of the expected error kinds. Tests feed the same corpus to every door (decode, predict, evaluate,
data summary, inspect, training data loading, the HTTP API).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from helpers import make_image
from PIL import Image

BOMB_SIDE = 30_000  # 30000×30000 = 9e8 pixels: 2.7 GB as RGB, far over the 64 Mpx limit


@dataclass
class Case:
    """One corpus entry: where it is, whether it should decode, and the error kinds allowed if not."""

    name: str
    path: Path
    ok: bool
    kinds: frozenset[str] = field(default_factory=frozenset)
    why: str = ""
    special: bool = False  # not a regular file (FIFO, symlink, dir): not uploadable over HTTP

    @property
    def fsname(self) -> str:
        return os.fsdecode(self.path)


# ---- small binary builders ---------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bytes(
    width: int, height: int, color_type: int, bit_depth: int, raw: bytes, extra: bytes = b""
) -> bytes:
    """A PNG built by hand (IHDR, optional extra chunks, one IDAT of ``raw`` scanlines, IEND)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + extra
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small valid JPEG whose SOF header is patched to claim width×height (a header-only bomb)."""
    data = bytearray(encode(make_image("real", 32, seed=3), "JPEG", quality=90))
    i = data.find(b"\xff\xc0")
    assert i > 0, "baseline JPEG without SOF0"
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


def jpeg_with_app1(payload: bytes) -> bytes:
    """A valid JPEG with one extra APP1 segment (EXIF or XMP) inserted right after SOI."""
    data = encode(make_image("real", 48, seed=5), "JPEG", quality=90)
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + seg + data[2:]


# An EPS program that never ends: Ghostscript would loop on it forever (Pillow's EPS plugin runs gs).
EPS_LOOP = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n{ } loop\n"
PS_PLAIN = b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke showpage\n"


def jpeg_scan_bomb(side: int, repeats: int) -> bytes:
    """A flat side×side progressive JPEG whose last scan is repeated ``repeats`` times (tiny, slow to decode)."""
    data = encode(Image.new("RGB", (side, side), (120, 130, 140)), "JPEG", quality=80, progressive=True)
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * repeats + data[end:]


def exif_with_orientation(value: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = value
    return ex.tobytes()


# ---- the corpus --------------------------------------------------------------------------------
def good_images() -> dict[str, bytes]:
    """Valid but awkward images: every one must be scored."""
    base = make_image("real", 64, seed=11)
    ai = make_image("ai", 64, seed=12)
    out: dict[str, bytes] = {}
    out["plain.jpg"] = encode(base, "JPEG", quality=92)
    out["png_named_as.jpg"] = encode(ai, "PNG")  # wrong extension for a valid image
    out["jpeg_named_as.png"] = encode(base, "JPEG", quality=85)
    out["one_pixel.png"] = encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG")
    out["one_pixel.jpg"] = encode(Image.new("RGB", (1, 1), (10, 200, 10)), "JPEG")
    out["cmyk.jpg"] = encode(base.convert("CMYK"), "JPEG", quality=90)
    # 16-bit RGB PNG (Pillow cannot write one): rows of filter byte 0 + big-endian uint16 samples
    a16 = (np.asarray(base, dtype=np.uint16) * 257).astype(">u2")
    rows = b"".join(b"\x00" + a16[y].tobytes() for y in range(a16.shape[0]))
    out["rgb16.png"] = png_bytes(64, 64, 2, 16, rows)
    out["gray16.png"] = encode(Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257), "PNG")
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out["palette_transparency.png"] = encode(pal, "PNG", transparency=0)
    out["la.png"] = encode(base.convert("LA"), "PNG")
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((64, 64)))
    out["rgba.png"] = encode(rgba, "PNG")
    out["i16.tif"] = encode(Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 15), "TIFF")
    frames = [make_image("ai", 48, seed=s) for s in range(3)]
    out["animated.gif"] = encode(
        frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0
    )
    out["animated.webp"] = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50)
    out["exif_orientation_6.jpg"] = encode(
        make_image("real", 48, seed=7, w=80), "JPEG", exif=exif_with_orientation(6)
    )
    out["exif_orientation_bogus.jpg"] = encode(base, "JPEG", exif=exif_with_orientation(977))
    out["exif_corrupt.jpg"] = jpeg_with_app1(
        b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0garbage" + os.urandom(40)
    )
    out["xmp_corrupt.jpg"] = jpeg_with_app1(
        b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:RDF><unclosed attr='\x00\xff"
    )
    out["name with spaces.png"] = encode(ai, "PNG")
    out["uppercase.JPG"] = encode(ai, "JPEG", quality=80)
    return out


def make_corpus(root: Path, *, with_specials: bool = True) -> list[Case]:
    """Write the corpus into ``root`` (created) and return its cases. ``with_specials`` adds FIFO,
    symlinks, a directory named like an image and an unreadable file (local doors only)."""
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def put(name: str | bytes, data: bytes, ok: bool, kinds: set[str] = frozenset(), why: str = "") -> None:
        p = Path(os.fsdecode(os.path.join(os.fsencode(root), os.fsencode(name))))
        p.write_bytes(data)
        cases.append(Case(os.fsdecode(name), p, ok, frozenset(kinds), why))

    for name, data in good_images().items():
        put(name, data, True, why="valid image")
    # a valid image whose file name is not UTF-8 (latin-1 bytes): decodable, printable without crashing
    put(
        b"caf\xe9_latin1.png", encode(make_image("real", 40, seed=21), "PNG"), True, why="non-UTF-8 file name"
    )

    good_jpeg = encode(make_image("real", 96, seed=31), "JPEG", quality=90)
    good_png = encode(make_image("ai", 96, seed=32), "PNG")
    put("empty.jpg", b"", False, {"empty"}, "zero bytes")
    put("truncated.jpg", good_jpeg[: len(good_jpeg) // 2], False, {"corrupt"}, "JPEG cut in half")
    put("truncated.png", good_png[: len(good_png) // 2], False, {"corrupt"}, "PNG cut in half")
    put("header_only.png", good_png[:33], False, {"corrupt", "not_an_image"}, "PNG signature + IHDR, no data")
    put(
        "text.jpg", b"this is not an image, just some text\n" * 20, False, {"not_an_image"}, "text named .jpg"
    )
    put(
        "html.png", b"<!doctype html><html><body>hi</body></html>", False, {"not_an_image"}, "HTML named .png"
    )
    put(
        "bomb.png",
        png_bytes(BOMB_SIDE, BOMB_SIDE, 2, 8, b"\x00" * 1000),
        False,
        {"too_many_pixels"},
        f"PNG header claims {BOMB_SIDE}x{BOMB_SIDE}",
    )
    put(
        "bomb.jpg", jpeg_with_size(BOMB_SIDE, BOMB_SIDE), False, {"too_many_pixels"}, "JPEG SOF claims 30000²"
    )
    gif = bytearray(encode(make_image("ai", 16, seed=2), "GIF"))
    struct.pack_into("<HH", gif, 6, 60000, 60000)  # logical screen descriptor
    put("bomb.gif", bytes(gif), False, {"too_many_pixels", "corrupt"}, "GIF screen claims 60000²")
    put(
        "ztxt_bomb.png",
        png_bytes(8, 8, 0, 8, b"\x00" * 72, _chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"A" * 30_000_000))),
        False,
        {"corrupt"},
        "zTXt chunk inflating to 30 MB",
    )
    # A 1-byte graphic control block makes Pillow read past it (struct.error; found by atheris). In frame 1
    # the file is refused; in frame 2 the intact first frame is scored (later frames are never parsed).
    anim = good_images()["animated.gif"]
    first = anim.find(b"\x21\xf9\x04")
    for frame, at, ok in ((1, first, False), (2, anim.find(b"\x21\xf9\x04", first + 1), True)):
        gif = bytearray(anim)
        gif[at + 2 : at + 4] = b"\x01\x00"
        kinds = set() if ok else {"corrupt", "not_an_image"}
        put(f"short_gce_frame{frame}.gif", bytes(gif), ok, kinds, f"GIF frame {frame}: 1-byte control block")
    put(
        "zeros.webp",
        b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 64,
        False,
        {"corrupt", "not_an_image"},
        "bad WebP",
    )

    # extreme aspect ratios: tiny files whose scaled-up model input used to take gigabytes; scored (uncertain)
    for w, h in ((1, 10_000), (100_000, 1)):
        strip = png_bytes(w, h, 0, 8, (b"\x00" + b"\x80" * w) * h)
        put(f"strip_{w}x{h}.png", strip, True, why=f"{w}x{h} PNG ({len(strip)} bytes)")
    put(
        "scan_bomb.jpg",
        jpeg_scan_bomb(1000, 2000),
        False,
        {"too_many_scans"},
        "progressive JPEG, 2,010 scans",
    )
    icc = _chunk(b"iCCP", b"big profile\x00\x00" + zlib.compress(b"\x00" * (2 << 20)))
    put(
        "icc_over_limit.png",
        png_bytes(8, 8, 0, 8, b"\x00" * 72, icc),
        True,
        why="ICC profile inflating to 2 MiB",
    )
    # PostScript must never reach Ghostscript, whatever the file is called: not an image at all here
    put("eps_loop_named_as.jpg", EPS_LOOP, False, {"not_an_image"}, "EPS with an endless loop, named .jpg")
    put("postscript_named_as.png", PS_PLAIN, False, {"not_an_image"}, "PostScript named .png")

    if with_specials:
        loop = root / "symlink_loop.jpg"
        os.symlink(loop.name, loop)  # points at itself: ELOOP
        cases.append(
            Case(
                "symlink_loop.jpg",
                loop,
                False,
                frozenset({"unreadable", "not_found"}),
                "symlink loop",
                special=True,
            )
        )
        dangling = root / "dangling.png"
        os.symlink("no_such_target.png", dangling)
        cases.append(
            Case("dangling.png", dangling, False, frozenset({"not_found"}), "dangling symlink", special=True)
        )
        fifo = root / "named_pipe.jpg"
        os.mkfifo(fifo)  # opening it would block forever: must be refused without opening
        cases.append(Case("named_pipe.jpg", fifo, False, frozenset({"not_a_file"}), "FIFO", special=True))
        d = root / "folder.jpg"
        d.mkdir()
        cases.append(
            Case("folder.jpg", d, False, frozenset({"is_directory"}), "directory named .jpg", special=True)
        )
        if os.geteuid() != 0:  # root reads through chmod 000; the FIFO and symlink cases cover root
            locked = root / "no_permission.jpg"
            locked.write_bytes(good_jpeg)
            locked.chmod(0)
            cases.append(
                Case("no_permission.jpg", locked, False, frozenset({"unreadable"}), "chmod 000", special=True)
            )
        big = root / "sparse_huge.jpg"
        with open(big, "wb") as f:  # sparse: 101 MiB on paper, nothing on disk
            f.write(good_jpeg[:4])
            f.truncate(101 * 1024 * 1024)
        cases.append(
            Case("sparse_huge.jpg", big, False, frozenset({"too_large"}), "file over 100 MiB", special=True)
        )
    return cases


def directory_case_names(cases: list[Case]) -> set[str]:
    """Names a folder listing of the corpus yields (directories are not files)."""
    return {c.fsname for c in cases if not c.path.is_dir() or c.path.is_symlink()}


# ---- running the CLI -----------------------------------------------------------------------------
@dataclass
class CliResult:
    rc: int
    stdout: bytes
    stderr: str
    maxrss_mb: float  # peak resident memory of the child process

    def lines(self) -> list[str]:
        """stdout lines; non-UTF-8 file names come back as surrogate escapes, like os.fsdecode."""
        return [ln for ln in self.stdout.decode("utf-8", "surrogateescape").splitlines() if ln.strip()]


_WRAPPER = """
import atexit, os, runpy, sys

def _hwm():
    # VmHWM belongs to this process image (ru_maxrss would include the forked parent's pages)
    with open("/proc/self/status") as f:
        kb = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    with open(os.environ["AIVSREAL_TEST_HWM"], "w") as f:
        f.write(str(kb))

atexit.register(_hwm)
sys.argv = ["aivsreal", *sys.argv[1:]]
runpy.run_module("aivsreal", run_name="__main__", alter_sys=True)
"""


def run_cli(args: list[str], timeout: float = 180, env: dict[str, str] | None = None) -> CliResult:
    """Run ``python -m aivsreal ARGS`` with a strict UTF-8 stdout; kill it if it outlives ``timeout``
    (a hang, e.g. a FIFO opened for reading, fails the test instead of stalling the suite)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as td:
        hwm = Path(td) / "hwm"
        e = dict(os.environ, PYTHONIOENCODING="utf-8", OMP_NUM_THREADS="1", AIVSREAL_TEST_HWM=str(hwm))
        e.update(env or {})
        try:
            p = subprocess.run(
                [sys.executable, "-c", _WRAPPER, *args], capture_output=True, env=e, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"aivsreal {' '.join(args)} did not finish in {timeout}s") from None
        peak = int(hwm.read_text()) / 1024 if hwm.is_file() else float("nan")
        return CliResult(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"), peak)
