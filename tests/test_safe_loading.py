"""Safe loading: weights are safetensors (never unpickled), a checkpoint or ONNX file whose sha256
differs from its card is refused with a clear error, and config files go through safe parsers."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import pytest
from hostile import run_cli

from aivsreal.card import CardError, ModelCard, card_path_for
from aivsreal.fsutil import sha256_file
from aivsreal.onnx_card import CARD_KEY
from aivsreal.runtime import Detector, ModelLoadError

SRC = Path(__file__).resolve().parents[1] / "src" / "aivsreal"


def _copy_checkpoint(run: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "model.card.json"):
        shutil.copy(run / name, dest / name)
    return dest / "model.safetensors"


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from helpers import make_image, save

    return save(make_image("real", 80, seed=1), tmp_path_factory.mktemp("img") / "x.png")


# ---- checkpoints ----------------------------------------------------------------------------------
def test_tampered_checkpoint_refused(tiny_run, tmp_path, image):
    ckpt = _copy_checkpoint(tiny_run, tmp_path / "ckpt")
    Detector.load(ckpt)  # the untouched copy loads
    _flip_byte(ckpt, ckpt.stat().st_size - 100)  # inside the tensor data: still a valid safetensors file
    with pytest.raises(ModelLoadError, match="does not match the card"):
        Detector.load(ckpt)
    from aivsreal.checkpoint import load_checkpoint

    with pytest.raises(CardError, match="does not match"):
        load_checkpoint(ckpt.parent)
    res = run_cli(["predict", str(image), "--model", str(ckpt)])
    assert res.rc == 2 and "Traceback" not in res.stderr, res.stderr
    assert "model.safetensors" in res.stderr and "does not match" in res.stderr


def test_truncated_checkpoint_refused(tiny_run, tmp_path):
    ckpt = _copy_checkpoint(tiny_run, tmp_path / "ckpt")
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="does not match"):
        Detector.load(ckpt)


def test_card_without_sha256_refused(tiny_run, tmp_path):
    ckpt = _copy_checkpoint(tiny_run, tmp_path / "ckpt")
    card = ModelCard.read(card_path_for(ckpt))
    card.weights_sha256 = ""
    card.write(card_path_for(ckpt))
    with pytest.raises(ModelLoadError, match="no weights_sha256"):
        Detector.load(ckpt)


class _Marker:
    """Unpickling this object creates a file: proof that a loader ran pickle on user input."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("payload", ["pickle", "torch_save"])
def test_pickle_disguised_as_safetensors_is_never_unpickled(tiny_run, tmp_path, payload):
    """A pickle renamed .safetensors, with a card whose sha256 matches it, is refused unexecuted."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    ckpt = _copy_checkpoint(tiny_run, tmp_path / "ckpt")
    if payload == "pickle":
        ckpt.write_bytes(pickle.dumps(_Marker(marker)))
    else:
        torch.save({"weight": torch.zeros(2), "evil": _Marker(marker)}, ckpt)
    assert not marker.exists()
    card = ModelCard.read(card_path_for(ckpt))
    card.weights_sha256 = sha256_file(ckpt)  # the attacker controls the card too
    card.write(card_path_for(ckpt))
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        Detector.load(ckpt)
    assert not marker.exists()
    if payload == "torch_save":
        return
    res = run_cli(["predict", str(ckpt), "--model", str(ckpt)])
    assert res.rc == 2 and "Traceback" not in res.stderr and "safetensors" in res.stderr, res.stderr
    assert not marker.exists()


def test_safetensors_with_other_tensors_refused(tiny_run, tmp_path):
    """A well-formed safetensors file holding the wrong tensors: a clear load error, not a crash."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    ckpt = _copy_checkpoint(tiny_run, tmp_path / "ckpt")
    save_file({"x": torch.zeros(3)}, str(ckpt))
    card = ModelCard.read(card_path_for(ckpt))
    card.weights_sha256 = sha256_file(ckpt)
    card.write(card_path_for(ckpt))
    with pytest.raises(ModelLoadError, match="cannot load weights"):
        Detector.load(ckpt)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".pkl", ".bin"])
def test_pickle_based_weight_formats_are_refused(tmp_path, suffix):
    f = tmp_path / f"model{suffix}"
    f.write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ModelLoadError, match="unknown model type"):
        Detector.load(f)


# ---- ONNX -----------------------------------------------------------------------------------------
def _onnx_copy(tiny_onnx: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_onnx, dest / "model.onnx")
    shutil.copy(card_path_for(tiny_onnx), card_path_for(dest / "model.onnx"))
    return dest / "model.onnx"


