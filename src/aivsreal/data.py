"""Labelled image collections → one samples table (path, label, source, group, split).

Understands class-folder trees (label aliases, nested per-source folders, explicit train/val/test
splits, CIFAKE), Kaggle "AI vs Human Generated" CSVs (``file_name,label``) and general manifests
(``path,label[,source,group,split]``). Where no split is given, a seeded stratified split keeps each
group, and every exact or near duplicate (perceptual hash), inside one split. The summary warns when
a shortcut (format, size) alone separates the classes.
"""

from __future__ import annotations

import csv
import json
import os
import random
import stat
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .imageio import IMAGE_EXTENSIONS, MAX_FILE_BYTES, MAX_PIXELS, DecodeError, decode, open_image

REAL, AI = 0, 1
LABEL_NAMES = {REAL: "real", AI: "ai"}
LABEL_ALIASES = {
    **{k: REAL for k in ("real", "human", "authentic", "0_real", "0", "nature", "natural", "photo")},
    **{k: AI for k in ("fake", "ai", "generated", "synthetic", "1_fake", "1", "ai_generated")},
}
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """The collection cannot be read as labelled images (no labels found, bad manifest ...)."""


@dataclass
class Sample:
    path: str
    label: int
    source: str = "default"
    group: str = ""
    split: str = ""
    box: str = ""  # the patch's box in its original (corpus manifests): a real patch and its twins share it

    def __post_init__(self) -> None:
        if not self.group:
            self.group = self.path


@dataclass
class Dataset:
    """The samples of a collection and how they were found."""

    root: str
    layout: str
    samples: list[Sample]
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    @property
    def sources(self) -> list[str]:
        return sorted({s.source for s in self.samples})


def parse_label(value: str) -> int | None:
    """Map a folder name or CSV label (case-insensitive alias) to 0 = real / 1 = ai, else None."""
    return LABEL_ALIASES.get(str(value).strip().lower())


# ---- discovery -----------------------------------------------------------------------------------
def load_dataset(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    dedupe: bool = True,
) -> Dataset:
    """Find the samples of a collection, in whatever supported layout, and give each a split."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    try:
        if p.is_file():
            ds = _from_manifest(p)
        else:
            names = ("manifest.csv", "train.csv", "labels.csv")
            manifest = next((p / n for n in names if (p / n).is_file()), None)
            if manifest is not None and _looks_like_manifest(manifest):
                ds = _from_manifest(manifest)
            else:
                ds = _from_tree(p)
    except UnicodeDecodeError as e:  # a manifest saved as latin-1/UTF-16, or a binary file
        raise DataError(f"{p}: manifest is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{p}: malformed CSV: {e}") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read: {e.strerror or e}") from None
    if not ds.samples:
        raise DataError(f"{p}: no labelled images found (layout {ds.layout})")
    if len({s.label for s in ds.samples}) < 2:
        ds.notes.append("only one class found")
    assign_splits(ds, seed=seed, val_frac=val_frac, test_frac=test_frac, dedupe=dedupe)
    return ds


def _looks_like_manifest(p: Path) -> bool:
    with open(p, newline="", encoding="utf-8-sig") as f:
        header = [h.strip().lower() for h in next(csv.reader(f), [])]
    return "label" in header and ("path" in header or "file_name" in header)


def _from_manifest(csv_path: Path) -> Dataset:
    root = csv_path.parent
    samples: list[Sample] = []
    notes: list[str] = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "label" not in fields or not ({"path", "file_name"} & set(fields)):
            raise DataError(f"{csv_path}: a manifest needs 'path,label' or 'file_name,label' columns")
        layout = "kaggle_csv" if "file_name" in fields and "path" not in fields else "manifest_csv"
        for i, raw in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            rel = row.get("path") or row.get("file_name") or ""
            label = parse_label(row.get("label", ""))
            if not rel or label is None:
                notes.append(f"{csv_path.name}:{i}: skipped (path {rel!r}, label {row.get('label')!r})")
                continue
            # abspath, not resolve(): a symlink loop or dangling link reaches decode() and is reported
            full = Path(os.path.abspath(root / rel)) if not os.path.isabs(rel) else Path(rel)
            src = (
                row.get("source") or (Path(rel).parent.name if layout == "manifest_csv" else "") or "default"
            )
            split = SPLIT_ALIASES.get(row.get("split", "").lower(), "")
            group = row.get("group") or str(full)
            samples.append(Sample(str(full), label, src, group, split, row.get("box", "")))
    return Dataset(str(csv_path), layout, samples, notes)


def _walk_images(root: Path) -> Iterable[Path]:
    """All image files under root, sorted, following no symlinked directories (no loops)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=lambda e: None):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                yield Path(dirpath) / name


