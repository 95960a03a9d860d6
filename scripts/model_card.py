"""Render MODEL_CARD.md from the measured files, so every number in it comes from a command.

    python scripts/model_card.py [--recipes docs/recipes.json]

Inputs: src/aivsreal/models_dist/default.metrics.json (scripts/ship_default.py), the cards beside the
shipped ONNX files, and the recipe/leave-one-family-out results (scripts/recipes.py, copied to docs/).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aivsreal.card import ModelCard
from aivsreal.fsutil import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "src" / "aivsreal" / "models_dist"


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def tta_section(card: ModelCard) -> list[str]:
    """How --tta was validated (scripts/tta_check.py → default.tta.json); empty when not measured."""
    f = DIST / "default.tta.json"
    if not f.is_file():
        return []
    t = json.loads(f.read_text())
    a, b, d = t["plain"], t["tta"], t["abs_score_change"]
    return [
        "## Test-time augmentation (`--tta`)",
        "",
        "`--tta` averages the logits of the centre view, its mirror and, when the image is bigger than the input,",
        f"the four corner crops. Validated on the {t['data']} ({t['n']} images, {t['with_corner_views']} big enough",
        f"for corner views) at the same threshold ({card.threshold:.2f}), with `python scripts/tta_check.py`:",
        "",
        "| | balanced acc. | ROC-AUC | specificity (real) | recall (AI) | ECE |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {pct(m['balanced_accuracy'])} | {m['roc_auc']:.3f} | {pct(m['specificity'])} | "
            f"{pct(m['recall'])} | {m['ece']:.3f} |"
            for name, m in (("plain", a), ("`--tta`", b))
        ),
        "",
        f"It moves scores by {d['median']:.3f} in the median, {d['p90']:.3f} at the 90th percentile and up to "
        f"{d['max']:.2f}, and flips {t['label_flips']} of {t['n']} labels. It ranks as well (AUC) but the threshold",
        "was chosen on plain scores, so at that threshold it is no better here: use it for steadier scores of big",
        "photos (where the corners differ from the centre; the dev images are at most 256 px, so this was not",
        "measured), not as an accuracy gain.",
        "",
    ]


def int8_section(q: dict, card8: ModelCard) -> list[str]:
    """int8 vs fp32, and the same file measured on each int8 kernel path of ONNX Runtime."""
    drop_ok = "met" if q["roc_auc_drop_points"] <= 0.5 else "not met"
    L = [
        "### int8",
        "",
        "`default.int8.onnx` is static QDQ (Conv/Gemm, per-channel **7-bit** weights, uint8 activations). Against",
        f"fp32 on the dev test split: decisions agree on {pct(q['decision_agreement_test'])} of images (target ≥ 99 %:",
        f"**not met**), ROC-AUC {q['roc_auc_drop_points']:+.2f} points lower (target ≤ 0.5: {drop_ok}), file "
        f"{pct(q.get('size_ratio_to_float32', q['size_ratio']))} of the float32 file (target ≤ 30 %: **not met**).",
        "MobileNetV3's hard-swish and squeeze-excite activations quantise poorly after fine-tuning; use the fp32",
        "model unless size matters more than accuracy (quantisation-aware fine-tuning is the next step).",
        "",
    ]
    isa = card8.metrics.get("int8_isa")
    if not isa:
        return L
    on = isa["measured_on"]
    L += [
        "**Same results on every CPU.** ONNX Runtime picks its x86 int8 kernels by instruction set, and its u8s8",
        "kernels without VNNI (AVX2, AVX-512 core) sum u8×s8 pairs in int16, which saturates for 8-bit weights: the",
        "first int8 file gave dev clean balanced accuracy 0.695 on AVX2 and 0.709 on AVX-512 VNNI (|Δlogit| up to",
        "3.1), so the card's figures failed on some machines. Weights now use 7 bits (ONNX Runtime's advice for",
        "x86), so no pair sum can overflow. Measured with `python scripts/int8_isa_spread.py "
        "src/aivsreal/models_dist/default.int8.onnx`,",
        "which runs `evaluate` natively and under `qemu-x86_64 -cpu MODEL` (older CPUs emulated):",
        "",
        "| int8 kernel path | clean bal. acc. | web | hard | clean AUC | agrees with fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in sorted(isa["paths"].items(), key=lambda kv: kv[0] != on["path"]):
        t = r["tiers"]
        L.append(
            f"| {name} | {t['clean']['balanced_accuracy']:.4f} | {t['web']['balanced_accuracy']:.4f} | "
            f"{t['hard']['balanced_accuracy']:.4f} | {t['clean']['roc_auc']:.4f} | {pct(r['decision_agreement_fp32'])} |"
        )
    worst = max(v for tier in isa["spread"].values() for v in tier.values())
    L += [
        "",
        f"Largest spread over paths of any figure: {worst:.4f}. The card's figures were measured on {on['model']}",
        f"({on['int8_path']}, onnxruntime {on['onnxruntime']}); `tests/test_default_model.py` allows that spread",
        "(at least 0.5 point), checks agreement with fp32 against the lowest measured, and names both CPUs when it fails.",
        "",
    ]
    return L


def lofo_means(res: list[dict]) -> dict[str, tuple[float, float, int]]:
    """Mean (balanced accuracy, AUC held-out vs real, families) of the LOFO runs of each recipe tag."""
    from recipes import LOFO_TAGS, lofo_suffix

    out = {}
    for suffix, tag in LOFO_TAGS.items():
        g = [
            r["clean"] for r in res if r["variant"].startswith("LOFO") and lofo_suffix(r["variant"]) == suffix
        ]
        if g:
            n = len(g)
            out[tag] = (
                sum(c["balanced_accuracy"] for c in g) / n,
                sum(c["auc_heldout_vs_real"] for c in g) / n,
                n,
            )
    return out


def full_budget_section(shipped: dict, path: Path) -> list[str]:
    """The shipped model beside full-budget re-runs of the short-budget winners (docs/full_budget.json)."""
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())
    L = [
        "Full-budget re-runs (the shipped recipe, `configs/default.yaml`, with one change; same seed, same",
        "early stopping; dev test split at each run's own validation-chosen threshold):",
        "",
        "| run | clean bal. acc | clean AUC | clean specificity | web bal. acc | hard bal. acc |",
        "|---|---|---|---|---|---|",
    ]
    t = shipped["tiers"]
    L.append(
        f"| **shipped** (native crop) | {t['clean']['balanced_accuracy']:.3f} | {t['clean']['roc_auc']:.3f} | "
        f"{t['clean']['specificity']:.3f} | {t['web']['balanced_accuracy']:.3f} | {t['hard']['balanced_accuracy']:.3f} |"
    )
    for r in rows:
        L.append(
            f"| {r['variant']} (best epoch {r['best_epoch']}) | {r['clean']['balanced_accuracy']:.3f} | "
            f"{r['clean']['roc_auc']:.3f} | {r['clean']['specificity']:.3f} | {r['web']['balanced_accuracy']:.3f} | "
            f"{r['hard']['balanced_accuracy']:.3f} |"
        )
    return L + [""]


PROTOCOL = ROOT / "docs" / "protocol"
BASELINE = PROTOCOL / "v1-baseline" / "protocol.json"
LEAD = (
    PROTOCOL / "v2e-pairs-rgb-npr-full" / "protocol.json"
)  # the best v2 candidate so far (docs/protocol.md)
UNSEEN = PROTOCOL / "external_unseen_by_v1.json"  # scripts/external_subset.py


def headline(path: Path) -> dict[str, float]:
    """Clean-tier figures of one protocol result that the card's prose quotes."""
    p = json.loads(path.read_text())["parts"]
    ext = p["external"]["tiers"]["clean"]
    return {
        "test_auc": p["test"]["all"]["clean"]["roc_auc"],
        "test_bacc": p["test"]["all"]["clean"]["balanced_accuracy"],
        "pairs_auc": p["pairs"]["tiers"]["clean"]["twin"]["roc_auc"],
        "ext_auc": ext["roc_auc"],
        "ext_bacc": ext["balanced_accuracy"],
    }


