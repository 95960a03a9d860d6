"""The shipped default model: files match their cards, it loads with no path, and its card's dev
metrics are reproduced by `aivsreal evaluate` on the dev test split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DEV, ROOT

from aivsreal.card import ModelCard, card_path_for
from aivsreal.fsutil import sha256_file
from aivsreal.runtime import DEFAULT_MODEL_DIR, Detector

FILES = ["default.onnx", "default.int8.onnx"]


@pytest.mark.parametrize("name", FILES)
def test_shipped_files_match_their_cards(name):
    path = DEFAULT_MODEL_DIR / name
    card = ModelCard.read(card_path_for(path))
    assert card.weights_file == name
    assert sha256_file(path) == card.weights_sha256
    assert card.metrics["dev_test"]["clean"]["balanced_accuracy"] > 0.5
    assert card.preprocess.policy == "native_crop" and card.preprocess.size == 224


def test_int8_is_about_a_third_of_fp32():
    # The target is ≤ 30 %; the QDQ file measures 31 % (MODEL_CARD.md says so). Guard against regressions.
    fp32, int8 = (DEFAULT_MODEL_DIR / f for f in FILES)
    assert int8.stat().st_size <= 0.33 * fp32.stat().st_size


def test_default_loads_without_a_path_and_predicts_examples():
    det = Detector.load()
    assert det.path == DEFAULT_MODEL_DIR / "default.onnx"
    preds = det.predict(sorted(str(p) for p in (ROOT / "docs" / "examples").glob("*.jpg")))
    assert len(preds) == 2 and all(p.ok and p.model_id == det.card.model_id for p in preds)


def test_predict_cli_without_model_uses_the_default():
    r = subprocess.run(
        [sys.executable, "-m", "aivsreal", "predict", str(ROOT / "docs" / "examples"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert {Path(x["path"]).name for x in rows} == {"coffee.jpg", "rocket.jpg"}
    assert all(x["model_id"] == "aivsreal-default-v1" for x in rows)


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_card_dev_metrics_are_reproduced_by_evaluate(name):
    path = DEFAULT_MODEL_DIR / name
    card = Detector.load(path).card
    r = subprocess.run(
        [sys.executable, "-m", "aivsreal", "evaluate", "--model", str(path), "--data", str(DEV), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    for tier in ("clean", "web", "hard"):
        for k in ("balanced_accuracy", "roc_auc", "specificity"):
            assert abs(got["tiers"][tier][k] - card.metrics["dev_test"][tier][k]) <= 0.005, (tier, k)
