"""Grad-CAM heatmaps: size, validity, dependence on the image, clear errors without a torch checkpoint."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import make_image, save
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam", reason="grad-cam (train extra) not installed")

from aivsreal.card import Preprocess  # noqa: E402
from aivsreal.explain import ExplainError, explain_file, gradcam, heatmap_png, input_region  # noqa: E402


def test_explain_writes_overlay_of_input_size_and_depends_on_image(tiny_run, tmp_path):
    a = save(make_image("ai", 96, seed=5, w=130), tmp_path / "a.png")
    b = save(make_image("real", 96, seed=6, w=130), tmp_path / "b.jpg")
    info_a = explain_file(a, tmp_path / "ha.png", model=tiny_run)
    explain_file(b, tmp_path / "hb.png", model=tiny_run)
    ha, hb = Image.open(tmp_path / "ha.png"), Image.open(tmp_path / "hb.png")
    assert ha.format == "PNG" and ha.size == (130, 96) and hb.size == (130, 96)
    assert info_a["size"] == [130, 96] and info_a["target"] in ("ai", "real")
    assert 0.0 <= info_a["score"] <= 1.0
    diff = np.abs(np.asarray(ha, np.int16) - np.asarray(hb, np.int16)).mean()
    assert diff > 1.0
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, no leftovers


def test_gradcam_range_and_image_dependence(tiny_run):
    from aivsreal.checkpoint import load_checkpoint
    from aivsreal.preprocess import to_input

    net, card, _ = load_checkpoint(tiny_run)
    maps = [
        gradcam(net, to_input(make_image(k, 64, seed=s), card.preprocess), target="ai")
        for k, s in (("ai", 1), ("real", 2), ("ai", 3))
    ]
    for m in maps:
        assert m.shape == (card.preprocess.size, card.preprocess.size)
        assert m.min() >= 0.0 and m.max() <= 1.0 and np.isfinite(m).all()
    assert max(np.abs(maps[0] - m).max() for m in maps[1:]) > 1e-3


def test_heatmap_png_bytes(tiny_run):
    buf = io.BytesIO()
    make_image("ai", 80, seed=9).save(buf, "PNG")
    png = heatmap_png(buf.getvalue(), model=tiny_run)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (80, 80)
    with pytest.raises(ExplainError) as e:
        heatmap_png(b"not an image", model=tiny_run)
    assert e.value.kind == "not_an_image"


def test_explain_needs_torch_checkpoint(tiny_onnx, tmp_path, monkeypatch):
    import aivsreal.explain as ex

    img = save(make_image("ai", 64), tmp_path / "x.png")
    with pytest.raises(ExplainError, match="torch checkpoint") as e:
        explain_file(img, tmp_path / "h.png", model=tiny_onnx)
    assert e.value.kind == "needs_torch"
    monkeypatch.setattr(ex, "DEFAULT_CHECKPOINT", tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="--model"):
        explain_file(img, tmp_path / "h.png")
    assert not (tmp_path / "h.png").exists()


def test_cli_explain(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from aivsreal.cli import app

    img = save(make_image("real", 72, seed=3), tmp_path / "in.png")
    r = CliRunner().invoke(
        app, ["explain", str(img), "--out", str(tmp_path / "o.png"), "--model", str(tiny_run)]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["size"] == [72, 72]
    assert Image.open(tmp_path / "o.png").size == (72, 72)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    r = CliRunner().invoke(
        app, ["explain", str(bad), "--out", str(tmp_path / "o2.png"), "--model", str(tiny_run)]
    )
    assert r.exit_code == 2 and "bad.png" in r.output
    assert not (tmp_path / "o2.png").exists()


@pytest.mark.parametrize(
    "policy,size,expected",
    [
        ("resize", (300, 200), (0, 0, 300, 200)),
        ("native_crop", (300, 200), (86, 36, 214, 164)),
        ("native_crop", (100, 64), (18, 0, 82, 64)),
        ("center_crop", (256, 256), (16, 16, 240, 240)),
    ],
)
def test_input_region_matches_preprocessing(policy, size, expected):
    pp = Preprocess(size=224 if policy == "center_crop" else 128, policy=policy, crop_pct=0.875)
    box = input_region(size, pp)
    assert np.allclose(box, expected, atol=1.0), box
