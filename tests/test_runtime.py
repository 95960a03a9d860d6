"""Detector on every input type, predict CLI outputs and failures, export parity, EXIF orientation."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import make_image, save
from PIL import Image

from aivsreal.card import ModelCard, card_path_for
from aivsreal.runtime import Detector, ModelLoadError, Prediction


@pytest.fixture(scope="module")
def det(tiny_onnx) -> Detector:
    return Detector.load(tiny_onnx)


def test_onnx_matches_torch_within_1e_4(tiny_run, tiny_onnx, tiny_data):
    torch_det = Detector.load(tiny_run)
    onnx_det = Detector.load(tiny_onnx)
    files = sorted(str(p) for p in tiny_data.rglob("*.png"))[:12]
    x = np.stack([onnx_det.prepare(f)[0] for f in files])
    a, b = torch_det.backend.logits(x), onnx_det.backend.logits(x)
    assert np.max(np.abs(a - b)) <= 1e-4
    # dynamic batch: one at a time gives the same logits
    assert np.allclose(onnx_det.backend.logits(x[:1]), b[:1], atol=1e-5)


def test_int8_model_is_smaller_and_mostly_agrees(tiny_onnx, tiny_data):
    q = Detector.load(tiny_onnx.with_name("model.int8.onnx"))
    f = Detector.load(tiny_onnx)
    assert tiny_onnx.with_name("model.int8.onnx").stat().st_size < 0.45 * tiny_onnx.stat().st_size
    files = sorted(str(p) for p in tiny_data.rglob("*.png"))
    pq, pf = q.predict(files), f.predict(files)
    assert all(a.ok and np.isfinite(a.logit) for a in pq)
    agree = np.mean([a.label == b.label for a, b in zip(pq, pf)])
    assert agree >= 0.8


def test_card_travels_inside_the_onnx_file(tiny_onnx, tmp_path):
    lone = tmp_path / "alone.onnx"
    shutil.copy(tiny_onnx, lone)  # no sidecar: the card comes from the ONNX metadata
    d = Detector.load(lone)
    assert d.card.preprocess.size == 64 and d.card.backbone == "tf_mobilenetv3_small_100"


def test_every_input_type_gives_the_same_score(det, tmp_path):
    img = make_image("ai", 96, seed=5)
    p = save(img, tmp_path / "x.png")
    data = p.read_bytes()
    arr = np.asarray(img)
    outs = [
        det.predict(str(p)),
        det.predict(p),
        det.predict(data),
        det.predict(img),
        det.predict(arr),
        det.predict(arr.astype(np.float32) / 255.0),
    ]
    assert all(isinstance(o, Prediction) and o.ok for o in outs)
    scores = [o.score for o in outs]
    assert max(scores) - min(scores) < 1e-6
    many = det.predict([str(p), data, img])
    assert isinstance(many, list) and len(many) == 3 and abs(many[2].score - scores[0]) < 1e-6
    assert outs[0].label in ("ai", "real") and outs[0].model_id and 0 <= outs[0].score <= 1
    assert outs[0].uncertain == (abs(outs[0].score - outs[0].threshold) < det.card.uncertain_band)


def test_exif_rotated_image_scores_like_its_upright_twin(det, tmp_path):
    upright = make_image("real", 96, seed=9, w=128)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes, with orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 270 CW (i.e. 90 CW to view) → undoes ROTATE_90
    save(upright, tmp_path / "upright.png")
    stored.save(tmp_path / "rotated.png", exif=exif.tobytes())
    a, b = det.predict([tmp_path / "upright.png", tmp_path / "rotated.png"])
    assert Image.open(tmp_path / "rotated.png").size == (96, 128)
    assert abs(a.score - b.score) < 1e-6
    x_up, x_rot = det.prepare(tmp_path / "upright.png")[0], det.prepare(tmp_path / "rotated.png")[0]
    np.testing.assert_array_equal(x_up, x_rot)
    # without honouring the tag the model input really differs
    assert np.abs(det.prepare(np.asarray(stored))[0] - x_up).mean() > 0.05


def _mixed_folder(root):
    root.mkdir()
    save(make_image("real", 80, 1), root / "good_real.jpg")
    save(make_image("ai", 80, 2), root / "good ai.png")
    buf = io.BytesIO()
    make_image("real", 80, 3).save(buf, "JPEG")
    (root / "corrupt.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    (root / "text.png").write_text("this is not an image\n")
    (root / "empty.jpg").write_bytes(b"")
    return root


def _run(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "aivsreal", *args], capture_output=True, text=True, input=stdin, timeout=300
    )


def test_predict_folder_reports_bad_files_and_scores_good_ones(tiny_onnx, tmp_path):
    folder = _mixed_folder(tmp_path / "mixed")
    r = _run("predict", str(folder), "--model", str(tiny_onnx), "--json")
    assert r.returncode == 1, r.stderr  # documented: 1 = some inputs failed
    assert "Traceback" not in r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    by = {row["path"].rsplit("/", 1)[1]: row for row in rows}
    assert set(by) == {"good_real.jpg", "good ai.png", "corrupt.jpg", "text.png", "empty.jpg"}
    for ok in ("good_real.jpg", "good ai.png"):
        assert set(by[ok]) >= {"path", "score", "label", "uncertain"} and by[ok]["label"] in ("ai", "real")
    assert by["empty.jpg"]["error"]["kind"] == "empty"
    assert by["text.png"]["error"]["kind"] == "not_an_image"
    assert by["corrupt.jpg"]["error"]["kind"] == "corrupt"
    # the human table names the failures too, and exit 0 when everything is fine
    t = _run("predict", str(folder), "--model", str(tiny_onnx))
    assert t.returncode == 1 and "corrupt.jpg" in t.stdout and "error" in t.stdout
    good = _run("predict", str(folder / "good_real.jpg"), "--model", str(tiny_onnx))
    assert good.returncode == 0 and "good_real.jpg" in good.stdout


def test_predict_csv_is_written_and_parses(tiny_onnx, tmp_path):
    folder = _mixed_folder(tmp_path / "mixed")
    out = tmp_path / "res.csv"
    r = _run("predict", str(folder), "--model", str(tiny_onnx), "--csv", str(out))
    assert r.returncode == 1
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 5
    assert sum(1 for x in rows if x["error_kind"]) == 3
    assert all(0 <= float(x["score"]) <= 1 for x in rows if not x["error_kind"])


def test_predict_reads_paths_from_stdin_and_globs(tiny_onnx, tmp_path):
    folder = _mixed_folder(tmp_path / "mixed")
    r = _run("predict", "-", "--model", str(tiny_onnx), "--json", stdin=f"{folder / 'good_real.jpg'}\n")
    assert r.returncode == 0 and json.loads(r.stdout)["path"].endswith("good_real.jpg")
    g = _run("predict", str(folder / "good*"), "--model", str(tiny_onnx), "--json")
    assert len(g.stdout.splitlines()) == 2


def test_predict_threshold_changes_labels(tiny_onnx, tmp_path):
    p = save(make_image("ai", 80, 4), tmp_path / "a.png")
    lo = json.loads(
        _run("predict", str(p), "--model", str(tiny_onnx), "--json", "--threshold", "0.001").stdout
    )
    hi = json.loads(
        _run("predict", str(p), "--model", str(tiny_onnx), "--json", "--threshold", "0.999").stdout
    )
    assert lo["label"] == "ai" and hi["label"] == "real" and lo["score"] == hi["score"]


def test_tta_averages_views(det, tmp_path):
    p = save(make_image("ai", 128, 6), tmp_path / "big.png")
    plain, tta = det.predict(p), det.predict(p, tta=True)
    assert plain.ok and tta.ok and plain.logit != tta.logit


def test_tampered_model_is_refused(tiny_onnx, tmp_path):
    m = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx, m)
    shutil.copy(card_path_for(tiny_onnx), card_path_for(m))
    Detector.load(m)  # intact: loads
    data = bytearray(m.read_bytes())
    data[-10] ^= 0xFF
    m.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        Detector.load(m)
    r = _run("predict", str(m), "--model", str(m))
    assert r.returncode == 2 and "sha256" in r.stderr and "Traceback" not in r.stderr


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        Detector.load(tmp_path / "nope.onnx")
    (tmp_path / "weird.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unknown model type"):
        Detector.load(tmp_path / "weird.bin")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    (tmp_path / "junk.onnx.card.json").write_text(ModelCard(backbone="x").to_json())
    with pytest.raises(ModelLoadError):
        Detector.load(tmp_path / "junk.onnx", verify=False)


def test_pipeline_stages_compose_to_predict(det, tmp_path):
    """preprocess → forward → postprocess by hand gives what predict gives, for every view set."""
    src = save(make_image("ai", 150, 9, w=200), tmp_path / "a.jpg")
    for views in ("center", "tta", "patches"):
        prep = det.preprocess(str(src), views=views)
        by_hand = det.postprocess(prep.source, det.forward(prep.inputs))
        assert det.predict(str(src), views=views) == by_hand, views
    bad = det.preprocess(b"not an image", name="x")
    assert bad.inputs is None and bad.error["kind"] == "not_an_image"


def test_threshold_is_an_argument_not_a_card_change(det, tmp_path):
    src = save(make_image("real", 96, 3), tmp_path / "r.png")
    before = det.card.threshold
    low, high = det.predict(str(src), threshold=1e-9), det.predict(str(src), threshold=1 - 1e-9)
    assert (low.label, high.label) == ("ai", "real") and low.score == high.score
    assert (low.threshold, high.threshold) == (1e-9, 1 - 1e-9) and det.card.threshold == before
    with pytest.raises(ValueError, match="threshold"):
        det.predict(str(src), threshold=1.5)


def test_overlapped_pipeline_matches_the_serial_one_in_order(tiny_onnx, tmp_path):
    """The forward thread overlapping decode returns the same predictions, in input order, errors in place."""
    files = []
    for i in range(23):
        files.append(str(save(make_image("ai" if i % 3 else "real", 70 + i, i), tmp_path / f"{i:02d}.png")))
    files.insert(5, str(tmp_path / "missing.png"))
    a, b = Detector.load(tiny_onnx), Detector.load(tiny_onnx)
    b.overlap = False
    got = list(a.iter_predict(files, batch_size=4, workers=2))
    want = list(b.iter_predict(files, batch_size=4, workers=2))
    assert [p.source for p in got] == files
    assert got == want and got[5].error["kind"] == "not_found"


def test_the_last_batches_are_split_over_the_forward_threads(tiny_onnx, tmp_path, monkeypatch):
    """With two cores, 20 files at batch size 16 run as two batches of 10, not 16 + 4 on one thread."""
    import aivsreal.runtime as rt

    monkeypatch.setattr(rt, "_cores", lambda: 2)
    files = [str(save(make_image("ai", 70, i), tmp_path / f"{i:02d}.png")) for i in range(20)]
    det = Detector.load(tiny_onnx)
    single = det.backend.single_thread()
    sizes: list[int] = []
    real = single.logits
    monkeypatch.setattr(single, "logits", lambda x: sizes.append(len(x)) or real(x))
    preds = list(det.iter_predict(files, batch_size=16, workers=2))
    assert [p.source for p in preds] == files and all(p.ok for p in preds)
    assert sorted(sizes) == [10, 10]


def test_result_row_is_one_definition(det, tmp_path):
    from aivsreal.runtime import ROW_COLUMNS

    ok = det.predict(str(save(make_image("ai", 80, 1), tmp_path / "a.png")))
    bad = det.predict(str(tmp_path / "nope.png"))
    for p in (ok, bad):
        assert tuple(p.row()) == ROW_COLUMNS
    assert bad.row()["error_kind"] == "not_found" and bad.row()["score"] is None
    assert ok.row()["score"] == ok.score and ok.row()["uncertain"] is ok.uncertain


def test_the_card_names_the_view_set_every_door_scores_by_default(tiny_onnx, tmp_path):
    """A card with ``preprocess.views: patches`` is scored from patches with no option given; an
    explicit view set still wins. (The JS twin reads the same field: web/src/score.js.)"""
    import dataclasses

    from aivsreal.export import replace_card

    onnx_copy = tmp_path / "patches.onnx"
    shutil.copy(tiny_onnx, onnx_copy)
    base = Detector.load(tiny_onnx)
    card = ModelCard.from_dict(base.card.to_dict())
    card.preprocess = dataclasses.replace(card.preprocess, views="patches")
    replace_card(onnx_copy, card)
    patched = Detector.load(onnx_copy)
    img = make_image("real", size=200, seed=5)
    want = base.predict(img, views="patches").score
    assert patched.predict(img).score == pytest.approx(want, abs=1e-9)
    assert list(patched.iter_predict([img]))[0].score == pytest.approx(want, abs=1e-9)
    assert patched.predict(img, views="center").score == pytest.approx(base.predict(img).score, abs=1e-9)
    assert base.predict(img).score != pytest.approx(want, abs=1e-9)  # the view sets do differ here


def test_a_card_with_an_unknown_view_set_is_refused():
    from aivsreal.card import CardError, Preprocess

    with pytest.raises(CardError, match="view set"):
        Preprocess(views="random")
