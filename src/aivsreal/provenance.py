"""Provenance evidence: what a file says about its own origin, next to (never instead of) the model score.

Checks, each on the bytes read once: C2PA content credentials (``c2pa-python``: claim generator, actions
and their IPTC digital source type, signature validation), XMP (IPTC ``DigitalSourceType``, ``CreatorTool``,
the Chinese ``AIGC`` label), EXIF (``Software``, ``Make``/``Model``, ``UserComment``, ``ImageDescription``),
JPEG comments, PNG text chunks of generators (Stable Diffusion WebUI ``parameters``, ComfyUI
``prompt``/``workflow``, NovelAI ``Software``/``Comment``, InvokeAI, Fooocus, Easy Diffusion, Midjourney)
and the invisible ``dwtDct`` watermarks of Stable Diffusion v1/v2 and SDXL (``invisible-watermark``).

Each finding is an item ``{"kind", "found", "strength", "detail", "indicates"}``; ``strength`` is
``strong`` (a generator's own structured output, a valid C2PA claim, a watermark that matches beyond
chance), ``moderate`` (a claim whose signature failed, a generator name in a tool field, a partial
watermark), ``weak`` (hints anyone can copy, e.g. camera EXIF), ``info`` (context) or ``error`` (a part of
the file that could not be parsed). ``indicates`` is ``"ai"``, ``"real"`` or ``None``.

Finding nothing is reported as "no provenance found", never as evidence of a real photo: most uploads
have their metadata stripped, and generators' marks do not survive resizing or most re-encoding.

Verdict policy (:func:`combine`), applied to a model prediction and the items; the score always stays visible:
  1. strong evidence overrides the model: strong AI evidence → ``ai``; strong capture evidence (a C2PA
     capture claim on a trusted certificate) → ``real``; strong evidence both ways → ``uncertain``;
  2. moderate evidence agreeing with the model confirms it; disagreeing with it → ``uncertain``; when the
     model is uncertain, moderate evidence decides;
  3. weak/info evidence, or none, leaves the model's label (``uncertain`` inside the card's band).
The verdict reads ``"<ai|real|uncertain> (<basis>)"``,
e.g. ``"ai (provenance: C2PA trainedAlgorithmicMedia)"``.

The base install needs only Pillow and numpy here; ``c2pa`` and ``imwatermark`` (torch, OpenCV) come with
the ``[provenance]`` extra and are imported lazily; a report says which checks were unavailable.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .imageio import MAX_FILE_BYTES, MAX_PIXELS, open_image, to_rgb

MAX_XMP_BYTES = 1 << 20  # larger XMP packets are reported as an error item, not parsed
MAX_TEXT_BYTES = 8 << 20  # text chunks / JSON larger than this are not parsed
MAX_DETAIL_CHARS = 240
WATERMARK_MAX_PIXELS = 8_000_000  # the dwtDct decoder is a Python loop; generators mark at <= ~4 MP
WATERMARK_MIN_PIXELS = 256 * 256  # the encoder refuses smaller images
EXTRA_HINT = "install the [provenance] extra: pip install 'aivsreal[provenance]'"

STRENGTHS = ("strong", "moderate", "weak", "info", "error")
_RANK = {s: i for i, s in enumerate(STRENGTHS)}

# IPTC NewsCodes digital source types (cv.iptc.org/newscodes/digitalsourcetype) → (indicates, strength).
DIGITAL_SOURCE_TYPES: dict[str, tuple[str | None, str]] = {
    "trainedAlgorithmicMedia": ("ai", "strong"),
    "compositeWithTrainedAlgorithmicMedia": ("ai", "strong"),
    "algorithmicMedia": ("ai", "moderate"),
    "compositeSynthetic": ("ai", "moderate"),
    "digitalCapture": ("real", "weak"),
    "computationalCapture": ("real", "weak"),
    "negativeFilm": ("real", "weak"),
    "positiveFilm": ("real", "weak"),
    "print": ("real", "weak"),
    "compositeCapture": ("real", "weak"),
    "algorithmicallyEnhanced": (None, "info"),
    "minorHumanEdits": (None, "info"),
    "humanEdits": (None, "info"),
    "digitalArt": (None, "info"),
    "dataDrivenMedia": (None, "info"),
    "screenCapture": (None, "info"),
    "virtualRecording": (None, "info"),
}

# Names of image generators and generator front-ends, matched case-insensitively on word boundaries.
GENERATOR_NAMES = (
    r"stable[ _-]?diffusion",
    r"sdxl",
    r"midjourney",
    r"dall[·.\-_ ]?e",
    r"adobe firefly",
    r"firefly",
    r"imagen",
    r"nano[ -]?banana",
    r"novelai",
    r"comfyui",
    r"invokeai",
    r"fooocus",
    r"automatic1111",
    r"stable-diffusion-webui",
    r"sd\.next",
    r"leonardo\.ai",
    r"ideogram",
    r"flux\.?1?",
    r"kandinsky",
    r"craiyon",
    r"nightcafe",
    r"dreamstudio",
    r"diffusionbee",
    r"draw things",
    r"bing image creator",
    r"image creator from microsoft designer",
    r"gpt-4o",
    r"chatgpt",
    r"openai",
    r"made with google ai",
    r"google ai",
    r"seedream",
    r"hunyuanimage",
    r"qwen-image",
    r"recraft",
    r"playground v\d",
    r"krea",
    r"runway(?:ml)?",
    r"sora",
    r"easy diffusion",
    r"diffusers",
)
_GEN_RE = re.compile(r"(?<![\w])(" + "|".join(GENERATOR_NAMES) + r")(?![\w])", re.IGNORECASE)

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

_MIME = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}


# ---- items and reports -----------------------------------------------------------------------------
def item(
    kind: str, found: str, strength: str, detail: str = "", indicates: str | None = None
) -> dict[str, Any]:
    """One piece of evidence (or an error) in the documented shape."""
    assert strength in _RANK, strength
    return {
        "kind": kind,
        "found": found,
        "strength": strength,
        "detail": _clip(detail),
        "indicates": indicates,
    }


def _clip(s: Any, n: int = MAX_DETAIL_CHARS) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _report(
    name: str, items: list[dict[str, Any]], checks: dict[str, str], error: dict | None = None
) -> dict:
    items = sorted(items, key=lambda it: _RANK[it["strength"]])
    rep: dict[str, Any] = {"path": name, "items": items, "summary": summarize(items), "checks": checks}
    if error is not None:
        rep["error"] = error
    return rep


def summarize(items: list[dict[str, Any]]) -> str:
    """One line: the strongest AI or capture evidence, else "no provenance found"."""
    for strength, prefix in (("strong", ""), ("moderate", "possible ")):
        for direction, what in (("ai", "AI provenance"), ("real", "capture provenance")):
            hits = [it for it in items if it["strength"] == strength and it["indicates"] == direction]
            if hits:
                more = f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""
                return f"{prefix}{what}: {hits[0]['found']}{more}"
    errors = sum(it["strength"] == "error" for it in items)
    return "no provenance found" + (f" ({errors} part(s) could not be parsed)" if errors else "")


def format_report(rep: dict[str, Any]) -> str:
    """Human-readable report: a summary line, one line per item, then checks that did not run."""
    lines = [f"{rep['path']}: {rep['summary']}"]
    if rep.get("error"):
        lines.append(f"  error: {rep['error']['kind']}: {rep['error']['message']}")
    for it in rep["items"]:
        detail = f" — {it['detail']}" if it["detail"] else ""
        lines.append(f"  [{it['strength']:<8}] {it['kind']}: {it['found']}{detail}")
    for name, state in rep.get("checks", {}).items():
        if not state.startswith("done"):
            lines.append(f"  ({name}: {state})")
    return "\n".join(lines)


# ---- entry points ----------------------------------------------------------------------------------
def inspect_path(path: str | os.PathLike) -> dict[str, Any]:
    """Read one file once and look for provenance evidence; file-level problems go in ``error``."""
    name = os.fsdecode(path)
    p = Path(path)
    try:
        st = p.stat()
        if p.is_dir():
            return _report(name, [], {}, {"kind": "is_directory", "message": "is a directory"})
        if not stat.S_ISREG(st.st_mode):  # reading a FIFO blocks forever
            msg = "not a regular file (named pipe, socket or device)"
            return _report(name, [], {}, {"kind": "not_a_file", "message": msg})
        if st.st_size > MAX_FILE_BYTES:
            msg = f"file is {st.st_size} bytes, over the {MAX_FILE_BYTES} limit"
            return _report(name, [], {}, {"kind": "too_large", "message": msg})
        data = p.read_bytes()
    except FileNotFoundError:
        return _report(name, [], {}, {"kind": "not_found", "message": "no such file"})
    except OSError as e:
        return _report(name, [], {}, {"kind": "unreadable", "message": f"cannot read: {e.strerror or e}"})
    return inspect_bytes(data, name)


def inspect_bytes(data: bytes, name: str = "<bytes>") -> dict[str, Any]:
    """Look for provenance evidence in an image's bytes. Never raises for bad input."""
    data = bytes(data)
    if not data:
        return _report(name, [], {}, {"kind": "empty", "message": "empty input (0 bytes)"})
    if len(data) > MAX_FILE_BYTES:
        msg = f"input is {len(data)} bytes, over the {MAX_FILE_BYTES} limit"
        return _report(name, [], {}, {"kind": "too_large", "message": msg})
    items: list[dict[str, Any]] = []
    checks: dict[str, str] = {}
    error = None
    im, fmt = None, None
    try:
        im = open_image(io.BytesIO(data))  # supported formats only: EPS never reaches Ghostscript
        fmt = im.format
    except UnidentifiedImageError:
        sniffed = _sniff_mime(data)
        if sniffed is None:
            error = {"kind": "not_an_image", "message": "not a recognised image format"}
        else:  # the signature is right but Pillow refused the structure: bad CRC, broken chunk or segment
            error = {"kind": "corrupt", "message": f"{sniffed} structure could not be parsed (broken chunk?)"}
            items.append(item("file", f"{sniffed} structure could not be parsed", "error", error["message"]))
    except Exception as e:  # broken chunks, bad CRCs, oversized text chunks: Pillow refuses the header
        error = {"kind": "corrupt", "message": f"cannot parse image header: {e}"}
        items.append(item("file", "image header could not be parsed", "error", f"{type(e).__name__}: {e}"))
    _guard(items, "c2pa", lambda: _check_c2pa(data, _MIME.get(fmt or "", _sniff_mime(data)), items, checks))
    if im is not None:
        _check_image(im, items, checks)
    return _report(name, items, checks, error)


