"""What a new user meets (issue 15): the CLI through its real entry point, the Python API, the HTTP API's
documented shapes, and the packaged page's assets."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, make_image

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
def client():
    """The app in-process around the shipped model (no training needed)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aivsreal.runtime import Detector
    from aivsreal.serve import create_app

    with TestClient(create_app(detector=Detector.load())) as c:
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
    docs = client.get("/docs").content
    assert b"swagger-ui-bundle.js" in docs and b"/docs/init.js" in docs


def test_web_dir_serves_another_build(tmp_path):
    """--web-dir / $AIVSREAL_WEB_DIR: a web developer's fresh build is what the server shows."""
    from fastapi.testclient import TestClient

    from aivsreal.runtime import Detector
    from aivsreal.serve import create_app

    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>fresh build</title>")
    with TestClient(create_app(detector=Detector.load(), static_dir=tmp_path)) as c:
        assert "fresh build" in c.get("/").text
    p = cli("serve", "--web-dir", str(tmp_path / "nope"), "--port", "1")
    assert p.returncode == 2 and "no index.html" in p.stderr


# ---- 2. output options -------------------------------------------------------------------------------
EXAMPLES = ROOT / "docs" / "examples"


def _csv_rows(text: str) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_json_and_csv_together_write_both(tmp_path):
    """--json --csv FILE: JSON lines on stdout and the same rows in the CSV (never a header-only file)."""
    out = tmp_path / "out.csv"
    p = cli("predict", str(EXAMPLES), "--json", "--csv", str(out))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    table = _csv_rows(out.read_text())
    assert len(rows) == len(table) == 2
    for j, c in zip(rows, table):
        assert c["path"] == j["path"] and float(c["score"]) == pytest.approx(j["score"], abs=1e-6)
        assert c["uncertain"] == json.dumps(j["uncertain"])  # true/false, as in JSON
        assert c["label"] == j["label"]


