"""The verdict policy: a model prediction and provenance items → one label with its basis (see the package docstring)."""

from __future__ import annotations

import os
from typing import Any

from .items import item


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
    from .inspection import inspect_bytes, inspect_path

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
