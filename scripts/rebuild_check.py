"""Check that the corpus builder re-runs to byte-identical patches and manifest (issue #13).

Two ways:
- ``--rebuilt DIR``: DIR is a second complete build of the same catalog into an empty folder (same mirrors
  and packages); every output CSV and every patch file must be byte-identical to the first build's.
- otherwise a subset: the chosen sources are rebuilt from scratch into a temporary folder
  (``aivsreal data build --source ...``) and every file both builds list must have the same bytes and the
  same manifest fields. In a subset, train/val balancing trims other surplus patches, and near duplicates
  of sources outside it cannot link groups, so those rows are counted apart, not compared.

    python scripts/rebuild_check.py catalog/sources.yaml --corpus ~/.cache/aivsreal/corpus \\
        [--rebuilt /tmp/corpus2] --out docs/corpus/rebuild_check.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# JPEG camera photos and a phone HEIC from snapshots, photos from a Debian package, PNG generators and a
# GAN: each origin kind but local, and each cutting path (jpegtran crop, decode to PNG, the fakes).
DEFAULT_SOURCES = [
    "a11ytest_canon_ixy_digital",
    "pillow_heif_apple_iphone_13_pro",
    "debian_lxqt_themes_photo_wallpapers",
    "abuzar332_comfyui_flux1dev",
    "interfacegan_sefa_stylegan2_pizza",
]
FIELDS = ("label", "source", "group", "split", "generator", "family", "kind", "orig_sha256", "box")
OUTPUTS = ("manifest.csv", "external.csv", "originals.csv", "report.json")


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def rows_by_path(manifest: Path) -> dict[str, dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def compare_files(a: Path, b: Path, paths: list[str]) -> list[str]:
    return [p for p in paths if not (b / p).is_file() or sha256(a / p) != sha256(b / p)]


def whole(corpus: Path, rebuilt: Path) -> dict:
    """Two complete builds: outputs and every listed patch byte-identical."""
    outputs = {f: sha256(corpus / f) == sha256(rebuilt / f) for f in OUTPUTS}
    paths = sorted(rows_by_path(corpus / "manifest.csv")) + sorted(rows_by_path(corpus / "external.csv"))
    differ = compare_files(corpus, rebuilt, paths)
    kinds: dict[str, int] = {}
    for r in rows_by_path(corpus / "manifest.csv").values():
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    return {
        "mode": "complete rebuild into an empty folder",
        "outputs_identical": outputs,
        "files_compared": len(paths),
        "manifest_rows_by_kind": dict(sorted(kinds.items())),
        "files_differ": len(differ),
        "identical": all(outputs.values()) and not differ,
        "examples_differing": differ[:10],
    }


def subset(a: argparse.Namespace, corpus: Path, out: Path) -> dict:
    sources = a.source or DEFAULT_SOURCES
    cmd = [sys.executable, "-m", "aivsreal", "data", "build", a.catalog, "--mirrors", a.mirrors]
    cmd += ["--out", str(out), "--weights-dir", a.weights_dir, "--no-shortcut-check", "-q"]
    for s in sources:
        cmd += ["--source", s]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    took = time.monotonic() - t0
    fresh = rows_by_path(out / "manifest.csv")
    full = rows_by_path(corpus / "manifest.csv")
    origs = {r["orig_sha256"] for r in fresh.values()}
    full_here = {p: r for p, r in full.items() if r["orig_sha256"] in origs}  # fakes included
    both = sorted(set(fresh) & set(full_here))
    differ = compare_files(corpus, out, both)

    def linked_outside(p: str) -> bool:  # a near-duplicate link to a group of a source outside the subset
        g = full[p]["group"].split(":")
        return (g[1] if g[0] == "local" else g[0]) not in sources

    fields = [p for p in both if any(fresh[p][k] != full[p][k] for k in FIELDS)]
    linked = [p for p in fields if linked_outside(p)]
    kinds: dict[str, int] = {}
    for p in both:
        kinds[full[p]["kind"]] = kinds.get(full[p]["kind"], 0) + 1
    bad = sorted(set(differ) | (set(fields) - set(linked)))
    return {
        "mode": "subset rebuilt from scratch",
        "sources": sources,
        "rebuild_seconds": round(took, 1),
        "files_in_rebuild": len(fresh),
        "files_in_full_build_for_these_originals": len(full_here),
        "compared": len(both),
        "compared_by_kind": dict(sorted(kinds.items())),
        "bytes_differ": len(differ),
        "manifest_fields_differ": len(fields) - len(linked),
        "group_linked_outside_subset": len(linked),
        "identical": not bad and bool(both),
        "examples_differing": bad[:10],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("catalog")
    ap.add_argument("--corpus", default="~/.cache/aivsreal/corpus", help="the finished full build")
    ap.add_argument("--rebuilt", help="a second complete build to compare with, instead of a subset")
    ap.add_argument("--mirrors", default="/work/.mirror")
    ap.add_argument("--weights-dir", default="../shared/weights/autoencoders")
    ap.add_argument("--source", action="append", help="source to rebuild (repeatable)")
    ap.add_argument("--out", help="write the summary JSON here")
    a = ap.parse_args()
    corpus = Path(os.path.expanduser(a.corpus))
    if a.rebuilt:
        summary = whole(corpus, Path(os.path.expanduser(a.rebuilt)))
    else:
        with tempfile.TemporaryDirectory(prefix="rebuild-") as tmp:
            summary = subset(a, corpus, Path(tmp) / "corpus")
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    if a.out:
        tmp_out = Path(a.out + ".tmp")
        tmp_out.write_text(text, encoding="utf-8")
        os.replace(tmp_out, a.out)
    print(text, end="")
    return 0 if summary["identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
