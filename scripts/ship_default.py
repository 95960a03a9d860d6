"""Export a trained run as the shipped default model and measure what goes into its card.

    python scripts/ship_default.py runs/default [--data ../shared/data/dev]

Writes src/aivsreal/models_dist/default.onnx and default.int8.onnx, embeds the card (with the dev-test
metrics measured here) in both, writes their sidecar cards (sha256) and default.metrics.json (the full
evaluation: tiers, per source, calibration, int8 agreement) that MODEL_CARD.md quotes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx

from aivsreal.card import ModelCard, card_path_for
from aivsreal.evaluate import evaluate, public
from aivsreal.export import export_model
from aivsreal.fsutil import atomic_write_bytes, atomic_write_text, sha256_file
from aivsreal.metrics import ece, sigmoid
from aivsreal.onnx_card import set_card
from aivsreal.runtime import Detector

DIST = Path(__file__).resolve().parents[1] / "src" / "aivsreal" / "models_dist"
MODEL_ID = "aivsreal-default-v1"


def rewrite_card(path: Path, card: ModelCard) -> None:
    """Replace the card embedded in an ONNX file, then refresh its sidecar (new sha256)."""
    m = onnx.load(str(path))
    set_card(m, card)
    atomic_write_bytes(path, m.SerializeToString())
    side = ModelCard.from_dict(card.to_dict())
    side.weights_file, side.weights_sha256 = path.name, sha256_file(path)
    side.write(card_path_for(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data", default="../shared/data/dev")
    a = ap.parse_args()
    DIST.mkdir(parents=True, exist_ok=True)
    rep = export_model(a.run, DIST, int8=True, name="default", n_check=32, n_calib=128)
    fp32, int8 = DIST / "default.onnx", DIST / "default.int8.onnx"
    out: dict = {"export": rep}
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
    }
    for k in ("fp32", "int8"):
        out[k].pop("_scores")
    for path, key in ((fp32, "fp32"), (int8, "int8")):
        card = Detector.load(path).card
        card.model_id = MODEL_ID + ("-int8" if key == "int8" else "")
        r = out[key]
        card.metrics["dev_test"] = {
            t: {
                k: r["tiers"][t][k]
                for k in ("balanced_accuracy", "roc_auc", "accuracy", "specificity", "recall", "ece")
            }
            for t in r["tiers"]
        }
        card.metrics["dev_test"]["ece_uncalibrated"] = r["ece_uncalibrated"]
        card.training["data"] = "../shared/data/dev (see MODEL_CARD.md)"
        rewrite_card(path, card)
    atomic_write_text(DIST / "default.metrics.json", json.dumps(out, indent=2, default=float))
    print(json.dumps({k: out[k] for k in ("export", "int8_vs_fp32")}, indent=2, default=float))
    for t, m in out["fp32"]["tiers"].items():
        print(
            f"{t:6} bal.acc {m['balanced_accuracy']:.4f}  AUC {m['roc_auc']:.4f}  "
            f"spec {m['specificity']:.4f}  recall {m['recall']:.4f}  ECE {m['ece']:.4f}"
        )


if __name__ == "__main__":
    main()
