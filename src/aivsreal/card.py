"""The model card: everything a runtime needs to use a set of weights, travelling with them.

Like timm's pretrained config, the card carries the preprocessing with the weights, plus labels, the
decision threshold, the uncertain band, the calibration temperature, training summary, metrics and the
sha256 of the weights file it describes. It is written next to every checkpoint (JSON), into every ONNX
file (metadata) and next to every web bundle. Stdlib only (plus :mod:`aivsreal.fsutil`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fsutil import (  # noqa: F401  (the rest are re-exported for code written before fsutil)
    atomic_write_bytes,
    atomic_write_many,
    atomic_write_text,
    remove_stale_temp_files,
    sha256_file,
)
from .geometry import INTERPOLATIONS, POLICIES, VIEWS

SCORING_VIEWS = tuple(v for v in VIEWS if v != "random")  # "random" is a training view only
# input stems inside the graph before the backbone (models.NPRStem): npr replaces the RGB input by its
# neighbouring-pixel residual; rgb_npr feeds both (6 channels; the first conv's ImageNet weights are doubled)
STEMS = ("none", "npr", "rgb_npr")

CARD_VERSION = 1
LABELS = ("real", "ai")  # index 1 = positive class = AI-generated


class CardError(ValueError):
    """A card is missing, malformed, or does not match the weights it describes."""


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the model's input tensor (N, 3, size, size), float32.

    policy:
      - ``resize``: resize the whole image to size×size (aspect ratio not kept);
      - ``center_crop``: resize the shorter side to size/crop_pct, then take the centre size×size;
      - ``native_crop``: take the centre size×size at native resolution, no resampling, so the
        high-frequency traces a generator leaves are kept; smaller images are first upscaled so
        their shorter side equals size.
    """

    size: int = 224
    policy: str = "native_crop"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    views: str = "center"  # the view set scoring uses when a caller names none (geometry.VIEWS)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise CardError(
                f"unknown preprocessing policy {self.policy!r}; choose from {', '.join(POLICIES)}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise CardError(f"unknown interpolation {self.interpolation!r}")
        if self.views not in SCORING_VIEWS:
            raise CardError(f"unknown view set {self.views!r}; choose from {', '.join(SCORING_VIEWS)}")
        if not 16 <= int(self.size) <= 4096:
            raise CardError(f"input size {self.size} out of range")
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class ModelCard:
    """Metadata that travels with a model file; see module docstring."""

    backbone: str
    preprocess: Preprocess = field(default_factory=Preprocess)
    head: str = "linear"
    stem: str = "none"  # input stem inside the graph before the backbone (STEMS): none | npr | rgb_npr
    labels: tuple[str, str] = LABELS
    threshold: float = 0.5
    uncertain_band: float = 0.1  # scores within threshold ± band are flagged uncertain
    temperature: float = 1.0  # calibrated probability = sigmoid(logit / temperature)
    model_id: str = ""
    weights_file: str = ""
    weights_sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    card_version: int = CARD_VERSION

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["preprocess"] = dataclasses.asdict(self.preprocess)
        d["labels"] = list(self.labels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """A card from its JSON object, validated once against :data:`CARD_SCHEMA` (CardError names the field)."""
        validate_card(d)
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["preprocess"] = Preprocess.from_dict(d.get("preprocess", {}))
        kw["labels"] = tuple(d.get("labels", LABELS))
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelCard:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CardError(f"card is not UTF-8 text: {e}") from None
        if len(text) > MAX_CARD_CHARS:
            raise CardError(f"card of {len(text)} characters is over the {MAX_CARD_CHARS} limit")
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise CardError(f"card is not valid JSON: {e}") from None
        except RecursionError:
            raise CardError("card is nested too deeply to be a model card") from None

    @classmethod
    def read(cls, path: str | os.PathLike) -> ModelCard:
        p = Path(path)
        try:
            return cls.from_json(p.read_bytes())
        except OSError as e:
            raise CardError(f"cannot read card {p}: {e.strerror or e}") from None
        except CardError as e:
            raise CardError(f"{p}: {e}") from None

    def write(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, self.to_json() + "\n")

    # ---- weights checks ------------------------------------------------------------------------
    def verify(self, weights_path: str | os.PathLike) -> None:
        """Refuse weights whose sha256 differs from the card's (tampered, truncated or mismatched)."""
        if not self.weights_sha256:
            raise CardError(f"card for {weights_path} has no weights_sha256; refusing unverified weights")
        got = sha256_file(weights_path)
        if got != self.weights_sha256:
            raise CardError(
                f"{weights_path}: sha256 {got[:12]}… does not match the card's {self.weights_sha256[:12]}…"
            )


# ---- the schema: every field a runtime reads, checked once when a card is loaded -------------------------
MAX_CARD_CHARS = 16 * 1024 * 1024


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(lo: float | None, hi: float | None, lo_open: bool = True, hi_open: bool = True):
    lo_s = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
    hi_s = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
    what = f"a finite number in {lo_s or '(-inf'}, {hi_s or 'inf)'}"

    def check(v: Any) -> str | None:
        ok = _is_num(v)
        ok = ok and (lo is None or (v > lo if lo_open else v >= lo))
        ok = ok and (hi is None or (v < hi if hi_open else v <= hi))
        return None if ok else what

    return check


def _int(lo: int, hi: int):
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"an integer in [{lo}, {hi}]"

    return check


def _str(choices: Any = None, nonempty: bool = False):
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or (nonempty and not v):
            return "a non-empty string" if nonempty else "a string"
        if choices is not None and v not in choices:
            return f"one of {', '.join(map(repr, choices))}"
        return None

    return check


def _triple(positive: bool):
    def check(v: Any) -> str | None:
        ok = isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_num(x) for x in v)
        ok = ok and (not positive or all(x > 0 for x in v))
        return None if ok else f"a list of 3 finite numbers{' > 0' if positive else ''}"

    return check


