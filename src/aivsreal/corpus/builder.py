"""Build a corpus from a catalog: scan → plan → cut → fakes → manifest and report.

Every stage checkpoints per original into ``OUT/state/`` (one small JSON file each, written atomically
after the files it describes), so a build killed at any moment (kill -9 included) resumes where it
stopped, and a finished build re-run changes nothing. All choices (order, de-duplication, splits,
patch boxes, balancing, fake seeds) are functions of the catalog and the bytes of the originals, so
the same mirrors and packages give byte-identical patches and manifest.

- scan: read every selected file of every source, sha256 of the bytes as fetched, skip reserved files
  (and whole reserved repositories), probe format/size/camera EXIF/perceptual hash.
- plan: drop exact duplicates everywhere and near duplicates across sources (the first in precedence
  order wins: external check sources, then fixed-split local sets, then the rest by name); near
  duplicates inside one source share a group. Split by a seeded hash of the group (stable when the
  catalog grows), patch boxes per original, fakes per real train/val original, class balance.
- cut: lossless JPEG crops / PNG patches (``patches``).
- fakes: TAEF2 reconstructions and random-decoder fingerprints of the real patches (``fakes``, torch).
"""

from __future__ import annotations

import hashlib
import heapq
import os
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import fsio
from .catalog import Catalog, GithubOrigin, LocalOrigin, Source
from .origins import OriginError, open_reader
from .patches import PatchError, cut, plan_boxes, probe

SCAN_VERSION = 1
FAKE_SOURCES = {
    "aligned": "aligned_taef2",
    "tconv": "synthetic_tconv",
    "nnconv": "synthetic_nnconv",
    "pixelshuffle": "synthetic_pixelshuffle",
}
FAKE_GENERATORS = {
    "aligned": "TAEF2 reconstruction (FLUX.2 latent space, tiny autoencoder)",
    "tconv": "random-weight decoder, transposed-conv upsampling",
    "nnconv": "random-weight decoder, nearest + conv upsampling",
    "pixelshuffle": "random-weight decoder, pixel-shuffle upsampling",
}
MANIFEST_HEADER = [
    "path",
    "label",
    "source",
    "group",
    "split",
    "generator",
    "family",
    "kind",
    "orig_sha256",
    "orig_format",
    "orig_size",
    "box",
]


@dataclass
class BuildOptions:
    mirrors: str = "/work/.mirror"
    out: str = "~/.cache/aivsreal/corpus"
    downloads: str = "~/.cache/aivsreal/downloads"
    reserved_dir: str | None = None
    fakes: bool = True
    aligned_per_original: int | None = None  # override the catalog's build settings
    synthetic_per_original: int | None = None
    fake_seconds: float | None = None  # stop making fakes after this long (the report says partial)
    fake_deadline: float | None = None  # or at this wall-clock time (epoch seconds)
    weights_dir: str | None = None  # folder with taef2_{encoder,decoder}.safetensors
    progress: bool = True
    sources: list[str] | None = None  # build only these sources (debugging)


@dataclass
class Reserved:
    files: set[str] = field(default_factory=set)
    repos: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, folder: str | None) -> Reserved:
        """Both reserved lists (``reserved_sha256.txt``, ``reserved_repos_sha256.txt``) of a folder."""
        r = cls()
        if folder is None:
            return r
        for name, into in (("reserved_sha256.txt", r.files), ("reserved_repos_sha256.txt", r.repos)):
            p = Path(folder) / name
            if not p.is_file():
                raise FileNotFoundError(f"{p}: reserved list missing")
            for line in p.read_text().splitlines():
                tok = line.strip().split()
                if tok and not tok[0].startswith("#"):
                    into.add(tok[0].lower())
        return r

    def repo_reserved(self, repo: str) -> bool:
        return hashlib.sha256(repo.lower().encode()).hexdigest() in self.repos


def _key(source: str, path: str) -> str:
    return hashlib.sha1(f"{source}\0{path}".encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _unit(seed: int, text: str) -> float:
    return int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:12], 16) / float(1 << 48)


def precedence(src: Source) -> tuple[int, str]:
    """De-duplication order: external check sources first, then fixed-split local sets, then by name."""
    fixed = isinstance(src.origin, LocalOrigin) and src.origin.manifest is not None
    return (0 if src.role == "external" else 1 if fixed else 2, src.name)


