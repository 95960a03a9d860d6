"""The catalog of corpus sources (one YAML file), validated with pydantic.

It accepts the curators' fragment format (``/work/curation/README.md`` of the project's workplace):
``sources: [{name, label, generator, family, released, licence, camera, origin, files, evidence}]``,
and extends it compatibly: ``origin.kind: local`` (a folder, optionally with a manifest giving split
and group, e.g. ``../shared/data/dev``), ``role: external`` (kept out of training and validation, an
external check set) and an optional ``build:`` block of settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

AI_FAMILIES = ("gan", "sd1", "sd2_sdxl", "dit_flow", "commercial", "autoregressive", "other_diffusion")
REAL_FAMILIES = ("camera", "phone", "web", "faces", "benchmark")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class CatalogError(ValueError):
    """The catalog cannot be read or is invalid; the message names the file and the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Globs(_Strict):
    include: list[str] = Field(default_factory=lambda: ["**"])
    exclude: list[str] = Field(default_factory=list)


class GithubOrigin(_Globs):
    kind: Literal["github"]
    repo: str
    commit: str

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"repo must be owner/name, got {v!r}")
        return v

    @field_validator("commit")
    @classmethod
    def _commit(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{40}", v):
            raise ValueError(f"commit must be 40 lower-case hex digits, got {v!r}")
        return v

    def describe(self) -> str:
        return f"github:{self.repo}@{self.commit}"


class DebianOrigin(_Globs):
    kind: Literal["debian"]
    package: str
    version: str

    def describe(self) -> str:
        return f"debian:{self.package}={self.version}"


class PypiOrigin(_Globs):
    kind: Literal["pypi"]
    package: str
    version: str
    file: str  # the exact distribution file name (sdist or wheel)

    def describe(self) -> str:
        return f"pypi:{self.package}=={self.version}:{self.file}"


class LocalOrigin(_Globs):
    kind: Literal["local"]
    path: str  # relative to the catalog file's folder, or absolute; ~ expanded
    manifest: str | None = None  # a CSV in that folder with path,split,group: keep its split and group

    def describe(self) -> str:
        return f"local:{self.path}"


Origin = Annotated[GithubOrigin | DebianOrigin | PypiOrigin | LocalOrigin, Field(discriminator="kind")]


class Source(_Strict):
    name: str
    label: Literal["ai", "real"]
    generator: str
    family: str
    released: int | None = None
    licence: str = "unknown"
    camera: bool = False
    origin: Origin
    files: int | None = None
    evidence: str = ""
    role: Literal["train", "external"] = "train"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"name must be lower snake case, got {v!r}")
        return v

    @model_validator(mode="after")
    def _family(self) -> Source:
        allowed = AI_FAMILIES if self.label == "ai" else REAL_FAMILIES
        if self.family not in allowed:
            raise ValueError(
                f"family {self.family!r} is not one of {', '.join(allowed)} for label {self.label}"
            )
        if self.label == "ai" and self.camera:
            raise ValueError("camera: true only for real sources")
        if self.released is not None and not 1990 <= self.released <= 2100:
            raise ValueError(f"released must be a year, got {self.released}")
        return self


class BuildSettings(_Strict):
    """How originals become patches; part of the catalog so a build is reproducible from it alone."""

    seed: int = 0
    patch: int = 256  # patch side in pixels (a multiple of 16)
    max_patches: int = 16  # per original, non-overlapping
    min_side: int = 64  # originals smaller than this on a side are skipped
    val_frac: float = 0.15
    test_frac: float = 0.15
    min_split_originals: int = 5  # sources with fewer originals go to train only
    near_duplicate_bits: int = 4  # dhash distance for near duplicates
    aligned_per_original: int = 4  # TAEF2 reconstructions: at most this many patches per real original
    synthetic_per_original: int = 1  # per synthetic family, patches per real original
    synthetic_families: list[Literal["tconv", "nnconv", "pixelshuffle"]] = Field(
        default_factory=lambda: ["tconv", "nnconv", "pixelshuffle"]
    )
    balance: bool = True  # trim the larger class's surplus patches in train and val
    torch_threads: int = 2  # fixed, so float results (and so the fakes' bytes) do not depend on the machine

    @field_validator("patch")
    @classmethod
    def _patch(cls, v: int) -> int:
        if v < 32 or v % 16:
            raise ValueError("patch must be a multiple of 16, at least 32")
        return v


def generator_key(name: str) -> str:
    """A generator name compared case- and space-insensitively."""
    return " ".join(name.lower().split())


class Generator(_Strict):
    """One generator as the report counts it: the source ``generator`` strings that name it (``aliases``:
    spellings, checkpoints of one release, fine-tunes of one base), and whether it counts as a generator
    of its own (``distinct: false`` for mixes and unstated versions: kept, never counted)."""

    aliases: list[str] = Field(default_factory=list)
    distinct: bool = True
    note: str = ""


class Catalog(_Strict):
    version: int = 1
    build: BuildSettings = Field(default_factory=BuildSettings)
    generators: dict[str, Generator] = Field(default_factory=dict)
    sources: list[Source]
    path: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        seen: set[str] = set()
        for s in self.sources:
            if s.name in seen:
                raise ValueError(f"duplicate source name {s.name!r}")
            seen.add(s.name)
        owner: dict[str, str] = {}
        for canon, g in self.generators.items():
            for alias in [canon, *g.aliases]:
                k = generator_key(alias)
                if owner.get(k, canon) != canon:
                    raise ValueError(f"generator {alias!r} is listed under both {owner[k]!r} and {canon!r}")
                owner[k] = canon
        return self

    def canonical_generator(self, name: str) -> tuple[str, bool]:
        """(the name the report counts a source's generator under, whether it is a distinct generator)."""
        k = generator_key(name)
        for canon, g in self.generators.items():
            if k == generator_key(canon) or k in {generator_key(a) for a in g.aliases}:
                return canon, g.distinct
        return name, True

    def base_dir(self) -> Path:
        return Path(self.path).parent if self.path else Path.cwd()


def _error_text(e: ValidationError, data: Any) -> str:
    parts = []
    for err in e.errors():
        loc = err["loc"]
        where = ".".join(str(x) for x in loc)
        if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
            try:
                where = f"source {data['sources'][loc[1]].get('name', loc[1])!r}: " + ".".join(
                    str(x) for x in loc[2:]
                )
            except Exception:
                pass
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_catalog(data: Any, path: str = "<catalog>") -> Catalog:
    """Validate a parsed YAML document as a catalog; CatalogError names the file and entry."""
    if not isinstance(data, dict) or "sources" not in data:
        raise CatalogError(f"{path}: a catalog is a mapping with a 'sources' list")
    try:
        cat = Catalog.model_validate({**data, "path": str(path)})
    except ValidationError as e:
        raise CatalogError(f"{path}: {_error_text(e, data)}") from None
    return cat


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog YAML file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise CatalogError(f"{p}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise CatalogError(f"{p}: not valid YAML: {e}") from None
    return parse_catalog(data, str(p.resolve()))


def validate_entries(entries: list[Any], where: str) -> tuple[list[Source], list[str]]:
    """Validate fragment entries one by one: (good sources, one message per dropped entry)."""
    good, dropped = [], []
    for i, raw in enumerate(entries):
        name = raw.get("name", f"#{i}") if isinstance(raw, dict) else f"#{i}"
        try:
            good.append(Source.model_validate(raw))
        except ValidationError as e:
            dropped.append(
                f"{where}: {name}: "
                + "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            )
    return good, dropped
