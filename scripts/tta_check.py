"""How --tta behaves on the shipped model: the dev test split scored with and without it.

    AIVSREAL_SHARED=../shared python scripts/tta_check.py [--data ../shared/data/dev] [--out PATH]

Writes src/aivsreal/models_dist/default.tta.json (rendered into MODEL_CARD.md by scripts/model_card.py):
metrics at the card's threshold both ways, how far TTA moves scores, how many labels flip, and how many
images were big enough for the corner views (the rest get the centre view and its mirror).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aivsreal.data import load_dataset
from aivsreal.fsutil import atomic_write_text
from aivsreal.metrics import binary_metrics
from aivsreal.runtime import Detector

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("balanced_accuracy", "roc_auc", "specificity", "recall", "ece")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "dev"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", default=str(ROOT / "src/aivsreal/models_dist/default.tta.json"))
    a = ap.parse_args()
    det = Detector.load()
    samples = load_dataset(a.data).split(a.split)
    paths, y = [s.path for s in samples], np.array([s.label for s in samples])
    plain = det.predict(paths, workers=2)
    tta = det.predict(paths, workers=2, tta=True)
    ok = [i for i, (p, t) in enumerate(zip(plain, tta)) if p.ok and t.ok]
    sp, st = np.array([plain[i].score for i in ok]), np.array([tta[i].score for i in ok])
    yy = y[ok]
    thr = det.card.threshold
    delta = np.abs(st - sp)
    views = [len(det.prepare(paths[i], tta=True)) for i in ok]
    res = {
        "model_id": det.model_id,
        "data": f"{Path(a.data).name} {a.split} split",
        "n": len(ok),
        "threshold": thr,
        "plain": {k: binary_metrics(yy, sp, thr)[k] for k in KEYS},
        "tta": {k: binary_metrics(yy, st, thr)[k] for k in KEYS},
        "abs_score_change": {
            "median": float(np.median(delta)),
            "p90": float(np.quantile(delta, 0.9)),
            "max": float(delta.max()),
        },
        "label_flips": int(np.sum((sp >= thr) != (st >= thr))),
        "with_corner_views": int(sum(v > 2 for v in views)),
        "command": "python scripts/tta_check.py",
    }
    atomic_write_text(Path(a.out), json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
