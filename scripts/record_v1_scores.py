"""Record the v1 default model's fp32 scores on every dev image, keyed by relative path.

The file it writes (tests/golden/v1_dev_scores.json) is the guard of every refactor: the test
``tests/test_v1_guard.py`` checks that the current code reproduces each logit exactly. Only scores are
stored, never images. Run: ``python scripts/record_v1_scores.py [DEV_DIR]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aivsreal.card import ModelCard, card_path_for
from aivsreal.imageio import is_image_path
from aivsreal.runtime import DEFAULT_MODEL_DIR, Detector

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "golden" / "v1_dev_scores.json"


def dev_images(dev: Path) -> list[Path]:
    """Every image file under the dev folder, sorted by relative path."""
    return sorted(p for p in dev.rglob("*") if p.is_file() and is_image_path(p))


def main(dev: Path) -> int:
    model = DEFAULT_MODEL_DIR / "default.onnx"
    det = Detector.load(model)
    files = dev_images(dev)
    rows = {}
    for f, p in zip(files, det.iter_predict([str(f) for f in files]), strict=True):
        if not p.ok:
            raise SystemExit(f"{f}: {p.error}")
        rel = f.relative_to(dev).as_posix()
        rows[rel] = {"logit": p.logit, "score": p.score, "label": p.label, "uncertain": p.uncertain}
    doc = {
        "model": model.name,
        "weights_sha256": ModelCard.read(card_path_for(model)).weights_sha256,
        "n": len(rows),
        "scores": rows,
    }
    OUT.write_text(json.dumps(doc, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(rows)} scores → {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "dev"))