def test_csv_to_stdout_and_conflicts_are_usage_errors(tmp_path):
    p = cli("predict", str(EXAMPLES), "--csv", "-")
    assert p.returncode == 0, p.stderr
    rows = _csv_rows(p.stdout)
    assert len(rows) == 2 and {r["uncertain"] for r in rows} <= {"true", "false"}
    for args, words in [
        (["--json", "--csv", "-"], "both write to stdout"),
        (["--engine", "ray", "--json", "--output", str(tmp_path / "o.parquet")], "--json"),
        (["--engine", "ray", "--csv", str(tmp_path / "o.csv"), "--output", "x.parquet"], "--csv"),
        (["--engine", "ray", "--tta", "--output", str(tmp_path / "o.parquet")], "--tta"),
        (["--output", str(tmp_path / "o.parquet")], "only with --engine ray"),
        (["--ray-workers", "2"], "only with --engine ray"),
        (["--engine", "spark"], "spark"),
        (["--csv", str(tmp_path)], "is a directory"),
    ]:
        p = cli("predict", str(EXAMPLES), *args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert words in p.stderr, (args, p.stderr)
        assert not p.stdout.strip(), args
    assert not list(tmp_path.iterdir())


def test_provenance_reaches_the_csv(tmp_path):
    out = tmp_path / "p.csv"
    p = cli("predict", str(EXAMPLES / "coffee.jpg"), "--provenance", "--csv", str(out))
    assert p.returncode == 0, p.stderr
    (row,) = _csv_rows(out.read_text())
    assert row["verdict"].endswith("(model)") and isinstance(json.loads(row["provenance"]), list)
    assert "verdict" in p.stdout.splitlines()[1]


# ---- 3. scores explain themselves; 6. CLI conventions ------------------------------------------------
def _shipped_threshold() -> float:
    return json.loads((ROOT / "src/aivsreal/models_dist/default.onnx.card.json").read_text())["threshold"]


def test_table_states_the_score_and_the_decision_line():
    p = cli("predict", str(EXAMPLES))
    assert p.returncode == 0, p.stderr
    legend, header, *rows = p.stdout.splitlines()
    t = f"{_shipped_threshold():.2f}"
    assert "calibrated P(AI)" in legend and f">= {t}" in legend and str(_shipped_threshold()) not in legend
    assert header.split()[:3] == ["path", "score", "label"] and len(rows) == 2


def test_help_is_plain_and_explains_the_score():
    p = cli("predict", "--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    for noise in ("<bool>", "<list[str]>", "<str>", "<float>", "<int>", "<path>"):
        assert noise not in text, noise
    assert "[scale] extra" in text
    assert f"default: the model card's; {_shipped_threshold():.2f} for the shipped model" in text
    assert "calibrated probability" in text and "can move a score a lot" in text
    for verb in ("train", "evaluate", "serve", "inspect", "data summary"):
        h = cli(*verb.split(), "--help").stdout
        assert "<bool>" not in h and "<list[" not in h and "<str>" not in h, verb


def test_version():
    from aivsreal import __version__

    for flag in ("--version", "-V"):
        p = cli(flag)
        assert p.returncode == 0 and p.stdout.strip() == f"aivsreal {__version__}"


def test_progress_goes_to_a_terminal_stderr_even_with_json(tmp_path):
    """stderr a terminal: a progress bar there, stdout stays pure JSON; --quiet turns it off."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    for i in range(3):
        make_image("real", 64, i).save(tmp_path / f"{i}.png")

    def run(*extra: str) -> tuple[subprocess.CompletedProcess, str]:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal's size
        e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.Popen(
            [str(AIVSREAL), "predict", str(tmp_path), "--json", "--batch-size", "1", *extra],
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            env=e,
        )
        os.close(slave)
        err = b""
        while True:
            r, _, _ = select.select([master], [], [], 120)
            if not r:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        out = proc.stdout.read()
        proc.wait(60)
        os.close(master)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, ""), err.decode(
            "utf-8", "replace"
        )

    p, err = run()
    assert p.returncode == 0
    assert [json.loads(line)["path"] for line in p.stdout.splitlines()] == [
        str(tmp_path / f"{i}.png") for i in range(3)
    ]
    assert "/3 [" in err and "img/s" in err, err
    p, err = run("--quiet")
    assert p.returncode == 0 and "img" not in err, err
    p = cli("predict", str(tmp_path), "--json")  # stderr a pipe: no bar
    assert p.returncode == 0 and p.stderr == ""


def test_table_rows_stream_as_files_finish(monkeypatch, tmp_path):
    """The table is printed row by row: the first row is out before the second file is scored."""
    from typer.testing import CliRunner

    from aivsreal import cli as cli_mod
    from aivsreal.runtime import Detector, Prediction

    det = Detector.load()
    seen_before_second: list[str] = []

    def slow_iter(self, files, **kw):
        yield Prediction(
            source=files[0], score=0.1, label="real", uncertain=False, threshold=0.88, model_id="m"
        )
        sys.stdout.flush()
        seen_before_second.append(sys.stdout.buffer.getvalue().decode())
        yield Prediction(
            source=files[1], score=0.95, label="ai", uncertain=False, threshold=0.88, model_id="m"
        )

    monkeypatch.setattr(Detector, "load", classmethod(lambda cls, *a, **k: det))
    monkeypatch.setattr(Detector, "iter_predict", slow_iter)
    for n in ("a.png", "b.png"):
        make_image("real", 32, 1).save(tmp_path / n)
    res = CliRunner().invoke(cli_mod.app, ["predict", str(tmp_path / "a.png"), str(tmp_path / "b.png")])
    assert res.exit_code == 0, res.output
    (early,) = seen_before_second
    assert "a.png" in early and "b.png" not in early and "calibrated P(AI)" in early
    assert "b.png" in res.output


# ---- 4. folders ----------------------------------------------------------------------------------------
def test_sub_folders_are_counted_and_r_is_suggested(tmp_path):
    (tmp_path / "only" / "x").mkdir(parents=True)
    (tmp_path / "only" / "y").mkdir()
    make_image("real", 64, 1).save(tmp_path / "only" / "x" / "a.png")
    p = cli("predict", str(tmp_path / "only"))
    assert p.returncode == 2
    assert "no input images found" in p.stderr and "skipped 2 sub-folders" in p.stderr and "-r" in p.stderr
    p = cli("predict", str(tmp_path / "only"), "-r", "--json")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 1
    make_image("real", 64, 2).save(tmp_path / "only" / "b.png")
    p = cli("predict", str(tmp_path / "only"), "--json")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 1
    assert "skipped 2 sub-folders" in p.stderr and "--recursive" in p.stderr


# ---- 7. Python API ---------------------------------------------------------------------------------------
def test_errors_are_results_unless_strict(tmp_path):
    from aivsreal import Detector, PredictionError

    det = Detector.load()
    r = det.predict("/nope.jpg")
    assert not r.ok and r.score is None and r.error["kind"] == "not_found"
    with pytest.raises(PredictionError) as e:
        det.predict("/nope.jpg", strict=True)
    assert e.value.kind == "not_found" and "/nope.jpg" in str(e.value) and isinstance(e.value, ValueError)
    good = tmp_path / "g.png"
    make_image("real", 64, 3).save(good)
    with pytest.raises(PredictionError):
        det.predict([str(good), str(tmp_path / "missing.png")], strict=True)
    assert det.predict(str(good), strict=True).score is not None
    assert "strict=True" in (Detector.predict.__doc__ or "")


# ---- 8. HTTP API -----------------------------------------------------------------------------------------
def _png(seed: int = 1) -> bytes:
    import io

    buf = io.BytesIO()
    make_image("real", 80, seed).save(buf, format="PNG")
    return buf.getvalue()


def test_openapi_documents_every_status_with_the_real_error_shape(client):
    spec = client.get("/openapi.json").json()
    text = json.dumps(spec)
    assert "HTTPValidationError" not in text and "ValidationError" not in spec["components"]["schemas"]
    op = spec["paths"]["/v1/predict"]["post"]
    refs = {
        c: r["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for c, r in op["responses"].items()
    }
    assert refs.pop("200") == "PredictResponse"
    assert set(refs) == {"400", "408", "413", "415", "422", "503"} and set(refs.values()) == {"ErrorResponse"}
    err = spec["components"]["schemas"]["ErrorResponse"]
    assert (
        err["required"] == ["error"]
        and "detail" not in spec["components"]["schemas"]["ErrorInfo"]["properties"]
    )
    files = op["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["files"]
    assert files["type"] == "array" and files["items"]["contentMediaType"] == "application/octet-stream"
    assert "JsonSchema_string_binary" in client.get("/docs/init.js").text  # see test_web's try-it-out test
    for path in ("/healthz", "/v1/model"):
        assert (
            "$ref" in spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        )


def test_real_responses_match_the_documented_models(client):
    from aivsreal.api_models import ErrorResponse, Health, ModelInfo, PredictResponse

    Health.model_validate(client.get("/healthz").json())
    ModelInfo.model_validate(client.get("/v1/model").json())
    r = client.post("/v1/predict", files=[("files", ("a.png", _png())), ("files", ("t.txt", b"text"))])
    assert r.status_code == 200
    body = PredictResponse.model_validate(r.json())
    assert body.results[0].score is not None and body.results[1].error.kind == "not_an_image"
    r = client.post("/v1/predict", params={"provenance": "true"}, files=[("files", ("a.png", _png()))])
    (item,) = PredictResponse.model_validate(r.json()).results
    assert item.verdict and item.verdict.endswith("(model)") and isinstance(item.provenance, list)
    assert r.json()["results"][0]["verdict"] == item.verdict
    cases = [
        (client.post("/v1/predict", files=[("files", ("t.txt", b"text"))]), 415, "no_image_scored"),
        (client.post("/v1/predict", content=b"x", headers={"content-type": "text/plain"}), 415, None),
        (
            client.post("/v1/predict", params={"heatmap": "maybe"}, files=[("files", ("a.png", _png()))]),
            422,
            None,
        ),
        (client.post("/v1/predict", files=[("other", ("a.png", _png()))]), 400, "no_files"),
        (client.get("/v1/nothing"), 404, "not_found"),
    ]
    for res, status, kind in cases:
        assert res.status_code == status, res.text
        e = ErrorResponse.model_validate(res.json())
        assert kind is None or e.error.kind == kind
        assert "detail" not in res.json() or e.error.kind == "invalid_request"


# ---- 5. formats users have; too small to judge --------------------------------------------------------------
def _encoded(fmt: str, size=(300, 200)) -> bytes:
    import io

    from aivsreal.imageio import _load_plugins

    _load_plugins()
    buf = io.BytesIO()
    make_image("real", size[1], 4, w=size[0]).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,ext", [("HEIF", ".heic"), ("AVIF", ".avif"), ("JXL", ".jxl")])
def test_phone_and_web_formats_are_scored(fmt, ext, tmp_path):
    """HEIC (pillow-heif, base install) and AVIF (Pillow) always; JPEG XL with the [jxl] extra, else a
    clear unsupported_format naming it."""
    if fmt == "JXL":
        pytest.importorskip("pillow_jxl", reason="the [jxl] extra is not installed")
    from aivsreal import Detector
    from aivsreal.imageio import decode

    data = _encoded(fmt)
    assert decode(data).image.size == (300, 200)
    f = tmp_path / f"photo{ext}"
    f.write_bytes(data)
    p = cli("predict", str(tmp_path), "--json")  # found in a folder by its extension, scored
    assert p.returncode == 0, p.stderr
    (row,) = [json.loads(line) for line in p.stdout.splitlines()]
    assert row["path"] == str(f) and 0 <= row["score"] <= 1
    assert row["score"] == pytest.approx(Detector.load().predict(data).score, abs=1e-6)


def test_a_missing_plugin_is_named(monkeypatch):
    """Without a format's plugin the file is unsupported_format with what to install, not 'not an image'."""
    from aivsreal import imageio

    jxl = b"\xff\x0a" + bytes(60)
    assert "aivsreal[jxl]" in imageio.missing_plugin(jxl)
    heic = b"\x00\x00\x00\x18ftypheic" + bytes(40)
    assert "pillow-heif" in imageio.missing_plugin(heic)
    monkeypatch.setattr(
        imageio, "SUPPORTED_FORMATS", tuple(f for f in imageio.SUPPORTED_FORMATS if f != "JXL")
    )
    data = _encoded("JXL") if _has("pillow_jxl") else jxl
    with pytest.raises(imageio.DecodeError) as e:
        imageio.decode(data)
    assert e.value.kind == "unsupported_format" and "[jxl]" in e.value.message


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def test_too_small_inputs_are_uncertain_with_a_reason(client):
    import numpy as np

    from aivsreal import Detector

    r = Detector.load().predict(np.zeros((10, 10, 3), np.uint8))
    assert r.ok and r.uncertain and "too small" in r.reason and "10x10" in r.reason
    assert r.to_dict()["reason"] == r.reason
    big = Detector.load().predict(np.zeros((64, 64, 3), np.uint8))
    assert big.reason is None and "reason" not in big.to_dict()
    tiny = _encoded("PNG", size=(20, 12))
    res = client.post("/v1/predict", files=[("files", ("tiny.png", tiny))]).json()["results"][0]
    assert res["uncertain"] is True and "20x12" in res["reason"]


# ---- 3 and 9. the page: the decision line, order of choice, unreadable files ----------------------------------
@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    pytest.importorskip("uvicorn")
    from serve_helpers import start_server, stop_server

    tmp = tmp_path_factory.mktemp("shipped_server")
    proc, base = start_server(ROOT / "src/aivsreal/models_dist/default.onnx", tmp / "server.log")
    yield base
    stop_server(proc)


@pytest.mark.browser
def test_page_states_the_decision_line_keeps_order_and_labels_unreadable_files(shipped_server, tmp_path):
    from test_web import _browser_missing

    if _browser_missing():
        pytest.skip(_browser_missing())
    from playwright.sync_api import expect, sync_playwright
    from test_web import CHROMIUM, FLAGS

    names = ["b-first.png", "a-second.jpg", "c-broken.jpg", "d-tiny.png"]
    make_image("real", 120, 1).save(tmp_path / names[0])
    make_image("ai", 100, 2).save(tmp_path / names[1], quality=90)
    (tmp_path / names[2]).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(100))
    make_image("real", 12, 3, w=20).save(tmp_path / names[3])
    t = f"{_shipped_threshold():.2f}"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            page = ctx.new_page()
            page.goto(f"{shipped_server}/", timeout=180_000)
            expect(page.locator("body[data-ready=true]")).to_have_count(1, timeout=60_000)
            info = page.locator("#model-info").inner_text()
            assert f"AI at ≥ {t}" in info and str(_shipped_threshold()) not in info, info
            assert "calibrated probability" in page.locator("footer").inner_text()
            page.set_input_files("#file-input", [str(tmp_path / n) for n in names])
            expect(page.locator("li.result[data-state=pending]")).to_have_count(0, timeout=120_000)
            items = page.locator("li.result")
            assert [items.nth(i).get_attribute("data-name") for i in range(4)] == names  # order of choice
            broken = page.locator("li.result[data-name='c-broken.jpg']")
            assert broken.get_attribute("data-state") == "error"
            expect(broken.locator(".thumb.placeholder")).to_have_text("No preview")
            assert "Could not score this file" in broken.inner_text()
            for n in (names[0], names[1], names[3]):
                li = page.locator(f"li.result[data-name='{n}']")
                assert li.get_attribute("data-state") == "done"
                assert f"AI at ≥ {t}" in li.locator(".verdict").inner_text()
                colours = li.evaluate(
                    """(li) => [getComputedStyle(li.querySelector('.bar .fill')).backgroundColor,
                                getComputedStyle(li.querySelector('.verdict')).color]"""
                )
                assert colours[0] == colours[1], (n, colours)  # bar and words in the label's colour
            tiny = page.locator(f"li.result[data-name='{names[3]}']")
            assert tiny.get_attribute("data-uncertain") == "true" and "too small" in tiny.inner_text()
            # a second choice goes on top, again in its own order
            page.set_input_files("#file-input", [str(tmp_path / names[1]), str(tmp_path / names[0])])
            expect(page.locator("li.result[data-state=pending]")).to_have_count(0, timeout=120_000)
            assert [items.nth(i).get_attribute("data-name") for i in range(2)] == [names[1], names[0]]
        finally:
            ctx.close()


def test_heatmap_message_names_the_real_requirement(client):
    r = client.post("/v1/predict", params={"heatmap": "true"}, files=[("files", ("a.png", _png()))])
    heat = r.json()["results"][0]["heatmap"]
    assert heat["error"]["kind"] == "needs_checkpoint"
    assert "torch checkpoint" in heat["error"]["message"] and "--model" in heat["error"]["message"]


def test_readme_and_card_explain_the_threshold_and_tta():
    """The README says why the threshold is where it is, with the shipped card's number; the model card
    says how --tta was validated, with the numbers scripts/tta_check.py measured."""
    readme = (ROOT / "README.md").read_text()
    card = (ROOT / "MODEL_CARD.md").read_text()
    assert (
        f"threshold is\n**{_shipped_threshold():.2f}**" in readme
        or f"**{_shipped_threshold():.2f}**" in readme
    )
    assert "at most 3 % of real photos" in readme
    tta = json.loads((ROOT / "src/aivsreal/models_dist/default.tta.json").read_text())
    assert "## Test-time augmentation (`--tta`)" in card
    assert f"flips {tta['label_flips']} of {tta['n']} labels" in card
    assert f"{100 * tta['tta']['balanced_accuracy']:.1f} %" in card
    assert f"up to {tta['abs_score_change']['max']:.2f}" in card
    assert f"by up to {tta['abs_score_change']['max']:.2f}" in readme


@pytest.mark.browser
def test_device_mode_scores_avif_and_sends_heic_to_the_server(shipped_server, tmp_path):
    """On this device: AVIF decodes in Chromium and scores like the server; HEIC (no browser decodes it)
    is an unsupported_format that says to use the server, which scores it."""
    from test_web import _browser_missing

    if _browser_missing():
        pytest.skip(_browser_missing())
    import httpx
    from playwright.sync_api import expect, sync_playwright
    from test_web import CHROMIUM, FLAGS

    (tmp_path / "p.avif").write_bytes(_encoded("AVIF"))
    (tmp_path / "p.heic").write_bytes(_encoded("HEIF"))
    files = [("files", (n, (tmp_path / n).read_bytes())) for n in ("p.avif", "p.heic")]
    server = {
        r["path"]: r
        for r in httpx.post(f"{shipped_server}/v1/predict", files=files, timeout=60).json()["results"]
    }
    assert all("score" in r for r in server.values()), server
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            page = ctx.new_page()
            page.goto(f"{shipped_server}/", timeout=180_000)
            expect(page.locator("body[data-ready=true]")).to_have_count(1, timeout=60_000)
            page.check("input[name=mode][value=device]")
            page.set_input_files("#file-input", [str(tmp_path / "p.avif"), str(tmp_path / "p.heic")])
            expect(page.locator("li.result[data-state=pending]")).to_have_count(0, timeout=120_000)
            avif = page.locator("li.result[data-name='p.avif']")
            assert avif.get_attribute("data-state") == "done", avif.inner_text()
            assert float(avif.get_attribute("data-score")) == pytest.approx(
                server["p.avif"]["score"], abs=0.02
            )
            heic = page.locator("li.result[data-name='p.heic']")
            assert heic.get_attribute("data-error-kind") == "unsupported_format"
            assert "score it on the server" in heic.inner_text()
        finally:
            ctx.close()