def _guard(items: list, kind: str, fn) -> None:
    """Run one check; an unexpected failure becomes an error item, not a crash."""
    try:
        fn()
    except MemoryError:
        items.append(item(kind, f"{kind} check ran out of memory", "error"))
    except Exception as e:
        items.append(item(kind, f"{kind} check failed", "error", f"{type(e).__name__}: {e}"))


def _check_image(im: Image.Image, items: list, checks: dict[str, str]) -> None:
    w, h = im.size
    pixels_ok = 0 < w * h <= MAX_PIXELS
    loaded = False
    if pixels_ok:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()  # also reads text chunks stored after the image data
            loaded = True
        except Exception as e:
            items.append(item("file", "image data could not be decoded", "error", f"{type(e).__name__}: {e}"))
    else:
        items.append(item("file", f"{w}x{h} image exceeds the {MAX_PIXELS}-pixel limit", "error"))
    info = dict(im.info)
    if loaded and im.format == "PNG":
        try:
            info.update(im.text)  # type: ignore[attr-defined]
        except Exception as e:
            items.append(item("png-text", "text chunks could not be read", "error", str(e)))
    _guard(items, "xmp", lambda: _check_xmp(im, info, items))
    _guard(items, "exif", lambda: _check_exif(im, items))
    _guard(items, "text", lambda: _check_text_chunks(im.format, info, items))
    checks["metadata"] = "done"
    if not loaded:
        checks["watermark"] = "skipped: image pixels could not be decoded"
    elif w * h < WATERMARK_MIN_PIXELS:
        checks["watermark"] = "skipped: smaller than 256x256 (generators do not mark such images)"
    elif w * h > WATERMARK_MAX_PIXELS:
        checks["watermark"] = f"skipped: larger than {WATERMARK_MAX_PIXELS // 1_000_000} MP"
    else:
        _guard(items, "watermark", lambda: _check_watermarks(im, items, checks))


