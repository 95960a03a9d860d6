"""The web page, on-device scoring and the extension, held to the Python numbers.

Python writes the test vectors (images, their preprocessed tensors and scores); the JavaScript scoring
module must reproduce them: in Node for the pure preprocessing, in headless Chromium for decoding,
ONNX Runtime Web, the page and the extension. Browser tests need Debian's chromium, the playwright
package and the built bundle (``cd web && npm ci && npm run build``); they skip with the reason otherwise.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import statistics
import subprocess
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image
from PIL import Image
from serve_helpers import image_bytes, recalibrated, start_server, stop_server

from aivsreal.card import ModelCard, Preprocess
from aivsreal.geometry import POLICIES, VIEWS, plan
from aivsreal.imageio import decode
from aivsreal.preprocess import to_input

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "src" / "aivsreal" / "web_static"
EXTENSION = ROOT / "web" / "dist" / "extension"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PARITY = 1e-3  # on-device vs server score, same file


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).is_file():
        return "chromium not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright python package is not installed"
    if not (STATIC / "assets" / "page.js").is_file():
        return "web bundle not built (cd web && npm ci && npm run build)"
    return None


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
pytestmark = pytest.mark.timeout(600)


# ---- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tiny_onnx, tmp_path_factory) -> Path:
    """The tiny model at temperature 1, so scores spread out and parity checks mean something."""
    return recalibrated(tiny_onnx, tmp_path_factory.mktemp("web_model"))


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web_server")
    proc, base = start_server(model, tmp / "server.log", max_upload_mb=8)
    yield base
    stop_server(proc)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """A real-like PNG, an AI-like JPEG, a small PNG the model upscales, and a corrupt file."""
    d = tmp_path_factory.mktemp("web_images")
    out = {
        "real.png": d / "real.png",
        "ai.jpg": d / "ai.jpg",
        "small.png": d / "small.png",
        "corrupt.jpg": d / "corrupt.jpg",
    }
    make_image("real", 96, 31).save(out["real.png"])
    make_image("ai", 120, 32, w=150).save(out["ai.jpg"], quality=92)
    make_image("real", 40, 33, w=50).save(out["small.png"])
    out["corrupt.jpg"].write_bytes(image_bytes("ai", 80, 34, "JPEG")[:200] + b"\0" * 64)
    return out


@pytest.fixture()
def browser(tmp_path):
    """A fresh headless Chromium (new user-data-dir) driven by Playwright; yields a launcher."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        contexts = []

        def launch(extra: list[str] | None = None, **kw):
            ctx = p.chromium.launch_persistent_context(
                str(tmp_path / f"profile{len(contexts)}"),
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS + (extra or []),
                viewport={"width": 1100, "height": 900},
                **kw,
            )
            contexts.append(ctx)
            return ctx

        yield launch
        for ctx in contexts:
            ctx.close()


def api_scores(base: str, paths: list[Path]) -> dict[str, float]:
    import httpx

    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    res = httpx.post(f"{base}/v1/predict", files=files, timeout=60).json()["results"]
    return {r["path"]: r["score"] for r in res if "score" in r}


def read_results(page, mode: str) -> dict[str, dict]:
    out = {}
    for li in page.query_selector_all(f"li.result[data-mode={mode}]"):
        out[li.get_attribute("data-name")] = {
            "state": li.get_attribute("data-state"),
            "score": float(li.get_attribute("data-score")) if li.get_attribute("data-score") else None,
            "label": li.get_attribute("data-label"),
            "latency_ms": float(li.get_attribute("data-latency-ms") or "nan"),
            "error": li.get_attribute("data-error-kind"),
            "text": li.inner_text(),
        }
    return out


def upload(page, paths: list[Path], timeout_ms: int = 120_000) -> None:
    from playwright.sync_api import expect

    page.set_input_files("#file-input", [str(p) for p in paths])
    expect(page.locator("li.result[data-state=pending]")).to_have_count(0, timeout=timeout_ms)