def _labels(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, str) and x for x in v)
    return None if ok and v[0] != v[1] else "a list of 2 different non-empty strings [negative, positive]"


def _backbone(v: Any) -> str | None:
    if not isinstance(v, str) or not v:
        return "a non-empty string"
    if ":" in v or "/" in v or "\\" in v:  # hf-hub:…, timm/…, URLs: timm would go to the network
        return "a local timm architecture name (no hub, path or URL: loading never uses the network)"
    return None


def _sha256(v: Any) -> str | None:
    ok = isinstance(v, str) and (v == "" or (len(v) == 64 and all(c in "0123456789abcdef" for c in v)))
    return None if ok else "a lowercase hex sha256 (64 characters) or empty"


def _mapping(v: Any) -> str | None:
    return None if isinstance(v, dict) else "an object"


PREPROCESS_SCHEMA: dict[str, Any] = {
    "size": _int(16, 4096),
    "policy": _str(tuple(POLICIES)),
    "mean": _triple(False),
    "std": _triple(True),  # a zero std divides by zero: every score would be NaN
    "interpolation": _str(INTERPOLATIONS),
    "crop_pct": _num(0.0, 1.0, hi_open=False),
    "views": _str(SCORING_VIEWS),
}
CARD_SCHEMA: dict[str, Any] = {
    "backbone": _backbone,
    "preprocess": _mapping,
    "head": _str(nonempty=True),
    "stem": _str(STEMS),
    "labels": _labels,
    "threshold": _num(0.0, 1.0),
    "uncertain_band": _num(0.0, 0.5, lo_open=False),
    "temperature": _num(0.0, None),
    "model_id": _str(),
    "weights_file": _str(),
    "weights_sha256": _sha256,
    "training": _mapping,
    "metrics": _mapping,
    "extra": _mapping,
    "card_version": _int(1, CARD_VERSION),
}


def validate_card(d: Any) -> None:
    """Check a card's JSON object against :data:`CARD_SCHEMA`; CardError names the first bad field."""
    if not isinstance(d, dict) or "backbone" not in d:
        raise CardError("not a model card (no 'backbone' key)")
    for where, schema, obj in (
        ("", CARD_SCHEMA, d),
        ("preprocess.", PREPROCESS_SCHEMA, d.get("preprocess", {})),
    ):
        for key, check in schema.items():
            if key in obj:
                want = check(obj[key])
                if want is not None:
                    got = json.dumps(obj[key], default=str)
                    got = got if len(got) <= 60 else got[:57] + "..."
                    raise CardError(f"card field '{where}{key}' must be {want}, got {got}")


def card_path_for(weights_path: str | os.PathLike) -> Path:
    """The sidecar card of a weights file: ``model.safetensors`` → ``model.card.json``,
    ``model.int8.onnx`` → ``model.int8.onnx.card.json`` (so a checkpoint and its export can share a dir)."""
    p = Path(weights_path)
    return p.with_name(p.stem + (".onnx" if p.suffix == ".onnx" else "") + ".card.json")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)
