"""Run the recipe comparisons and leave-one-family-out tests behind MODEL_CARD.md's tables.

    AIVSREAL_WEIGHTS_DIR=../shared/weights python scripts/recipes.py [--only NAME ...] [--out runs/recipes]

Every variant starts from configs/default.yaml, changes one thing, trains a short budget (1 head epoch +
``--epochs`` fine-tuning epochs, the same for all) and is scored on the dev test split (clean/web/hard).
Leave-one-family-out variants drop a generator family from train and val and are scored on that
family's test images against all real test images. Results go to OUT/results.json (one entry per
variant, rewritten atomically after each run) and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from aivsreal.data import load_dataset
from aivsreal.evaluate import evaluate
from aivsreal.fsutil import atomic_write_text
from aivsreal.train import TrainConfig, train

FAMILIES = {
    "gan": [
        "stylegan2ada_ffhq1024_agegan",
        "stylegan2ada_ffhq1024_kenton0607",
        "stylegan_katatech_out",
        "grip_gan_examples",
    ],
    "sd1": [
        "sd1x_compvis_bento170502",
        "sd1x_compvis_edmundhong",
        "sd1x_compvis_extile1",
        "sd1x_compvis_misc_forks",
        "imaginairy_sd14",
        "imaginairy_sd15",
        "comfyui_sd15_anime_finetunes",
        "compvis_sd_v1_readme_samples",
        "imaginairy_openjourney",
        "sd_photoreal_lucataco_cog",
    ],
    "sd2_sdxl": [
        "imaginairy_sd20",
        "imaginairy_sd21",
        "imaginairy_sdxl_opendalle",
        "sdxl_comfyui_hitthecodelabs",
        "comfyui_sdxl_family",
    ],
    "commercial": [
        "gpt4o_awesome_gpt4o_images",
        "nanobanana_picotrex_gallery",
        "dalle2_openai_system_card",
        "kandinsky3_repo_examples",
        "hunyuanimage3_repo_examples",
    ],
}

VARIANTS: dict[str, dict] = {
    "baseline (Small, native crop 224, forensic aug, ImageNet)": {},
    "resize instead of native crop": {"policy": "resize"},
    "no forensic augmentation": {"augment": {"forensic": False, "geometric": True}},
    "random init": {"pretrained": "none"},
    "Large-minimalistic": {"model": "tf_mobilenetv3_large_minimal_100"},
    "EfficientNet-Lite0": {"model": "tf_efficientnet_lite0"},
    "input 256": {"size": 256},
}
VARIANTS.update({f"LOFO {fam}": {"exclude_sources": srcs} for fam, srcs in FAMILIES.items()})
# the pooled winner must also win on unseen families before it becomes the default
VARIANTS.update(
    {f"LOFO {fam} (resize)": {"exclude_sources": srcs, "policy": "resize"} for fam, srcs in FAMILIES.items()}
)
# the best pooled AUC (EfficientNet-Lite0) must also be checked on unseen families
VARIANTS.update(
    {
        f"LOFO {fam} (Lite0)": {"exclude_sources": srcs, "model": "tf_efficientnet_lite0"}
        for fam, srcs in FAMILIES.items()
    }
)
LOFO_TAGS = {"": "native crop, Small", " (resize)": "resize, Small", " (Lite0)": "native crop, Lite0"}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")[:40]


def run_variant(name: str, overrides: dict, base: dict, out: Path, epochs: int) -> dict:
    cfg_d = dict(base, **overrides, out=str(out / slug(name)), epochs_head=1, epochs=epochs, patience=99)
    cfg = TrainConfig(**cfg_d)
    t0 = time.time()
    ckpt = train(cfg, resume=(Path(cfg.out) / "state.json").is_file(), progress=False)
    train_s = time.time() - t0
    res = evaluate(ckpt.parent, cfg.data, split="test", tiers=("clean", "web", "hard"))
    entry = {
        "variant": name,
        "overrides": overrides,
        "train_seconds": round(train_s, 1),
        "threshold": res["threshold"],
    }
    if "exclude_sources" in overrides:
        held = set(overrides["exclude_sources"])
        ds = load_dataset(cfg.data)
        test = ds.split("test")
        # held-out AI sources against all real test images, from the per-source tables
        for tier in ("clean", "web", "hard"):
            ps = res["per_source"][tier]
            held_rows = {k: v for k, v in ps.items() if k in held}
            recall = float(
                np.average(
                    [v["accuracy"] for v in held_rows.values()], weights=[v["n"] for v in held_rows.values()]
                )
            )
            real_rows = {k: v for k, v in ps.items() if v["label"] == "real"}
            spec = float(
                np.average(
                    [v["accuracy"] for v in real_rows.values()], weights=[v["n"] for v in real_rows.values()]
                )
            )
            auc = float(
                np.average(
                    [v["auc_vs_other_class"] for v in held_rows.values()],
                    weights=[v["n"] for v in held_rows.values()],
                )
            )
            entry[tier] = {
                "recall_heldout": recall,
                "specificity": spec,
                "balanced_accuracy": (recall + spec) / 2,
                "auc_heldout_vs_real": auc,
            }
        entry["heldout_test_images"] = sum(1 for s in test if s.source in held)
    else:
        for tier in ("clean", "web", "hard"):
            m = res["tiers"][tier]
            entry[tier] = {k: m[k] for k in ("balanced_accuracy", "roc_auc", "specificity", "recall", "ece")}
    return entry


def lofo_suffix(variant: str) -> str:
    """The recipe tag of a LOFO variant name: "", " (resize)" or " (Lite0)"."""
    return next((t for t in LOFO_TAGS if t and variant.endswith(t)), "")


def to_markdown(results: list[dict]) -> str:
    lines = [
        "| variant | clean bal. acc | clean AUC | web bal. acc | hard bal. acc | train s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["variant"].startswith("LOFO"):
            continue
        lines.append(
            f"| {r['variant']} | {r['clean']['balanced_accuracy']:.3f} | {r['clean']['roc_auc']:.3f} | "
            f"{r['web']['balanced_accuracy']:.3f} | {r['hard']['balanced_accuracy']:.3f} | "
            f"{r['train_seconds']:.0f} |"
        )
    lofo = [r for r in results if r["variant"].startswith("LOFO")]
    if lofo:
        lines += [
            "",
            "| held-out family | test images | recall (held-out AI) | specificity (real) | bal. acc | "
            "AUC held-out vs real | hard bal. acc |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in lofo:
            c = r["clean"]
            lines.append(
                f"| {r['variant'][5:]} | {r['heldout_test_images']} | {c['recall_heldout']:.3f} | "
                f"{c['specificity']:.3f} | {c['balanced_accuracy']:.3f} | {c['auc_heldout_vs_real']:.3f} | "
                f"{r['hard']['balanced_accuracy']:.3f} |"
            )
        for suffix, tag in LOFO_TAGS.items():
            group = [r for r in lofo if lofo_suffix(r["variant"]) == suffix]
            if group:
                mean = np.mean([r["clean"]["balanced_accuracy"] for r in group])
                auc = np.mean([r["clean"]["auc_heldout_vs_real"] for r in group])
                lines.append(
                    f"| **mean, {tag}** ({len(group)} families) | | | | **{mean:.3f}** | **{auc:.3f}** | |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--out", default="runs/recipes")
    ap.add_argument(
        "--epochs", type=int, default=2, help="fine-tuning epochs per variant (after 1 head epoch)"
    )
    ap.add_argument("--only", nargs="*", help="variant names (substring match)")
    a = ap.parse_args()
    base = yaml.safe_load(open(a.config))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else []
    done = {r["variant"] for r in results}
    for name, ov in VARIANTS.items():
        if name in done or (a.only and not any(o.lower() in name.lower() for o in a.only)):
            continue
        print(f"== {name}", flush=True)
        results.append(run_variant(name, ov, base, out, a.epochs))
        atomic_write_text(res_path, json.dumps(results, indent=2))
        atomic_write_text(out / "results.md", to_markdown(results))
        print(to_markdown(results), flush=True)


if __name__ == "__main__":
    main()