# ---- C2PA --------------------------------------------------------------------------------------------
def _sniff_mime(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        return "image/avif" if brand in (b"avif", b"avis") else "image/heic"
    return None


def _check_c2pa(data: bytes, mime: str | None, items: list, checks: dict[str, str]) -> None:
    if b"jumb" not in data or b"c2pa" not in data:  # no embedded JUMBF manifest store: skip the library
        checks["c2pa"] = "done"
        return
    try:
        import c2pa
    except ImportError:
        checks["c2pa"] = f"unavailable: c2pa-python is not installed ({EXTRA_HINT})"
        items.append(item("c2pa", "C2PA manifest bytes present but not read", "info", EXTRA_HINT))
        return
    checks["c2pa"] = "done"
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data))
        if reader is None:
            return
        with reader:
            store = json.loads(reader.json())
    except Exception as e:  # C2paError subclasses: malformed JUMBF, bad CBOR, unsupported format...
        items.append(
            item("c2pa", "C2PA manifest present but unreadable", "error", f"{type(e).__name__}: {e}")
        )
        return
    items.extend(c2pa_items(store))


def _short_dst(uri: Any) -> str:
    return str(uri or "").rstrip("/").rsplit("/", 1)[-1]


def _generator_of(manifest: dict[str, Any]) -> str:
    infos = manifest.get("claim_generator_info") or []
    if isinstance(infos, list) and infos and isinstance(infos[0], dict):
        i = infos[0]
        return " ".join(str(x) for x in (i.get("name", ""), i.get("version", "")) if x)
    return str(manifest.get("claim_generator") or "unknown")