def test_tampered_onnx_refused(tiny_onnx, tmp_path, image):
    onnx = pytest.importorskip("onnx")
    model = _onnx_copy(tiny_onnx, tmp_path / "m")
    Detector.load(model)
    # flip one byte inside a weight tensor: the file stays a loadable ONNX graph, only the numbers change
    m = onnx.load(str(model))
    raw = next(t.raw_data for t in m.graph.initializer if len(t.raw_data) >= 256)
    offset = model.read_bytes().find(raw[:64])
    assert offset > 0
    _flip_byte(model, offset + 100)
    onnx.checker.check_model(onnx.load(str(model)))  # still well-formed
    with pytest.raises(ModelLoadError, match="does not match the card"):
        Detector.load(model)
    res = run_cli(["predict", str(image), "--model", str(model)])
    assert res.rc == 2 and "Traceback" not in res.stderr and "does not match" in res.stderr, res.stderr


def test_onnx_with_swapped_card_metadata_refused(tiny_onnx, tmp_path):
    """Re-writing the card inside the ONNX file (say, a lower threshold) changes its hash too."""
    onnx = pytest.importorskip("onnx")
    model = _onnx_copy(tiny_onnx, tmp_path / "m")
    m = onnx.load(str(model))
    for p in m.metadata_props:
        if p.key == CARD_KEY:
            d = json.loads(p.value)
            d["threshold"] = 0.01
            p.value = json.dumps(d)
    model.write_bytes(m.SerializeToString())
    with pytest.raises(ModelLoadError, match="does not match"):
        Detector.load(model)


def test_garbage_onnx_refused_clearly(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"\x00\x01not a protobuf" * 100)
    with pytest.raises(ModelLoadError, match="model.onnx"):
        Detector.load(f)


# ---- cards and configs ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2, 3]", "not a model card"),
        ('{"backbone": "x", "threshold": NaN}', "threshold"),
        ('{"backbone": "x", "temperature": -1}', "temperature"),
        (
            '{"backbone": "x", "preprocess": {"size": 1000000000}}',
            "'preprocess.size' must be an integer in \\[16, 4096\\]",
        ),
        (
            '{"backbone": "x", "preprocess": {"policy": "__import__(\'os\')"}}',
            "'preprocess.policy' must be one of",
        ),
        ('{"backbone": "x"', "not valid JSON"),
    ],
)
def test_malformed_cards_are_clear_errors(tiny_run, tmp_path, text, message):
    ckpt = _copy_checkpoint(tiny_run, tmp_path / "ckpt")
    card_path_for(ckpt).write_text(text)
    with pytest.raises(ModelLoadError, match=message) as ei:
        Detector.load(ckpt)
    assert "model.card.json" in str(ei.value)


def test_yaml_config_with_python_tags_is_refused(tmp_path):
    """PyYAML's unsafe loaders would run os.system here; the safe loader refuses the tag."""
    pytest.importorskip("torch")
    from aivsreal.train import TrainConfig

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"data: x\nout: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ValueError, match="not a valid YAML config"):
        TrainConfig.from_yaml(evil)
    res = run_cli(["train", "--config", str(evil)])
    assert res.rc == 2 and "Traceback" not in res.stderr, res.stderr
    assert "evil.yaml" in res.stderr and not marker.exists()


def test_yaml_config_unknown_keys_and_non_mapping_refused(tmp_path):
    pytest.importorskip("torch")
    from aivsreal.train import TrainConfig

    f = tmp_path / "c.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_yaml(f)
    f.write_text("data: x\n__class__: os.system\n")
    with pytest.raises(ValueError, match="unknown option"):
        TrainConfig.from_yaml(f)


# ---- the code itself -----------------------------------------------------------------------------
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
UNSAFE_CALLS = {("torch", "load"), ("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load")}


def test_package_never_unpickles_or_evals():
    """A static check over src/aivsreal: no pickle-family imports, no torch.load / yaml.load /
    eval / exec, no np.load(allow_pickle=True)."""
    problems = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node in ast.walk(tree):
            where = f"{f.relative_to(SRC)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                bad = {a.name.split(".")[0] for a in node.names} & UNSAFE_MODULES
                problems += [f"{where}: import {b}" for b in bad]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
                problems.append(f"{where}: from {node.module} import ...")
            elif isinstance(node, ast.Call):
                fn = node.func
                if isinstance(fn, ast.Name) and fn.id in ("eval", "exec"):
                    problems.append(f"{where}: {fn.id}()")
                if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name):
                    if (fn.value.id, fn.attr) in UNSAFE_CALLS:
                        problems.append(f"{where}: {fn.value.id}.{fn.attr}()")
                for kw in node.keywords:
                    if kw.arg == "allow_pickle" and not (
                        isinstance(kw.value, ast.Constant) and not kw.value.value
                    ):
                        problems.append(f"{where}: allow_pickle")
    assert not problems, "\n".join(problems)
