"""Export a trained run as the shipped default model and measure what goes into its card.

    python scripts/ship_default.py runs/default [--data ../shared/data/dev]
    python scripts/ship_default.py --int8-only [--data ../shared/data/dev]
    python scripts/ship_default.py --fp16-weights-only   # store the shipped NAME.onnx's weights as float16
    python scripts/ship_default.py RUN --model-id aivsreal-default-v2 --name default-v2 [--data ...] \
        [--int8-rule first28] [--input-size 320]

Writes src/aivsreal/models_dist/NAME.onnx and NAME.int8.onnx (NAME ``default`` for v1), embeds the card (with the dev-test
metrics measured here) in both, writes their sidecar cards (sha256) and default.metrics.json (the full
evaluation: tiers, per source, calibration, int8 agreement) that MODEL_CARD.md quotes. ``--int8-only``
re-quantises the shipped default.onnx with the current int8 recipe (no training run needed) and
re-measures only the int8 file. Then run ``scripts/int8_isa_spread.py`` on the int8 file: it records the
CPU and the spread across ONNX Runtime's int8 kernel paths in the card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aivsreal.evaluate import evaluate, public
from aivsreal.export import (
    _finish,
    _ort_logits,
    _sample_inputs,
    export_model,
    finish_fp16_weights,
    int8_exclusions,
    quantize_int8,
    replace_card,
)
from aivsreal.fsutil import atomic_write_text
from aivsreal.metrics import ece, sigmoid
from aivsreal.runtime import Detector

DIST = Path(__file__).resolve().parents[1] / "src" / "aivsreal" / "models_dist"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="training run to export (not with --int8-only)")
    ap.add_argument("--data", default="../shared/data/dev")
    ap.add_argument("--int8-only", action="store_true", help="re-quantise the shipped NAME.onnx only")
    ap.add_argument("--model-id", default="aivsreal-default-v1", help="the card's model_id (registry name)")
    ap.add_argument("--name", default="default", help="file stem in models_dist")
    ap.add_argument("--int8-rule", default="none", help="layers kept in fp32 (scripts/int8_search.py)")
    ap.add_argument("--input-size", type=int, help="export at this input size (export --input-size)")
    ap.add_argument(
        "--fp16-weights-only",
        action="store_true",
        help="store the shipped NAME.onnx's weights as float16 (half the file) and re-measure it; int8 untouched",
    )
    a = ap.parse_args()
    if bool(a.run) == (a.int8_only or a.fp16_weights_only) or (a.int8_only and a.fp16_weights_only):
        ap.error("give a training run, or one of --int8-only, --fp16-weights-only")
    DIST.mkdir(parents=True, exist_ok=True)
    fp32, int8 = DIST / f"{a.name}.onnx", DIST / f"{a.name}.int8.onnx"
    metrics_file = DIST / f"{a.name}.metrics.json"
    if a.fp16_weights_only:
        out = json.loads(metrics_file.read_text())
        card = Detector.load(fp32).card
        x, _ = _sample_inputs(card, a.data, 128)
        out["export"]["fp16_weights"] = finish_fp16_weights(fp32, card, x, _ort_logits(fp32, x))
        out["export"]["bytes"] = fp32.stat().st_size
    elif a.int8_only:
        out: dict = json.loads(metrics_file.read_text())
        card = Detector.load(fp32).card
        x, _ = _sample_inputs(
            card, a.data, 128
        )  # the calibration pool export_model draws (train split, seed 0)
        quantize_int8(fp32, int8, x, exclude=int8_exclusions(fp32, a.int8_rule))
        _finish(card, int8)
        out["export"]["int8"] = {  # the calibration-pool checks of export_model need the checkpoint
            "onnx": str(int8.name),
            "bytes": int8.stat().st_size,
            "size_ratio": int8.stat().st_size / fp32.stat().st_size,
            "note": f"re-quantised from {fp32.name} by ship_default.py --int8-only; see int8_vs_fp32",
        }
    else:
        out = {
            "export": export_model(
                a.run,
                DIST,
                int8=True,
                name=a.name,
                n_check=32,
                n_calib=128,
                int8_rule=a.int8_rule,
                fp16_weights=True,
                input_size=a.input_size,
            )
        }
    for name, path in (("fp32", fp32), ("int8", int8)):
        det = Detector.load(path)
        res = evaluate(None, a.data, split="test", detector=det)
        p = np.clip(res["_scores"], 1e-12, 1 - 1e-12)
        logits = np.log(p) - np.log1p(-p)  # back to calibrated logits
        raw = logits * det.card.temperature
        out[name] = public(res)
        out[name]["ece_uncalibrated"] = ece(res["_y"], sigmoid(raw))
        out[name]["_scores"] = res["_scores"].tolist()
    y32, y8 = np.array(out["fp32"]["_scores"]), np.array(out["int8"]["_scores"])
    thr = Detector.load(fp32).card.threshold
    out["int8_vs_fp32"] = {
        "decision_agreement_test": float(np.mean((y32 >= thr) == (y8 >= thr))),
        "roc_auc_drop_points": 100 * (out["fp32"]["roc_auc"] - out["int8"]["roc_auc"]),
        "size_ratio": int8.stat().st_size / fp32.stat().st_size,
        # against the float32 file: what the ≤ 30 % target means (the fp32 file stores float16 weights)
        "size_ratio_to_float32": int8.stat().st_size
        / out["export"].get("fp16_weights", {}).get("float32_bytes", fp32.stat().st_size),
    }
    for k in ("fp32", "int8"):
        out[k].pop("_scores")
    for path, key in ((fp32, "fp32"), (int8, "int8")):
        if (a.int8_only and key == "fp32") or (a.fp16_weights_only and key == "int8"):
            continue  # the file not re-made and its card stay byte-identical
        card = Detector.load(path).card
        card.model_id = a.model_id + ("-int8" if key == "int8" else "")
        r = out[key]
        card.metrics["dev_test"] = {
            t: {
                k: r["tiers"][t][k]
                for k in ("balanced_accuracy", "roc_auc", "accuracy", "specificity", "recall", "ece")
            }
            for t in r["tiers"]
        }
        card.metrics["dev_test"]["ece_uncalibrated"] = r["ece_uncalibrated"]
        if a.model_id == "aivsreal-default-v1":
            card.training["data"] = "../shared/data/dev (see MODEL_CARD.md)"
        replace_card(path, card)
    atomic_write_text(metrics_file, json.dumps(out, indent=2, default=float))
    print(json.dumps({k: out[k] for k in ("export", "int8_vs_fp32")}, indent=2, default=float))
    for t, m in out["fp32"]["tiers"].items():
        print(
            f"{t:6} bal.acc {m['balanced_accuracy']:.4f}  AUC {m['roc_auc']:.4f}  "
            f"spec {m['specificity']:.4f}  recall {m['recall']:.4f}  ECE {m['ece']:.4f}"
        )


if __name__ == "__main__":
    main()