def _actions_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for a in manifest.get("assertions") or []:
        if isinstance(a, dict) and str(a.get("label", "")).startswith("c2pa.actions"):
            acts = (a.get("data") or {}).get("actions") or []
            out.extend(x for x in acts if isinstance(x, dict))
    return out


def c2pa_items(store: dict[str, Any]) -> list[dict[str, Any]]:
    """Evidence from a C2PA manifest store (the JSON ``c2pa.Reader.json()`` returns)."""
    manifests = store.get("manifests") or {}
    active_label = store.get("active_manifest")
    active = manifests.get(active_label) or {}
    state = store.get("validation_state") or ("Invalid" if _failures(store) else "Valid")
    failures = _failures(store)
    real_failures = [f for f in failures if f != "signingCredential.untrusted"]
    trusted = state == "Trusted"
    valid = state in ("Valid", "Trusted") and not real_failures
    sig = active.get("signature_info") or {}
    signer = sig.get("issuer") or sig.get("common_name") or "unknown signer"
    if trusted:
        validity = f"signature valid, trusted issuer {signer}"
    elif valid:
        validity = f"signature valid, issuer {signer} not on a trust list"
    else:
        validity = f"validation failed: {', '.join(real_failures or failures) or state}"
    generator = _generator_of(active)
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for label, m in [(active_label, active)] + [(k, v) for k, v in manifests.items() if k != active_label]:
        where = "" if label == active_label else " (in an ingredient's manifest)"
        for act in _actions_of(m):
            dst = _short_dst(act.get("digitalSourceType"))
            if not dst or (dst, where) in seen:
                continue
            seen.add((dst, where))
            indicates, strength = DIGITAL_SOURCE_TYPES.get(dst, (None, "info"))
            if indicates == "ai":
                strength = "strong" if valid else "moderate"
            elif indicates == "real":
                strength = "strong" if trusted else ("moderate" if valid else "weak")
            agent = act.get("softwareAgent")
            agent = agent.get("name") if isinstance(agent, dict) else agent
            detail = f"action {act.get('action')}; claim generator {generator}"
            detail += f"; software agent {agent}" if agent else ""
            out.append(item("c2pa", f"C2PA {dst}{where}", strength, f"{detail}; {validity}", indicates))
    if not any(it["indicates"] for it in out):
        acts = sorted({str(a.get("action")) for a in _actions_of(active)})
        named = _GEN_RE.search(generator)
        if named:
            strength = "moderate" if valid else "weak"
            out.append(item("c2pa", f"C2PA claim by generator {generator}", strength, validity, "ai"))
        out.append(
            item(
                "c2pa",
                "C2PA manifest",
                "info",
                f"claim generator {generator}; actions {', '.join(acts) or 'none'}; {validity}",
            )
        )
    return out


