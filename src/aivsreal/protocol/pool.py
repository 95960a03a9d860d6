"""Manifest rows, the held-out training manifests, and the test pool (with the fakes the corpus lacks).

The corpus makes aligned and synthetic fakes of train/val real patches only, so its test split has no
``aligned`` or ``synthetic`` images. The protocol makes them here, from the real test patches, with the
corpus engine's own makers (TAEF2 twin; one random-decoder fake per patch, kinds in turn), cached under
a fakes folder by the patch's bytes, so every run and every candidate is scored on the same files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_bytes, atomic_write_text, sha256_file
from .spec import ProtocolSpec

REAL, AI = 0, 1
_LABELS = {"real": REAL, "0": REAL, "ai": AI, "1": AI, "fake": AI}
FAKE_SOURCE = {
    "aligned": "aligned_taef2",
    "tconv": "synthetic_tconv",
    "nnconv": "synthetic_nnconv",
    "pixelshuffle": "synthetic_pixelshuffle",
}


class ProtocolError(ValueError):
    """The data cannot be evaluated as the protocol says (missing column, leak, no images ...)."""


@dataclass(frozen=True)
class Item:
    """One manifest row (or one protocol-made test fake)."""

    path: str  # absolute
    label: int
    source: str
    group: str
    split: str
    family: str
    kind: str = "original"
    box: str = ""
    orig_sha256: str = ""
    made: bool = False
    row: tuple[tuple[str, str], ...] = ()  # the manifest row as read (for filtered manifests)


def read_manifest(path: str | os.PathLike) -> list[Item]:
    """Rows of a corpus manifest (``path,label,split,family`` needed; others optional); paths made absolute."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ProtocolError(f"{p}: cannot read the manifest: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ProtocolError(f"{p}: manifest is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    cols = set(reader.fieldnames or [])
    missing = {"path", "label", "split", "family"} - cols
    if missing:
        raise ProtocolError(f"{p}: manifest lacks column(s) {', '.join(sorted(missing))}")
    items = []
    for i, r in enumerate(reader, start=2):
        lab = _LABELS.get((r.get("label") or "").strip().lower())
        if lab is None or not r.get("path"):
            raise ProtocolError(f"{p}:{i}: bad row (path {r.get('path')!r}, label {r.get('label')!r})")
        full = r["path"] if os.path.isabs(r["path"]) else os.path.abspath(p.parent / r["path"])
        items.append(
            Item(
                path=full,
                label=lab,
                source=r.get("source") or "default",
                group=r.get("group") or full,
                split=(r.get("split") or "").strip().lower(),
                family=(r.get("family") or "").strip(),
                kind=(r.get("kind") or "original").strip(),
                box=(r.get("box") or "").strip(),
                orig_sha256=(r.get("orig_sha256") or "").strip(),
                row=tuple((k, v if k != "path" else full) for k, v in r.items() if k is not None),
            )
        )
    if not items:
        raise ProtocolError(f"{p}: manifest has no rows")
    return items


def is_real_original(it: Item) -> bool:
    return it.label == REAL and it.kind == "original"


# ---- held-out training manifests ------------------------------------------------------------------
def training_items(items: Sequence[Item], part: str, held_out: str | None) -> list[Item]:
    """Train/val rows for one run: ``lofo`` drops an AI family, ``lorgo`` a real group with every fake
    made from it (same group), ``full`` drops nothing. Test and external rows never train."""
    tv = [it for it in items if it.split in ("train", "val")]
    if part == "full" or held_out is None:
        return tv
    if part == "lofo":
        return [it for it in tv if it.family != held_out]
    if part == "lorgo":
        groups = {it.group for it in tv if it.label == REAL and it.family == held_out}
        return [
            it for it in tv if it.group not in groups and not (it.label == REAL and it.family == held_out)
        ]
    raise ValueError(f"unknown part {part!r}")


def write_manifest(items: Iterable[Item], path: Path) -> str:
    """Write items as a manifest CSV (absolute paths, the columns read); returns its sha256."""
    items = list(items)
    cols: list[str] = []
    for it in items:
        for k, _ in it.row:
            if k not in cols:
                cols.append(k)
    for k in ("path", "label", "source", "group", "split", "family"):
        if k not in cols:
            cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for it in items:
        d = dict(it.row)
        d.update(
            path=it.path,
            label="ai" if it.label == AI else "real",
            source=it.source,
            group=it.group,
            split=it.split,
            family=it.family,
        )
        w.writerow({k: d.get(k, "") for k in cols})
    text = buf.getvalue()
    atomic_write_text(path, text)
    return hashlib.sha256(text.encode()).hexdigest()


def check_no_external(train: Sequence[Item], external_sha: set[str], where: str) -> None:
    """Refuse a training manifest that holds an external original (by sha256 of the original's bytes)."""
    leaked = sorted({it.orig_sha256 for it in train if it.orig_sha256 and it.orig_sha256 in external_sha})
    bad_split = [it.path for it in train if it.split == "external"]
    if leaked or bad_split:
        raise ProtocolError(
            f"{where}: the training manifest holds {len(leaked)} external original(s) "
            f"(e.g. {(leaked or bad_split)[0]}): the external check set must never train"
        )


# ---- the test pool ------------------------------------------------------------------------------
def _unit(seed: int, text: str) -> float:
    return int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:12], 16) / float(1 << 48)


