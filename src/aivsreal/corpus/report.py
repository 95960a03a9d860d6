"""The build's report (``report.json``) and its list of every original (``originals.csv``).

Counts are of *kept* originals (not reserved, not duplicates, decodable, cut) of training sources
(``role: train``); external check sources are counted apart. A camera original is a kept original of a
real source marked ``camera: true`` whose EXIF names a camera model. The report holds no timestamps,
so a re-run of the same build writes the same bytes.
"""

from __future__ import annotations

import hashlib
import statistics
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .builder import FAKE_GENERATORS
from .catalog import generator_key
from .patches import camera_text

TARGETS = {
    "ai_originals": 2000,
    "ai_sources": 55,
    "ai_generators": 35,
    "gan_generators": 6,
    "generators_2025_plus": 10,
    "real_originals": 2000,
    "real_sources": 40,
    "camera_originals": 300,
    "camera_models": 10,
    "patches": 20000,
}
MAX_GENERATOR_SHARE = 0.15


def _sizes(recs: list[dict[str, Any]]) -> dict[str, Any]:
    if not recs:
        return {}
    ws, hs = [r["width"] for r in recs], [r["height"] for r in recs]
    mp = [r["width"] * r["height"] / 1e6 for r in recs]
    return {
        "width": {"min": min(ws), "median": statistics.median(ws), "max": max(ws)},
        "height": {"min": min(hs), "median": statistics.median(hs), "max": max(hs)},
        "megapixels_median": round(statistics.median(mp), 3),
    }


def _jpegtran_version() -> str:
    try:
        r = subprocess.run(["jpegtran", "-version"], capture_output=True, text=True, timeout=10)
        return (r.stderr or r.stdout).strip().splitlines()[0]
    except Exception:
        return "unavailable"