def _failures(store: dict[str, Any]) -> list[str]:
    res = (store.get("validation_results") or {}).get("activeManifest") or {}
    codes = [f.get("code", "") for f in res.get("failure") or [] if isinstance(f, dict)]
    if not res:
        codes = [s.get("code", "") for s in store.get("validation_status") or [] if isinstance(s, dict)]
    return [c for c in codes if c]


# ---- XMP, EXIF, text chunks --------------------------------------------------------------------------
_DST_RE = re.compile(r"digitalsourcetype/([A-Za-z]+)|DigitalSourceType\s*=\s*[\"']([A-Za-z]+)[\"']", re.I)
_CREATOR_RE = re.compile(r"CreatorTool\s*(?:=\s*[\"']([^\"'<]{1,200})[\"']|>([^<]{1,200})<)", re.I)
_AIGC_RE = re.compile(r"AIGC\s*(?:=\s*[\"']|>)\s*(\{[^<]{0,2000}?\})", re.I)


def _xmp_bytes(im: Image.Image, info: dict[str, Any]) -> bytes | None:
    x = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if x is None and im.format == "TIFF":
        x = getattr(im, "tag_v2", {}).get(700)
    if x is None:
        return None
    return x.encode("utf-8", "replace") if isinstance(x, str) else bytes(x)


def _check_xmp(im: Image.Image, info: dict[str, Any], items: list) -> None:
    raw = _xmp_bytes(im, info)
    if raw is None:
        return
    if len(raw) > MAX_XMP_BYTES:
        items.append(
            item(
                "xmp",
                f"XMP packet of {len(raw)} bytes not parsed",
                "error",
                f"over the {MAX_XMP_BYTES}-byte limit",
            )
        )
        return
    text = raw.decode("utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8", "replace")
    for m in _DST_RE.finditer(text):
        dst = m.group(1) or m.group(2)
        indicates, strength = DIGITAL_SOURCE_TYPES.get(dst, (None, "info"))
        items.append(
            item(
                "xmp",
                f"IPTC DigitalSourceType {dst}",
                strength,
                "XMP Iptc4xmpExt:DigitalSourceType (unsigned metadata)",
                indicates,
            )
        )
    for m in _CREATOR_RE.finditer(text):
        tool = (m.group(1) or m.group(2) or "").strip()
        if _GEN_RE.search(tool):
            items.append(
                item("xmp", f"XMP CreatorTool: {_clip(tool, 80)}", "strong", "a generator's name", "ai")
            )
        elif tool:
            items.append(item("xmp", f"XMP CreatorTool: {_clip(tool, 80)}", "info"))
    for m in _AIGC_RE.finditer(text):
        label = _json_or_none(m.group(1).replace("&quot;", '"'))
        if isinstance(label, dict) and str(label.get("Label", "")) in ("1", "2"):
            kind = "AI-generated" if str(label["Label"]) == "1" else "possibly AI-generated"
            items.append(
                item(
                    "xmp",
                    f"AIGC label: {kind}",
                    "strong" if label["Label"] in (1, "1") else "moderate",
                    f"TC260 implicit label {m.group(1)}",
                    "ai",
                )
            )