# ---- the page ---------------------------------------------------------------------------------------
@pytest.mark.browser
@needs_browser
def test_page_scores_images_on_server_and_on_device(server, images, browser):
    """Upload images, read the scores from the page; on-device mode agrees with the API within 1e-3;
    a corrupt file shows its error in place while the others are scored."""
    from playwright.sync_api import expect

    page = browser().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/")
    expect(page.locator("body[data-ready=true]")).to_have_count(1, timeout=30_000)
    files = list(images.values())
    want = api_scores(server, files)
    assert set(want) == {"real.png", "ai.jpg", "small.png"}

    upload(page, files)
    got = read_results(page, "server")
    assert set(got) == set(images)
    for name, score in want.items():
        assert got[name]["state"] == "done" and got[name]["score"] == pytest.approx(score, abs=1e-6)
    assert got["corrupt.jpg"]["state"] == "error" and got["corrupt.jpg"]["error"] == "corrupt"

    page.check("input[name=mode][value=device]")
    upload(page, files)
    dev = read_results(page, "device")
    assert dev["corrupt.jpg"]["state"] == "error"
    diffs = {}
    for name, score in want.items():
        assert dev[name]["state"] == "done", dev[name]
        diffs[name] = abs(dev[name]["score"] - score)
        assert diffs[name] <= PARITY, f"{name}: device {dev[name]['score']} vs server {score}"
        assert dev[name]["label"] == got[name]["label"]
    assert not errors, errors

    # Latency per image on this device, warm (the first run above loaded and warmed the model).
    lat = []
    for _ in range(3):
        page.click("#clear")
        upload(page, files)
        lat += [r["latency_ms"] for r in read_results(page, "device").values() if r["state"] == "done"]
    page.click("#clear")
    page.check("input[name=mode][value=server]")
    upload(page, files[:2])
    page.check("input[name=mode][value=device]")
    upload(page, files)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
    report = {
        "per_image_ms": [round(x, 1) for x in lat],
        "median_ms": round(statistics.median(lat), 1),
        "max_abs_score_diff_vs_server": max(diffs.values()),
        "note": "decode + preprocess + ONNX Runtime Web (wasm, 1 thread), tiny 64 px test model",
    }
    (ARTIFACTS / "web-latency.json").write_text(json.dumps(report, indent=2))
    print(f"\nin-browser latency per image: {report}")


@pytest.mark.browser
@needs_browser
def test_api_docs_render_offline(server, browser):
    """Swagger UI at /docs renders the API in Chromium with every request kept on this server."""
    from playwright.sync_api import expect

    page = browser().new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{server}/docs")
    expect(page.locator(".opblock-summary-path", has_text="/v1/predict")).to_have_count(1, timeout=30_000)
    assert page.locator(".opblock-summary-path", has_text="/healthz").count() == 1
    foreign = [u for u in requests if not u.startswith(server) and not u.startswith(("data:", "blob:"))]
    assert not foreign, foreign
    assert f"{server}/openapi.json" in requests


@pytest.mark.browser
@needs_browser
def test_api_docs_try_it_out_offers_a_file_picker(server, browser):
    """Swagger's try-it-out on POST /v1/predict: a file input, and no missing-component warning (the
    upload schema is OpenAPI 3.1 contentMediaType, not format: binary)."""
    from playwright.sync_api import expect

    page = browser().new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    page.goto(f"{server}/docs")
    op = page.locator(".opblock-post", has_text="/v1/predict")
    expect(op).to_have_count(1, timeout=30_000)
    op.locator(".opblock-summary").click()
    op.locator("button.try-out__btn").click()
    expect(op.locator("input[type=file]")).not_to_have_count(0, timeout=10_000)
    expect(op.locator(".responses-table")).not_to_have_count(0)
    assert "ErrorResponse" in op.inner_text() or "error" in op.inner_text()
    missing = [m for m in console if "Could not find component" in m]
    assert not missing, missing