def protocol_section(path: Path, originals: Path) -> list[str]:
    """The shipped model under issue #14's protocol (docs/protocol/v1-baseline): data from sources it never saw."""
    if not path.is_file():
        return []
    v1 = headline(path)
    d = json.loads(path.read_text())
    p = d["parts"]
    rows = [
        ("corpus test split, all AI vs all real (patches)", p["test"]["all"]),
        ("aligned pairs: real test patch vs its TAEF2 twin", p["pairs"]["tiers"]["clean"]["twin"]),
        ("aligned pairs, twin saved as JPEG q 90", p["pairs"]["tiers"]["clean"]["twin_jpeg"]),
        ("external check set (whole original files)", p["external"]["tiers"]),
    ]
    L = [
        "## Measured on sources it never saw (issue #14's protocol)",
        "",
        "The dev set above shares its sources between train and test. The protocol of `docs/protocol.md` scores",
        "the model on the project's corpus (`aivsreal data build`; most of its sources were never in v1's training,",
        "its `dev_*` sources are the dev set's own) and",
        "on a declared external check set of whole files from repositories kept out of all training. Command:",
        "`aivsreal protocol score src/aivsreal/models_dist/default.onnx --manifest ~/.cache/aivsreal/corpus/manifest.csv"
        " --weights-dir ../shared/weights/autoencoders` (`docs/protocol/v1-baseline/`; measured on the float32 file,",
        "before its weights were stored as float16, which moved dev ROC-AUC by at most 0.0003). At the card's",
        "threshold:",
        "",
        "| part | n | bal. acc. (clean) | ROC-AUC clean / web / hard | specificity | recall |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        tiers = r if "clean" in r else {"clean": r}
        c = tiers["clean"]
        aucs = " / ".join(f"{tiers[t]['roc_auc']:.3f}" for t in ("clean", "web", "hard") if t in tiers)
        L.append(
            f"| {name} | {c['n']:,} | {c['balanced_accuracy']:.3f} | {aucs} | {c['specificity']:.3f} | "
            f"{c['recall']:.3f} |"
        )
    fam = p["test"]["families"]
    L += [
        "",
        "Per AI family of the corpus test split (ROC-AUC against all real test images, clean): "
        + ", ".join(f"{k} {v['clean']['roc_auc']:.3f}" for k, v in sorted(fam.items()))
        + ".",
    ]
    if originals.is_file():
        o = json.loads(originals.read_text())
        views = o["models"][0]["views"]
        L += [
            "",
            f"Whole corpus test originals ({o['files']:,} files: {o['ai']} AI, {o['real']} real; "
            "`python scripts/test_originals.py --model default --views center,tta,patches`), ROC-AUC by view set: "
            + ", ".join(f"{k} {v['roc_auc']:.3f}" for k, v in views.items())
            + "; balanced accuracy "
            + ", ".join(f"{v['balanced_accuracy']:.3f}" for v in views.values())
            + ".",
        ]
    L += [
        "",
        f"**What this says:** outside its training sources v1 is weak (balanced accuracy {v1['test_bacc']:.2f}–"
        f"{v1['ext_bacc']:.2f}), and it scores a photo and the same photo passed through an autoencoder alike",
        f"(pairs ROC-AUC {v1['pairs_auc']:.2f}): it learned content and source statistics, not generator traces.",
    ]
    if LEAD.is_file():
        lead = headline(LEAD)
        L += [
            f"The best v2 candidate of `docs/protocol.md` ranks the external set better (ROC-AUC {lead['ext_auc']:.3f})",
            f"but at its own threshold catches fewer of its AI files (balanced accuracy {lead['ext_bacc']:.3f}).",
        ]
    if UNSEEN.is_file():
        u = json.loads(UNSEEN.read_text())
        v1u, best = u["v1"]["clean"]["unseen"], u["v2e-320"]["clean"]["unseen"]
        L += [
            f"That comparison flatters v1: {len(u['excluded_sources'])} external sources come from "
            f"{len(u['excluded_repositories'])} repositories whose crops are in v1's training split (the dev set).",
            f"On the {v1u['n_ai']} AI and {v1u['n_real']} real external files that neither model saw "
            "(`scripts/external_subset.py`), v1 reaches",
            f"balanced accuracy {v1u['balanced_accuracy']:.3f} (specificity {v1u['specificity']:.3f}). "
            f"v2e at a 320 px crop reaches {best['balanced_accuracy']:.3f} (specificity {best['specificity']:.3f}).",
            "v1 stays the default for this release: the v2 gain is real but small, and v2's 320 px view would upscale",
            "images smaller than that, which no measurement has looked at yet.",
        ]
    return L + [""]


# The judgement drawn from the tables above; rewrite it when the measurements change.
DECISION_TEXT = (
    "Resize won the short-budget pooled split but only tied on unseen families; re-run at the full budget it tied "
    "the shipped native-crop model on the pooled test split and missed the 97 % specificity target (table above). "
    "Native crops stay the default: they also keep a full-size photo's pixels unresampled, which the dev set "
    "(images of at most 256 px) cannot test. EfficientNet-Lite0 ranks unseen families best (AUC held-out vs real "
    "ahead on gan, sd1 and sd2_sdxl, level on commercial) at the same balanced accuracy at the strict threshold, "
    "for about 3× the compute and file size of MobileNetV3-Small: it is the candidate for the next default, once "
    "a full-budget run confirms it (`--model tf_efficientnet_lite0` with configs/default.yaml); that run was not "
    "done here."
)


def decision(res: list[dict]) -> list[str]:
    """The recipe decision, stated from the LOFO means (the rule: prefer what wins on unseen generators)."""
    means = lofo_means(res)
    if not means:
        return []
    parts = "; ".join(f"{tag}: {b:.3f} / {u:.3f}" for tag, (b, u, _) in means.items())
    return [
        f"**Decision.** Mean over held-out families (balanced accuracy / AUC held-out vs real): {parts}. "
        + DECISION_TEXT,
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default=str(ROOT / "docs" / "recipes.json"))
    ap.add_argument("--full-budget", default=str(ROOT / "docs" / "full_budget.json"))
    a = ap.parse_args()
    m = json.loads((DIST / "default.metrics.json").read_text())
    card = ModelCard.read(DIST / "default.onnx.card.json")
    card8 = ModelCard.read(DIST / "default.int8.onnx.card.json")
    f = m["fp32"]
    cfg = card.training.get("config", {})
    v1 = headline(BASELINE)
    L: list[str] = []
    L += [
        "# Model card: aivsreal default detector (`aivsreal-default-v1`)",
        "",
        "A small AI-generated-vs-real image classifier: ImageNet MobileNetV3-Small fine-tuned on a 2,508-image",
        "development set. **It is a research baseline, not a verdict machine.** It separates the classes well by",
        "ranking (ROC-AUC ≈ 0.90 on the dev test split) but, at a threshold that rarely flags real photos, it misses",
        f"about half of the AI images, and on sources it never saw it is weak (ROC-AUC {v1['test_auc']:.2f} on the corpus",
        f"test split, {v1['ext_auc']:.2f} on the external check set, {v1['pairs_auc']:.2f} for a photo against its",
        "autoencoder twin; see the section",
        '"Measured on sources it never saw").',
        "",
        "## Headline (dev test split, 369 images, default threshold)",
        "",
        "| tier | balanced acc. | ROC-AUC | specificity (real) | recall (AI) | ECE | target |",
        "|---|---|---|---|---|---|---|",
    ]
    targets = {"clean": "bal. acc ≥ 95 %, AUC ≥ 0.98", "web": "bal. acc ≥ 92 %", "hard": "bal. acc ≥ 88 %"}
    for t, r in f["tiers"].items():
        L.append(
            f"| {t} | {pct(r['balanced_accuracy'])} | {r['roc_auc']:.3f} | {pct(r['specificity'])} | "
            f"{pct(r['recall'])} | {r['ece']:.3f} | {targets[t]} — **not met** |"
        )
    L += [
        "",
        f"Default threshold **{card.threshold:.3f}** on the calibrated score, chosen on the validation split so that at",
        f"most 3 % of real photos are flagged (test specificity {pct(f['tiers']['clean']['specificity'])}: the ≥ 97 %",
        "target is met). At that threshold recall is low; lower thresholds trade false alarms for recall",
        f"(`--threshold`). Scores within ±{card.uncertain_band} of the threshold are marked `uncertain`.",
        f"Calibration: temperature {card.temperature:.3f} fitted on validation; test ECE "
        f"{f['ece_uncalibrated']:.3f} before → {f['ece']:.3f} after (temperature scaling barely helps here: the",
        "validation split is small and the error is mostly the low recall, not over-confidence).",
        "",
        "Reproduce: `AIVSREAL_WEIGHTS_DIR=../shared/weights aivsreal train --config configs/default.yaml` then",
        "`python scripts/ship_default.py runs/default` (export, int8, evaluation) and",
        "`aivsreal evaluate --model src/aivsreal/models_dist/default.onnx --data ../shared/data/dev --json`",
        "(the `shared` test `tests/test_default_model.py` checks the last one against this card within 0.5 point).",
        "",
        *tta_section(card),
        "## What it is",
        "",
        f"- Backbone `{card.backbone}` (timm; Google's MobileNetV3-Small 8-bit QAT checkpoint, dequantised — see",
        "  `../shared/weights/README.md`), one-logit linear head, 1.5 M parameters.",
        f"- Preprocessing: `{card.preprocess.policy}` — the centre {card.preprocess.size}×{card.preprocess.size} pixels "
        "at native resolution",
        "  (no resampling, so generator traces survive; smaller images are upscaled), mean/std 0.5 (inputs in [-1, 1]).",
        f"- Training: {cfg.get('epochs_head')} epoch head-only, then up to {cfg.get('epochs')} epochs of the whole",
        "  backbone (AdamW 3e-4, BatchNorm in eval mode because the weights carry folded statistics), notebook",
        "  augmentation plus JPEG re-encoding (q 30–95), down-scaling and blur on both classes; best epoch by",
        f"  validation ROC-AUC (epoch {card.training.get('epoch')}). About 70 s per epoch on 2 idle CPU cores",
        "  (up to 4 min when the cores were shared).",
        "- Reproducible: a second `aivsreal train --config configs/default.yaml` gave a **byte-identical** best",
        "  checkpoint (`model.safetensors` sha256 `5f344adc514f…`; identical validation metrics in every epoch it ran, 1–6), so the",
        "  dev metrics reproduce exactly, well inside the 1-point requirement.",
        "- Files (`src/aivsreal/models_dist/`):",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
        f"| `default.onnx` (fp32 compute, weights stored as float16, opset 17) | {(DIST / 'default.onnx').stat().st_size:,} | `{card.weights_sha256}` |",
        f"| `default.int8.onnx` (static QDQ) | {(DIST / 'default.int8.onnx').stat().st_size:,} | "
        f"`{card8.weights_sha256}` |",
        "",
    ]
    q = m["int8_vs_fp32"]
    L += int8_section(q, card8)
    L += [
        "## Per source (dev test split, clean tier)",
        "",
        "| source | class | n | accuracy | AUC vs other class | hard-tier acc. |",
        "|---|---|---|---|---|---|",
    ]
    for src, r in f["per_source"]["clean"].items():
        h = f["per_source"]["hard"][src]
        L.append(
            f"| {src} | {r['label']} | {r['n']} | {r['accuracy']:.2f} | {r['auc_vs_other_class']:.3f} | "
            f"{h['accuracy']:.2f} |"
        )
    recipes_path = Path(a.recipes)
    if recipes_path.is_file():
        from recipes import to_markdown  # scripts/recipes.py

        res = json.loads(recipes_path.read_text())
        L += [
            "",
            "## Recipe comparisons and unseen generators",
            "",
            "Short, equal budgets (1 head epoch + 2 fine-tuning epochs each, seed 0) from `python scripts/recipes.py`;",
            "each row changes one thing from the baseline; scored on the dev test split at each run's own",
            "validation-chosen threshold. One seed on a small set: differences of a few points are noise.",
            "`train s` is wall time on a machine shared with other jobs: not comparable across rows.",
            "Leave-one-family-out (LOFO) rows drop a whole generator family from train and validation and score",
            "that family's test images against all real test images.",
            "",
            to_markdown(res),
        ]
        L += full_budget_section(f, Path(a.full_budget))
        L += decision(res)
        names = {r["variant"] for r in res}
        missing = [n for n in __import__("recipes").VARIANTS if n not in names]
        if missing:
            L += [
                "Not run in the time available (same script, `--only NAME`): " + ", ".join(missing) + ".",
                "",
            ]
    L += protocol_section(BASELINE, BASELINE.with_name("test_originals.json"))
    L += [
        "",
        "## Intended use",
        "",
        "- A first signal for triage in moderation or research pipelines, next to provenance evidence",
        "  (`aivsreal inspect`, `predict --provenance`), with a person deciding. Not for accusing anyone of",
        "  faking an image, not for legal or journalistic verification on its own.",
        "",
        "## Limitations (measured above, and what would close them)",
        "",
        "- **Small, mixed training data** (1,773 training images; several generators have 1–4 originals). More",
        "  images per generator, and many more generators, is the first fix.",
        "- **Unseen generators**: see the LOFO rows; GAN faces and commercial services are the weak spots.",
        "  Newer generators (Flux, Midjourney v6+, Imagen, Sora frames) were never seen.",
        "- **Content shortcuts in the data**: faces are mostly real, anime/illustration and text-heavy posters are",
        "  only AI. The per-source table shows where the model leans on content.",
        "- **Sources it never saw**: on the corpus and the external check set (section above) it is near chance on",
        f"  aligned fakes and reaches balanced accuracy {v1['ext_bacc']:.2f} on whole external files: do not trust a",
        "  single score.",
        "- **Post-processing**: JPEG re-encoding and down-scaling are in training and the web/hard tiers; heavy",
        "  filters, screenshots, printing-and-scanning, and crops smaller than 224 px were not tested.",
        "- **Big photos**: the model sees only the centre 224×224 pixels at native resolution; `--tta` adds the",
        "  mirror and the four corners (see above: not an accuracy gain on the dev set).",
        "- **Targets not met**: every accuracy target of the issue (95/92/88 %, AUC 0.98, LOFO ≥ 85 %) and two int8",
        "  targets (agreement, size). A larger backbone at native resolution, longer training, and multi-crop training would be the",
        "  next experiments.",
        "",
        "## Licences",
        "",
        "- Code: Apache-2.0. Backbone weights: Apache-2.0 (Google tensorflow/models MobileNetV3).",
        "- Training data: `../shared/data/dev` mixes licences and many are **research-only** (ImageNet, BSDS, AFHQ",
        "  CC BY-NC, StyleGAN outputs under NVIDIA's non-commercial licence, Stable Diffusion outputs under",
        "  CreativeML OpenRAIL-M, …; its `SOURCES.md` lists each). A model trained on it inherits those terms:",
        "  treat the shipped weights as **non-commercial research use** unless retrained on data you may use.",
        "",
    ]
    atomic_write_text(ROOT / "MODEL_CARD.md", "\n".join(L))
    print(f"wrote {ROOT / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
