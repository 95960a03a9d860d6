"""What a new user meets (issue 15): the CLI through its real entry point, the Python API, the HTTP API's
documented shapes, and the packaged page's assets."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

STATIC = ROOT / "src" / "aivsreal" / "web_static"
AIVSREAL = Path(sys.executable).with_name("aivsreal")  # the console script, as a user runs it


def cli(
    *args: str, stdin: str | None = None, timeout: float = 180, **env: str
) -> subprocess.CompletedProcess:
    """Run the installed ``aivsreal`` entry point (this checkout's sources win through PYTHONPATH)."""
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "120", **env}
    return subprocess.run(
        [str(AIVSREAL), *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=e
    )


@pytest.fixture(scope="module")
def client(tiny_onnx):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aivsreal.runtime import Detector
    from aivsreal.serve import create_app

    with TestClient(create_app(detector=Detector.load(tiny_onnx))) as c:
        yield c


# ---- 1. the packaged page --------------------------------------------------------------------------
def test_gzipped_assets_are_sent_encoded_or_plain(client):
    """The wasm is stored only as .gz: gzip-accepting clients get it encoded, others get the plain bytes."""
    gz = STATIC / "assets" / "ort-wasm-simd-threaded.wasm.gz"
    assert gz.is_file() and not gz.with_suffix("").exists()
    plain = gzip.decompress(gz.read_bytes())
    r = client.get("/assets/ort-wasm-simd-threaded.wasm", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/wasm"
    assert r.headers["content-encoding"] == "gzip" and r.content == plain  # httpx decodes it
    r = client.get("/assets/ort-wasm-simd-threaded.wasm", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and "content-encoding" not in r.headers and r.content == plain
    assert client.get("/assets/nothing.js").status_code == 404
    assert client.get("/").headers["content-type"].startswith("text/html")
    assert b"swagger-ui-bundle.js" in client.get("/docs").content


def test_web_dir_serves_another_build(tiny_onnx, tmp_path):
    """--web-dir / $AIVSREAL_WEB_DIR: a web developer's fresh build is what the server shows."""
    from fastapi.testclient import TestClient

    from aivsreal.runtime import Detector
    from aivsreal.serve import create_app

    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>fresh build</title>")
    with TestClient(create_app(detector=Detector.load(tiny_onnx), static_dir=tmp_path)) as c:
        assert "fresh build" in c.get("/").text
    p = cli("serve", "--web-dir", str(tmp_path / "nope"), "--port", "1")
    assert p.returncode == 2 and "no index.html" in p.stderr