def _vectors(model_card: ModelCard) -> list[dict]:
    """Images (as files) and the tensors Python makes of them, under several preprocessing policies."""
    pp_model = model_card.preprocess
    pps = [
        pp_model,
        Preprocess(size=48, policy="center_crop", interpolation="bicubic"),
        Preprocess(
            size=56,
            policy="resize",
            interpolation="lanczos",
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        ),
        Preprocess(size=40, policy="resize", interpolation="nearest"),
        Preprocess(size=80, policy="native_crop", interpolation="bicubic"),
    ]
    rgba = np.asarray(make_image("ai", 70, 41).convert("RGBA")).copy()
    rgba[..., 3] = np.linspace(0, 255, 70, dtype=np.uint8)[None, :]
    imgs = {
        "rgb96.png": make_image("real", 96, 40),
        "rgba70.png": Image.fromarray(rgba, "RGBA"),
        "gray30x80.png": make_image("real", 80, 42, w=30).convert("L"),
        "palette64.png": make_image("ai", 64, 43).convert("P", palette=Image.Palette.ADAPTIVE),
        "tall20x130.png": make_image("ai", 130, 44, w=20),
        "lossless.webp": make_image("real", 72, 45),
    }
    out = []
    for name, img in imgs.items():
        buf = io.BytesIO()
        img.save(buf, format="WEBP", lossless=True) if name.endswith(".webp") else img.save(buf, format="PNG")
        data = buf.getvalue()
        decoded = decode(data).image
        for k, pp in enumerate(pps):
            x = to_input(decoded, pp).astype(np.float32)
            out.append(
                {
                    "name": name,
                    "pp_index": k,
                    "data": base64.b64encode(data).decode(),
                    "pp": json.loads(ModelCard(backbone="x", preprocess=pp).to_json())["preprocess"],
                    "expected": base64.b64encode(x.tobytes()).decode(),
                }
            )
    return out


@pytest.mark.browser
@needs_browser
def test_score_module_reproduces_python_tensors_and_scores(server, model, browser):
    """The shared module (score.js) decodes and preprocesses exactly as Python, and scores within 1e-3."""
    from aivsreal.runtime import Detector

    det = Detector.load(model)
    vectors = _vectors(det.card)
    page = browser().new_page()
    page.goto(f"{server}/")
    res = page.evaluate(
        """async ([vectors, card, modelId]) => {
          const m = await import('/assets/score.js');
          const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
          const scorer = await m.Scorer.create('/v1/model.onnx', card, modelId);
          const out = [];
          for (const v of vectors) {
            const blob = new Blob([b64(v.data)]);
            const decoded = await m.decodeImage(blob, v.pp);
            const x = m.inputFromDecoded(decoded, v.pp);
            const want = new Float32Array(b64(v.expected).buffer);
            let maxDiff = x.length === want.length ? 0 : Infinity;
            for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(x[i] - want[i]));
            const r = { name: v.name, pp: v.pp_index, maxDiff };
            if (v.pp_index === 0) r.score = (await scorer.score(blob, v.name)).score;
            out.push(r);
          }
          return out;
        }""",
        [vectors, json.loads(det.card.to_json()), det.model_id],
    )
    assert len(res) == len(vectors)
    bad = [r for r in res if not r["maxDiff"] <= 1e-6]
    assert not bad, f"tensors differ from Python: {bad}"
    for r in res:
        if r["pp"] == 0:
            data = base64.b64decode(next(v["data"] for v in vectors if v["name"] == r["name"]))
            assert r["score"] == pytest.approx(det.predict(data).score, abs=PARITY), r["name"]