def _decode_user_comment(v: Any) -> str:
    if isinstance(v, str):
        return v
    b = bytes(v)
    head, body = b[:8], b[8:]
    if head.startswith(b"UNICODE"):
        enc = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
        return body.decode(enc, "replace")
    if head.startswith((b"ASCII", b"\x00\x00\x00\x00")):
        return body.decode("utf-8", "replace")
    return b.decode("utf-8", "replace")


def _check_exif(im: Image.Image, items: list) -> None:
    try:
        exif = im.getexif()
    except Exception as e:
        items.append(item("exif", "EXIF could not be parsed", "error", f"{type(e).__name__}: {e}"))
        return
    if not exif:
        return
    sw = exif.get(0x0131)
    if sw:
        sw = _clip(sw, 120)
        if _GEN_RE.search(sw):
            items.append(item("exif", f"EXIF Software: {sw}", "strong", "a generator's name", "ai"))
        else:
            items.append(item("exif", f"EXIF Software: {sw}", "info", "editing or camera software"))
    make, model = (str(exif.get(t) or "").strip("\x00 ") for t in (0x010F, 0x0110))
    if make or model:
        cam = " ".join(x for x in (make, model) if x)
        items.append(
            item(
                "exif", f"EXIF camera: {_clip(cam, 80)}", "weak", "unsigned; copied or forged easily", "real"
            )
        )
    texts = {"EXIF ImageDescription": exif.get(0x010E), "EXIF Artist": exif.get(0x013B)}
    try:
        sub = exif.get_ifd(0x8769)
        if sub.get(0x9286):
            texts["EXIF UserComment"] = _decode_user_comment(sub[0x9286])
    except Exception as e:
        items.append(item("exif", "EXIF sub-IFD could not be parsed", "error", f"{type(e).__name__}: {e}"))
    for where, v in texts.items():
        if v:
            items.extend(
                _text_evidence(where, str(v) if not isinstance(v, bytes) else v.decode("utf-8", "replace"))
            )


def _as_text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _check_text_chunks(fmt: str | None, info: dict[str, Any], items: list) -> None:
    comment = info.get("comment")
    if comment:
        items.extend(
            _text_evidence(
                "JPEG comment" if fmt in ("JPEG", "MPO") else "comment",
                _as_text(comment),
                kind="jpeg-comment" if fmt in ("JPEG", "MPO") else "comment",
            )
        )
    if fmt != "PNG":
        return
    skip = {
        "xmp",
        "XML:com.adobe.xmp",
        "exif",
        "icc_profile",
        "dpi",
        "gamma",
        "transparency",
        "aspect",
        "srgb",
        "chromaticity",
        "comment",
    }
    texts = {str(k): _as_text(v) for k, v in info.items() if k not in skip and isinstance(v, (str, bytes))}
    items.extend(png_text_items(texts))


def _json_or_none(s: str) -> Any:
    if len(s) > MAX_TEXT_BYTES:
        return None
    try:
        return json.loads(s)
    except (ValueError, RecursionError):
        return None


_A1111_RE = re.compile(r"(?:^|\n|, )Steps: \d+, Sampler: ")


