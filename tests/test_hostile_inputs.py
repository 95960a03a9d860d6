"""Every door against the hostile corpus: each good file is scored, each bad one reported with a
reason, no traceback, no hang, bounded memory (bombs refused from the header, before decoding)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hostile import BOMB_SIDE, Case, make_corpus, run_cli
from PIL import ImageFile

from aivsreal.card import Preprocess
from aivsreal.imageio import DecodeError, decode
from aivsreal.preprocess import to_input

PP = Preprocess(size=64)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[Case]]:
    root = tmp_path_factory.mktemp("hostile") / "corpus"
    return root, make_corpus(root)


@pytest.fixture(scope="module")
def hostile_dataset(tmp_path_factory) -> tuple[Path, list[Case]]:
    """A labelled collection: clean synthetic images in real/ and ai/, the corpus inside ai/hostile/."""
    from helpers import make_dataset

    root = make_dataset(tmp_path_factory.mktemp("hostile_ds"), "class_folders", n=8, size=72)
    return root, make_corpus(root / "ai" / "hostile")


def _mismatches(cases: list[Case], results: dict[str, dict]) -> list[str]:
    """Cases whose result (a score, or an error with a kind) differs from what the corpus expects."""
    bad = []
    for c in cases:
        r = results.get(c.fsname)
        if r is None:
            bad.append(f"{c.name}: no result at all")
        elif c.ok and (r.get("error") or not 0.0 <= r.get("score", -1) <= 1.0):
            bad.append(f"{c.name} ({c.why}): expected a score, got {r}")
        elif not c.ok and (not r.get("error") or r["error"]["kind"] not in c.kinds):
            bad.append(f"{c.name} ({c.why}): expected error {sorted(c.kinds)}, got {r}")
        elif not c.ok and not r["error"].get("message"):
            bad.append(f"{c.name}: error without a message")
    return bad


# ---- decode + preprocess -------------------------------------------------------------------------
def test_decode_classifies_every_case(corpus):
    _, cases = corpus
    assert sum(c.ok for c in cases) >= 20 and sum(not c.ok for c in cases) >= 15
    problems = []
    for c in cases:
        try:
            d = decode(c.path)
        except DecodeError as e:
            if c.ok or e.kind not in c.kinds:
                problems.append(f"{c.name}: {e.kind}: {e.message}")
            continue
        if not c.ok:
            problems.append(f"{c.name} ({c.why}) decoded, expected {sorted(c.kinds)}")
            continue
        assert d.image.mode == "RGB", c.name
        x = to_input(d.image, PP)
        assert x.shape == (3, 64, 64) and x.dtype == np.float32 and np.isfinite(x).all(), c.name
    assert not problems, "\n".join(problems)


def test_decode_from_bytes_matches_decode_from_path(corpus):
    """Uploads arrive as bytes: the same verdict as for the file, whatever the name said."""
    _, cases = corpus
    for c in cases:
        if c.special:
            continue
        data = c.path.read_bytes()
        try:
            got = ("ok", decode(data).image.size)
        except DecodeError as e:
            got = ("error", e.kind)
        if c.ok:
            assert got == ("ok", decode(c.path).image.size), c.name
        else:
            assert got[0] == "error" and got[1] in c.kinds, (c.name, got)


def test_exif_orientation_applied_and_bogus_value_ignored(corpus):
    root, _ = corpus
    assert decode(root / "exif_orientation_6.jpg").image.size == (48, 80)  # stored 80x48, rotated 90°
    d = decode(root / "exif_orientation_bogus.jpg")
    assert d.image.size == d.original_size == (64, 64)


def test_bomb_refused_from_header_without_decoding(corpus, monkeypatch):
    """The pixel buffer of a 30000² image is never allocated: Pillow's load() is not even called."""
    root, _ = corpus
    calls = []
    real_load = ImageFile.ImageFile.load

    def spy(self):
        calls.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    decode(root / "plain.jpg")
    assert calls == [(64, 64)]  # the spy sees ordinary decodes
    calls.clear()
    for name in ("bomb.png", "bomb.jpg", "bomb.gif"):
        with pytest.raises(DecodeError) as ei:
            decode(root / name)
        assert ei.value.kind == "too_many_pixels", name
        assert "exceeds" in ei.value.message
    assert calls == []
    with pytest.raises(DecodeError, match=f"{BOMB_SIDE}x{BOMB_SIDE}"):
        decode((root / "bomb.png").read_bytes())


def test_fifo_refused_without_opening(corpus, monkeypatch):
    """Opening a FIFO for reading blocks until a writer comes: decode must never call open() on it."""
    root, _ = corpus
    import builtins

    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k))
    with pytest.raises(DecodeError) as ei:
        decode(root / "named_pipe.jpg")
    assert ei.value.kind == "not_a_file" and opened == []