# ---- the extension ----------------------------------------------------------------------------------
@pytest.mark.browser
@needs_browser
def test_extension_scores_an_image_with_the_bundled_model(server, model, images, browser, tmp_path):
    """Load the unpacked extension, check its menu entry, and score an image the way its menu does."""
    if not (EXTENSION / "manifest.json").is_file():
        pytest.skip("extension not built (cd web && npm run build)")
    from playwright.sync_api import expect

    ext = tmp_path / "extension"
    shutil.copytree(EXTENSION, ext)
    (ext / "model").mkdir(exist_ok=True)
    shutil.copyfile(model, ext / "model" / "model.onnx")
    shutil.copyfile(model.with_name(model.name + ".card.json"), ext / "model" / "card.json")
    ctx = browser([f"--disable-extensions-except={ext}", f"--load-extension={ext}"])
    try:
        sw = (
            ctx.service_workers[0]
            if ctx.service_workers
            else ctx.wait_for_event("serviceworker", timeout=20_000)
        )
    except Exception:
        pytest.skip("this headless chromium did not load the unpacked extension")
    assert sw.evaluate("() => chrome.runtime.getManifest().manifest_version") == 3
    # The menu entry exists (update rejects an unknown id).
    sw.evaluate("() => chrome.contextMenus.update('aivsreal-check', {title: 'Check with aivsreal'})")

    want = api_scores(server, [images["real.png"], images["ai.jpg"]])
    for name in ("real.png", "ai.jpg"):
        mime = "image/png" if name.endswith("png") else "image/jpeg"
        src = f"data:{mime};base64," + base64.b64encode(images[name].read_bytes()).decode()
        with ctx.expect_page(timeout=30_000) as popup:
            sw.evaluate("(src) => checkImage(src)", src)  # what the context-menu click calls
        page = popup.value
        expect(page.locator("body[data-ready=true]")).to_have_count(1, timeout=60_000)
        li = page.locator("li.result")
        assert li.get_attribute("data-state") == "done", li.inner_text()
        assert float(li.get_attribute("data-score")) == pytest.approx(want[name], abs=PARITY)
        page.close()
    ext_id = sw.url.split("/")[2]
    page = ctx.new_page()
    bad = "data:image/jpeg;base64," + base64.b64encode(images["corrupt.jpg"].read_bytes()).decode()
    page.goto(f"chrome-extension://{ext_id}/result.html?src={urllib.parse.quote(bad, safe='')}")
    expect(page.locator("body[data-ready=true]")).to_have_count(1, timeout=60_000)
    assert page.locator("li.result").get_attribute("data-state") == "error"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "extension-error.png"))


def test_extension_package_is_mv3_and_self_contained():
    """The built extension: MV3, a context menu, no remote code, the zip holding the same files."""
    if not (EXTENSION / "manifest.json").is_file():
        pytest.skip("extension not built (cd web && npm ci && npm run build)")
    man = json.loads((EXTENSION / "manifest.json").read_text())
    assert man["manifest_version"] == 3 and "contextMenus" in man["permissions"]
    assert "http" not in man["content_security_policy"]["extension_pages"]
    for f in ("background.js", "result.html", "result.js", "ort-wasm-simd-threaded.wasm"):
        assert (EXTENSION / f).is_file(), f
    for js in EXTENSION.glob("*.js"):
        text = js.read_text(encoding="utf-8")
        assert "cdn.jsdelivr" not in text and "unpkg.com" not in text, js.name
    z = EXTENSION.parent / "aivsreal-extension.zip"
    assert z.is_file()
    with zipfile.ZipFile(z) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
    on_disk = {p.relative_to(EXTENSION).as_posix() for p in EXTENSION.rglob("*") if p.is_file()}
    assert names == on_disk


# ---- the pure preprocessing, in Node ----------------------------------------------------------------
def test_js_preprocessing_matches_pillow_bit_for_bit(tmp_path):
    """web/src/preprocess.js against Pillow/numpy on raw pixels: resampling (every filter, up and down),
    alpha compositing, every policy, normalisation and the score maths."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed")
    from aivsreal.imageio import to_rgb
    from aivsreal.runtime import Detector

    rng = np.random.default_rng(7)
    cases = []
    shapes = [(37, 23), (23, 37), (100, 80), (64, 64), (7, 300), (257, 129)]
    pps = [
        Preprocess(size=64, policy="native_crop", interpolation="bilinear"),
        Preprocess(size=64, policy="native_crop", interpolation="bicubic"),
        Preprocess(size=48, policy="center_crop", interpolation="bilinear", crop_pct=0.9),
        Preprocess(size=56, policy="center_crop", interpolation="lanczos"),
        Preprocess(
            size=40,
            policy="resize",
            interpolation="nearest",
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        ),
        Preprocess(size=33, policy="resize", interpolation="bicubic"),
    ]
    for w, h in shapes:
        a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        a[..., 3] = rng.choice([0, 1, 77, 128, 254, 255], size=(h, w))
        rgb = to_rgb(Image.fromarray(a, "RGBA"))
        for k, pp in enumerate(pps):
            cases.append(
                {
                    "w": w,
                    "h": h,
                    "rgba": base64.b64encode(a.tobytes()).decode(),
                    "pp": json.loads(ModelCard(backbone="x", preprocess=pp).to_json())["preprocess"],
                    "expected": base64.b64encode(to_input(rgb, pp).astype(np.float32).tobytes()).decode(),
                    "label": f"{w}x{h}/{k}",
                }
            )
    card = ModelCard(backbone="x", threshold=0.42, uncertain_band=0.07, temperature=1.7)
    det = Detector(backend=None, card=card, path=Path("m.onnx"))
    logits = [-30.0, -3.2, -0.5, -0.3, 0.0, 0.05, 0.3, 2.0, 41.0]
    scores = [det.make_prediction("x", z) for z in logits]
    spec = {
        "cases": cases,
        "card": json.loads(card.to_json()),
        "logits": logits,
        "scores": [{"score": p.score, "label": p.label, "uncertain": p.uncertain} for p in scores],
    }
    (tmp_path / "vectors.json").write_text(json.dumps(spec))
    script = tmp_path / "check.mjs"
    script.write_text(
        f"""