def chosen_reals(items: Sequence[Item], spec: ProtocolSpec) -> list[Item]:
    """The real test patches that get protocol fakes (all, or a seeded subset of max_patches)."""
    reals = [it for it in items if it.split == "test" and is_real_original(it)]
    k = spec.test_fakes.max_patches
    if k and len(reals) > k:
        seed = spec.test_fakes.seed
        reals = sorted(reals, key=lambda it: _unit(seed, f"{it.group}|{it.box}|{it.path}"))[:k]
        reals.sort(key=lambda it: it.path)
    return reals


@dataclass
class TestPool:
    """Every test image the protocol scores, and the aligned pairs (real patch, its twin)."""

    items: list[Item]
    pairs: list[tuple[Item, Item]]
    made: dict[str, int]
    notes: list[str]

    def reals(self) -> list[Item]:
        return [it for it in self.items if it.label == REAL]

    def ai(self, family: str | None = None) -> list[Item]:
        return [it for it in self.items if it.label == AI and (family is None or it.family == family)]


def _fake_name(real: Item, kind: str) -> str:
    key = hashlib.sha256(f"{real.path}|{real.box}|{sha256_file(real.path)}".encode()).hexdigest()[:24]
    return f"{kind}/{key}.png"


def build_test_pool(
    items: Sequence[Item],
    spec: ProtocolSpec,
    fakes_dir: Path,
    *,
    weights_dir: str | None = None,
    progress: bool = False,
) -> TestPool:
    """Test rows of the manifest plus the protocol's test fakes (made once, cached in ``fakes_dir``).

    Pairs match a real test patch to the aligned twin with the same group and box: the manifest's own
    test twin when there is one, else the twin made here.
    """
    test = [it for it in items if it.split == "test"]
    notes: list[str] = []
    twins: dict[tuple[str, str], Item] = {}
    synth: set[tuple[str, str]] = set()
    for it in test:
        if it.label == AI and (it.family == "aligned" or it.kind == "aligned"):
            twins.setdefault((it.group, it.box), it)
        if it.label == AI and it.family == "synthetic":
            synth.add((it.group, it.box))
    chosen = chosen_reals(items, spec)
    jobs: list[tuple[str, Item, Path]] = []
    kinds = spec.test_fakes.synthetic
    for r in chosen:
        if spec.test_fakes.aligned and (r.group, r.box) not in twins:
            jobs.append(("aligned", r, fakes_dir / _fake_name(r, "aligned")))
        if kinds and (r.group, r.box) not in synth:
            k = kinds[int(_unit(spec.test_fakes.seed, f"kind|{r.group}|{r.box}|{r.path}") * len(kinds))]
            jobs.append((k, r, fakes_dir / _fake_name(r, k)))
    todo = [j for j in jobs if not j[2].is_file()]
    if todo:
        _make_fakes(todo, weights_dir, spec.test_fakes.seed, progress)
    made: dict[str, int] = {}
    extra: list[Item] = []
    for kind, r, dest in jobs:
        if not dest.is_file():
            notes.append(f"{r.path}: {kind} fake not made")
            continue
        fake = replace(
            r,
            path=str(dest),
            label=AI,
            source=FAKE_SOURCE[kind],
            family="aligned" if kind == "aligned" else "synthetic",
            kind=kind,
            made=True,
            row=(),
        )
        made[kind] = made.get(kind, 0) + 1
        extra.append(fake)
        if kind == "aligned":
            twins[(r.group, r.box)] = fake
    pairs = [(r, twins[(r.group, r.box)]) for r in chosen if (r.group, r.box) in twins]
    return TestPool(test + extra, pairs, made, notes)


def _make_fakes(
    todo: list[tuple[str, Item, Path]], weights_dir: str | None, seed: int, progress: bool
) -> None:
    """Make the missing fakes with the corpus engine's makers (torch; TAEF2 only for 'aligned')."""
    try:
        from ..corpus.fakes import FakeMaker
    except ImportError as e:
        raise ProtocolError(
            f"making the protocol's test fakes needs torch (the [train] extra): {e}"
        ) from None
    from tqdm import tqdm

    maker = FakeMaker(weights_dir, seed=seed, threads=max(1, min(4, os.cpu_count() or 1)))
    for kind, r, dest in tqdm(todo, desc="test fakes", unit="img", disable=not progress):
        try:
            data = maker.make(kind, Path(r.path), f"{r.orig_sha256 or r.path}:{r.box}")
        except FileNotFoundError as e:  # TAEF2 weights missing: say so once, clearly
            raise ProtocolError(f"aligned twins need the TAEF2 weights: {e}") from None
        except Exception as e:  # one unreadable patch must not stop the protocol
            print(f"aivsreal: {r.path}: {kind} fake failed: {e}")
            continue
        atomic_write_bytes(dest, data)


def jpeg_copy(src: Item, quality: int, fakes_dir: Path) -> Item:
    """The item re-encoded once as JPEG at ``quality`` (a fake saved like a photo), cached."""
    from ..imageio import open_image

    key = hashlib.sha256(src.path.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    dest = fakes_dir / f"jpeg{quality}" / f"{key}.jpg"
    if not dest.is_file():
        with open_image(src.path) as im:
            im.load()
            rgb = im.convert("RGB")
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=quality)
        atomic_write_bytes(dest, buf.getvalue())
    return replace(src, path=str(dest), kind=f"{src.kind}_jpeg{quality}", row=())


def summary_counts(items: Sequence[Item]) -> dict[str, Any]:
    """Counts per split, label and family (for protocol.json)."""
    out: dict[str, dict[str, int]] = {}
    for it in items:
        key = f"{it.split}/{'ai' if it.label == AI else 'real'}"
        out.setdefault(key, {})
        out[key][it.family or "?"] = out[key].get(it.family or "?", 0) + 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}