def png_text_items(texts: dict[str, str]) -> list[dict[str, Any]]:
    """Evidence from PNG text chunks (keyword → text), recognising generators' own formats."""
    out: list[dict[str, Any]] = []
    keys = {k.lower(): k for k in texts}
    claimed: set[str] = set()

    def get(k: str) -> str | None:
        return texts.get(keys[k]) if k in keys else None

    params = get("parameters")
    if params is not None:
        claimed.add("parameters")
        j = _json_or_none(params) if params.lstrip().startswith("{") else None
        if _A1111_RE.search(params):
            model = re.search(r"Model: ([^,\n]{1,80})", params)
            ver = re.search(r"Version: ([^,\n]{1,40})", params)
            detail = "; ".join(
                x for x in (model and f"model {model.group(1)}", ver and f"version {ver.group(1)}") if x
            )
            out.append(
                item(
                    "png-text",
                    "Stable Diffusion WebUI parameters",
                    "strong",
                    detail or _clip(params, 120),
                    "ai",
                )
            )
        elif isinstance(j, dict) and ("fooocus" in params.lower() or "base_model" in j):
            out.append(
                item("png-text", "Fooocus parameters", "strong", _clip(j.get("base_model", ""), 80), "ai")
            )
        else:
            out.extend(_text_evidence("PNG parameters", params, kind="png-text"))
    for key, what in (("prompt", "ComfyUI prompt graph"), ("workflow", "ComfyUI workflow")):
        v = get(key)
        if v is None:
            continue
        claimed.add(key)
        j = _json_or_none(v) if v.lstrip().startswith("{") else None
        nodes = None
        if key == "prompt" and isinstance(j, dict):
            nodes = [n for n in j.values() if isinstance(n, dict) and "class_type" in n]
        elif key == "workflow" and isinstance(j, dict) and isinstance(j.get("nodes"), list):
            nodes = [n for n in j["nodes"] if isinstance(n, dict)]
        if nodes:
            out.append(item("png-text", what, "strong", _comfy_detail(nodes), "ai"))
        elif v.lstrip().startswith("{") and j is None:
            out.append(item("png-text", f"PNG '{keys[key]}' chunk is not valid JSON", "error", _clip(v, 80)))
        else:
            out.extend(_text_evidence(f"PNG {keys[key]}", v, kind="png-text"))
    software = get("software")
    comment = get("comment")
    cj = _json_or_none(comment) if comment and comment.lstrip().startswith("{") else None
    if (software and "novelai" in software.lower()) or (
        isinstance(cj, dict) and {"steps", "sampler"} <= set(cj)
    ):
        claimed.update({"software", "comment", "source", "title", "description"})
        src = get("source") or ""
        out.append(
            item(
                "png-text",
                "NovelAI metadata",
                "strong",
                "; ".join(x for x in (software and f"Software {software}", src and f"Source {src}") if x),
                "ai",
            )
        )
    for key, what in (
        ("invokeai_metadata", "InvokeAI metadata"),
        ("invokeai_graph", "InvokeAI graph"),
        ("sd-metadata", "InvokeAI sd-metadata"),
        ("dream", "InvokeAI dream prompt"),
        ("fooocus_scheme", "Fooocus metadata scheme"),
        ("generation_data", "generation data"),
        ("use_stable_diffusion_model", "Easy Diffusion metadata"),
        ("num_inference_steps", "diffusion sampling parameters"),
    ):
        if key in keys:
            claimed.add(key)
            out.append(
                item("png-text", what, "strong", f"chunk '{keys[key]}': {_clip(texts[keys[key]], 100)}", "ai")
            )
    desc = get("description")
    if desc and "description" not in claimed and re.search(r"Job ID: [0-9a-f-]{20,}", desc):
        claimed.add("description")
        out.append(item("png-text", "Midjourney job description", "strong", _clip(desc, 120), "ai"))
    aigc = get("aigc")
    if aigc:
        claimed.add("aigc")
        j = _json_or_none(aigc)
        if isinstance(j, dict) and str(j.get("Label", "")) in ("1", "2"):
            out.append(
                item(
                    "png-text",
                    "AIGC label",
                    "strong" if str(j["Label"]) == "1" else "moderate",
                    _clip(aigc, 120),
                    "ai",
                )
            )
    for low, key in keys.items():
        if low in claimed:
            continue
        if low == "software":
            sw = texts[key]
            strong = bool(_GEN_RE.search(sw))
            out.append(
                item(
                    "png-text",
                    f"PNG Software: {_clip(sw, 80)}",
                    "strong" if strong else "info",
                    "a generator's name" if strong else "",
                    "ai" if strong else None,
                )
            )
        else:
            out.extend(_text_evidence(f"PNG {key}", texts[key], kind="png-text"))
    return out