def _from_tree(root: Path) -> Dataset:
    samples: list[Sample] = []
    notes: list[str] = []
    unlabelled = 0
    layout = "class_folders"
    for f in _walk_images(root):
        parts = f.relative_to(root).parts[:-1]
        label, label_idx = None, -1
        for i, part in enumerate(parts):
            lab = None if part.isdigit() else parse_label(part)  # bare 0/1 only count in CSVs
            if lab is not None and part.lower() not in SPLIT_ALIASES:
                label, label_idx = lab, i
                break
        if label is None:
            unlabelled += 1
            continue
        split = ""
        others = []
        for i, part in enumerate(parts):
            if i == label_idx:
                continue
            if part.lower() in SPLIT_ALIASES and not split:
                split = SPLIT_ALIASES[part.lower()]
            else:
                others.append(part)
        source = "/".join(others) if others else "default"
        samples.append(Sample(os.path.abspath(os.fsdecode(f)), label, source, "", split))
    if any(s.split for s in samples):
        names = {Path(s.path).parent.name for s in samples}
        layout = "cifake" if {"REAL", "FAKE"} <= names else "split_folders"
    if unlabelled:
        notes.append(f"{unlabelled} image(s) outside any class folder were ignored")
    return Dataset(str(root), layout, samples, notes)


# ---- splitting -------------------------------------------------------------------------------------
def assign_splits(
    ds: Dataset, *, seed: int = 0, val_frac: float = 0.15, test_frac: float = 0.15, dedupe: bool = True
) -> None:
    """Give every sample a split; explicit splits are kept, missing ones are drawn group-aware.

    Near-duplicate images (perceptual hash distance ≤ 4) are merged into one group first, so a
    re-saved copy can never sit in train while its twin is in test.
    """
    if dedupe:
        merge_duplicate_groups(ds.samples)
    have = {s.split for s in ds.samples}
    if have == {""}:
        _draw(ds.samples, seed, {"train": 1 - val_frac - test_frac, "val": val_frac, "test": test_frac})
        ds.notes.append(f"no split in the data: drew a seeded (seed={seed}) stratified group split")
    elif "" in have or "val" not in have:
        pool = [s for s in ds.samples if s.split in ("", "train")]
        # The val share is carved from train (or from the unassigned rest), keeping groups whole.
        _draw(pool, seed, {"train": 1 - val_frac, "val": val_frac})
        ds.notes.append("no validation split given: carved one from train (group-aware, seeded)")
    # a group straddling splits (explicit layouts) is reported, not silently moved
    by_group: dict[str, set[str]] = defaultdict(set)
    for s in ds.samples:
        by_group[s.group].add(s.split)
    leaks = sum(1 for v in by_group.values() if len(v) > 1)
    if leaks:
        ds.notes.append(f"{leaks} group(s) of near-duplicates straddle splits in the given layout")


def _draw(samples: Sequence[Sample], seed: int, fracs: dict[str, float]) -> None:
    rng = random.Random(seed)
    groups: dict[tuple[int, str], list[Sample]] = defaultdict(list)
    for s in samples:
        groups[(s.label, s.group)].append(s)
    # A group's label is its first member's; stratify per (label, source) so sources spread evenly.
    strata: dict[tuple[int, str], list[list[Sample]]] = defaultdict(list)
    seen: set[str] = set()
    for (label, g), members in sorted(groups.items()):
        if g in seen:
            continue
        seen.add(g)
        allm = [m for lab in (REAL, AI) for m in groups.get((lab, g), [])]
        strata[(label, members[0].source)].append(allm)
    names = list(fracs)
    for key in sorted(strata):
        units = strata[key]
        rng.shuffle(units)
        total = sum(len(u) for u in units)
        targets = {n: fracs[n] * total for n in names}
        got = dict.fromkeys(names, 0.0)
        for u in units:
            # give the unit to the split furthest below its target share
            n = max(names, key=lambda k: (targets[k] - got[k]) / max(fracs[k], 1e-9))
            for m in u:
                m.split = n
            got[n] += len(u)