class Builder:
    """One build of a catalog into an output folder (see the module docstring for the stages)."""

    def __init__(self, catalog: Catalog, opts: BuildOptions):
        self.cat = catalog
        self.opts = opts
        self.s = catalog.build
        self.out = Path(os.path.expanduser(opts.out))
        self.state = self.out / "state"
        self.cache = Path(os.path.expanduser(opts.downloads))
        self.reserved = Reserved.load(opts.reserved_dir)
        self.sources = sorted(
            (s for s in catalog.sources if not opts.sources or s.name in opts.sources), key=precedence
        )
        self.by_name = {s.name: s for s in self.sources}
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.source_info: dict[str, dict[str, Any]] = {}
        self.log: list[str] = []
        self.linked_fixed = 0

    # ---- helpers --------------------------------------------------------------------------------
    def _bar(self, total: int, desc: str) -> tqdm:
        return tqdm(
            total=total,
            desc=desc,
            unit="img",
            file=sys.stderr,
            disable=not self.opts.progress,
            dynamic_ncols=True,
        )

    def note(self, msg: str) -> None:
        self.log.append(msg)
        if self.opts.progress:
            tqdm.write(msg, file=sys.stderr)

    def _reader(self, src: Source):
        return open_reader(src, mirrors=self.opts.mirrors, cache=self.cache, base=self.cat.base_dir())

    # ---- scan -----------------------------------------------------------------------------------
    def scan(self) -> None:
        """Hash and probe every selected original (checkpointed per original)."""
        listing: list[tuple[Source, Any, list[str]]] = []
        for src in self.sources:
            info: dict[str, Any] = {"missing_blobs": 0, "error": None, "reserved_repo": False}
            self.source_info[src.name] = info
            if isinstance(src.origin, GithubOrigin) and self.reserved.repo_reserved(src.origin.repo):
                info["reserved_repo"] = True
                self.note(f"{src.name}: github:{src.origin.repo} is a reserved repository: skipped")
                continue
            try:
                reader = self._reader(src)
                paths = reader.paths()
            except (OriginError, OSError) as e:
                info["error"] = str(e)
                self.note(f"{src.name}: cannot read the origin: {e}")
                continue
            info["missing_blobs"] = reader.missing
            listing.append((src, reader, paths))
        total = sum(len(p) for _, _, p in listing)
        bar = self._bar(total, "scan")
        for src, reader, paths in listing:
            recs = []
            with reader:
                for path in paths:
                    key = _key(src.name, path)
                    sp = self.state / "scan" / src.name / f"{key}.json"
                    rec = fsio.read_json(sp)
                    if not rec or rec.get("v") != SCAN_VERSION or rec.get("path") != path:
                        rec = self._scan_one(src, reader, path, key)
                        fsio.write_json(sp, rec)
                    recs.append(rec)
                    bar.update(1)
            self.records[src.name] = recs
        bar.close()

    def _scan_one(self, src: Source, reader: Any, path: str, key: str) -> dict[str, Any]:
        rec: dict[str, Any] = {"v": SCAN_VERSION, "source": src.name, "path": path, "key": key}
        rec["locator"] = reader.locator(path)
        meta = reader.meta(path)
        if meta.get("split"):
            rec["split_in"] = meta["split"]
        if meta.get("group"):
            rec["group_in"] = meta["group"]
        try:
            data = reader.read(path)
        except (OriginError, OSError, KeyError) as e:
            return {**rec, "status": "unreadable", "error": str(e)}
        rec["sha256"] = hashlib.sha256(data).hexdigest()
        rec["bytes"] = len(data)
        if rec["sha256"] in self.reserved.files:
            return {**rec, "status": "reserved"}
        try:
            p = probe(data)
        except PatchError as e:
            return {**rec, "status": "undecodable", "error": f"{e.kind}: {e}"}
        rec.update(
            format=p.format,
            width=p.width,
            height=p.height,
            mode=p.mode,
            mcu=list(p.mcu),
            make=p.make,
            model=p.model,
            software=p.software,
            dhash=f"{p.dhash:016x}",
        )
        if min(p.width, p.height) < self.s.min_side:
            return {**rec, "status": "too_small"}
        return {**rec, "status": "ok"}

    # ---- plan -----------------------------------------------------------------------------------
    def plan(self) -> list[dict[str, Any]]:
        """De-duplicate, group, split, choose patch boxes and fakes, balance; returns kept originals."""
        from ..data import near_duplicate_pairs

        ordered = [r for src in self.sources for r in self.records.get(src.name, [])]
        first_sha: dict[str, dict[str, Any]] = {}
        for r in ordered:
            r.pop("dup_of", None)
            if r["status"] == "ok" or r["status"].endswith("duplicate"):
                r["status"] = "ok"
                prev = first_sha.get(r["sha256"])
                if prev is None:
                    first_sha[r["sha256"]] = r
                else:
                    r["status"], r["dup_of"] = "duplicate", prev["locator"]
        ok = [r for r in ordered if r["status"] == "ok"]
        idx = {id(r): i for i, r in enumerate(ok)}
        parent = list(range(len(ok)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        dropped: set[int] = set()
        pairs = near_duplicate_pairs([int(r["dhash"], 16) for r in ok], self.s.near_duplicate_bits)
        for a, b in pairs:  # a < b: a comes first in precedence order
            if a in dropped or b in dropped:
                continue
            if ok[a]["source"] != ok[b]["source"]:
                dropped.add(b)
                ok[b]["status"], ok[b]["dup_of"] = "near_duplicate", ok[a]["locator"]
            else:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        kept = [r for i, r in enumerate(ok) if i not in dropped]
        for r in kept:
            root = ok[find(idx[id(r)])]
            r["group"] = (
                f"local:{r['source']}:{r['group_in']}"
                if r.get("group_in")
                else f"{root['source']}:{root['sha256'][:16]}"
            )
        self._link_fixed(kept)
        self._split(kept)
        for r in kept:
            r["boxes"] = [
                list(b)
                for b in plan_boxes(
                    r["width"], r["height"], self.s.patch, self.s.max_patches, tuple(r["mcu"])
                )
            ]
        self._plan_fakes(kept)
        if self.s.balance:
            self._balance(kept)
        return kept

    def _link_fixed(self, kept: list[dict[str, Any]]) -> None:
        """Put an original whose crops a fixed-split set (the dev set) already holds into that group/split.

        The dev set keeps crops, not originals, so hashes cannot match; its groups name the original's
        file (``source/<folder>_<file>``). An original of another source whose file name ends such a
        name joins that group and split (test before val before train), so a dev test crop's original
        never trains. A false match only moves an original to another split; it cannot leak.
        """
        index: dict[tuple[str, str], tuple[int, str, str]] = {}
        rank = {"test": 0, "val": 1, "train": 2}
        for r in kept:
            if not r.get("group_in") or r.get("split_in") not in rank:
                continue
            label = self.by_name[r["source"]].label
            name = r["group_in"].rsplit("/", 1)[-1].lower()
            parts = name.split("_")
            for k in range(len(parts)):
                key = (label, "_".join(parts[k:]))
                cand = (rank[r["split_in"]], r["group"], r["split_in"])
                if key not in index or cand < index[key]:
                    index[key] = cand
        linked = 0
        for r in kept:
            if r.get("group_in"):
                continue
            base = r["path"].rsplit("/", 1)[-1].lower()
            hit = index.get((self.by_name[r["source"]].label, base)) if len(base) >= 8 else None
            if hit:
                r["group"], r["split_in"], r["linked_fixed"] = hit[1], hit[2], True
                linked += 1
        self.linked_fixed = linked

    def _split(self, kept: list[dict[str, Any]]) -> None:
        by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in kept:
            by_source[r["source"]].append(r)
        for name, recs in by_source.items():
            src = self.by_name[name]
            groups = {r["group"] for r in recs}
            for r in recs:
                if src.role == "external":
                    r["split"] = "external"
                elif r.get("split_in") in ("train", "val", "test"):
                    r["split"] = r["split_in"]
                elif len(groups) < self.s.min_split_originals:
                    r["split"] = "train"
                else:
                    u = _unit(self.s.seed, r["group"])
                    r["split"] = (
                        "test"
                        if u < self.s.test_frac
                        else "val"
                        if u < self.s.test_frac + self.s.val_frac
                        else "train"
                    )

    def _plan_fakes(self, kept: list[dict[str, Any]]) -> None:
        a = (
            self.opts.aligned_per_original
            if self.opts.aligned_per_original is not None
            else self.s.aligned_per_original
        )
        k = (
            self.opts.synthetic_per_original
            if self.opts.synthetic_per_original is not None
            else self.s.synthetic_per_original
        )
        for r in kept:
            r["fakes"] = {}
            src = self.by_name[r["source"]]
            if not self.opts.fakes or src.label != "real" or r["split"] not in ("train", "val"):
                continue
            n = len(r["boxes"])
            if a > 0:
                r["fakes"]["aligned"] = [int((i + 0.5) * n / min(a, n)) for i in range(min(a, n))]
            for fi, fam in enumerate(self.s.synthetic_families):
                if k > 0:
                    m = min(k, n)
                    off = int(_unit(self.s.seed, f"{fam}:{r['sha256']}") * n)
                    r["fakes"][fam] = sorted({(off + fi + i * max(1, n // m)) % n for i in range(m)})

    def _balance(self, kept: list[dict[str, Any]]) -> None:
        """Trim the larger class's surplus patches in train and val (most-patched originals first)."""
        for split in ("train", "val"):
            recs = [r for r in kept if r["split"] == split]
            real = [r for r in recs if self.by_name[r["source"]].label == "real"]
            ai = [r for r in recs if self.by_name[r["source"]].label == "ai"]
            n_real = sum(len(r["boxes"]) for r in real)
            n_fake = sum(len(v) for r in real for v in r["fakes"].values())
            n_ai = sum(len(r["boxes"]) for r in ai) + n_fake
            if n_ai > n_real:
                # synthetic fakes go first, then surplus patches of AI originals (each keeps one), then
                # aligned twins beyond the first (every real original keeps one)
                n_ai -= self._trim(ai, n_ai - n_real, protect=lambda r, i: False, floor=4)
                n_ai -= self._trim_fakes(real, list(reversed(self.s.synthetic_families)), n_ai - n_real, 0)
                n_ai -= self._trim(ai, n_ai - n_real, protect=lambda r, i: False)
                n_ai -= self._trim_fakes(real, ["aligned"], n_ai - n_real, 1)
            elif n_real > n_ai:

                def paired(r: dict[str, Any], i: int) -> bool:
                    return any(i in v for v in r["fakes"].values())

                self._trim(real, n_real - n_ai, protect=paired)

    def _balance_made(self, kept: list[dict[str, Any]]) -> None:
        """Balance train/val again on what was made (fakes left unmade by a time budget).

        Surplus real patches without a fake twin leave the manifest (most-patched originals first,
        each keeps one); their files are removed with the other unlisted files.
        """
        for r in kept:
            r["dropped_idx"] = []
        for split in ("train", "val"):
            real = [r for r in kept if r["split"] == split and self.by_name[r["source"]].label == "real"]
            ai = [r for r in kept if r["split"] == split and self.by_name[r["source"]].label == "ai"]
            n_real = sum(len(r.get("patch_files", [])) for r in real)
            n_ai = sum(len(r.get("patch_files", [])) for r in ai)
            n_ai += sum(len(v) for r in real for v in r.get("fake_files", {}).values())
            surplus = n_real - n_ai
            if surplus <= 0:
                continue
            free = {}
            for j, r in enumerate(real):
                paired = {i for v in r.get("fake_files", {}).values() for i, _ in v}
                free[j] = [i for i in range(len(r.get("patch_files", []))) if i not in paired]
            heap = [(-len(r.get("patch_files", [])), r["key"], j) for j, r in enumerate(real) if free[j]]
            heapq.heapify(heap)
            while heap and surplus > 0:
                _, key, j = heapq.heappop(heap)
                r = real[j]
                left = len(r["patch_files"]) - len(r["dropped_idx"])
                if left <= 1 or not free[j]:
                    continue
                r["dropped_idx"].append(free[j].pop())
                surplus -= 1
                if free[j] and left - 1 > 1:
                    heapq.heappush(heap, (-(left - 1), key, j))

    @staticmethod
    def _trim_fakes(real: list[dict[str, Any]], fams: list[str], surplus: int, floor: int) -> int:
        """Drop up to ``surplus`` planned fakes of these families, in turn, most-faked originals first."""
        queues = {}
        for fam in fams:
            q = [
                (-len(r["fakes"].get(fam, [])), r["key"], r)
                for r in real
                if len(r["fakes"].get(fam, [])) > floor
            ]
            heapq.heapify(q)
            queues[fam] = q
        removed = 0
        while removed < surplus and any(queues.values()):
            for fam in fams:
                q = queues[fam]
                if removed >= surplus or not q:
                    continue
                _, key, r = heapq.heappop(q)
                r["fakes"][fam].pop()
                removed += 1
                if len(r["fakes"][fam]) > floor:
                    heapq.heappush(q, (-len(r["fakes"][fam]), key, r))
        return removed

    def _trim(self, recs: list[dict[str, Any]], surplus: int, protect: Any, floor: int = 1) -> int:
        """Drop up to ``surplus`` patches, most-patched originals first, none below ``floor`` patches."""
        heap = [(-len(r["boxes"]), r["key"], j) for j, r in enumerate(recs) if len(r["boxes"]) > floor]
        heapq.heapify(heap)
        removed = 0
        while heap and removed < surplus:
            _, _, j = heapq.heappop(heap)
            r = recs[j]
            free = [i for i in range(len(r["boxes"])) if not protect(r, i)]
            if len(r["boxes"]) <= floor or not free:
                continue
            i = free[-1]
            r["boxes"].pop(i)
            for fam, v in r["fakes"].items():  # indices after i shift down
                r["fakes"][fam] = [x - 1 if x > i else x for x in v]
            removed += 1
            if len(r["boxes"]) > floor:
                heapq.heappush(heap, (-len(r["boxes"]), r["key"], j))
        return removed

    # ---- cut ------------------------------------------------------------------------------------
    def patch_path(self, r: dict[str, Any], i: int) -> str:
        """A patch's file, named by its box: the same name always holds the same pixels."""
        src = self.by_name[r["source"]]
        ext = "jpg" if r["format"] == "JPEG" else "png"
        x, y, w, h = r["boxes"][i]
        return f"patches/{src.label}/{src.name}/{r['key']}_{x}_{y}_{w}x{h}.{ext}"

    def cut_all(self, kept: list[dict[str, Any]], cut_missing: bool = True) -> None:
        """Cut every kept original's planned boxes (checkpointed per original).

        With ``cut_missing=False`` only originals already cut are taken (a helper process that makes
        fakes beside a running build); the others get no patches in this process.
        """
        bar = self._bar(len(kept), "cut")
        by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in kept:
            by_source[r["source"]].append(r)
        for name in [s.name for s in self.sources if s.name in by_source]:
            src = self.by_name[name]
            reader = None
            try:
                for r in by_source[name]:
                    if src.role == "external":  # an external check set keeps whole originals, as fetched
                        r["boxes"] = [[0, 0, r["width"], r["height"]]]
                        rel = f"external/{name}/{r['key']}{Path(r['path']).suffix.lower()}"
                        if not (self.out / rel).is_file():
                            if reader is None:
                                reader = self._reader(src)
                                reader.paths()
                            data = reader.read(r["path"])
                            if hashlib.sha256(data).hexdigest() != r["sha256"]:
                                raise OriginError(f"{r['locator']}: the bytes changed since the scan")
                            fsio.write_bytes(self.out / rel, data)
                        r["patch_files"], r["patch_sha256"] = [rel], [r["sha256"]]
                        bar.update(1)
                        continue
                    r["patch_files"] = [self.patch_path(r, i) for i in range(len(r["boxes"]))]
                    plan_id = hashlib.sha256(
                        repr((r["sha256"], r["boxes"], r["patch_files"])).encode()
                    ).hexdigest()
                    mp = self.state / "cut" / name / f"{r['key']}.json"
                    m = fsio.read_json(mp)
                    if (
                        m
                        and m.get("plan") == plan_id
                        and all((self.out / f).is_file() for f in r["patch_files"])
                    ):
                        r["patch_sha256"] = m["shas"]
                        bar.update(1)
                        continue
                    if not cut_missing:
                        r["patch_files"], r["patch_sha256"] = [], []
                        bar.update(1)
                        continue
                    if reader is None:
                        reader = self._reader(src)
                        reader.paths()
                    try:
                        data = reader.read(r["path"])
                        if hashlib.sha256(data).hexdigest() != r["sha256"]:
                            raise PatchError("changed", "the bytes changed since the scan")
                        shas = cut(
                            data,
                            r["format"],
                            [tuple(b) for b in r["boxes"]],
                            [self.out / f for f in r["patch_files"]],
                        )
                    except PatchError as e:
                        r["status"], r["error"] = "cut_failed", f"{e.kind}: {e}"
                        r["patch_files"], r["patch_sha256"] = [], []
                        self.note(f"{r['locator']}: {e.kind}: {e}")
                        fsio.write_json(mp, {"plan": plan_id, "failed": r["error"], "shas": []})
                        bar.update(1)
                        continue
                    r["patch_sha256"] = shas
                    fsio.write_json(mp, {"plan": plan_id, "shas": shas})
                    bar.update(1)
            except OriginError as e:
                self.note(f"{name}: cannot read the origin: {e}")
            finally:
                if reader is not None:
                    reader.close()
        bar.close()
        for r in kept:  # a failed cut recorded earlier stays failed on resume
            m = fsio.read_json(self.state / "cut" / r["source"] / f"{r['key']}.json")
            if m and m.get("failed"):
                r["status"], r["error"], r["patch_files"], r["patch_sha256"] = (
                    "cut_failed",
                    m["failed"],
                    [],
                    [],
                )

    # ---- fakes ----------------------------------------------------------------------------------
    def fake_path(self, fam: str, r: dict[str, Any], i: int) -> str:
        x, y, w, h = r["boxes"][i]
        return f"patches/ai/{FAKE_SOURCES[fam]}/{r['key']}_{x}_{y}_{w}x{h}.png"

    def fakes_all(self, kept: list[dict[str, Any]], reverse: bool = False) -> dict[str, int]:
        """Make the planned fakes; returns how many planned fakes were not made (time budget)."""
        # Order: each original's first aligned twin and its synthetic fakes, in one seeded shuffle, then
        # further aligned twins; so a time budget cuts every family and source alike.
        ranked = []
        for r in kept:
            if not r.get("patch_files"):
                continue
            for fam in ["aligned", *self.s.synthetic_families]:
                for n, i in enumerate(r["fakes"].get(fam, [])):
                    rank = 1 if fam == "aligned" and n > 0 else 0
                    ranked.append((rank, _unit(self.s.seed, f"{fam}:{r['key']}:{i}"), fam, r, i))
        ranked.sort(key=lambda t: t[:2])
        jobs = [(fam, r, i) for _, _, fam, r, i in ranked]
        pending: dict[str, int] = defaultdict(int)
        for r in kept:
            r["fake_files"] = {}
        if not jobs:
            return {}
        todo = []
        for fam, r, i in jobs:
            rel = self.fake_path(fam, r, i)
            if (self.out / rel).is_file():
                r["fake_files"].setdefault(fam, []).append((i, rel))
            else:
                todo.append((fam, r, i, rel))
        if not todo:
            return {}
        if reverse:  # a helper process works from the other end, so the two never make the same fake
            todo.reverse()
        from . import fakes as fk

        maker = fk.FakeMaker(self.opts.weights_dir, seed=self.s.seed, threads=self.s.torch_threads)
        t0 = time.monotonic()
        bar = self._bar(len(todo), "fakes")
        for n, (fam, r, i, rel) in enumerate(todo):
            over = self.opts.fake_seconds is not None and time.monotonic() - t0 > self.opts.fake_seconds
            if over or (self.opts.fake_deadline is not None and time.time() > self.opts.fake_deadline):
                for f2, _, _, _ in todo[n:]:
                    pending[f2] += 1
                self.note(f"fake time budget spent: {len(todo) - n} fakes not made")
                break
            if (self.out / rel).is_file():  # made meanwhile by a helper process
                r["fake_files"].setdefault(fam, []).append((i, rel))
                bar.update(1)
                continue
            try:
                b = maker.make(fam, self.out / r["patch_files"][i], f"{r['sha256']}:{r['boxes'][i]}")
            except Exception as e:  # one bad patch must not stop the build
                self.note(f"{rel}: fake failed: {e}")
                pending[fam] += 1
                bar.update(1)
                continue
            fsio.write_bytes(self.out / rel, b)
            bar.update(1)
        bar.close()
        # what exists now counts (a helper process may have made some of the rest)
        pending = defaultdict(int)
        for r in kept:
            r["fake_files"] = {}
        for fam, r, i in jobs:
            rel = self.fake_path(fam, r, i)
            if (self.out / rel).is_file():
                r["fake_files"].setdefault(fam, []).append((i, rel))
            else:
                pending[fam] += 1
        return dict(pending)

    # ---- outputs --------------------------------------------------------------------------------
    def manifest_rows(self, kept: list[dict[str, Any]]) -> tuple[list[list[Any]], list[list[Any]]]:
        rows, external = [], []
        for r in kept:
            src = self.by_name[r["source"]]
            common = [r["group"], "test" if r["split"] == "external" else r["split"]]
            orig = [r["sha256"], r["format"], f"{r['width']}x{r['height']}"]
            for i, f in enumerate(r.get("patch_files", [])):
                if i in r.get("dropped_idx", ()):
                    continue
                x, y, w, h = r["boxes"][i]
                row = [
                    f,
                    src.label,
                    src.name,
                    *common,
                    src.generator,
                    src.family,
                    "original",
                    *orig,
                    f"{x},{y},{w},{h}",
                ]
                (external if src.role == "external" else rows).append(row)
            for fam, lst in r.get("fake_files", {}).items():
                fam_name = "aligned" if fam == "aligned" else "synthetic"
                for i, f in sorted(lst):
                    x, y, w, h = r["boxes"][i]
                    rows.append(
                        [
                            f,
                            "ai",
                            FAKE_SOURCES[fam],
                            *common,
                            FAKE_GENERATORS[fam],
                            fam_name,
                            fam,
                            *orig,
                            f"{x},{y},{w},{h}",
                        ]
                    )
        return sorted(rows), sorted(external)

    def prune(self, keep: set[str]) -> int:
        """Remove patch files no longer in the plan (a changed catalog), so the folder matches the manifest."""
        gone = 0
        for dirpath, _, files in [w for d in ("patches", "external") for w in os.walk(self.out / d)]:
            for f in files:
                rel = (Path(dirpath) / f).relative_to(self.out).as_posix()
                if rel not in keep:
                    os.unlink(Path(dirpath) / f)
                    gone += 1
        return gone

    def run_fakes_only(self) -> dict[str, int]:
        """Make the planned fakes of the originals already cut; writes no manifest or report."""
        self.scan()
        kept = self.plan()
        self.cut_all(kept, cut_missing=False)
        return self.fakes_all([r for r in kept if r["status"] == "ok"], reverse=True)

    def run(self, shortcut_check: bool = True) -> dict[str, Any]:
        """All stages; writes manifest.csv, external.csv, originals.csv and report.json into OUT."""
        from .report import build_report, originals_rows

        self.out.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self.scan()
        kept = self.plan()
        self.cut_all(kept)
        kept_ok = [r for r in kept if r["status"] == "ok"]
        pending = self.fakes_all(kept_ok)
        if self.s.balance:
            self._balance_made(kept_ok)
        rows, external = self.manifest_rows(kept_ok)
        self.prune({row[0] for row in rows} | {row[0] for row in external})
        fsio.write_csv(self.out / "manifest.csv", MANIFEST_HEADER, rows)
        fsio.write_csv(self.out / "external.csv", MANIFEST_HEADER, external)
        all_recs = [r for s in self.sources for r in self.records.get(s.name, [])]
        header, orows = originals_rows(self, all_recs)
        fsio.write_csv(self.out / "originals.csv", header, orows)
        report = build_report(self, all_recs, kept_ok, rows, external, pending, shortcut_check=shortcut_check)
        fsio.write_json(self.out / "report.json", report)
        fsio.write_json(
            self.out / "build-log.json", {"seconds": round(time.monotonic() - t0, 1), "notes": self.log}
        )
        return report


def clean(out: str | os.PathLike) -> None:
    """Remove a corpus folder (only one that looks like a corpus: it has state/ or manifest.csv)."""
    p = Path(os.path.expanduser(out))
    if (p / "state").is_dir() or (p / "manifest.csv").is_file():
        shutil.rmtree(p)