def _comfy_detail(nodes: list[dict[str, Any]]) -> str:
    kinds = {str(n.get("class_type") or n.get("type") or "") for n in nodes}
    ckpts = []
    for n in nodes:
        inputs = n.get("inputs") if isinstance(n.get("inputs"), dict) else {}
        for k in ("ckpt_name", "unet_name", "model_name"):
            if isinstance(inputs.get(k), str):
                ckpts.append(inputs[k])
        wv = n.get("widgets_values")
        if (
            str(n.get("type", "")).startswith(("CheckpointLoader", "UNETLoader"))
            and isinstance(wv, list)
            and wv
        ):
            ckpts.append(str(wv[0]))
    detail = f"{len(nodes)} nodes"
    if ckpts:
        detail += f"; model {', '.join(sorted(set(ckpts))[:3])}"
    samplers = sorted(k for k in kinds if "sampler" in k.lower())
    return detail + (f"; {', '.join(samplers[:3])}" if samplers else "")


def _text_evidence(where: str, text: str, kind: str | None = None) -> list[dict[str, Any]]:
    """A free-text field: generator parameter formats are strong, a generator's name is weak, else info."""
    kind = kind or where.split()[0].lower()
    if _A1111_RE.search(text):
        return [item(kind, f"Stable Diffusion parameters in {where}", "strong", _clip(text, 120), "ai")]
    m = _GEN_RE.search(text)
    if m:
        return [item(kind, f"generator name '{m.group(1)}' in {where}", "weak", _clip(text, 120), "ai")]
    return [item(kind, where, "info", _clip(text, 120))]


# ---- invisible watermarks ---------------------------------------------------------------------------
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


# ---- combining with the model ------------------------------------------------------------------------
def combine(prediction: Any, items: list[dict[str, Any]] | None) -> str:
    """The verdict policy (see module docstring): strong evidence overrides the model, weak never does."""
    if prediction is None or getattr(prediction, "error", None) is not None or prediction.score is None:
        return "error (no model score)"
    items = items or []
    model = "uncertain" if prediction.uncertain else str(prediction.label)

    def top(strength: str, direction: str) -> dict[str, Any] | None:
        return next((it for it in items if it["strength"] == strength and it["indicates"] == direction), None)

    s_ai, s_real = top("strong", "ai"), top("strong", "real")
    if s_ai and s_real:
        return f"uncertain (conflicting provenance: {s_ai['found']} vs {s_real['found']})"
    if s_ai or s_real:
        ev = s_ai or s_real
        return f"{'ai' if s_ai else 'real'} (provenance: {ev['found']})"
    m_ai, m_real = top("moderate", "ai"), top("moderate", "real")
    if m_ai and m_real:
        return f"{model} (model; provenance conflicts)"
    if m_ai or m_real:
        ev, label = (m_ai, "ai") if m_ai else (m_real, "real")
        if model == label:
            return f"{label} (model and provenance: {ev['found']})"
        if model == "uncertain":
            return f"{label} (provenance: {ev['found']}; model uncertain)"
        return f"uncertain (model says {model}; provenance suggests {label}: {ev['found']})"
    return f"{model} (model)"


def attach(pred: Any, data: bytes | None = None) -> Any:
    """Inspect the prediction's source (or ``data``) and set ``pred.provenance`` and ``pred.verdict``."""
    if data is not None:
        rep = inspect_bytes(data, pred.source)
    elif pred.source and not pred.source.startswith("<") and os.path.exists(pred.source):
        rep = inspect_path(pred.source)
    else:
        rep = {"items": []}
    items = list(rep.get("items", []))
    if rep.get("error") and not any(it["strength"] == "error" for it in items):
        items.append(
            item("file", f"cannot inspect: {rep['error']['kind']}", "error", rep["error"]["message"])
        )
    pred.provenance = items
    pred.verdict = combine(pred, items)
    return pred


__all__ = [
    "inspect_path",
    "inspect_bytes",
    "format_report",
    "combine",
    "attach",
    "summarize",
    "c2pa_items",
    "png_text_items",
    "block_bits",
    "match_marks",
    "WATERMARKS",
    "DIGITAL_SOURCE_TYPES",
]
