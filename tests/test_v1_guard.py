"""The refactor guard: the v1 default model (fp32) scores every dev image exactly as recorded.

``tests/golden/v1_dev_scores.json`` was written by ``scripts/record_v1_scores.py`` before the pipeline
refactor (issue #16); any change to decoding, geometry, batching or calibration that moves one logit
by one ulp fails here. It was re-recorded once, with no code change, when the shipped file's weights
were stored as float16 (``scripts/ship_default.py --fp16-weights-only``: half the file; the card's dev
metrics moved by at most 0.0003 ROC-AUC, balanced accuracy unchanged). Batch composition does not change ORT's per-image output (checked when recorded).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import DEV

from aivsreal.card import ModelCard, card_path_for
from aivsreal.fsutil import sha256_file
from aivsreal.imageio import is_image_path
from aivsreal.runtime import DEFAULT_MODEL_DIR, Detector

GOLDEN = Path(__file__).parent / "golden" / "v1_dev_scores.json"
MODEL = DEFAULT_MODEL_DIR / "default.onnx"


def _golden() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_golden_file_describes_the_shipped_fp32_model():
    doc = _golden()
    assert doc["model"] == MODEL.name
    assert doc["weights_sha256"] == ModelCard.read(card_path_for(MODEL)).weights_sha256 == sha256_file(MODEL)
    assert doc["n"] == len(doc["scores"]) > 2000


@pytest.mark.shared
def test_v1_scores_on_the_dev_set_are_unchanged():
    doc = _golden()["scores"]
    files = sorted(p.relative_to(DEV).as_posix() for p in DEV.rglob("*") if p.is_file() and is_image_path(p))
    assert files == sorted(doc), "the dev set changed: re-record only if the data moved, not the code"
    det = Detector.load(MODEL)
    preds = det.predict([str(DEV / f) for f in files], batch_size=16)
    moved = []
    for f, p in zip(files, preds, strict=True):
        want = doc[f]
        got = {"logit": p.logit, "score": p.score, "label": p.label, "uncertain": p.uncertain}
        if got != want:
            moved.append((f, want, got))
    assert not moved, f"{len(moved)} of {len(files)} dev scores moved, e.g. {moved[:3]}"
