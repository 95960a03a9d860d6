"""The fixed evaluation protocol (``configs/protocol.yaml``): what is held out, scored and reported.

Read strictly (unknown keys refused, numbers checked), hashed (the sha256 of the file goes into every
result), so two results can be compared only when they ran the same protocol.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TIERS = ("clean", "web", "hard")
PARTS = ("lofo", "lorgo", "pairs", "external", "test")
SYNTHETIC_KINDS = ("tconv", "nnconv", "pixelshuffle")
# TrainConfig fields a budget may set: how long and on what, never the recipe itself
BUDGET_KEYS = {"epochs_head", "epochs", "limit", "patience", "batch_size", "workers", "device", "bf16"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lofo(_Strict):
    families: list[str] = Field(min_length=1)
    min_families: int = Field(7, ge=1)


class Lorgo(_Strict):
    groups: list[str] = Field(min_length=1)
    min_groups: int = Field(4, ge=1)


class TestFakes(_Strict):
    aligned: bool = True  # TAEF2 twin of each chosen real test patch (pairs, LOFO 'aligned')
    synthetic: list[str] = Field(default_factory=lambda: list(SYNTHETIC_KINDS))  # one per patch, in turn
    max_patches: int = Field(0, ge=0)  # real test patches given fakes (seeded choice); 0 = all
    seed: int = Field(0, ge=0)

    @field_validator("synthetic")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        bad = [k for k in v if k not in SYNTHETIC_KINDS]
        if bad:
            raise ValueError(f"unknown synthetic kind(s) {bad}; choose from {', '.join(SYNTHETIC_KINDS)}")
        return v


class Pairs(_Strict):
    jpeg_quality: int = Field(90, ge=1, le=100)


class External(_Strict):
    originals: str = "external.csv"  # the builder's whole external originals, beside the manifest
    looks_log: str = "../docs/protocol/looks.jsonl"  # relative to the protocol file
    min_ai: int = Field(300, ge=0)
    min_real: int = Field(300, ge=0)
    min_ai_sources: int = Field(8, ge=0)
    min_real_sources: int = Field(6, ge=0)


class Target(_Strict):
    part: str
    metric: str  # a path: "mean.balanced_accuracy", "min.balanced_accuracy", "twin_jpeg90.roc_auc", ...
    tier: str = "clean"
    op: str = ">="
    value: float

    @field_validator("op")
    @classmethod
    def _op(cls, v: str) -> str:
        if v not in (">=", "<="):
            raise ValueError(f"op must be >= or <=, got {v!r}")
        return v


class ProtocolSpec(_Strict):
    version: int = 1
    tiers: list[str] = Field(default_factory=lambda: list(TIERS))
    threshold: str = "card"
    lofo: Lofo
    lorgo: Lorgo
    test_fakes: TestFakes = Field(default_factory=TestFakes)
    pairs: Pairs = Field(default_factory=Pairs)
    external: External = Field(default_factory=External)
    budgets: dict[str, dict[str, Any]] = Field(min_length=1)
    default_budget: str
    targets: list[Target] = Field(default_factory=list)
    # set by load(), not by the file
    path: str = ""
    sha256: str = ""

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in TIERS]
        if bad or not v or v[0] != "clean":
            raise ValueError(f"tiers must start with clean and be among {', '.join(TIERS)}; got {v}")
        return v

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: str) -> str:
        if v != "card":
            raise ValueError("threshold: only 'card' (each model's own validation-chosen threshold)")
        return v

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, b in v.items():
            bad = set(b or {}) - BUDGET_KEYS
            if bad:
                raise ValueError(
                    f"budget {name!r}: {', '.join(sorted(bad))} not allowed (a budget sets only "
                    f"{', '.join(sorted(BUDGET_KEYS))}; the recipe lives in the training config)"
                )
        return v

    def budget(self, name: str | None) -> tuple[str, dict[str, Any]]:
        """(name, TrainConfig overrides) of a named budget (the file's default when None)."""
        name = name or self.default_budget
        if name not in self.budgets:
            raise ValueError(f"{self.path}: no budget {name!r} (have {', '.join(self.budgets)})")
        return name, dict(self.budgets[name] or {})

    def looks_log_path(self) -> Path:
        p = Path(self.external.looks_log)
        if p.is_absolute():
            return p
        return Path(os.path.normpath(Path(os.path.dirname(os.path.abspath(self.path))) / p))


def load_spec(path: str | os.PathLike) -> ProtocolSpec:
    """Read and validate a protocol file; errors name the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ValueError(f"{p}: cannot read the protocol file: {e.strerror or e}") from None
    try:
        d = yaml.safe_load(raw) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p}: a protocol file must be a YAML mapping")
    d.pop("path", None)
    d.pop("sha256", None)
    try:
        spec = ProtocolSpec(**d)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ValueError(f"{p}: {msgs}") from None
    if spec.default_budget not in spec.budgets:
        raise ValueError(f"{p}: default_budget {spec.default_budget!r} is not one of the budgets")
    spec.path = str(p)
    spec.sha256 = hashlib.sha256(raw).hexdigest()
    return spec
