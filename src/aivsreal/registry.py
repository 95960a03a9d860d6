"""The models shipped in the package, by name (one registry, as timm's): ``Detector.load(NAME)``, ``--model NAME``.

Each name maps to an ONNX file in ``models_dist`` whose card carries the same ``model_id``; ``default`` is an
alias of the shipped default. Older defaults stay loadable by name so their scores can be compared. Stdlib only.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models_dist"
DEFAULT = "aivsreal-default-v1"
MODELS: dict[str, str] = {
    "aivsreal-default-v1": "default.onnx",
    "aivsreal-default-v1-int8": "default.int8.onnx",
}
ALIASES: dict[str, str] = {"default": DEFAULT, "default-int8": f"{DEFAULT}-int8"}


def names() -> list[str]:
    """Every name ``resolve`` knows, aliases included."""
    return sorted({*MODELS, *ALIASES})


def resolve(name: str) -> Path | None:
    """The file of a shipped model name (or alias), or None when ``name`` is not one."""
    name = ALIASES.get(name, name)
    return MODELS_DIR / MODELS[name] if name in MODELS else None