# ---- perceptual hashing and duplicates ---------------------------------------------------------
def dhash(img: Image.Image, size: int = 8) -> int:
    """64-bit difference hash of an image (robust to re-encoding and rescaling)."""
    g = img.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR)
    a = np.asarray(g, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def _hash_file(path: str) -> int | None:
    """dhash of a file, or None when it is not a regular, size-capped, decodable image.

    The same pre-checks as :func:`decode`: a FIFO would block ``open`` forever, a bomb would allocate."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= MAX_FILE_BYTES:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt EXIF etc. is reported by summarize, not as noise here
            with open_image(path) as im:  # supported formats only (never Ghostscript)
                im.draft("L", (64, 64))
                w, h = im.size
                if w * h > MAX_PIXELS:
                    return None
                return dhash(im)
    except Exception:
        return None


def near_duplicate_pairs(hashes: Sequence[int | None], max_distance: int = 4) -> list[tuple[int, int]]:
    """Index pairs whose hashes differ in ≤ max_distance bits (banded lookup, not all pairs)."""
    bands = max_distance + 1  # pigeonhole: some band is identical for any pair within the distance
    width = 64 // bands
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        if h is None:
            continue
        for b in range(bands):
            buckets[(b, (h >> (b * width)) & ((1 << width) - 1))].append(i)
    pairs: set[tuple[int, int]] = set()
    for idx in buckets.values():
        if len(idx) < 2 or len(idx) > 2000:  # huge buckets are flat images, not duplicates
            continue
        for a_i, a in enumerate(idx):
            ha = hashes[a]
            for b in idx[a_i + 1 :]:
                if bin(ha ^ hashes[b]).count("1") <= max_distance:  # type: ignore[operator]
                    pairs.add((a, b))
    return sorted(pairs)


def merge_duplicate_groups(samples: list[Sample], workers: int = 4) -> int:
    """Union near-duplicate images into one group; returns how many merges happened."""
    with ThreadPoolExecutor(workers) as ex:
        hashes = list(ex.map(_hash_file, [s.path for s in samples]))
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # samples already sharing a group are one unit
    first: dict[str, int] = {}
    for i, s in enumerate(samples):
        j = first.setdefault(s.group, i)
        parent[find(i)] = find(j)
    merges = 0
    for a, b in near_duplicate_pairs(hashes):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
            merges += 1
    for i, s in enumerate(samples):
        s.group = samples[find(i)].group
    return merges


# ---- summary ------------------------------------------------------------------------------------
@dataclass
class Summary:
    root: str
    layout: str
    counts: dict[str, dict[str, int]]
    per_source: dict[str, dict[str, int]]
    formats: dict[str, dict[str, int]]
    sizes: dict[str, dict[str, Any]]
    undecodable: list[dict[str, str]]
    cross_split_duplicates: int
    shortcut_scores: dict[str, float]
    warnings: list[str]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _probe(path: str) -> tuple[str, int, int, dict[str, str] | None]:
    """(format, width, height, error) of one file, fully decoded so broken data is caught."""
    try:
        d = decode(path)
        return d.format or "?", d.original_size[0], d.original_size[1], None
    except DecodeError as e:
        return "?", 0, 0, {"path": path, **e.as_dict()}


def shortcut_score(keys: Sequence[Any], labels: Sequence[int]) -> float:
    """Balanced accuracy of guessing the label from ``keys`` alone (majority label per key value).

    0.5 means the property says nothing about the class; near 1.0 means a model can cheat on it.
    """
    by_key: dict[Any, Counter[int]] = defaultdict(Counter)
    for k, y in zip(keys, labels):
        by_key[k][y] += 1
    # per key, predict the class with the higher within-class rate (balanced decision)
    n = Counter(labels)
    if len(n) < 2:
        return 0.5
    correct = Counter()
    for c in by_key.values():
        pred = AI if c[AI] / n[AI] > c[REAL] / n[REAL] else REAL
        correct[pred] += c[pred]
    return 0.5 * (correct[REAL] / n[REAL] + correct[AI] / n[AI])


def summarize(ds: Dataset, *, workers: int = 4, shortcut_threshold: float = 0.7) -> Summary:
    """Counts, formats, sizes, undecodable files, cross-split duplicates and shortcut warnings."""
    samples = ds.samples
    with ThreadPoolExecutor(workers) as ex:
        probes = list(ex.map(_probe, [s.path for s in samples]))
    counts: dict[str, dict[str, int]] = {}
    for sp in SPLITS:
        c = Counter(LABEL_NAMES[s.label] for s in samples if s.split == sp)
        counts[sp] = {"real": c["real"], "ai": c["ai"]}
    per_source: dict[str, dict[str, int]] = defaultdict(lambda: {"real": 0, "ai": 0})
    for s in samples:
        per_source[s.source][LABEL_NAMES[s.label]] += 1
    formats: dict[str, dict[str, int]] = {"real": {}, "ai": {}}
    sizes_by: dict[str, list[tuple[int, int]]] = {"real": [], "ai": []}
    undecodable = []
    ok_keys_fmt, ok_keys_size, ok_labels = [], [], []
    for s, (fmt, w, h, err) in zip(samples, probes):
        lab = LABEL_NAMES[s.label]
        if err:
            undecodable.append(err)
            continue
        formats[lab][fmt] = formats[lab].get(fmt, 0) + 1
        sizes_by[lab].append((w, h))
        ok_keys_fmt.append(fmt)
        ok_keys_size.append((w, h))
        ok_labels.append(s.label)
    sizes: dict[str, dict[str, Any]] = {}
    for lab, wh in sizes_by.items():
        if not wh:
            continue
        a = np.asarray(wh)
        common = Counter(f"{w}x{h}" for w, h in wh).most_common(3)
        sizes[lab] = {
            "width": _stats(a[:, 0]),
            "height": _stats(a[:, 1]),
            "most_common": [[k, v] for k, v in common],
        }
    scores = {
        "format": shortcut_score(ok_keys_fmt, ok_labels),
        "size": shortcut_score(ok_keys_size, ok_labels),
        "format+size": shortcut_score(list(zip(ok_keys_fmt, ok_keys_size)), ok_labels),
    }
    warnings = []
    for what, sc in scores.items():
        if sc >= shortcut_threshold:
            warnings.append(
                f"SHORTCUT: {what} alone predicts the label with balanced accuracy {sc:.2f}; a model can "
                f"cheat on it. Train with JPEG re-encoding/rescaling on BOTH classes and check the "
                f"web/hard tiers."
            )
    by_group: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        by_group[s.group].add(s.split)
    cross = sum(1 for v in by_group.values() if len(v) > 1)
    if cross:
        warnings.append(f"LEAK: {cross} group(s) of duplicate images appear in more than one split")
    if undecodable:
        warnings.append(f"{len(undecodable)} file(s) cannot be decoded and will be skipped")
    for sp in SPLITS:
        if counts[sp]["real"] == 0 or counts[sp]["ai"] == 0:
            warnings.append(f"split {sp!r} lacks a class: {counts[sp]}")
    return Summary(
        ds.root,
        ds.layout,
        counts,
        dict(sorted(per_source.items())),
        formats,
        sizes,
        undecodable,
        cross,
        scores,
        warnings,
        list(ds.notes),
    )


def _stats(a: np.ndarray) -> dict[str, float]:
    return {
        "min": int(a.min()),
        "median": float(np.median(a)),
        "max": int(a.max()),
    }


def format_summary(sm: Summary) -> str:
    """Human-readable summary text for the terminal."""
    lines = [f"{sm.root}  (layout: {sm.layout})", ""]
    lines.append(f"{'split':<8}{'real':>8}{'ai':>8}")
    for sp, c in sm.counts.items():
        lines.append(f"{sp:<8}{c['real']:>8}{c['ai']:>8}")
    lines += ["", f"{'source':<48}{'real':>7}{'ai':>7}"]
    for src, c in sm.per_source.items():
        lines.append(f"{src[:47]:<48}{c['real']:>7}{c['ai']:>7}")
    lines += ["", "formats:"]
    for lab, f in sm.formats.items():
        lines.append(
            f"  {lab:<5} " + ", ".join(f"{k} {v}" for k, v in sorted(f.items(), key=lambda x: -x[1]))
        )
    lines.append("sizes:")
    for lab, s in sm.sizes.items():
        mc = ", ".join(f"{k} ({v})" for k, v in s["most_common"])
        lines.append(
            f"  {lab:<5} width {s['width']['min']}–{s['width']['max']} (median {s['width']['median']:.0f}), "
            f"height {s['height']['min']}–{s['height']['max']}; most common: {mc}"
        )
    lines.append(
        "shortcut scores (balanced accuracy from the property alone, 0.5 = none): "
        + ", ".join(f"{k} {v:.2f}" for k, v in sm.shortcut_scores.items())
    )
    lines.append(f"undecodable files: {len(sm.undecodable)}")
    for u in sm.undecodable[:20]:
        lines.append(f"  {u['path']}: {u['kind']}: {u['message']}")
    lines.append(f"duplicate groups across splits: {sm.cross_split_duplicates}")
    for n in sm.notes:
        lines.append(f"note: {n}")
    for w in sm.warnings:
        lines.append(f"WARNING: {w}")
    return "\n".join(lines)
