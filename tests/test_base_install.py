"""`pip install .` with no extras: torch-free, under 100 MB, and `aivsreal predict --json` works on an
exported model. Builds a fresh venv from a copy of the repo (so no build files land in the tree)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from helpers import ROOT, make_image, save

pytestmark = pytest.mark.slow
SIZE_LIMIT = 100 * 1024 * 1024

PROBE = """
import json, sys
from aivsreal.cli import app
try:
    app(["predict", *sys.argv[2:], "--model", sys.argv[1], "--json"], standalone_mode=False)
except SystemExit as e:
    assert not e.code, e.code
assert "onnxruntime" in sys.modules, "the predict path did not run"
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
print("TORCH_FREE_OK")
"""


# Wheels every ONNX Runtime CPU install pays for (numpy is onnxruntime's own dependency), and the
# venv's bootstrap (not installed by `pip install .`).
FLOOR = ("numpy", "numpy.libs", "onnxruntime", "PIL", "pillow.libs")
BOOTSTRAP = ("pip", "setuptools", "_distutils_hack", "distutils-precedence.pth")


def _tree_bytes(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def _sizes(site: Path) -> dict[str, int]:
    """Bytes per top-level entry of site-packages."""
    return {e.name: _tree_bytes(e) for e in site.iterdir()}


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    """A venv with `pip install <repo copy>`, no extras (pip may use its wheel cache and the registry)."""
    tmp = tmp_path_factory.mktemp("base_install")
    src = tmp / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    p = subprocess.run(
        [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return env_dir


def test_base_install_is_torch_free(base_venv):
    py = base_venv / "bin" / "python"
    show = subprocess.run([str(py), "-m", "pip", "show", "torch"], capture_output=True, text=True)
    assert show.returncode != 0, "torch got installed by `pip install .`"
    (site,) = (base_venv / "lib").glob("python3*/site-packages")
    assert not [e.name for e in site.iterdir() if e.name.startswith(("torch", "timm"))]
    assert (site / "aivsreal" / "cli.py").is_file()  # really installed, not the repo's editable copy


def test_base_install_is_under_100_mb(base_venv):
    (site,) = (base_venv / "lib").glob("python3*/site-packages")
    sizes = _sizes(site)
    installed = sum(v for k, v in sizes.items() if not k.startswith(BOOTSTRAP))
    floor = sum(v for k, v in sizes.items() if k in FLOOR)
    top = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:8])
    msg = f"base install is {installed / 2**20:.0f} MB (largest, MB: {top})"
    if installed >= SIZE_LIMIT and floor >= SIZE_LIMIT:
        pytest.xfail(f"{msg}; numpy + onnxruntime + pillow alone take {floor / 2**20:.0f} MB")
    assert installed < SIZE_LIMIT, msg


def test_base_install_predicts_without_importing_torch(base_venv, tiny_onnx, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model = Path(shutil.copy2(tiny_onnx, model_dir / tiny_onnx.name))
    card = tiny_onnx.with_name(tiny_onnx.name + ".card.json")
    shutil.copy2(card, model_dir / card.name)
    imgs = [
        str(save(make_image(k, 96, seed=7 + i), tmp_path / f"{k}{i}.jpg"))
        for i, k in enumerate(["real", "ai"])
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    bin_dir = base_venv / "bin"

    # the console script, as a user runs it
    p = subprocess.run(
        [str(bin_dir / "aivsreal"), "predict", *imgs, "--model", str(model), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["path"] for r in rows] == imgs
    assert all(0.0 <= r["score"] <= 1.0 and r["label"] in ("real", "ai") for r in rows)

    # the same predict path in one interpreter, proving torch was never imported
    p = subprocess.run(
        [str(bin_dir / "python"), "-c", PROBE, str(model), *imgs],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[-1] == "TORCH_FREE_OK"
    again = [json.loads(line) for line in lines[:-1]]
    assert [r["score"] for r in again] == [r["score"] for r in rows]

    # and the scores are the ones the development install gives
    from aivsreal.runtime import Detector

    want = [pr.score for pr in Detector.load(tiny_onnx).predict(imgs)]
    assert [r["score"] for r in rows] == pytest.approx(want, abs=1e-6)


def test_base_install_benches_an_onnx_file_without_torch(base_venv, tiny_onnx, tmp_path):
    """`aivsreal bench --model X.onnx` needs no torch: ONNX Runtime is timed, torch eager is skipped."""
    model = Path(shutil.copy2(tiny_onnx, tmp_path / "m.onnx"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    args = ["bench", "--quick", "--json", "--model", str(model), "--images", "2", "--repeats", "3"]
    p = subprocess.run(
        [str(base_venv / "bin" / "aivsreal"), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert p.returncode == 0, p.stderr
    (m,) = json.loads(p.stdout)["models"]
    assert "skipped" in m["engines"]["torch_eager"] and "skipped" in m["engines"]["ort_int8"]
    b1 = m["engines"]["ort_fp32"]["batch1"]
    assert 0 < b1["p50_ms"] <= b1["p95_ms"]
    assert m["end_to_end"]["ort_fp32"]["images_per_s"] > 0