# ---- the Python API ------------------------------------------------------------------------------
def test_detector_scores_good_and_reports_bad(corpus, tiny_onnx):
    from aivsreal.runtime import Detector

    _, cases = corpus
    det = Detector.load(tiny_onnx, threads=1)
    preds = det.predict([c.path for c in cases], batch_size=8, workers=2)
    assert [p.source for p in preds] == [c.fsname for c in cases]  # order kept, nothing dropped
    assert not _mismatches(cases, {p.source: p.to_dict() for p in preds})


# ---- CLI doors -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_predict_folder(corpus, tiny_onnx):
    root, cases = corpus
    res = run_cli(["predict", str(root), "--json", "--model", str(tiny_onnx), "--workers", "2"])
    assert "Traceback" not in res.stderr, res.stderr
    assert res.rc == 1, res.stderr  # documented: 1 = some inputs could not be processed
    rows = [json.loads(line) for line in res.lines()]
    listed = [c for c in cases if not c.path.is_dir() or c.path.is_symlink()]  # a folder listing's files
    assert sorted(r["path"] for r in rows) == sorted(c.fsname for c in listed)
    assert not _mismatches(listed, {r["path"]: r for r in rows})
    # bombs and the sparse 101 MiB file never reach memory: the whole run stays small
    assert res.maxrss_mb < 512, f"peak RSS {res.maxrss_mb:.0f} MiB"


@pytest.mark.slow
def test_cli_predict_exit_codes(corpus, tiny_onnx, tmp_path):
    root, _ = corpus
    good = [str(root / n) for n in ("plain.jpg", "cmyk.jpg", "name with spaces.png")]
    ok = run_cli(["predict", *good, "--model", str(tiny_onnx)])
    assert ok.rc == 0 and "Traceback" not in ok.stderr, ok.stderr
    assert len(ok.lines()) == 2 + len(good)  # legend, header, one row each
    mixed = run_cli(["predict", *good, str(root / "truncated.png"), "--model", str(tiny_onnx)])
    assert mixed.rc == 1 and "truncated.png" in mixed.lines()[-1] and "corrupt" in mixed.lines()[-1]
    no_model = run_cli(["predict", *good, "--model", str(tmp_path / "missing.onnx")])
    assert no_model.rc == 2 and "Traceback" not in no_model.stderr and "missing.onnx" in no_model.stderr
    bad_model = tmp_path / "garbage.onnx"
    bad_model.write_bytes(b"\x08\x07garbage" * 50)
    garbage = run_cli(["predict", *good, "--model", str(bad_model)])
    assert garbage.rc == 2 and "Traceback" not in garbage.stderr and "garbage.onnx" in garbage.stderr


def test_cli_predict_non_utf8_name_round_trips(corpus, tiny_onnx):
    """The printed path of a latin-1 file name is its exact bytes, so it can be fed back."""
    root, _ = corpus
    name = os.path.join(os.fsencode(root), b"caf\xe9_latin1.png")
    res = run_cli(["predict", os.fsdecode(name), "--json", "--model", str(tiny_onnx)])
    assert res.rc == 0 and "Traceback" not in res.stderr, res.stderr
    (row,) = [json.loads(line) for line in res.lines()]
    assert os.fsencode(row["path"]) == name and 0 <= row["score"] <= 1


@pytest.mark.slow
def test_cli_data_summary_reports_each_bad_file(hostile_dataset):
    root, cases = hostile_dataset
    res = run_cli(["data", "summary", str(root), "--json"])
    assert res.rc == 0 and "Traceback" not in res.stderr, res.stderr
    sm = json.loads(res.stdout)
    bad = {c.fsname: c for c in cases if not c.ok and not c.path.is_dir()}
    got = {u["path"]: u for u in sm["undecodable"]}
    assert set(got) == set(bad)
    for p, u in got.items():
        assert u["kind"] in bad[p].kinds and u["message"], u
    n_good_hostile = sum(c.ok for c in cases)
    n_total = sum(v for split in sm["counts"].values() for v in split.values())
    assert n_total == 16 + n_good_hostile + len(bad)  # 8 real + 8 ai + the corpus's files
    assert sum(sum(f.values()) for f in sm["formats"].values()) == 16 + n_good_hostile


@pytest.mark.slow
def test_cli_evaluate_scores_good_and_lists_bad(hostile_dataset, tiny_onnx):
    root, cases = hostile_dataset
    res = run_cli(
        [
            "evaluate",
            "--model",
            str(tiny_onnx),
            "--data",
            str(root),
            "--split",
            "all",
            "--tier",
            "clean",
            "--json",
        ]
    )
    assert res.rc in (0, 1) and "Traceback" not in res.stderr, res.stderr
    out = json.loads(res.stdout)
    bad = {c.fsname: c for c in cases if not c.ok and not c.path.is_dir()}
    assert out["n"] == 16 + sum(c.ok for c in cases)
    assert {e["path"] for e in out["errors"]} == set(bad)
    assert all(e["kind"] in bad[e["path"]].kinds for e in out["errors"])


