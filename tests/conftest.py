"""Shared fixtures: a tiny trained model (checkpoint + ONNX) made once per session, synthetic data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import DEV, WEIGHTS, make_dataset, shared_available  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(config, items):
    skip_shared = pytest.mark.skip(reason=f"../shared/data/dev not found at {DEV} (set AIVSREAL_SHARED)")
    for item in items:
        if "shared" in item.keywords and not shared_available():
            item.add_marker(skip_shared)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small class-folder collection with two sources per class."""
    return make_dataset(tmp_path_factory.mktemp("tiny_data"), "class_folders", n=20, size=80)


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A tiny tf_mobilenetv3_small_100 trained from scratch at 64 px (a few seconds on CPU)."""
    pytest.importorskip("torch")
    from aivsreal.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = TrainConfig(
        data=str(tiny_data),
        out=str(out),
        model="tf_mobilenetv3_small_100",
        pretrained="none",
        size=64,
        epochs_head=2,
        epochs=1,
        lr_head=1e-2,
        lr=1e-3,
        batch_size=8,
        workers=0,
        patience=5,
    )
    train(cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory) -> Path:
    """The tiny model exported to ONNX (fp32 and int8) with its card."""
    from aivsreal.export import export_model

    out = tmp_path_factory.mktemp("tiny_onnx")
    export_model(tiny_run, out, int8=True, n_check=8, n_calib=16)
    return out / "model.onnx"


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    if not (WEIGHTS / "tf_mobilenetv3_small_100.safetensors").is_file():
        pytest.skip(f"ImageNet weights not found in {WEIGHTS}")
    return WEIGHTS
