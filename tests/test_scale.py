"""Ray engine: ``aivsreal predict --engine ray`` must give the local engine's results per file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import make_corpus
from typer.testing import CliRunner

from aivsreal.cli import app
from aivsreal.scale import display_path

pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[scale]')")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (the [scale] extra)")

COLUMNS = ["path", "score", "label", "uncertain", "threshold", "model_id", "error_kind", "error"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Awkward valid images and broken files side by side (no FIFO/symlinks: they are local-door cases)."""
    root = tmp_path_factory.mktemp("ray_corpus")
    make_corpus(root, with_specials=False)
    (root / "missing_later.jpg").write_bytes(b"")  # an empty file: one more error row
    return root


def _local_json(model: Path, inputs: list[str]) -> list[dict]:
    """``aivsreal predict --json`` as a user runs it (stdout carries non-UTF-8 file names as raw bytes)."""
    proc = subprocess.run(
        [sys.executable, "-m", "aivsreal", "predict", "--json", "--model", str(model), *inputs],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")[-3000:]
    lines = proc.stdout.decode("utf-8", "surrogateescape").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def local_corpus(tiny_onnx, corpus) -> list[dict]:
    """The local engine's JSON lines for the corpus: the reference every Ray run must reproduce."""
    return _local_json(tiny_onnx, [str(corpus)])


def _ray_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.run(
        [sys.executable, "-m", "aivsreal", "predict", "--engine", "ray", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _assert_same(local: list[dict], rows: list[dict]) -> None:
    """Per file, in order: the same path, and the same score/label/... or the same error."""
    assert [r["path"] for r in rows] == [display_path(d["path"]) for d in local]
    for d, r in zip(local, rows, strict=True):
        if "error" in d:
            assert (r["error_kind"], r["error"]) == (d["error"]["kind"], d["error"]["message"]), d["path"]
            assert r["score"] is None and r["label"] is None
        else:
            assert r["error_kind"] is None, (d["path"], r["error"])
            assert round(r["score"], 6) == d["score"], d["path"]
            assert (r["label"], r["uncertain"], r["threshold"], r["model_id"]) == (
                d["label"],
                d["uncertain"],
                d["threshold"],
                d["model_id"],
            ), d["path"]


@pytest.mark.slow
def test_ray_cli_matches_local_json(tiny_onnx, corpus, local_corpus, tmp_path):
    local = local_corpus
    n_bad = sum("error" in d for d in local)
    assert n_bad >= 10 and len(local) - n_bad >= 10  # the corpus really mixes good and bad files

    out = tmp_path / "res" / "scores.parquet"
    proc = _ray_cli([str(corpus), "--model", str(tiny_onnx), "--output", str(out), "--ray-workers", "2"])
    assert proc.returncode == 1, proc.stderr[-3000:]  # some inputs failed: exit 1, like the local engine
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["n"] == len(local) and summary["errors"] == n_bad and summary["workers"] == 2

    table = pq.read_table(out)
    assert table.column_names == COLUMNS
    _assert_same(local, table.to_pylist())
    assert any("\\x" in p for p in table.column("path").to_pylist())  # the latin-1 file name, escaped
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temp file left behind


@pytest.mark.slow
def test_ray_reads_manifests_and_uris(tiny_onnx, corpus, local_corpus, tmp_path):
    """A Parquet manifest of relative paths and a file:// URI prefix reach the same files and scores."""
    import pyarrow as pa

    from aivsreal.scale import predict_ray

    names = sorted(p.name for p in corpus.iterdir() if p.is_file() and p.name.isascii())[:12]
    man_dir = tmp_path / "m"
    man_dir.mkdir()
    for n in names:
        (man_dir / n).symlink_to(corpus / n)
    pq.write_table(pa.table({"path": names, "label": ["ai"] * len(names)}), man_dir / "manifest.parquet")
    uri = corpus.resolve().as_uri()

    out = tmp_path / "both.parquet"
    s = predict_ray([str(man_dir / "manifest.parquet"), uri], model=tiny_onnx, output=out, workers=1)
    rows = pq.read_table(out).to_pylist()
    by_name = {Path(d["path"]).name: d for d in local_corpus}
    local_m = [dict(by_name[n], path=str(man_dir / n)) for n in names]  # same bytes, reached via the manifest
    local_all = local_corpus
    assert s["n"] == len(rows) == len(local_m) + len(local_all)

    _assert_same(local_m, rows[: len(names)])  # manifest entries resolved against the manifest's folder
    uri_rows = rows[len(names) :]
    assert all(r["path"].startswith("file://") for r in uri_rows)
    # the same bytes read through fsspec: same scores; errors the same kind (messages may name the source)
    for d, r in zip(local_all, uri_rows, strict=True):
        assert r["path"].endswith("/" + display_path(Path(d["path"]).name)), (r["path"], d["path"])
        if "error" in d:
            assert r["error_kind"] == d["error"]["kind"], d["path"]
        else:
            assert r["error_kind"] is None and round(r["score"], 6) == d["score"], d["path"]


def test_ray_usage_errors_are_clear(tiny_onnx, tmp_path):
    """Bad options fail before Ray starts, with exit 2 and a message, never a traceback."""
    r = CliRunner().invoke(app, ["predict", "--engine", "ray", str(tmp_path), "--model", str(tiny_onnx)])
    assert r.exit_code == 2 and "--output" in r.output
    r = CliRunner().invoke(
        app,
        ["predict", "--engine", "ray", str(tmp_path), "--model", str(tiny_onnx), "--output", str(tmp_path)],
    )
    assert r.exit_code == 2 and "directory" in r.output
    r = CliRunner().invoke(
        app,
        [
            "predict",
            "--engine",
            "ray",
            str(tmp_path),
            "--model",
            str(tmp_path / "nope.onnx"),
            "--output",
            str(tmp_path / "o.parquet"),
        ],
    )
    assert r.exit_code == 2 and "nope.onnx" in r.output
    r = CliRunner().invoke(
        app,
        [
            "predict",
            "--engine",
            "ray",
            str(tmp_path),
            "--model",
            str(tiny_onnx),
            "--threshold",
            "1.5",
            "--output",
            str(tmp_path / "o.parquet"),
        ],
    )
    assert r.exit_code == 2 and "threshold" in r.output
    assert not (tmp_path / "o.parquet").exists()