def test_inspect_reports_bad_files(corpus):
    """Provenance inspection reads metadata itself: same corpus, no traceback, a verdict per file."""
    pytest.importorskip("aivsreal.provenance")
    root, cases = corpus
    res = run_cli(["inspect", str(root), "--json"])
    assert "Traceback" not in res.stderr, res.stderr
    assert res.rc in (0, 1)
    assert res.maxrss_mb < 512, f"peak RSS {res.maxrss_mb:.0f} MiB"
    rows = [json.loads(line) for line in res.lines()]
    listed = [c for c in cases if not c.path.is_dir() or c.path.is_symlink()]
    assert len(rows) == len(listed)
    by_path = {r.get("path"): r for r in rows}
    for c in listed:
        r = by_path.get(c.fsname)
        assert r is not None, c.name
        if c.kinds & {"empty", "not_found", "unreadable", "not_a_file", "too_large"}:
            assert r.get("error"), (c.name, r)


# ---- training data loading -----------------------------------------------------------------------
def test_training_dataset_skips_bad_files(corpus):
    """ImageDataset yields ok=0 for each bad file and the collate drops it; the good ones all arrive."""
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from aivsreal.augment import AugmentConfig
    from aivsreal.data import Sample
    from aivsreal.train import ImageDataset, collate

    _, cases = corpus
    samples = [Sample(c.fsname, 1) for c in cases]
    for train in (True, False):
        ds = ImageDataset(samples, PP, train, AugmentConfig(), seed=0)
        flags = [ds[i][2] for i in range(len(ds))]
        assert flags == [int(c.ok) for c in cases]
        n = sum(b[0].shape[0] for b in DataLoader(ds, batch_size=7, collate_fn=collate) if b is not None)
        assert n == sum(c.ok for c in cases)


def test_dataset_loader_survives_symlink_loops_and_fifos(hostile_dataset, tmp_path):
    """Discovery lists the awkward entries as samples (reported later) instead of crashing or hanging,
    also when a manifest names them."""
    from aivsreal.data import load_dataset

    root, cases = hostile_dataset
    ds = load_dataset(root)
    paths = {s.path for s in ds.samples}
    for name in ("symlink_loop.jpg", "dangling.png", "named_pipe.jpg"):
        assert os.fsdecode(root / "ai" / "hostile" / name) in paths
    man = tmp_path / "m"
    shutil.copytree(root, man, symlinks=True, ignore=shutil.ignore_patterns("named_pipe.jpg"))
    hostile = [p for p in (man / "ai" / "hostile").iterdir() if p.name.isprintable() and p.name.isascii()]
    rows = ["path,label"] + [f"{p.relative_to(man)},ai" for p in hostile]
    rows += [f"{p.relative_to(man)},real" for p in (man / "real").rglob("*.png")]
    (man / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds2 = load_dataset(man / "manifest.csv")
    assert os.fsdecode(man / "ai" / "hostile" / "symlink_loop.jpg") in {s.path for s in ds2.samples}


def test_non_utf8_manifest_is_a_clear_data_error(tmp_path):
    from aivsreal.data import DataError, load_dataset

    m = tmp_path / "manifest.csv"
    m.write_bytes("path,label\nimgs/caf\u00e9.png,ai\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(m)
    res = run_cli(["data", "summary", str(m)])
    assert res.rc == 2 and "Traceback" not in res.stderr and "manifest.csv" in res.stderr, res.stderr


# ---- HTTP API ------------------------------------------------------------------------------------
def test_api_scores_good_uploads_and_reports_bad(corpus, tiny_onnx):
    """POST /v1/predict with every regular corpus file as one multipart request."""
    pytest.importorskip("fastapi")
    serve = pytest.importorskip("aivsreal.serve")
    from fastapi.testclient import TestClient

    _, cases = corpus
    uploads = [c for c in cases if not c.special]
    with TestClient(serve.create_app(model=str(tiny_onnx))) as client:
        names = [os.fsencode(c.name).decode("utf-8", "replace") for c in uploads]  # multipart names are text
        files = [
            ("files", (n, c.path.read_bytes(), "application/octet-stream"))
            for n, c in zip(names, uploads, strict=True)
        ]
        r = client.post("/v1/predict", files=files)
        assert r.status_code == 200, r.text
        body = r.json()
        rows = body["results"] if isinstance(body, dict) else body
        assert len(rows) == len(uploads)
        assert [row["path"] for row in rows] == names
        assert not _mismatches(uploads, {c.fsname: row for c, row in zip(uploads, rows, strict=True)})
        assert client.get("/healthz").status_code == 200
