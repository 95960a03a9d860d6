"""External check-set figures without the sources a model was trained on (a leak check for the baseline).

v1 (``aivsreal-default-v1``) was trained on the dev set (``shared/data/dev``), whose train split holds
crops from three repositories that the external set later took whole (GPT-4o images, StyleGAN3 samples,
face photos). Its external figures are therefore not all "never seen". This script finds the external
sources whose repository a collection's train split drew from (the dev set's ``SOURCES.md`` names each
source's origin) and prints, per protocol result, balanced accuracy, specificity and recall at the model's
own threshold on the whole set and on the rest. These come from the per-source accuracies in protocol.json,
so no new look at the external set is taken. ROC-AUC needs per-file scores, which protocol.json does not keep.

  python scripts/external_subset.py v1=docs/protocol/v1-baseline v2e=docs/protocol/v2e-pairs-rgb-npr-full \
      [--trained-on ../shared/data/dev] [--json docs/protocol/external_unseen_by_v1.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import yaml

from aivsreal.fsutil import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
REPO = re.compile(r"github:([^@`\s]+)@")


def external_repos(catalog: Path) -> dict[str, str]:
    """External source name → its GitHub repository (lower case), from the catalog."""
    out = {}
    for s in yaml.safe_load(catalog.read_text(encoding="utf-8"))["sources"]:
        if s.get("role") == "external":
            repo = s["origin"].get("repo") or (REPO.search(s.get("evidence", "")) or [None, ""])[1]
            out[s["name"]] = repo.lower()
    return out


def trained_repos(collection: Path) -> set[str]:
    """Repositories that a dev-style collection's train split drew from (manifest.csv + SOURCES.md)."""
    origin = {}
    for line in (collection / "SOURCES.md").read_text(encoding="utf-8").splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and (m := REPO.search(cells[3])):
            origin[cells[1]] = m.group(1).lower()
    with open(collection / "manifest.csv", newline="", encoding="utf-8") as f:
        train = {r["source"] for r in csv.DictReader(f) if r["split"] == "train"}
    return {origin[s] for s in train if s in origin}


def figures(per_source: dict, keep, tier: str) -> dict[str, float | int]:
    """Balanced accuracy, specificity and recall over the kept sources (file-weighted accuracies)."""
    n, hit = {"ai": 0, "real": 0}, {"ai": 0.0, "real": 0.0}
    for name, v in per_source.items():
        if keep(name):
            n[v["label"]] += v["n"]
            hit[v["label"]] += v["n"] * v[tier]["accuracy"]
    rec, spec = hit["ai"] / n["ai"], hit["real"] / n["real"]
    return {"balanced_accuracy": (rec + spec) / 2, "specificity": spec, "recall": rec, "n_ai": n["ai"],
            "n_real": n["real"]}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="NAME=DIR with DIR/protocol.json")
    ap.add_argument("--trained-on", default=str(ROOT.parent / "shared" / "data" / "dev"))
    ap.add_argument("--catalog", default=str(ROOT / "catalog" / "sources.yaml"))
    ap.add_argument("--json", help="also write the table here")
    a = ap.parse_args()
    repos = external_repos(Path(a.catalog))
    seen_repos = trained_repos(Path(a.trained_on))
    seen = sorted(s for s, r in repos.items() if r in seen_repos)
    out = {"excluded_sources": seen, "excluded_repositories": sorted(seen_repos & set(repos.values()))}
    print(f"external sources whose repository {a.trained_on}'s train split drew from: {', '.join(seen)}\n")
    print(
        "| model | tier | all: bal. acc. / spec. / recall | without those: bal. acc. / spec. / recall (n AI/real) |"
    )
    print("|---|---|---|---|")
    for item in a.results:
        name, _, d = item.partition("=")
        ps = json.loads((Path(d) / "protocol.json").read_text())["parts"]["external"]["per_source"]
        for tier in ("clean", "web"):
            al, un = figures(ps, lambda s: True, tier), figures(ps, lambda s: s not in seen, tier)
            out.setdefault(name, {})[tier] = {"all": al, "unseen": un}
            print(f"| {name} | {tier} | {al['balanced_accuracy']:.3f} / {al['specificity']:.3f} / {al['recall']:.3f} "
                  f"| {un['balanced_accuracy']:.3f} / {un['specificity']:.3f} / {un['recall']:.3f} "
                  f"({un['n_ai']}/{un['n_real']}) |")  # fmt: skip
    if a.json:
        atomic_write_text(a.json, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
