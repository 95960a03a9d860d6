"""Merge curators' catalog fragments and the dev set into one catalog (catalog/sources.yaml).

Usage: python scripts/merge_catalog.py OUT.yaml [--mirrors DIR] [--dev DIR] FRAGMENT.yaml ...

When OUT exists with the same build settings, its text before ``sources:`` (header, build and the
hand-curated generators table, comments included) is kept verbatim; only the sources list is rewritten,
atomically. Each fragment entry is validated on its own (the catalog schema); entries that fail, that repeat a
name, whose GitHub snapshot or commit is missing under --mirrors, or whose repository is reserved are
dropped and listed on stderr. The dev set (``shared/data/dev``) becomes one ``local`` source per dev
source, keeping its fixed split and groups from its manifest.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from aivsreal.corpus.catalog import Source, parse_catalog, validate_entries
from aivsreal.corpus.origins import OriginError, find_git_dir
from aivsreal.fsutil import atomic_write_text

# dev source → (family, released, canonical generator name or None to keep the dev one)
DEV_AI = {
    "comfyui_auraflow": ("dit_flow", 2024, "AuraFlow"),
    "comfyui_cosmos_predict2": ("dit_flow", 2025, "NVIDIA Cosmos-Predict2 2B"),
    "comfyui_hidream_i1": ("dit_flow", 2025, "HiDream-I1"),
    "comfyui_hunyuan_dit": ("dit_flow", 2024, "Hunyuan-DiT 1.2"),
    "comfyui_lumina2": ("dit_flow", 2025, "Lumina-Image 2.0"),
    "comfyui_qwen_image": ("dit_flow", 2025, "Qwen-Image"),
    "comfyui_sd15_anime_finetunes": ("sd1", 2022, "SD1.x anime fine-tunes"),
    "comfyui_sd35_large": ("dit_flow", 2024, "Stable Diffusion 3.5 Large"),
    "comfyui_sd3_medium": ("dit_flow", 2024, "Stable Diffusion 3 Medium"),
    "comfyui_sdxl_family": ("sd2_sdxl", 2023, "Stable Diffusion XL 1.0"),
    "comfyui_stable_cascade": ("other_diffusion", 2024, "Stable Cascade"),
    "comfyui_z_image_turbo": ("dit_flow", 2025, "Z-Image-Turbo"),
    "compvis_sd_v1_readme_samples": ("sd1", 2022, "Stable Diffusion v1.x"),
    "dalle2_openai_system_card": ("commercial", 2022, "DALL-E 2"),
    "gpt4o_awesome_gpt4o_images": ("autoregressive", 2025, "GPT-4o image"),
    "grip_gan_examples": ("gan", 2018, "mixed GANs (BigGAN, CycleGAN, pix2pix, ProGAN, StyleGAN)"),
    "hunyuanimage3_repo_examples": ("autoregressive", 2025, "HunyuanImage 3.0"),
    "imaginairy_openjourney": ("sd1", 2022, "Openjourney"),
    "imaginairy_sd14": ("sd1", 2022, "Stable Diffusion v1.4"),
    "imaginairy_sd15": ("sd1", 2022, "Stable Diffusion v1.5"),
    "imaginairy_sd20": ("sd2_sdxl", 2022, "Stable Diffusion 2.0"),
    "imaginairy_sd21": ("sd2_sdxl", 2022, "Stable Diffusion 2.1"),
    "imaginairy_sdxl_opendalle": ("sd2_sdxl", 2023, "OpenDalle v1.1 (SDXL fine-tune)"),
    "kandinsky3_repo_examples": ("other_diffusion", 2023, "Kandinsky 3"),
    "nanobanana_picotrex_gallery": ("commercial", 2025, "Gemini 2.5 Flash Image (Nano Banana)"),
    "sd1x_compvis_bento170502": ("sd1", 2022, "Stable Diffusion v1.x"),
    "sd1x_compvis_edmundhong": ("sd1", 2022, "Stable Diffusion v1.x"),
    "sd1x_compvis_extile1": ("sd1", 2022, "Stable Diffusion v1.x"),
    "sd1x_compvis_misc_forks": ("sd1", 2022, "Stable Diffusion v1.x"),
    "sd_photoreal_lucataco_cog": ("sd2_sdxl", 2023, "SD photoreal checkpoints (Realistic Vision, RealVisXL)"),
    "sdxl_comfyui_hitthecodelabs": ("sd2_sdxl", 2023, "Stable Diffusion XL 1.0"),
    "stylegan2ada_ffhq1024_agegan": ("gan", 2020, "StyleGAN2-ADA"),
    "stylegan2ada_ffhq1024_kenton0607": ("gan", 2020, "StyleGAN2-ADA"),
    "stylegan_katatech_out": ("gan", 2021, "StyleGAN2/StyleGAN3"),
}
DEV_REAL_FAMILY = {"faces": "faces", "objects": "web", "scenes": "web", "mixed": "benchmark"}
DEV_REAL_BENCH = {
    "github_kodak24",
    "github_sr_bsd100",
    "github_sr_set5_set14",
    "github_sr_urban100",
    "pypi_skimage_data",
}


def dev_sources(dev: Path, rel: str) -> list[dict]:
    """One local source per dev-set source, with family/licence from SOURCES.md and the manifest."""
    rows = list(csv.DictReader(open(dev / "manifest.csv", newline="", encoding="utf-8")))
    counts = Counter(r["source"] for r in rows)
    meta = {}
    for line in (dev / "SOURCES.md").read_text(encoding="utf-8").splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5:
            meta[cells[1]] = {
                "label": cells[0],
                "what": cells[2],
                "origin": cells[3].strip("`"),
                "licence": cells[4],
            }
    out = []
    for name in sorted(counts):
        m = meta.get(name, {})
        label = next(r["label"] for r in rows if r["source"] == name)
        gen_dev = next(r["generator"] for r in rows if r["source"] == name)
        src: dict = {"name": f"dev_{name}", "label": label, "licence": m.get("licence", "unknown")[:200]}
        if label == "ai":
            fam, year, gen = DEV_AI.get(name, ("other_diffusion", None, None))
            src |= {"generator": gen or gen_dev, "family": fam, "released": year}
        else:
            fam = "benchmark" if name in DEV_REAL_BENCH else DEV_REAL_FAMILY.get(gen_dev, "web")
            src |= {"generator": gen_dev, "family": fam, "camera": False}
        src["origin"] = {
            "kind": "local",
            "path": rel,
            "manifest": "manifest.csv",
            "include": [f"*/{label}/{name}/*"],
        }
        repo = re.search(r"github:([^@`]+)@", m.get("origin", ""))
        src["origin_repo"] = repo.group(1) if repo else None
        src["files"] = counts[name]
        src["evidence"] = (
            f"dev set source {name}: {m.get('what', '')[:160]}; from {m.get('origin', '')[:200]}"
        )
        out.append(src)
    return out


def check_github(src: Source, mirrors: Path, reserved: set[str]) -> str | None:
    """Why a GitHub source cannot be used (no snapshot, commit absent, reserved), or None."""
    o = src.origin
    if o.kind != "github":
        return None
    if hashlib.sha256(o.repo.lower().encode()).hexdigest() in reserved:
        return f"github:{o.repo} is a reserved repository"
    try:
        g = find_git_dir(mirrors, o.repo)
    except OriginError as e:
        return str(e)
    r = subprocess.run(
        ["git", f"--git-dir={g}", "cat-file", "-e", f"{o.commit}^{{commit}}"], capture_output=True
    )
    return None if r.returncode == 0 else f"commit {o.commit} not in {g}"


def dump_yaml(doc: dict) -> str:
    """The catalog's YAML style: keys in order, unicode kept, lines wrapped at 110."""
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110)