import fs from 'node:fs';
import {{ toInput }} from {json.dumps((ROOT / "web/src/preprocess.js").as_uri())};
import {{ scoreFromLogit }} from {json.dumps((ROOT / "web/src/decision.js").as_uri())};
const v = JSON.parse(fs.readFileSync({json.dumps(str(tmp_path / "vectors.json"))}, 'utf8'));
const b = (s) => new Uint8Array(Buffer.from(s, 'base64'));
const out = {{ tensors: [], scores: [] }};
for (const c of v.cases) {{
  const x = toInput(b(c.rgba), c.w, c.h, c.pp);
  const e = new Float32Array(b(c.expected).buffer);
  let d = x.length === e.length ? 0 : Infinity;
  for (let i = 0; i < e.length; i++) d = Math.max(d, Math.abs(x[i] - e[i]));
  out.tensors.push({{ label: c.label, maxDiff: d }});
}}
for (const z of v.logits) out.scores.push(scoreFromLogit(z, v.card));
console.log(JSON.stringify(out));
"""
    )
    r = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["tensors"]) == len(cases)
    bad = [t for t in out["tensors"] if t["maxDiff"] != 0]
    assert not bad, f"JS tensors differ from Python: {bad[:5]}"
    for got, want in zip(out["scores"], spec["scores"], strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-12)
        assert (got["label"], got["uncertain"]) == (want["label"], want["uncertain"])


def _run_node(script: str, tmp_path: Path, spec: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed")
    (tmp_path / "vectors.json").write_text(json.dumps(spec))
    (tmp_path / "check.mjs").write_text(
        script.replace("VECTORS", json.dumps(str(tmp_path / "vectors.json")))
        .replace("PREPROCESS_JS", json.dumps((ROOT / "web/src/preprocess.js").as_uri()))
        .replace("DECISION_JS", json.dumps((ROOT / "web/src/decision.js").as_uri()))
    )
    r = subprocess.run([node, str(tmp_path / "check.mjs")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("policy", list(POLICIES))
def test_js_plan_and_views_match_python_for_every_policy(policy, tmp_path):
    """One geometry plan in two languages: for every policy and view set (centre, TTA, patches, and the
    random training view replaying Python's seeded draws) the JS boxes and tensors equal Python's."""
    import random

    from aivsreal.imageio import to_rgb
    from aivsreal.preprocess import normalize, view_images

    rng = np.random.default_rng(11)
    pp = Preprocess(size=32, policy=policy, interpolation="bilinear", crop_pct=0.8)
    cases = []
    for w, h in [(32, 32), (20, 45), (100, 70), (33, 129), (200, 90)]:
        a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        a[..., 3] = 255
        rgb = to_rgb(Image.fromarray(a, "RGBA"))
        for views in VIEWS:
            draws: list[int] = []
            gen = random.Random(w * 1000 + h)

            def randint(lo: int, hi: int, gen=gen, draws=draws) -> int:
                draws.append(gen.randint(lo, hi))
                return draws[-1]

            p = plan(w, h, pp, views, randint if views == "random" else None)
            draws_copy = list(draws)
            got = view_images(
                rgb, pp, views, random.Random(w * 1000 + h).randint if views == "random" else None
            )
            x = np.stack([normalize(v, pp) for v in got]).astype(np.float32)
            cases.append(
                {
                    "w": w,
                    "h": h,
                    "views": views,
                    "draws": draws_copy,
                    "rgba": base64.b64encode(a.tobytes()).decode(),
                    "boxes": [list(b) for b in p.boxes],
                    "flips": list(p.flips),
                    "resize": list(p.resize) if p.resize else None,
                    "expected": base64.b64encode(x.tobytes()).decode(),
                }
            )
    spec = {"pp": json.loads(ModelCard(backbone="x", preprocess=pp).to_json())["preprocess"], "cases": cases}
    out = _run_node(
        """
import fs from 'node:fs';
import { plan, toInputs, POLICIES, VIEWS } from PREPROCESS_JS;
const v = JSON.parse(fs.readFileSync(VECTORS, 'utf8'));
const b = (s) => new Uint8Array(Buffer.from(s, 'base64'));
const out = { policies: POLICIES, views: VIEWS, cases: [] };
for (const c of v.cases) {
  const replay = () => { const d = [...c.draws]; return () => d.shift(); };
  const p = plan(c.w, c.h, v.pp, { views: c.views, randint: replay() });
  const xs = toInputs(b(c.rgba), c.w, c.h, v.pp, { views: c.views, randint: replay() });
  const e = new Float32Array(b(c.expected).buffer);
  const flat = new Float32Array(xs.reduce((n, x) => n + x.length, 0));
  let at = 0;
  for (const x of xs) { flat.set(x, at); at += x.length; }
  let d = flat.length === e.length ? 0 : Infinity;
  for (let i = 0; i < e.length && d !== Infinity; i++) d = Math.max(d, Math.abs(flat[i] - e[i]));
  out.cases.push({ boxes: p.boxes, flips: p.flips, resize: p.resize, maxDiff: d });
}
console.log(JSON.stringify(out));
""",
        tmp_path,
        spec,
    )
    assert out["policies"] == list(POLICIES) and out["views"] == list(VIEWS)
    for c, got in zip(cases, out["cases"], strict=True):
        where = f"{c['w']}x{c['h']} {policy}/{c['views']}"
        assert (got["boxes"], got["flips"], got["resize"]) == (c["boxes"], c["flips"], c["resize"]), where
        assert got["maxDiff"] == 0, where


def test_js_decision_rule_matches_python(tmp_path):
    """The decision rule (aggregation of view logits, calibration, threshold override, uncertain band)
    gives the same results in decision.js as Detector.postprocess."""
    from aivsreal.runtime import Detector

    card = ModelCard(backbone="x", threshold=0.42, uncertain_band=0.07, temperature=1.7)
    det = Detector(backend=None, card=card, path=Path("m.onnx"))
    cases = []
    for logits in ([-30.0], [-0.3], [0.0], [0.05, 0.3], [2.0, -1.0, 0.5, 0.25], [41.0], [-0.4, -0.2, 0.1]):
        for thr in (None, 0.2, 0.6):
            p = det.postprocess("x", logits, threshold=thr)
            cases.append(
                {
                    "logits": logits,
                    "threshold": thr,
                    "want": [p.score, p.label, p.uncertain, p.threshold, p.logit],
                }
            )
    out = _run_node(
        """
import fs from 'node:fs';
import { aggregate, scoreFromLogit } from DECISION_JS;
const v = JSON.parse(fs.readFileSync(VECTORS, 'utf8'));
console.log(JSON.stringify(v.cases.map((c) => {
  const r = scoreFromLogit(c.logits, v.card, { threshold: c.threshold });
  return [r.score, r.label, r.uncertain, r.threshold, aggregate(c.logits)];
})));
""",
        tmp_path,
        {"card": json.loads(card.to_json()), "cases": cases},
    )
    for c, got in zip(cases, out, strict=True):
        want = c["want"]
        assert got[0] == pytest.approx(want[0], abs=1e-12) and got[4] == pytest.approx(want[4], abs=1e-12), c
        assert got[1:4] == want[1:4], c
