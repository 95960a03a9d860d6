"""Training under faults: kill -9 mid-epoch then --resume, a full disk, an unwritable output dir.

What must hold: a resumed run ends with the same epochs and (within noise) the same validation
metrics as an uninterrupted one; no file in a run dir is ever partial (atomic writes) and no temp
file survives; disk-full and permission errors are one clear message, never a traceback.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile import make_corpus, run_cli

torch = pytest.importorskip("torch")

from aivsreal.card import (  # noqa: E402
    ModelCard,
    atomic_write_bytes,
    atomic_write_many,
    card_path_for,
    remove_stale_temp_files,
    sha256_file,
)

EPOCHS_HEAD, EPOCHS = 1, 2
TRAIN_ARGS = [
    "--pretrained", "none", "--size", "64", "--epochs-head", str(EPOCHS_HEAD), "--epochs", str(EPOCHS),
    "--batch-size", "8", "--workers", "0", "--seed", "3", "--patience", "50", "--lr-head", "3e-3",
    "--lr", "3e-3", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def fault_data(tmp_path_factory) -> Path:
    """Synthetic real/ai folders plus the hostile corpus (bad files must not stop training)."""
    from helpers import make_dataset

    root = make_dataset(tmp_path_factory.mktemp("fault_data"), "class_folders", n=14, size=72)
    make_corpus(root / "ai" / "hostile")
    return root


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def _assert_run_files_whole(run: Path) -> None:
    """Every file a run writes parses completely: no partial checkpoint, state or history."""
    from safetensors.torch import load_file

    from aivsreal.checkpoint import load_checkpoint

    if (run / "model.safetensors").exists():
        load_checkpoint(run)  # sha256 of the weights matches their card
    if (run / "last.safetensors").exists():
        assert load_file(str(run / "last.safetensors"))
    if (run / "state.json").exists():
        state = json.loads((run / "state.json").read_text())
        assert len(_history(run)) >= state["epoch"]


def _python_train(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    cmd = [sys.executable, "-m", "aivsreal", "train", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def _kill_after_epoch(args: list[str], run: Path, min_epoch: int) -> int:
    """Start training, wait until state.json shows ``min_epoch`` completed epochs, let the next epoch
    start, SIGKILL it; returns the last completed epoch on disk."""
    p = _python_train(args)
    deadline = time.monotonic() + 240
    epoch = 0
    while time.monotonic() < deadline and p.poll() is None and epoch < min_epoch:
        try:
            epoch = json.loads((run / "state.json").read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            epoch = 0
        time.sleep(0.05)
    assert p.poll() is None, f"training ended before it could be killed: {p.communicate()[1][-3000:]}"
    assert epoch >= min_epoch, "no epoch completed in time"
    time.sleep(0.2)  # into the next epoch (which takes seconds)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    return json.loads((run / "state.json").read_text())["epoch"]


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_matches_uninterrupted(fault_data, tmp_path):
    ref, run = tmp_path / "uninterrupted", tmp_path / "killed"
    total = EPOCHS_HEAD + EPOCHS
    # killed twice: first when phase 2 (new optimizer) is starting, then in the middle of phase 2
    first = _kill_after_epoch(["--data", str(fault_data), "--out", str(run), *TRAIN_ARGS], run, 1)
    assert 1 <= first < total
    _assert_run_files_whole(run)
    second = _kill_after_epoch(["--data", str(fault_data), "--resume", str(run), "--quiet"], run, first + 1)
    assert first < second < total  # the resumed run made progress before being killed again
    _assert_run_files_whole(run)

    resumed = run_cli(["train", "--data", str(fault_data), "--resume", str(run), "--quiet"], timeout=300)
    assert resumed.rc == 0 and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    full = run_cli(["train", "--data", str(fault_data), "--out", str(ref), *TRAIN_ARGS], timeout=300)
    assert full.rc == 0, full.stderr[-3000:]

    h_run, h_ref = _history(run), _history(ref)
    assert [int(r["epoch"]) for r in h_run] == [int(r["epoch"]) for r in h_ref] == list(range(1, total + 1))
    diffs = [abs(float(a["val_loss"]) - float(b["val_loss"])) for a, b in zip(h_run, h_ref, strict=True)]
    print(f"killed at epochs {first} and {second}; |val_loss difference| per epoch: {diffs}")
    for a, b in zip(h_run, h_ref, strict=True):
        # same seed, same data order, restored optimizer: only float non-associativity may differ
        assert abs(float(a["val_loss"]) - float(b["val_loss"])) < 0.05, (a, b)
        assert abs(float(a["val_accuracy"]) - float(b["val_accuracy"])) <= 0.1, (a, b)
    assert json.loads((run / "state.json").read_text())["epoch"] == total
    _assert_run_files_whole(run)
    assert _temp_files(run) == [] and _temp_files(ref) == []
    # the bad files in the data were reported, not fatal
    summary = json.loads((run / "data_summary.json").read_text())
    assert len(summary["undecodable"]) >= 15
    assert all(u["kind"] and u["message"] for u in summary["undecodable"])


def test_resume_removes_temp_files_left_by_a_kill(tmp_path):
    """kill -9 between writing a temp file and renaming it leaves ``.NAME.xxxx.tmp``: swept on resume."""
    (tmp_path / ".last.safetensors.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "keep.txt").write_text("user file")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [".last.safetensors.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


# ---- disk full / permission errors ---------------------------------------------------------------
def _enospc_on(monkeypatch, name_part: str = "") -> list[str]:
    """Make fsync fail with ENOSPC for temp files whose name contains ``name_part`` (all when empty)."""
    real_fsync = os.fsync
    hits: list[str] = []

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if name_part in os.path.basename(target):
            hits.append(target)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return hits


def test_disk_full_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "model.card.json"
    atomic_write_bytes(target, b"old contents")
    hits = _enospc_on(monkeypatch)
    with pytest.raises(OSError) as ei:
        atomic_write_bytes(target, b"new contents that do not fit")
    assert ei.value.errno == errno.ENOSPC
    assert str(target) in str(ei.value) and "No space left" in str(ei.value)
    assert hits and target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.card.json"]


def test_permission_error_on_rename_is_clear_and_clean(tmp_path, monkeypatch):
    target = tmp_path / "history.csv"
    target.write_text("old")

    def deny(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "replace", deny)
    with pytest.raises(OSError, match="Permission denied") as ei:
        atomic_write_bytes(target, b"new")
    assert ei.value.errno == errno.EACCES and "history.csv" in str(ei.value)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


def test_checkpoint_pair_never_mixes_old_and_new(tmp_path, monkeypatch):
    """Disk full while the card is written: the weights are not replaced either, so the old pair
    still verifies (a new weights file next to an old card would be refused forever)."""
    from aivsreal.checkpoint import load_checkpoint, save_checkpoint
    from aivsreal.models import create

    model = create("tf_mobilenetv3_small_100", pretrained="none")
    ckpt = tmp_path / "model.safetensors"
    save_checkpoint(model, ModelCard(backbone="tf_mobilenetv3_small_100"), ckpt)
    old_sha, old_card = sha256_file(ckpt), card_path_for(ckpt).read_text()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    hits = _enospc_on(monkeypatch, "model.card.json")
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(model, ModelCard(backbone="tf_mobilenetv3_small_100"), ckpt)
    assert hits
    monkeypatch.undo()
    assert sha256_file(ckpt) == old_sha and card_path_for(ckpt).read_text() == old_card
    load_checkpoint(ckpt)  # verifies
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.card.json", "model.safetensors"]


def test_atomic_write_many_is_all_or_nothing(tmp_path, monkeypatch):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    atomic_write_many({a: b"A1", b: b"B1"})
    _enospc_on(monkeypatch, "b.bin")
    with pytest.raises(OSError):
        atomic_write_many({a: b"A2", b: b"B2"})
    assert (a.read_bytes(), b.read_bytes()) == (b"A1", b"B1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


@pytest.mark.slow
def test_train_disk_full_is_a_clear_message_then_resume_works(fault_data, tmp_path, monkeypatch):
    """ENOSPC when the first checkpoint is written: exit 2 with the path and the reason, no traceback,
    nothing partial; once space is back, --resume completes the run."""
    from typer.testing import CliRunner

    from aivsreal.cli import app

    run = tmp_path / "run"
    args = ["train", "--data", str(fault_data), "--out", str(run), *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "0"
    hits = _enospc_on(monkeypatch, "model.safetensors")
    res = CliRunner().invoke(app, args)
    assert hits, "the checkpoint write was never reached"
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)  # typer.Exit(2), not an uncaught error
    assert "No space left on device" in res.output and "model.safetensors" in res.output
    assert not (run / "model.safetensors").exists() and _temp_files(run) == []
    monkeypatch.undo()
    done = run_cli(["train", "--data", str(fault_data), "--resume", str(run), "--quiet"], timeout=300)
    assert done.rc == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    _assert_run_files_whole(run)
    assert len(_history(run)) == EPOCHS_HEAD


def test_unwritable_output_dir_is_a_clear_message(fault_data, tmp_path):
    """An output path under a regular file fails for root too (chmod would not stop root)."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    res = run_cli(
        ["train", "--data", str(fault_data), "--out", str(blocker / "run"), *TRAIN_ARGS], timeout=120
    )
    assert res.rc == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "not_a_dir" in res.stderr and "error" in res.stderr


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes through chmod 0o500; the not-a-dir case covers root"
)
def test_read_only_output_dir_is_a_clear_message(fault_data, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        res = run_cli(["train", "--data", str(fault_data), "--out", str(ro), *TRAIN_ARGS], timeout=120)
    finally:
        ro.chmod(0o700)
    assert res.rc == 2 and "Traceback" not in res.stderr and "cannot write" in res.stderr