def curated_head(out: Path, build: dict) -> str | None:
    """The existing catalog's text before ``sources:`` (header, build, curated generators table), or None.

    Kept verbatim so a merge rewrites only the sources list: the generators table is written by hand, with
    comments. None when there is no catalog yet or its build settings differ from the ones asked for.
    """
    if not out.is_file():
        return None
    text = out.read_text(encoding="utf-8")
    at = text.find("\nsources:")
    if at < 0:
        return None
    head = text[: at + 1]
    if (yaml.safe_load(head) or {}).get("build") != build:
        return None
    return head


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("fragments", nargs="*")
    ap.add_argument("--mirrors", default="/work/.mirror")
    ap.add_argument("--dev", default=None, help="dev set folder to add as local sources")
    ap.add_argument(
        "--dev-rel", default="../../shared/data/dev", help="dev path as written (from the catalog's folder)"
    )
    ap.add_argument("--reserved", default="/work/shared/data/reserved_repos_sha256.txt")
    ap.add_argument("--external", default=None, help="YAML of repositories whose sources get role: external")
    ap.add_argument("--max-patches", type=int, default=8, help="patches per original (build setting)")
    ap.add_argument("--aligned-per-original", type=int, default=1, help="TAEF2 twins per real original")
    a = ap.parse_intermixed_args()
    reserved = set()
    if Path(a.reserved).is_file():
        reserved = {ln.split()[0] for ln in Path(a.reserved).read_text().splitlines() if ln.strip()}
    keep: list[dict] = []
    names: set[str] = set()
    dropped: list[str] = []
    entries: list[tuple[str, list]] = []
    if a.dev:
        entries.append(("dev", dev_sources(Path(a.dev), a.dev_rel)))
    for f in a.fragments:
        try:
            doc = yaml.safe_load(Path(f).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            dropped.append(f"{f}: whole fragment unreadable: {e}")
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("sources"), list):
            dropped.append(f"{f}: no 'sources' list")
            continue
        entries.append((f, doc["sources"]))
    external: set[str] = set()
    if a.external and Path(a.external).is_file():
        ext = yaml.safe_load(Path(a.external).read_text(encoding="utf-8")) or {}
        external = {str(r).lower() for k in ("ai", "real") for r in ext.get(k) or []}
    dev_repo = {}
    for where, raw in entries:
        for e in raw:
            if isinstance(e, dict) and "origin_repo" in e:
                dev_repo[e["name"]] = e.pop("origin_repo")
        good, bad = validate_entries(raw, where)
        dropped += bad
        for s in good:
            why = check_github(s, Path(a.mirrors), reserved)
            if s.name in names:
                why = f"duplicate name {s.name!r}"
            if why:
                dropped.append(f"{where}: {s.name}: {why}")
                continue
            names.add(s.name)
            d = s.model_dump(mode="json", exclude_defaults=False)
            repo = s.origin.repo if s.origin.kind == "github" else dev_repo.get(s.name)
            if repo and repo.lower() in external:
                d["role"] = "external"
            keep.append(d)
    for s in keep:  # tidy: kind first in each origin, no empty optional fields
        o = s["origin"]
        s["origin"] = {
            "kind": o["kind"],
            **{k: v for k, v in o.items() if k != "kind" and v not in ([], None)},
        }
        if s.get("released") is None:
            s.pop("released", None)
        if s["label"] == "ai":
            s.pop("camera", None)
    build = {"max_patches": a.max_patches, "aligned_per_original": a.aligned_per_original}
    sources = sorted(keep, key=lambda s: s["name"])
    head = curated_head(Path(a.out), build)
    if head is None:
        head = "# Corpus catalog (issue #13): one entry per source; built by `aivsreal data build`.\n"
        head += "# Merged by scripts/merge_catalog.py from the curators' fragments and the dev set.\n"
        doc = {"version": 1, "build": build}
        if Path(a.out).is_file():  # the generators table is curated in the catalog itself: keep it
            old = yaml.safe_load(Path(a.out).read_text(encoding="utf-8")) or {}
            if old.get("generators"):
                doc["generators"] = old["generators"]
        head += dump_yaml(doc)
    text = head + dump_yaml({"sources": sources})
    parse_catalog(yaml.safe_load(text), a.out)  # the whole catalog must validate
    atomic_write_text(a.out, text)
    for d in dropped:
        print(f"dropped: {d}", file=sys.stderr)
    print(f"{len(keep)} sources written to {a.out}; {len(dropped)} dropped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