def originals_rows(b: Any, recs: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Every original the build saw (reserved ones are counted in the report, not listed)."""
    header = [
        "sha256",
        "status",
        "label",
        "source",
        "origin",
        "licence",
        "format",
        "size",
        "camera_make",
        "camera_model",
        "split",
        "group",
        "patches",
        "duplicate_of",
    ]
    rows = []
    for r in recs:
        if r["status"] == "reserved":
            continue
        src = b.by_name[r["source"]]
        size = f"{r['width']}x{r['height']}" if "width" in r else ""
        rows.append(
            [
                r.get("sha256", ""),
                r["status"],
                src.label,
                src.name,
                r["locator"],
                src.licence,
                r.get("format", ""),
                size,
                camera_text(r.get("make", "")),  # scan records made before camera_text existed
                camera_text(r.get("model", "")),
                r.get("split", ""),
                r.get("group", ""),
                len(r.get("patch_files", [])) - len(r.get("dropped_idx", [])),
                r.get("dup_of", ""),
            ]
        )
    return header, rows


def build_report(
    b: Any,
    all_recs: list[dict[str, Any]],
    kept: list[dict[str, Any]],
    rows: list[list[Any]],
    external: list[list[Any]],
    pending: dict[str, int],
    *,
    shortcut_check: bool = True,
) -> dict[str, Any]:
    """The report dictionary (see the module docstring)."""
    train_kept = [r for r in kept if b.by_name[r["source"]].role == "train"]
    by_label: dict[str, list[dict[str, Any]]] = {"ai": [], "real": []}
    for r in train_kept:
        by_label[b.by_name[r["source"]].label].append(r)
    status_by_source: dict[str, Counter[str]] = defaultdict(Counter)
    for r in all_recs:
        status_by_source[r["source"]][r["status"]] += 1
    patches_by_source = Counter(row[2] for row in rows + external)

    per_source: dict[str, Any] = {}
    kept_by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in kept:
        kept_by_source[r["source"]].append(r)
    for src in sorted(b.sources, key=lambda s: s.name):
        ks = kept_by_source.get(src.name, [])
        info = b.source_info.get(src.name, {})
        per_source[src.name] = {
            "label": src.label,
            "role": src.role,
            "generator": src.generator,
            "family": src.family,
            "released": src.released,
            "licence": src.licence,
            "camera": src.camera,
            "origin": src.origin.describe(),
            "declared_files": src.files,
            "originals": len(ks),
            "patches": patches_by_source.get(src.name, 0),
            "formats": dict(sorted(Counter(r["format"] for r in ks).items())),
            "sizes": _sizes(ks),
            "splits": dict(sorted(Counter(r["split"] for r in ks).items())),
            "linked_to_fixed_split_groups": b.linked_fixed,
            "skipped": dict(
                sorted((k, v) for k, v in status_by_source.get(src.name, {}).items() if k != "ok")
            ),
            "missing_blobs": info.get("missing_blobs", 0),
            "error": info.get("error"),
            "reserved_repo": info.get("reserved_repo", False),
        }
    for fam, name in (
        ("aligned", "aligned_taef2"),
        ("tconv", "synthetic_tconv"),
        ("nnconv", "synthetic_nnconv"),
        ("pixelshuffle", "synthetic_pixelshuffle"),
    ):
        n = patches_by_source.get(name, 0)
        if n or pending.get(fam):
            per_source[name] = {
                "label": "ai",
                "role": "train",
                "generator": FAKE_GENERATORS[fam],
                "family": "aligned" if fam == "aligned" else "synthetic",
                "originals": len({row[8] for row in rows if row[2] == name}),
                "patches": n,
                "not_made": pending.get(fam, 0),
                "licence": "derived from the real originals (their licences); TAEF2 weights MIT"
                if fam == "aligned"
                else "derived from the real originals (their licences)",
            }

    # generators and cameras (training sources with kept originals)
    gen_count: Counter[str] = Counter()
    gen_meta: dict[str, dict[str, Any]] = {}
    for r in by_label["ai"]:
        s = b.by_name[r["source"]]
        name, distinct = b.cat.canonical_generator(s.generator)
        k = generator_key(name)
        gen_count[k] += 1
        m = gen_meta.setdefault(
            k,
            {
                "name": name,
                "family": s.family,
                "released": s.released,
                "distinct": distinct,
                "sources": set(),
                "as_named": set(),
            },
        )
        m["sources"].add(s.name)
        m["as_named"].add(s.generator)
        if s.released and (m["released"] is None or s.released < m["released"]):
            m["released"] = s.released
    n_ai = len(by_label["ai"])
    counted = {k: m for k, m in gen_meta.items() if m["distinct"]}
    gans = sorted(k for k, m in counted.items() if m["family"] == "gan")
    new = sorted(k for k, m in counted.items() if (m["released"] or 0) >= 2025)
    top = gen_count.most_common(1)
    cams = [r for r in by_label["real"] if b.by_name[r["source"]].camera and r.get("model")]
    cam_models = Counter(" ".join(f"{r.get('make', '')} {r['model']}".split()) for r in cams)
    exif_any = [r for r in by_label["real"] if r.get("model")]
    heic = sum(1 for r in by_label["real"] if r["format"] == "HEIF")

    # patches
    split_label: dict[str, Counter[str]] = defaultdict(Counter)
    kinds: Counter[str] = Counter()
    for row in rows:
        split_label[row[4]][row[1]] += 1
        kinds[row[7]] += 1
    n_patches = len(rows)

    def fam_table(label: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r in by_label[label]:
            f = b.by_name[r["source"]].family
            d = out.setdefault(f, {"sources": set(), "originals": 0, "patches": 0})
            d["sources"].add(r["source"])
            d["originals"] += 1
            d["patches"] += len(r.get("patch_files", [])) - len(r.get("dropped_idx", []))
        for d in out.values():
            d["sources"] = len(d["sources"])
        return dict(sorted(out.items()))

    per_class = {
        lab: {
            "originals": len(by_label[lab]),
            "sources": len({r["source"] for r in by_label[lab]}),
            "patches": sum(split_label[sp][lab] for sp in split_label),
            "formats": dict(sorted(Counter(r["format"] for r in by_label[lab]).items())),
            "sizes": _sizes(by_label[lab]),
            "families": fam_table(lab),
        }
        for lab in ("ai", "real")
    }
    synth = {"aligned": 0, "synthetic": 0}
    for row in rows:
        if row[6] in synth:
            synth[row[6]] += 1
    per_class["ai"]["families"].update(
        {
            k: {"sources": len({row[2] for row in rows if row[6] == k}), "patches": v}
            for k, v in synth.items()
            if v
        }
    )

    reserved = [r for r in all_recs if r["status"] == "reserved"]
    reserved_repos = sorted(n for n, i in b.source_info.items() if i.get("reserved_repo"))
    dups = [r for r in all_recs if r["status"] == "duplicate"]
    near = [r for r in all_recs if r["status"] == "near_duplicate"]
    merged_groups = Counter(r["group"] for r in kept)

    figures = {
        "ai_originals": n_ai,
        "ai_sources": per_class["ai"]["sources"],
        "ai_generators": len(counted),
        "gan_generators": len(gans),
        "generators_2025_plus": len(new),
        "real_originals": len(by_label["real"]),
        "real_sources": per_class["real"]["sources"],
        "camera_originals": len(cams),
        "camera_models": len(cam_models),
        "patches": n_patches,
    }
    targets = {k: {"target": v, "value": figures[k], "met": figures[k] >= v} for k, v in TARGETS.items()}
    share = top[0][1] / n_ai if top and n_ai else 0.0
    targets["max_generator_share"] = {
        "target": f"<= {MAX_GENERATOR_SHARE}",
        "value": round(share, 4),
        "met": share <= MAX_GENERATOR_SHARE,
    }
    targets["reserved_in_corpus"] = {"target": 0, "value": 0, "met": True}
    for sp in ("train", "val"):
        c = split_label.get(sp, Counter())
        ratio = c["ai"] / c["real"] if c["real"] else 0.0
        targets[f"{sp}_balance_ai_per_real"] = {
            "target": "0.9-1.1",
            "value": round(ratio, 4),
            "met": 0.9 <= ratio <= 1.1,
        }
    targets["heic_originals"] = {"target": ">= 1", "value": heic, "met": heic >= 1}

    pending_total = sum(pending.values())
    report: dict[str, Any] = {
        **figures,
        "partial": pending_total > 0,
        "pending": {"fakes_not_made": dict(sorted(pending.items()))} if pending_total else {},
        "reserved_skipped": {
            "files": len(reserved),
            "repositories": len(reserved_repos),
            "repository_sources": reserved_repos,
            "files_by_source": dict(sorted(Counter(r["source"] for r in reserved).items())),
        },
        "duplicates_dropped": {
            "exact": len(dups),
            "near_across_sources": len(near),
            "groups_with_near_duplicates_within_a_source": sum(1 for v in merged_groups.values() if v > 1),
            "by_source": dict(sorted(Counter(r["source"] for r in dups + near).items())),
        },
        "linked_to_fixed_split_groups": b.linked_fixed,
        "skipped": dict(sorted(Counter(r["status"] for r in all_recs if r["status"] != "ok").items())),
        "ai_generator_list": {
            m["name"]: {
                "originals": gen_count[k],
                "family": m["family"],
                "released": m["released"],
                "distinct": m["distinct"],
                "sources": sorted(m["sources"]),
                "as_named": sorted(m["as_named"]),
            }
            for k, m in sorted(gen_meta.items())
        },
        "gan_generator_list": [gen_meta[k]["name"] for k in gans],
        "generators_2025_plus_list": [gen_meta[k]["name"] for k in new],
        "max_generator": {"name": gen_meta[top[0][0]]["name"], "share": round(share, 4)} if top else {},
        "camera_model_list": dict(sorted(cam_models.items())),
        "real_with_exif_camera_model": len(exif_any),
        "heic_originals": heic,
        "patch_counts": {
            "by_split": {sp: dict(sorted(c.items())) for sp, c in sorted(split_label.items())},
            "by_kind": dict(sorted(kinds.items())),
            "external": len(external),
        },
        "external_check_set": {
            "sources": sorted({row[2] for row in external}),
            "originals": len({row[8] for row in external}),
            "patches": len(external),
        },
        "per_class": per_class,
        "per_source": per_source,
        "targets": targets,
        "settings": b.s.model_dump(),
        "fakes": {
            "enabled": b.opts.fakes,
            "aligned_per_original": b.s.aligned_per_original
            if b.opts.aligned_per_original is None
            else b.opts.aligned_per_original,
            "synthetic_per_original": b.s.synthetic_per_original
            if b.opts.synthetic_per_original is None
            else b.opts.synthetic_per_original,
            "fake_seconds": b.opts.fake_seconds,
            "fake_deadline_set": b.opts.fake_deadline is not None,
        },
        "catalog_sha256": hashlib.sha256(Path(b.cat.path).read_bytes()).hexdigest()
        if b.cat.path and Path(b.cat.path).is_file()
        else "",
        "tools": {"jpegtran": _jpegtran_version(), "pillow": __import__("PIL").__version__},
        "notes": b.log[-200:],
    }
    for v in per_class.values():
        for d in v["families"].values():
            if isinstance(d.get("sources"), set):
                d["sources"] = len(d["sources"])
    if shortcut_check and rows:
        report["shortcut_check"] = shortcut(b.out / "manifest.csv")
    return report


def shortcut(manifest: Path) -> dict[str, Any]:
    """``aivsreal data summary`` of the built manifest: counts, formats, sizes, shortcut scores, warnings."""
    from ..data import load_dataset, summarize

    sm = summarize(load_dataset(manifest, dedupe=False))
    d = sm.to_dict()
    return {
        k: d[k]
        for k in ("counts", "formats", "sizes", "shortcut_scores", "warnings", "cross_split_duplicates")
    } | {"undecodable": len(d["undecodable"])}
