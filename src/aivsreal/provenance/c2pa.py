"""C2PA content credentials (``c2pa-python``, the [provenance] extra): claim generator, actions, validation."""

from __future__ import annotations

import io
import json
from typing import Any

from .items import EXTRA_HINT, item
from .vocab import _GEN_RE, DIGITAL_SOURCE_TYPES

_MIME = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}


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
