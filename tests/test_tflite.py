"""`aivsreal export --format tflite`: a LiteRT file that scores images as the ONNX export does, with the
card inside; without the converter, a clear error naming what to install."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_image
from typer.testing import CliRunner

from aivsreal import export_tflite as tfl
from aivsreal.card import ModelCard, card_path_for
from aivsreal.cli import app
from aivsreal.runtime import Detector

MISSING = tfl.missing_packages()
needs_litert = pytest.mark.skipif(
    bool(MISSING),
    reason=f"TFLite converter not installed ({', '.join(MISSING)}): pip install 'aivsreal[tflite]'",
)


def test_missing_converter_is_named(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(tfl.NEEDED, "no_such_module_for_test", "no-such-converter")
    r = CliRunner().invoke(
        app, ["export", "--model", str(tiny_run), "--out", str(tmp_path), "--format", "tflite"]
    )
    assert r.exit_code == 2
    assert "no-such-converter" in r.output and "aivsreal[tflite]" in r.output
    assert not list(tmp_path.glob("*.tflite"))


@needs_litert
@pytest.mark.slow
def test_tflite_matches_onnx_on_images(tiny_run, tiny_onnx, tmp_path):
    r = CliRunner().invoke(
        app, ["export", "--model", str(tiny_run), "--out", str(tmp_path), "--format", "tflite"]
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    path = tmp_path / "model.tflite"
    assert rep["tflite"] == str(path) and path.is_file()
    assert rep["max_abs_logit_diff_vs_onnx"] <= tfl.PARITY_TOL

    # the card travels inside the file and beside it (with the file's sha256)
    ref_card = ModelCard.read(card_path_for(tiny_run / "model.safetensors"))
    inside = tfl.read_tflite_card(path)
    assert inside.preprocess == ref_card.preprocess and inside.threshold == ref_card.threshold
    side = ModelCard.read(tfl.card_path_tflite(path))
    side.verify(path)

    # independent check: images through the shipped preprocessing, LiteRT vs the ONNX Detector
    det = Detector.load(tiny_onnx)
    imgs = [make_image(kind, 80, seed=50 + i) for i, kind in enumerate(["real", "ai", "real", "ai"])]
    x = np.stack([det.prepare(im)[0] for im in imgs])
    got = tfl.tflite_logits(path, x)
    want = np.array([p.logit for p in det.predict(imgs)])
    assert np.max(np.abs(got - want)) <= tfl.PARITY_TOL
    assert rep["input"]["shape"] == [1, det.card.preprocess.size, det.card.preprocess.size, 3]


@needs_litert
def test_read_card_refuses_a_file_without_one(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="x.tflite"):
        tfl.read_tflite_card(bad)
