"""Training end to end on CPU, checkpoints and their cards, resume, evaluation, weights resolution."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import DEV, make_dataset, make_image
from hostile import run_cli

torch = pytest.importorskip("torch")

from aivsreal import card as card_mod  # noqa: E402
from aivsreal.card import ModelCard, Preprocess, card_path_for  # noqa: E402
from aivsreal.checkpoint import load_checkpoint  # noqa: E402
from aivsreal.data import load_dataset  # noqa: E402
from aivsreal.evaluate import HEADLINE, evaluate  # noqa: E402
from aivsreal.fsutil import sha256_file  # noqa: E402
from aivsreal.models import WeightsError, create, resolve_weights  # noqa: E402
from aivsreal.runtime import Detector  # noqa: E402
from aivsreal.train import ImageDataset, TrainConfig, resolve_device, train  # noqa: E402


def test_tiny_run_writes_checkpoint_card_history_and_plot(tiny_run):
    ckpt = tiny_run / "model.safetensors"
    card = ModelCard.read(card_path_for(ckpt))
    assert card.weights_sha256 == sha256_file(ckpt)
    assert card.preprocess == Preprocess(
        size=64,
        policy="native_crop",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        interpolation="bilinear",
        crop_pct=0.875,
    )
    assert card.backbone == "tf_mobilenetv3_small_100" and card.temperature > 0
    rows = list(csv.DictReader(open(tiny_run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["phase"]) for r in rows] == [1, 1, 2]
    png = (tiny_run / "training_history.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = (tiny_run / "config.yaml").read_text()
    assert "tf_mobilenetv3_small_100" in cfg
    assert json.loads((tiny_run / "versions.json").read_text())["torch"] == torch.__version__
    assert not list(tiny_run.glob("*.tmp")) and not list(tiny_run.glob(".*.tmp"))


def test_tiny_model_learns_the_synthetic_task(tiny_run, tiny_data):
    res = evaluate(tiny_run, tiny_data, split="all", tiers=("clean",))
    # the grid trace is easy: a model that learned anything beats chance clearly
    assert res["roc_auc"] > 0.8
    assert set(res) >= {*HEADLINE, "confusion_matrix", "per_source", "tiers"}


def test_train_and_eval_preprocessing_are_identical(tiny_run, tiny_data):
    """The tensor the evaluator/runtime feeds equals the one the training loader builds (no augmentation)."""
    model, card, _ = load_checkpoint(tiny_run)
    det = Detector.load(tiny_run)
    ds = load_dataset(tiny_data)
    val = ImageDataset(ds.split("val"), card.preprocess, train=False, aug=None, seed=0)
    for i in range(3):
        x_train, _, ok = val[i]
        x_rt = det.prepare(ds.split("val")[i].path)[0]
        assert ok == 1
        np.testing.assert_array_equal(x_train.numpy(), x_rt)


def test_cli_train_then_evaluate_json(tmp_path):
    data = make_dataset(tmp_path / "data", "split_folders", n=10, size=72)
    run = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "aivsreal",
            "train",
            "--data",
            str(data),
            "--out",
            str(run),
            "--model",
            "tf_mobilenetv3_small_100",
            "--pretrained",
            "none",
            "--epochs",
            "1",
            "--epochs-head",
            "0",
            "--size",
            "64",
            "--workers",
            "0",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert list(run.glob("*.safetensors"))
    r = subprocess.run(
        [sys.executable, "-m", "aivsreal", "evaluate", "--model", str(run), "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) >= {*HEADLINE, "confusion_matrix"}
    assert set(d["tiers"]) == {"clean", "web", "hard"}
    cm = np.array(d["confusion_matrix"])
    assert cm.sum() == d["n"] == 4  # split_folders: every 5th image of 10 per class is test


def test_evaluate_report_dir(tiny_run, tiny_data, tmp_path):
    from aivsreal.evaluate import write_report

    res = evaluate(tiny_run, tiny_data, split="all", tiers=("clean", "hard"), max_fpr=0.1)
    assert res["threshold_source"].startswith("chosen on the val split")
    write_report(res, tmp_path / "rep")
    for f in ("confusion_matrix.png", "roc.png", "pr.png", "report.md", "metrics.json"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["n"] == 40 and "per_source" in m and set(m["per_source"]["clean"]) == {"src_a", "src_b"}


def test_resume_continues_from_last_completed_epoch(tmp_path, tiny_data):
    cfg = TrainConfig(
        data=str(tiny_data),
        out=str(tmp_path / "r"),
        pretrained="none",
        size=64,
        epochs_head=1,
        epochs=1,
        batch_size=16,
        workers=0,
        patience=9,
    )
    train(cfg, progress=False)
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["epoch"] == 2
    # extend the run: resume must start at epoch 3, keep epochs 1-2 of the history
    cfg.epochs = 2
    (tmp_path / "r" / "config.yaml").write_text(__import__("yaml").safe_dump(cfg.to_dict()))
    before = list(csv.DictReader(open(tmp_path / "r" / "history.csv")))
    train(cfg, resume=True, progress=False)
    after = list(csv.DictReader(open(tmp_path / "r" / "history.csv")))
    assert [int(r["epoch"]) for r in after] == [1, 2, 3]
    assert after[:2] == before


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old complete file")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(card_mod.os, "replace", boom)
    with pytest.raises(OSError):
        card_mod.atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_half_stored_checkpoint_is_half_the_size_and_loads_into_float32(tiny_run, tmp_path):
    from aivsreal.checkpoint import load_checkpoint, save_checkpoint

    net, card, weights = load_checkpoint(tiny_run)
    save_checkpoint(net, card, tmp_path / "model.safetensors", half=True)
    assert (tmp_path / "model.safetensors").stat().st_size < 0.6 * weights.stat().st_size
    kept, _, _ = load_checkpoint(tmp_path)  # its card names the float16 file's sha256
    assert next(kept.parameters()).dtype == torch.float32
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        a, b = net(x), kept(x)
    assert torch.allclose(a, b, atol=0.05) and not torch.equal(a, b)  # rounded, not the same weights


def test_missing_pretrained_weights_is_an_error_not_random_init(tmp_path, monkeypatch):
    monkeypatch.delenv("AIVSREAL_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError, match="--pretrained none"):
        create("tf_mobilenetv3_small_100")
    with pytest.raises(WeightsError, match="not found"):
        create("tf_mobilenetv3_small_100", pretrained=tmp_path / "missing.safetensors")
    monkeypatch.setenv("AIVSREAL_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="no tf_mobilenetv3_small_100.safetensors"):
        resolve_weights("tf_mobilenetv3_small_100", None)
    assert resolve_weights("x", "none") is None


def test_local_weights_are_loaded_exactly(weights_dir):
    from safetensors.torch import load_file

    m = create("tf_mobilenetv3_small_100", pretrained=weights_dir / "tf_mobilenetv3_small_100.safetensors")
    sd = load_file(str(weights_dir / "tf_mobilenetv3_small_100.safetensors"))
    got = m.backbone.state_dict()
    assert torch.equal(got["conv_stem.weight"], sd["conv_stem.weight"])
    assert m(torch.zeros(2, 3, 224, 224)).shape == (2,)


def test_notebook_head_matches_the_original_architecture():
    m = create("tf_mobilenetv3_small_100", pretrained="none", head="notebook")
    kinds = [type(x).__name__ for x in m.head]
    assert kinds == ["BatchNorm1d", "Linear", "ReLU", "Dropout", "Linear"]
    assert m.head[1].out_features == 512 and m.head[3].p == 0.5 and m.head[4].out_features == 1


def test_yaml_config_rejects_unknown_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: x\nepochz: 3\n")
    with pytest.raises(ValueError, match="epochz"):
        TrainConfig.from_yaml(p)
    p.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ValueError, match="constructor"):  # safe loader: no Python object tags
        TrainConfig.from_yaml(p)


def test_cosine_schedule_decays_phase_two_from_lr_to_its_floor_and_constant_stays():
    from aivsreal.train import LR_FLOOR, phase_lr

    cfg = TrainConfig(epochs_head=1, epochs=5, lr_head=1e-3, lr=3e-4, lr_schedule="cosine")
    rates = [phase_lr(cfg, e) for e in range(6)]
    assert (
        rates[0] == 1e-3 and rates[1] == pytest.approx(3e-4) and rates[-1] == pytest.approx(3e-4 * LR_FLOOR)
    )
    assert all(a > b for a, b in zip(rates[1:], rates[2:]))  # strictly decreasing over phase 2
    flat = TrainConfig(epochs_head=1, epochs=5, lr=3e-4)
    assert [phase_lr(flat, e) for e in range(1, 6)] == [3e-4] * 5
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step").validate()


@pytest.mark.shared
@pytest.mark.slow
def test_brief_training_on_shared_dev_with_imagenet_weights(tmp_path, weights_dir):
    cfg = TrainConfig(
        data=str(DEV),
        out=str(tmp_path / "dev"),
        model="tf_mobilenetv3_small_100",
        pretrained=str(weights_dir / "tf_mobilenetv3_small_100.safetensors"),
        epochs_head=1,
        epochs=1,
        batch_size=32,
        workers=2,
        limit=192,
    )
    ckpt = train(cfg, progress=False)
    card = ModelCard.read(card_path_for(ckpt))
    # ImageNet features separate the dev classes better than chance even after a brief run
    assert card.metrics["val"]["roc_auc"] > 0.6
    assert card.training["config"]["pretrained"].endswith("tf_mobilenetv3_small_100.safetensors")
    assert os.path.getsize(ckpt) > 1_000_000


def test_make_image_classes_differ():
    a = np.asarray(make_image("real", 32, 0), dtype=float)
    b = np.asarray(make_image("ai", 32, 0), dtype=float)
    assert np.abs(a - b).mean() > 1.0


@pytest.mark.parametrize(
    "spec, gpus, local_rank, want",
    [
        ("auto", 0, 0, "cpu"),
        ("auto", 2, 1, "cuda:1"),  # torchrun: one GPU per process
        ("cpu", 4, 0, "cpu"),
        ("cuda", 1, 0, "cuda:0"),
        ("CUDA:1", 2, 0, "cuda:1"),
    ],
)
def test_resolve_device(spec, gpus, local_rank, want):
    assert resolve_device(spec, gpus, local_rank) == want


@pytest.mark.parametrize(
    "spec, gpus, local_rank, match",
    [
        ("cuda", 0, 0, "no GPU visible"),
        ("cuda:2", 2, 0, "2 GPU"),
        ("cuda:x", 1, 0, "cuda:N"),
        ("tpu", 1, 0, "expected auto"),
        ("auto", 2, 2, "one process per GPU"),  # torchrun with more processes than GPUs
    ],
)
def test_resolve_device_refuses_what_is_not_there(spec, gpus, local_rank, match):
    with pytest.raises(ValueError, match=match):
        resolve_device(spec, gpus, local_rank)


def test_cli_train_on_a_missing_gpu_is_a_clear_error(tmp_path, tiny_data):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    out = tmp_path / "r"
    r = run_cli(
        ["train", "--data", str(tiny_data), "--out", str(out), "--pretrained", "none", "--device", "cuda"]
    )
    assert r.rc == 2, r.stderr
    assert "device 'cuda' requested, but no GPU visible" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "model.safetensors").exists()
