"""Grad-CAM heatmaps: where a torch checkpoint looked when it scored an image (needs the ``train`` extra).

Uses ``pytorch-grad-cam`` (PyPI ``grad-cam``) on the last spatial feature map of the backbone, for the
class the model predicted, and maps the heatmap back onto the image through the card's preprocessing:
with ``native_crop`` the model sees only the centre crop, so the rest of the picture is shown dimmed.
ONNX models have no gradients, so explaining needs a checkpoint (``.safetensors`` + card, or a run dir).
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .card import ModelCard, Preprocess
from .fsutil import atomic_write_bytes
from .geometry import plan
from .imageio import DecodeError, ImageSource, decode
from .runtime import Detector

DEFAULT_CHECKPOINT = Path(__file__).parent / "models_dist" / "default.safetensors"
METHOD = "Grad-CAM (pytorch-grad-cam)"


class ExplainError(ValueError):
    """The image or the model cannot be explained; ``kind`` is a short stable code."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


# ---- models --------------------------------------------------------------------------------------------
_cache: dict[tuple[str, int], tuple[torch.nn.Module, ModelCard, str]] = {}
_cache_lock = threading.Lock()


def resolve_model(model: Any = None) -> tuple[torch.nn.Module, ModelCard, str]:
    """A checkpoint path or run dir, a ``(module, card)`` pair or a torch ``Detector`` → (module, card, id).

    With no model, the default checkpoint shipped beside the ONNX model is used when present.
    Loaded checkpoints are cached by path and modification time.
    """
    if isinstance(model, tuple) and len(model) == 2:
        return model[0].eval(), model[1], model[1].model_id or "model"
    backend = getattr(model, "backend", None)
    if backend is not None:
        if not hasattr(backend, "model"):
            raise ExplainError(
                "needs_torch", "explain needs a torch checkpoint; this detector runs an ONNX model"
            )
        return backend.model.eval(), model.card, model.model_id
    if model is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise ExplainError(
                "needs_torch",
                "explain needs a torch checkpoint (ONNX models have no gradients): pass --model RUN_DIR or "
                f"CHECKPOINT.safetensors (no default checkpoint at {DEFAULT_CHECKPOINT})",
            )
        model = DEFAULT_CHECKPOINT
    p = Path(os.fsdecode(model))
    if p.suffix == ".onnx" or (p.is_dir() and not (p / "model.safetensors").is_file()):
        raise ExplainError(
            "needs_torch",
            f"{p}: explain needs a torch checkpoint (.safetensors + card, or a run dir holding "
            "model.safetensors); ONNX models have no gradients",
        )
    weights = p / "model.safetensors" if p.is_dir() else p
    if not weights.is_file():
        raise ExplainError("model_not_found", f"checkpoint {weights} not found")
    key = (str(weights.resolve()), weights.stat().st_mtime_ns)
    with _cache_lock:
        if key not in _cache:
            from .checkpoint import load_checkpoint

            net, card, _ = load_checkpoint(weights)
            _cache.clear()  # one model at a time is enough for the CLI and the server
            _cache[key] = (net.eval(), card, card.model_id or weights.stem)
        return _cache[key]


