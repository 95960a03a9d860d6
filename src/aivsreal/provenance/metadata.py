"""Metadata evidence: XMP (IPTC DigitalSourceType, CreatorTool, AIGC label), EXIF, JPEG comments, PNG text chunks."""

from __future__ import annotations

import json
import re
from typing import Any

from PIL import Image

from .items import _clip, item
from .vocab import _GEN_RE, DIGITAL_SOURCE_TYPES

MAX_XMP_BYTES = 1 << 20  # larger XMP packets are reported as an error item, not parsed
MAX_TEXT_BYTES = 8 << 20  # text chunks / JSON larger than this are not parsed


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
