"""The v2 recipe options: aligned pairs sharing a batch and a view, and the NPR residual stem."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from helpers import load_script, make_image, save

torch = pytest.importorskip("torch")

from aivsreal.augment import AugmentConfig  # noqa: E402
from aivsreal.card import ModelCard, Preprocess, card_path_for  # noqa: E402
from aivsreal.data import REAL, Sample, load_dataset  # noqa: E402
from aivsreal.models import NPRStem, create  # noqa: E402
from aivsreal.runtime import Detector  # noqa: E402
from aivsreal.train import (  # noqa: E402
    ImageDataset,
    TrainConfig,
    UnitBatchSampler,
    pair_units,
    train,
    unit_weights,
)


def _s(label: int, group: str, box: str, name: str) -> Sample:
    return Sample(name, label, "src", group, "train", box)


def test_pair_units_join_a_real_patch_and_its_twins_only():
    samples = [
        _s(1, "g1", "0,0,256,256", "twin_a"),
        _s(0, "g1", "0,0,256,256", "real_a"),
        _s(1, "g1", "0,0,256,256", "synthetic_a"),
        _s(0, "g1", "256,0,512,256", "real_b"),  # same original, other box: no twin, alone
        _s(1, "g2", "", "ai_no_box"),
        _s(1, "g3", "0,0,64,64", "ai_x"),  # one class under a key: not a pair
        _s(1, "g3", "0,0,64,64", "ai_y"),
    ]
    units = pair_units(samples)
    assert sorted(i for u in units for i in u) == list(range(len(samples)))
    pair = next(u for u in units if len(u) > 1)
    assert [samples[i].path for i in pair][0] == "real_a"  # the real seeds the shared view
    assert {samples[i].path for i in pair} == {"real_a", "twin_a", "synthetic_a"}
    assert sum(len(u) > 1 for u in units) == 1


def test_unit_batches_never_split_a_pair_and_cover_every_sample_once():
    units = [[0, 1], [2], [3, 4, 5], [6], [7, 8], [9]]
    bs = UnitBatchSampler(units, batch_size=3, seed=0)
    bs.set_epoch(0)
    batches = list(bs)
    assert sorted(i for b in batches for i in b) == list(range(10))
    for u in units:
        assert sum(set(u) <= set(b) for b in batches) == 1
    bs.set_epoch(1)
    assert list(bs) != batches or len(units) < 3  # another epoch, another order
    shards = [list(UnitBatchSampler(units, 3, 0, rank=r, world=2)) for r in (0, 1)]
    assert sorted(i for s in shards for b in s for i in b) == list(range(10))


def test_source_balance_gives_each_class_half_and_small_sources_more_than_their_size():
    big = [Sample(f"big{i}", 1, "big", split="train") for i in range(400)]
    small = [Sample(f"small{i}", 1, "small", split="train") for i in range(4)]
    real = [Sample(f"real{i}", 0, "cam", split="train") for i in range(100)]
    samples = big + small + real
    units = [[i] for i in range(len(samples))]
    assert unit_weights(samples, units, "none") is None
    w = unit_weights(samples, units, "source")
    assert w.sum() == pytest.approx(1.0)
    assert w[len(big) + len(small) :].sum() == pytest.approx(0.5)  # 100 reals weigh as much as 404 fakes
    small_share = w[len(big) : len(big) + len(small)].sum() / 0.5
    assert 4 / 404 < small_share < 0.5  # sqrt: more than its size, less than an equal share
    assert small_share == pytest.approx(2 / (2 + 20))
    # pair units: reals 0-99 each with a twin (AI members 504-603); the 100 twins keep their share of the AI
    # side (100 of 504) instead of counting as one more source
    twins = [Sample(f"twin{i}", 1, "aligned", split="train") for i in range(100)]
    both = samples + twins
    units = [[len(big) + len(small) + i, len(samples) + i] for i in range(100)]
    units += [[i] for i in range(len(big) + len(small))]
    wp = unit_weights(both, units, "source")
    assert wp.sum() == pytest.approx(1.0)
    twin_mass = 0.5 * 100 / 504
    real_mass_per_pair = 0.5 / 100
    assert wp[0] == pytest.approx(twin_mass / 100 + real_mass_per_pair)  # a unit weighs what its members do
    assert wp[100:].sum() == pytest.approx(0.5 - twin_mass)  # the other fakes split the rest by source


def test_an_epoch_of_a_set_size_draws_by_weight_without_repeats_and_the_same_after_a_resume():
    units = [[i] for i in range(1000)]
    w = np.ones(1000)
    w[:10] = 50.0  # ten heavy units
    w /= w.sum()
    bs = UnitBatchSampler(units, batch_size=16, seed=7, weights=w, epoch_size=200)
    bs.set_epoch(3)
    drawn = bs.epoch_units()
    assert len(drawn) == 200 and len(set(drawn.tolist())) == 200
    assert sum(k < 10 for k in drawn) >= 8  # the heavy ones are nearly always in
    again = UnitBatchSampler(units, batch_size=16, seed=7, weights=w, epoch_size=200)
    again.set_epoch(3)
    assert again.epoch_units().tolist() == drawn.tolist()  # seeded by the epoch: a resume draws the same
    again.set_epoch(4)
    assert again.epoch_units().tolist() != drawn.tolist()
    assert sum(len(b) for b in bs) == 200
    pairs = UnitBatchSampler([[2 * i, 2 * i + 1] for i in range(50)], 8, 0, epoch_size=40)
    assert sum(len(b) for b in pairs) == 40  # epoch_size counts samples, not units
    with pytest.raises(ValueError, match="balance"):
        TrainConfig(balance="family", epoch_size=100).validate()
    with pytest.raises(ValueError, match="epoch_size"):
        TrainConfig(balance="source").validate()  # without a smaller epoch the draw is a plain pass
    with pytest.raises(ValueError, match="epoch_size"):
        TrainConfig(epoch_size=-1).validate()


def test_a_real_patch_and_its_twin_get_the_same_random_view(tmp_path):
    img = make_image("real", size=96, seed=3)
    a, b = save(img, tmp_path / "real.png"), save(img, tmp_path / "twin.png")  # same pixels: views must match
    samples = [Sample(str(a), 0), Sample(str(b), 1)]
    pp = Preprocess(size=64)
    shared = ImageDataset(samples, pp, True, AugmentConfig(), seed=0, view_key=[0, 0])
    apart = ImageDataset(samples, pp, True, AugmentConfig(), seed=0)
    for epoch in range(3):
        shared.epoch = apart.epoch = epoch
        assert torch.equal(shared[0][0], shared[1][0])
    diffs = []
    for epoch in range(3):
        apart.epoch = epoch
        diffs.append(not torch.equal(apart[0][0], apart[1][0]))
    assert any(diffs)  # without the shared key the two draw their own views


def test_npr_stem_removes_what_nearest_upsampling_explains():
    stem = NPRStem()
    x = torch.rand(1, 3, 8, 8)
    blocky = x[..., ::2, ::2].repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert torch.allclose(stem(blocky), torch.zeros_like(blocky))
    assert stem(x).abs().sum() > 0
    odd = torch.rand(1, 3, 7, 9)
    assert stem(odd).shape == odd.shape  # odd sizes (whole-image inputs) keep their shape


def _paired_manifest(root, n=10):
    rows = []
    for i in range(n):
        real = make_image("real", size=80, seed=i)
        twin = make_image("ai", size=80, seed=i)  # the "twin" shares the real's content and adds the trace
        for kind, img, label in (("original", real, "real"), ("aligned_taef2", twin, "ai")):
            p = save(img, root / f"{kind}_{i}.png")
            split = "val" if i % 5 == 0 else "train"
            rows.append(
                {"path": p.name, "label": label, "group": f"g{i}", "box": "0,0,80,80", "split": split}
            )
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


def test_manifest_box_column_is_read(tmp_path):
    ds = load_dataset(_paired_manifest(tmp_path))
    assert {s.box for s in ds.samples} == {"0,0,80,80"}
    assert len(pair_units(ds.split("train"))) == len([s for s in ds.split("train") if s.label == REAL])


def _paired_config(tmp_path, **options) -> TrainConfig:
    """A two-epoch paired run from scratch at 64 px on a small paired manifest (seconds on a CPU)."""
    return TrainConfig(
        data=str(_paired_manifest(tmp_path / "data")),
        out=str(tmp_path / "run"),
        pretrained="none",
        pairs=True,
        size=64,
        epochs_head=1,
        epochs=1,
        batch_size=4,
        workers=0,
        **options,
    )


def test_paired_npr_run_trains_and_its_checkpoint_reloads_with_the_stem(tmp_path):
    cfg = _paired_config(tmp_path, stem="npr")
    ckpt = train(cfg, progress=False)
    card = ModelCard.read(card_path_for(ckpt))
    assert card.stem == "npr" and card.training["config"]["pairs"] is True
    from aivsreal.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(ckpt)
    assert isinstance(model.stem, NPRStem)
    plain = create(card.backbone, pretrained="none", head=card.head)
    plain.load_state_dict(model.state_dict(), strict=True)  # the stem has no weights: the card must say it
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert not torch.allclose(plain.eval()(x), model(x))


def test_a_balanced_run_of_a_set_epoch_size_trains_on_that_many_per_epoch(tmp_path):
    cfg = _paired_config(tmp_path, balance="source", epoch_size=6)  # of 16 samples (8 pairs): 3 pairs
    train(cfg, progress=False)
    with open(tmp_path / "run" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["train_samples"]) for r in rows] == [6, 6]


def test_rgb_npr_stem_feeds_the_image_and_its_residual():
    stem = NPRStem(keep_rgb=True)
    x = torch.rand(2, 3, 9, 8)
    out = stem(x)
    assert out.shape == (2, 6, 9, 8)
    assert torch.equal(out[:, :3], x) and torch.allclose(out[:, 3:], NPRStem()(x))


@pytest.mark.shared
def test_rgb_npr_backbone_reads_imagenet_weights_in_both_halves(weights_dir):
    """The 6-channel first conv starts from the RGB weights, repeated for the residual half."""
    from safetensors.torch import load_file

    name = "tf_mobilenetv3_small_100"
    path = weights_dir / f"{name}.safetensors"
    model = create(name, pretrained=path, stem="rgb_npr").eval()
    w = model.backbone.conv_stem.weight
    rgb = load_file(str(path))["conv_stem.weight"]
    assert w.shape[1] == 6 and torch.equal(w[:, :3], rgb) and torch.equal(w[:, 3:], rgb)
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1,)


def test_unknown_stem_is_refused():
    with pytest.raises(ValueError, match="stem"):
        TrainConfig(stem="fft").validate()
    with pytest.raises(ValueError, match="stem"):
        create("tf_mobilenetv3_small_100", pretrained="none", stem="fft")


@pytest.mark.parametrize("stem", ["npr", "rgb_npr"])
def test_stem_model_exports_to_onnx_with_the_same_scores(tmp_path, stem):
    ort = pytest.importorskip("onnxruntime")
    from aivsreal.export import _write_onnx

    torch.manual_seed(0)
    model = create("tf_mobilenetv3_small_100", pretrained="none", stem=stem).eval()
    card = ModelCard(backbone="tf_mobilenetv3_small_100", preprocess=Preprocess(size=64), stem=stem)
    _write_onnx(model, card, tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0].reshape(-1)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy().reshape(-1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_export_at_a_larger_input_size_records_both_sizes_and_scores_that_size(tiny_run, tmp_path):
    import subprocess
    import sys

    ort = pytest.importorskip("onnxruntime")
    from aivsreal.export import export_model

    report = export_model(tiny_run, tmp_path, input_size=96, n_check=4)
    card = ModelCard.read(card_path_for(tmp_path / "model.onnx"))
    assert card.preprocess.size == 96 and card.extra["trained_input_size"] == 64
    sess = ort.InferenceSession(report["onnx"], providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[2:] == [96, 96]
    r = Detector.load(tmp_path / "model.onnx").predict(make_image("ai", size=120, seed=1))
    assert r.score is not None and 0.0 <= r.score <= 1.0
    bad = subprocess.run(
        [sys.executable, "-m", "aivsreal", "export", "--model", str(tiny_run), "--out", str(tmp_path / "x")]
        + ["--input-size", "8"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "input size 8" in bad.stderr and "Traceback" not in bad.stderr


def test_int8_rules_keep_the_named_layers_in_fp32(tiny_onnx, tiny_data, tmp_path):
    import onnx

    from aivsreal.export import _sample_inputs, int8_exclusions, quantize_int8

    card = ModelCard.read(card_path_for(tiny_onnx))
    nodes = [n for n in onnx.load(str(tiny_onnx)).graph.node if n.op_type in ("Conv", "Gemm")]
    assert int8_exclusions(tiny_onnx, "none") == []
    assert int8_exclusions(tiny_onnx, "stem") == [nodes[0].name]
    assert int8_exclusions(tiny_onnx, "head") == [n.name for n in nodes[-2:]]
    assert int8_exclusions(tiny_onnx, "first3") == [n.name for n in nodes[:3]]
    assert int8_exclusions(tiny_onnx, "first2+head") == [n.name for n in nodes[:2] + nodes[-2:]]
    dw = int8_exclusions(tiny_onnx, "dw")
    assert dw and all(next(a.i for a in n.attribute if a.name == "group") > 1 for n in nodes if n.name in dw)
    with pytest.raises(ValueError, match="unknown int8 rule"):
        int8_exclusions(tiny_onnx, "stem+bogus")
    with pytest.raises(ValueError, match="unknown int8 rule"):
        int8_exclusions(tiny_onnx, "first0")
    x, _ = _sample_inputs(card, str(tiny_data), 8)
    out = tmp_path / "q.onnx"
    quantize_int8(tiny_onnx, out, x, exclude=int8_exclusions(tiny_onnx, "stem+head"))
    q = onnx.load(str(out))
    by_name = {n.name: n for n in q.graph.node}
    for name in int8_exclusions(
        tiny_onnx, "stem+head"
    ):  # still float: its weight is no DequantizeLinear output
        w = by_name[name].input[1]
        assert not any(n.op_type == "DequantizeLinear" and w in n.output for n in q.graph.node)
    quantized = by_name[nodes[1].name].input[1]  # and a layer the rule does not name is quantised
    assert any(n.op_type == "DequantizeLinear" and quantized in n.output for n in q.graph.node)


def test_float16_weights_halve_the_file_keep_the_scores_and_expand_exactly(tiny_onnx, tiny_data, tmp_path):
    import shutil

    import onnx
    from onnx import numpy_helper

    from aivsreal.export import _ort_logits, _sample_inputs, expand_fp16_weights, finish_fp16_weights

    path = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, path)
    card = ModelCard.read(card_path_for(tiny_onnx))
    x, _ = _sample_inputs(card, str(tiny_data), 8)
    ref = _ort_logits(path, x)
    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    rep = finish_fp16_weights(path, card, x, ref)
    assert rep["tensors"] > 0 and rep["bytes"] < 0.6 * rep["float32_bytes"]
    assert rep["max_abs_logit_diff"] == pytest.approx(float(np.max(np.abs(_ort_logits(path, x) - ref))))
    det = Detector.load(path)  # the sidecar sha256 and the embedded card agree with the new file
    assert det.card.extra["weights_storage"].startswith("float16")
    back = {
        i.name: numpy_helper.to_array(i) for i in expand_fp16_weights(onnx.load(str(path))).graph.initializer
    }
    assert set(back) == set(before)
    for name, w in before.items():  # each weight is its float16 rounding, or untouched when kept float32
        assert back[name].dtype == np.float32
        assert np.array_equal(back[name], w) or np.array_equal(
            back[name], w.astype(np.float16).astype(np.float32)
        )
    assert any(not np.array_equal(back[n], before[n]) for n in before)
    from aivsreal.export import quantize_int8

    q = tmp_path / "q.onnx"
    quantize_int8(path, q, x)  # int8 from a float16-stored file: its weights are expanded first
    assert any(n.op_type == "DequantizeLinear" for n in onnx.load(str(q)).graph.node)


def test_int8_search_scores_each_rule_with_calibration_from_another_collection(
    tiny_onnx, tiny_data, tmp_path
):
    import json

    out = tmp_path / "search.json"
    data = tmp_path / "judge.csv"  # judged on one collection (all test), calibrated on another
    rows = [s for s in load_dataset(tiny_data).samples]
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows([s.path, "ai" if s.label else "real", "test"] for s in rows)
    rc = load_script("int8_search").main(
        [
            str(tiny_onnx),
            "--data",
            str(data),
            "--calib",
            str(tiny_data),
            "--rules",
            "none,first3",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["calib"] == str(tiny_data) and res["n"] == len(rows)
    assert [r["rule"] for r in res["rules"]] == ["none", "first3"]
    for r in res["rules"]:
        assert 0.0 <= r["agreement"] <= 1.0 and 0.0 < r["size_ratio"] < 1.0
