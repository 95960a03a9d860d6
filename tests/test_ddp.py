"""`torchrun --nproc_per_node 2 -m aivsreal train`: DDP on CPU (gloo), sharding, rank-0 writes, resume."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_dataset

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

from safetensors.torch import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from aivsreal.cli import app  # noqa: E402
from aivsreal.data import load_dataset  # noqa: E402

TRAIN_ARGS = [
    "--pretrained",
    "none",
    "--size",
    "64",
    "--epochs-head",
    "0",
    "--batch-size",
    "8",
    "--workers",
    "0",
    "-q",
]

# Runs the real CLI under torchrun, recording which training samples each rank loads (workers=0: in-process).
PROBE = """
import os, sys
from aivsreal import train as T
from aivsreal.cli import main

orig = T.ImageDataset.__getitem__

def probe(self, i):
    if self.train:
        with open(os.path.join(os.environ["PROBE_DIR"], "rank%s.txt" % os.environ["RANK"]), "a") as f:
            f.write("%d %d\\n" % (self.epoch, i))
    return orig(self, i)

T.ImageDataset.__getitem__ = probe
sys.argv = ["aivsreal", *sys.argv[1:]]
main()
"""


def _torchrun(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ, **(env or {}))
    )


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess, Path]:
    """One epoch of 2-process training on a tiny synthetic set; returns (data, run, process, probe dir)."""
    root = tmp_path_factory.mktemp("ddp")
    data = make_dataset(root / "data", "class_folders", n=14, size=72)
    run, probe_dir = root / "run", root / "probe"
    probe_dir.mkdir()
    script = root / "probe.py"
    script.write_text(PROBE)
    proc = _torchrun(
        [str(script), "train", "--data", str(data), "--out", str(run), "--epochs", "1", *TRAIN_ARGS],
        env={"PROBE_DIR": str(probe_dir)},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return data, run, proc, probe_dir


@pytest.mark.slow
def test_torchrun_shards_the_data_and_rank0_writes(ddp_run):
    data, run, proc, probe_dir = ddp_run
    n_train = len(load_dataset(data, seed=0).split("train"))
    seen = {
        r: [int(line.split()[1]) for line in (probe_dir / f"rank{r}.txt").read_text().split("\n") if line]
        for r in (0, 1)
    }
    # each rank loads its own half (DistributedSampler pads an odd count with one repeat), together all of it
    assert len(seen[0]) == len(seen[1]) == (n_train + 1) // 2
    assert set(seen[0]) | set(seen[1]) == set(range(n_train))
    assert len(set(seen[0]) & set(seen[1])) == n_train % 2
    assert proc.stdout.count("best checkpoint:") == 1  # rank 0 reports, rank 1 stays quiet
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1]
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    assert not list(run.glob(".*.tmp"))


@pytest.mark.slow
def test_ddp_checkpoint_evaluates(ddp_run):
    data, run, _, _ = ddp_run
    args = [
        "evaluate",
        "--model",
        str(run),
        "--data",
        str(data),
        "--json",
        "--split",
        "all",
        "--tier",
        "clean",
    ]
    r = CliRunner().invoke(app, args)  # in-process: torch is already imported here
    assert r.exit_code == 0, r.output[-3000:]
    res = json.loads(r.stdout)
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "balanced_accuracy", "ece"} <= set(res)
    assert res["n"] == len(load_dataset(data).samples)
    assert 0.0 <= res["roc_auc"] <= 1.0


@pytest.mark.slow
def test_torchrun_resume_continues_from_the_last_epoch(ddp_run, tmp_path):
    data, run, _, _ = ddp_run
    resumed = tmp_path / "run"
    shutil.copytree(run, resumed)
    before = load_file(str(resumed / "last.safetensors"))
    proc = _torchrun(["-m", "aivsreal", "train", "--resume", str(resumed), "--epochs", "2", "-q"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = list(csv.DictReader(open(resumed / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # epoch 1 kept, only epoch 2 trained
    assert rows[0] == next(csv.DictReader(open(run / "history.csv")))
    assert json.loads((resumed / "state.json").read_text())["epoch"] == 2
    after = load_file(str(resumed / "last.safetensors"))
    changed = [k for k in before if k.startswith("model.") and not torch.equal(before[k], after[k])]
    assert changed  # the weights moved on from the restored ones