def target_layer(model: torch.nn.Module, size: int = 64) -> tuple[str, torch.nn.Module]:
    """The module that produces the backbone's last spatial feature map (found by one probe pass)."""
    cached = getattr(model, "_aivsreal_cam_layer", None)
    if cached is not None:
        return cached
    root = getattr(model, "backbone", model)
    last: list[tuple[str, torch.nn.Module]] = []
    hooks = []
    for name, mod in root.named_modules():
        if mod is root:
            continue

        def hook(m, _inp, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1:
                last.append((name, m))

        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    if not last:
        raise ExplainError("no_feature_map", "the model has no spatial feature map to explain")
    found = last[-1]
    model._aivsreal_cam_layer = found  # type: ignore[attr-defined]
    return found


# ---- Grad-CAM -------------------------------------------------------------------------------------------
def gradcam(model: torch.nn.Module, x: np.ndarray | torch.Tensor, target: str = "auto") -> np.ndarray:
    """Grad-CAM of one preprocessed input (3,s,s) or (1,3,s,s) → HxW float array in [0, 1].

    ``target``: ``"ai"``, ``"real"`` or ``"auto"`` (the class the model predicts for this input).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] != 3:
        raise ValueError(f"expected one input of shape (3, s, s), got {tuple(t.shape)}")
    model.eval()
    _, layer = target_layer(model, size=int(t.shape[-1]))
    if target == "auto":
        with torch.no_grad():
            target = "ai" if float(model(t).reshape(-1)[0]) >= 0 else "real"
    if target not in ("ai", "real"):
        raise ValueError(f"target must be 'ai', 'real' or 'auto', not {target!r}")
    with torch.enable_grad(), GradCAM(model=model, target_layers=[layer]) as cam:
        heat = cam(
            input_tensor=t.clone().requires_grad_(True),
            targets=[BinaryClassifierOutputTarget(1 if target == "ai" else 0)],
        )[0]
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    return np.clip(heat, 0.0, 1.0)


def input_region(size: tuple[int, int], pp: Preprocess) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) of the image that the model input covers under this policy.

    The centre box of :func:`aivsreal.geometry.plan`, mapped back from the resized image to the source.
    """
    p = plan(size[0], size[1], pp, "center")
    (rw, rh), (w, h) = p.scaled, p.source
    left, top, right, bottom = p.boxes[0]
    fx, fy = w / rw, h / rh
    return (left * fx, top * fy, min(w, right * fx), min(h, bottom * fy))


def overlay(img: Image.Image, heat: np.ndarray, region: tuple[float, float, float, float]) -> Image.Image:
    """Colour the heatmap (jet) over the region the model saw; the rest of the image is dimmed."""
    from matplotlib import colormaps

    w, h = img.size
    x0, t, r, b = (int(round(v)) for v in region)
    bw, bh = max(1, r - x0), max(1, b - t)
    hm = Image.fromarray(heat.astype(np.float32), "F").resize((bw, bh), Image.Resampling.BILINEAR)
    full = np.zeros((h, w), np.float32)
    full[t : t + bh, x0 : x0 + bw] = np.asarray(hm)[: h - t, : w - x0]
    seen = np.zeros((h, w), bool)
    seen[t : t + bh, x0 : x0 + bw] = True
    base = np.asarray(img, dtype=np.float32) / 255.0
    color = colormaps["jet"](np.clip(full, 0, 1))[..., :3].astype(np.float32)
    alpha = (0.25 + 0.45 * full)[..., None]
    out = np.where(seen[..., None], (1 - alpha) * base + alpha * color, 0.35 * base)
    return Image.fromarray(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")


def explain_image(source: ImageSource, model: Any = None, target: str = "auto") -> tuple[Image.Image, dict]:
    """Decode, score and explain one image → (overlay of the image's size, info dict)."""
    net, card, model_id = resolve_model(model)
    try:
        img = decode(source).image
    except DecodeError as e:
        raise ExplainError(e.kind, e.message) from None
    det = Detector(_ModuleBackend(net), card, Path(f"{model_id}.safetensors"))  # the scoring every door uses
    prepared = det.preprocess(img)
    if prepared.inputs is None:
        raise ExplainError(prepared.error["kind"], prepared.error["message"])
    x = prepared.inputs[0]
    pred = det.postprocess(model_id, det.forward(prepared.inputs))
    score, label = float(pred.score), str(pred.label)
    if target == "auto":
        target = "ai" if label == card.labels[1] else "real"
    heat = gradcam(net, x, target=target)
    region = input_region(img.size, card.preprocess)
    out = overlay(img, heat, region)
    info = {
        "size": list(img.size),
        "score": round(score, 6),
        "label": label,
        "target": target,
        "model_id": model_id,
        "method": METHOD,
        "layer": target_layer(net)[0],
        "region": [round(v, 1) for v in region],
        "heat_mean": round(float(heat.mean()), 6),
    }
    return out, info


class _ModuleBackend:
    """A loaded torch module as a Detector backend (explain already holds the module for Grad-CAM)."""

    def __init__(self, net: torch.nn.Module):
        self.model = net

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (
                self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).double().numpy()
            )


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def explain_file(
    image: str | os.PathLike, out: str | os.PathLike, model: Any = None, target: str = "auto"
) -> dict:
    """Write the Grad-CAM overlay of ``image`` to ``out`` (PNG, same size as the image, atomic)."""
    src = os.fsdecode(image)
    try:
        img, info = explain_image(src, model=model, target=target)
    except ExplainError as e:
        if e.kind in ("needs_torch", "model_not_found", "no_feature_map"):
            raise
        raise ExplainError(e.kind, f"{src}: {e.message}") from None
    atomic_write_bytes(out, _png(img))
    return {"image": src, "out": os.fsdecode(out), **info}


def heatmap_png(data: bytes, model: Any = None, target: str = "auto") -> bytes:
    """The Grad-CAM overlay of an uploaded image as PNG bytes (same size as the image).

    Raises :class:`ExplainError` (a ``ValueError`` with ``.kind``) for an undecodable image or a model
    that cannot be explained (``kind == "needs_torch"`` when no torch checkpoint is available).
    """
    img, _ = explain_image(bytes(data), model=model, target=target)
    return _png(img)


__all__ = [
    "gradcam",
    "explain_file",
    "explain_image",
    "heatmap_png",
    "input_region",
    "resolve_model",
    "ExplainError",
    "DEFAULT_CHECKPOINT",
]
