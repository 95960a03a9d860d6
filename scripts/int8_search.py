"""Which layers to keep in fp32 so the int8 model keeps the fp32 decisions ("quantise only what survives").

Quantises an fp32 ONNX model with ``export.quantize_int8`` under several exclusion rules (stem, head,
squeeze-excite, depthwise convolutions, the first N convolutions; alone and combined) and prints, side by
side, each rule's decision agreement with fp32, ROC-AUC drop and file size on a labelled collection's test split. The
calibration pool is the one export uses (train split, seed 0) of ``--calib`` (default: ``--data``), so a
model can be calibrated on the dev set and judged on, say, the corpus' test originals
(``scripts/test_originals.py --manifest-out``). Writes a JSON table with ``--json``.

  python scripts/int8_search.py MODEL.onnx --data ../shared/data/dev [--calib DIR] [--json runs/int8_search.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

RULES = (
    "none", "stem", "head", "se", "dw", "stem+head", "stem+head+se", "stem+head+dw", "stem+head+se+dw",
    "first12", "first20", "first28", "first36", "first28+head",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from aivsreal.data import load_dataset
    from aivsreal.decision import is_ai
    from aivsreal.export import _sample_inputs, int8_exclusions, quantize_int8
    from aivsreal.fsutil import atomic_write_text
    from aivsreal.metrics import binary_metrics
    from aivsreal.runtime import Detector

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="../shared/data/dev")
    ap.add_argument("--calib", help="collection whose train split calibrates int8 (default: --data)")
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--limit", type=int, default=0, help="score at most this many test images")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    det32 = Detector.load(a.model)
    calib, _ = _sample_inputs(det32.card, a.calib or a.data, 128)
    test = load_dataset(a.data).split("test")
    if a.limit:
        test = test[: a.limit]
    y = np.array([s.label for s in test])
    prepared = [det32.preprocess(s.path) for s in test]
    keep = [i for i, p in enumerate(prepared) if p.error is None]
    y, prepared = y[keep], [prepared[i] for i in keep]
    thr = det32.card.threshold
    p32 = np.array([r.score for r in det32.score_prepared(prepared)])
    size32 = Path(a.model).stat().st_size
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for rule in a.rules.split(","):
            out = Path(td) / f"{rule}.onnx"
            quantize_int8(Path(a.model), out, calib, exclude=int8_exclusions(Path(a.model), rule))
            det8 = Detector.load(out, verify=False)
            p8 = np.array([r.score for r in det8.score_prepared(prepared)])
            row = {
                "rule": rule,
                "agreement": float(np.mean(is_ai(p32, thr) == is_ai(p8, thr))),
                "roc_auc_drop_points": 100
                * (binary_metrics(y, p32, thr)["roc_auc"] - binary_metrics(y, p8, thr)["roc_auc"]),
                "max_abs_score_diff": float(np.max(np.abs(p32 - p8))),
                "size_ratio": out.stat().st_size / size32,
            }
            rows.append(row)
            print(
                f"{rule:<18} agreement {row['agreement']:.4f}  AUC drop {row['roc_auc_drop_points']:+.2f} pt  "
                f"max |Δscore| {row['max_abs_score_diff']:.3f}  size {row['size_ratio']:.3f} of fp32",
                flush=True,
            )
    if a.json:
        res = {"model": a.model, "data": a.data, "calib": a.calib or a.data, "n": len(y), "rules": rows}
        atomic_write_text(a.json, json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
