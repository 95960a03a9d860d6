"""``aivsreal serve`` as a real process on 127.0.0.1: scoring, batches, limits, load and shutdown."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serve_helpers import (  # noqa: E402
    image_bytes,
    multipart,
    png_bomb,
    read_response,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.timeout(300)
MAX_UPLOAD_MB = 4.0
FIELDS = {"path", "score", "label", "uncertain", "threshold", "model_id"}


@pytest.fixture(scope="module")
def server(tiny_onnx, tmp_path_factory):
    """One server for the module, with its temp dir pointed at an empty folder we can watch."""
    tmp = tmp_path_factory.mktemp("serve")
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir), "TEMP": str(tmpdir), "TMP": str(tmpdir)}
    proc, base = start_server(tiny_onnx, tmp / "server.log", max_upload_mb=MAX_UPLOAD_MB, env=env)
    yield {"base": base, "proc": proc, "tmpdir": tmpdir, "log": tmp / "server.log", "model": tiny_onnx}
    code = stop_server(proc)
    assert code in (0, -signal.SIGTERM), (
        f"server exited {code} on SIGTERM: {(tmp / 'server.log').read_text()[-2000:]}"
    )


@pytest.fixture(scope="module")
def detector(tiny_onnx):
    from aivsreal.runtime import Detector

    return Detector.load(tiny_onnx)


def post(base: str, files: list[tuple[str, bytes]], **params) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/predict",
        files=[("files", (n, d, "application/octet-stream")) for n, d in files],
        params=params,
        timeout=60,
    )


def test_health_model_card_and_onnx_file(server, detector):
    base = server["base"]
    h = httpx.get(f"{base}/healthz", timeout=10).json()
    assert h["status"] == "ok" and h["model_id"] == detector.model_id
    info = httpx.get(f"{base}/v1/model", timeout=10).json()
    assert info["card"]["preprocess"] == json.loads(detector.card.to_json())["preprocess"]
    assert info["card"]["threshold"] == detector.card.threshold
    assert info["onnx_url"] == "/v1/model.onnx"
    onnx_bytes = httpx.get(f"{base}{info['onnx_url']}", timeout=30).content
    assert hashlib.sha256(onnx_bytes).hexdigest() == info["onnx_sha256"]
    assert onnx_bytes == Path(server["model"]).read_bytes()
    spec = httpx.get(f"{base}/openapi.json", timeout=10).json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["files"]["type"] == "array"


def test_real_and_ai_images_scored_like_the_library(server, detector):
    """A batch of a real-like and an AI-like image: same fields and numbers as ``predict --json``."""
    files = [("real.png", image_bytes("real", 96, 11)), ("ai.jpg", image_bytes("ai", 120, 12, "JPEG", w=150))]
    r = post(server["base"], files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == detector.model_id
    res = body["results"]
    assert [x["path"] for x in res] == ["real.png", "ai.jpg"]
    for (_, data), item in zip(files, res, strict=True):
        assert set(item) == FIELDS, item
        want = detector.predict(data).to_dict()
        assert item["score"] == pytest.approx(want["score"], abs=2e-6)
        assert item["label"] == ("ai" if item["score"] >= item["threshold"] else "real")
        assert item["uncertain"] == want["uncertain"]


def test_batch_with_bad_files_reports_each_in_place(server):
    files = [
        ("a.png", image_bytes("real", 80, 1)),
        ("broken.jpg", image_bytes("ai", 80, 2, "JPEG")[:300]),
        ("notes.txt", b"just some text, not an image"),
        ("empty.png", b""),
        ("b.webp", image_bytes("ai", 100, 3, "WEBP")),
    ]
    r = post(server["base"], files)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["path"] for x in res] == [n for n, _ in files]
    assert "score" in res[0] and "score" in res[4]
    assert res[1]["error"]["kind"] == "corrupt"
    assert res[2]["error"]["kind"] == "not_an_image"
    assert res[3]["error"]["kind"] == "empty"
    assert all(set(x["error"]) == {"kind", "message"} for x in res[1:4])


def test_unsupported_type_is_415(server):
    r = post(server["base"], [("notes.txt", b"plain text"), ("data.bin", bytes(range(256)))])
    assert r.status_code == 415
    body = r.json()
    assert body["error"]["kind"] == "no_image_scored"
    assert {x["error"]["kind"] for x in body["results"]} == {"not_an_image"}
    r = httpx.post(f"{server['base']}/v1/predict", json={"files": ["x"]}, timeout=10)
    assert r.status_code == 415 and r.json()["error"]["kind"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "content_type,body,kind",
    [
        ("multipart/form-data; boundary=zz", b"this is not multipart at all", "bad_request"),
        ("multipart/form-data", multipart([("a.png", b"x")]), "bad_request"),  # no boundary
        (
            "multipart/form-data; boundary=aivsrealBoundary7",
            multipart([("a.png", b"x")], field="file"),
            "no_files",
        ),
    ],
)
def test_malformed_requests_are_400(server, content_type, body, kind):
    r = httpx.post(
        f"{server['base']}/v1/predict", content=body, headers={"content-type": content_type}, timeout=10
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["kind"] == kind


def test_bad_query_parameter_is_422_json(server):
    r = post(server["base"], [("a.png", image_bytes("real", 64, 1))], provenance="perhaps")
    assert r.status_code == 422
    assert r.json()["error"]["kind"] == "invalid_request" and "provenance" in r.json()["error"]["message"]


def test_decompression_bomb_refused_without_decoding(server):
    bomb = png_bomb(50_000, 50_000)  # 2.5 gigapixels declared, a few hundred bytes sent
    t0 = time.monotonic()
    r = post(server["base"], [("bomb.png", bomb)])
    assert time.monotonic() - t0 < 10
    assert r.status_code == 413, r.text
    assert r.json()["results"][0]["error"]["kind"] == "too_many_pixels"
    r = post(server["base"], [("bomb.png", bomb), ("ok.png", image_bytes("ai", 64, 5))])
    assert r.status_code == 200
    kinds = [x.get("error", {}).get("kind") for x in r.json()["results"]]
    assert kinds == ["too_many_pixels", None]
    assert httpx.get(f"{server['base']}/healthz", timeout=10).status_code == 200


def _raw(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=20)


def test_oversized_upload_refused_from_its_declared_length(server):
    """Content-Length over the limit: 413 before a single body byte is sent."""
    limit = int(MAX_UPLOAD_MB * 1024 * 1024)
    with _raw(server["base"]) as s:
        s.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {limit + 1}\r\n\r\n".encode()
        )
        status, body = read_response(s)
    assert status == 413 and body["error"]["kind"] == "too_large"


def test_oversized_chunked_upload_refused_while_streaming(server):
    """No Content-Length (chunked): the server answers 413 once the limit is passed, while the client is
    still sending; a server that read everything first would never answer here."""
    limit = int(MAX_UPLOAD_MB * 1024 * 1024)
    head = multipart([("big.png", b"")])[: -len(b"\r\n--aivsrealBoundary7--\r\n")]  # an open part
    with _raw(server["base"]) as s:
        s.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=aivsrealBoundary7\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        s.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
        block = b"\0" * (256 * 1024)
        sent = 0
        while sent <= limit + len(block):
            s.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            sent += len(block)
        status, body = read_response(s)  # the terminating chunk is never sent
    assert status == 413 and body["error"]["kind"] == "too_large"


def test_large_upload_kept_in_memory_not_on_disk(server):
    """A multi-megabyte upload (over Starlette's 1 MB spool) leaves nothing in the server's temp dir."""
    big = image_bytes("real", 1100, 7, "PNG", w=1100)
    assert 1.2e6 < len(big) < MAX_UPLOAD_MB * 1024 * 1024

    def snapshot() -> dict[str, int]:  # onnxruntime keeps a small session-id file there: not an upload
        return {p.name: p.stat().st_size for p in server["tmpdir"].iterdir()}

    before = snapshot()
    r = post(server["base"], [("big.png", big)])
    assert r.status_code == 200 and "score" in r.json()["results"][0]
    assert snapshot() == before
    assert all(s < 4096 for s in before.values())


def test_concurrent_requests_no_server_errors(server):
    """200 requests at concurrency 16, mixed single images and batches: no 5xx, stable scores."""
    imgs = [image_bytes("real", 96, 20), image_bytes("ai", 96, 21)]
    codes: list[int] = []
    scores: dict[int, set[float]] = {0: set(), 1: set()}
    lock = threading.Lock()

    def one(i: int, client: httpx.Client) -> None:
        k = i % 2
        files = [("files", (f"{i}.png", imgs[k], "image/png"))] * (1 + (i % 3 == 0))
        r = client.post(f"{server['base']}/v1/predict", files=files, timeout=120)
        with lock:
            codes.append(r.status_code)
            if r.status_code == 200:
                scores[k].update(x["score"] for x in r.json()["results"])

    with httpx.Client(limits=httpx.Limits(max_connections=16)) as client:
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda i: one(i, client), range(200)))
    assert len(codes) == 200
    assert all(c == 200 for c in codes), sorted(set(codes))
    assert len(scores[0]) == 1 and len(scores[1]) == 1  # same bytes, same score, whatever the batching


def test_provenance_and_heatmap_flags_answer_per_file(server):
    r = post(server["base"], [("a.png", image_bytes("real", 64, 1))], provenance="true", heatmap="true")
    assert r.status_code == 200
    item = r.json()["results"][0]
    assert "score" in item
    prov, heat = item["provenance"], item["heatmap"]
    assert isinstance(prov, list) and item["verdict"].endswith("(model)")  # as predict --provenance
    assert isinstance(heat, dict) and ("error" in heat or "png_base64" in heat)


def test_errors_are_json(server):
    r = httpx.get(f"{server['base']}/v1/nothing-here", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["kind"] == "not_found"
    r = httpx.get(f"{server['base']}/v1/predict", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["kind"] == "method_not_allowed"


def test_sigterm_lets_an_in_flight_request_finish(tiny_onnx, tmp_path):
    """Graceful shutdown: a request whose headers arrived before SIGTERM still gets its answer."""
    proc, base = start_server(tiny_onnx, tmp_path / "server.log")
    try:
        body = multipart([("a.png", image_bytes("ai", 96, 3))])
        with _raw(base) as s:
            s.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=aivsrealBoundary7\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:100]
            )
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert proc.poll() is None, "server quit with a request in flight"
            s.sendall(body[100:])
            status, res = read_response(s)
        assert status == 200 and "score" in res["results"][0]
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean shutdown
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/healthz", timeout=2)
    finally:
        stop_server(proc)


def test_serve_with_missing_model_exits_2_with_a_message(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "aivsreal", "serve", "--model", str(tmp_path / "nope.onnx"), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "nope.onnx" in r.stderr and "Traceback" not in r.stderr


def test_page_served_with_local_assets(server):
    r = httpx.get(f"{server['base']}/", timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "http" not in csp  # nothing from another origin
    static = Path(__file__).resolve().parents[1] / "src" / "aivsreal" / "web_static"
    if not (static / "index.html").is_file():
        assert "not built" in r.text
        pytest.skip(
            "web bundle not built (cd web && npm ci && npm run build): only the fallback page checked"
        )
    assert "/assets/page.js" in r.text and "//cdn" not in r.text
    wasm = httpx.get(f"{server['base']}/assets/ort-wasm-simd-threaded.wasm", timeout=30)
    assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
    assert wasm.content[:4] == b"\0asm"


def test_api_docs_load_swagger_ui_from_this_server(detector, tmp_path):
    """/docs references only this server's own assets (FastAPI's default pulls Swagger UI from a CDN, which a
    closed network cannot reach), and every asset it references is served; unbuilt, it says how to build."""
    import re

    from fastapi.testclient import TestClient

    from aivsreal.serve import WEB_STATIC, create_app, find_asset

    with TestClient(create_app(detector=detector, static_dir=tmp_path)) as c:
        r = c.get("/docs")
        assert (
            r.status_code == 200 and "missing from this installation" in r.text and "/openapi.json" in r.text
        )
        assert c.get("/redoc").status_code == 404  # ReDoc would come from a CDN: not offered
    if not find_asset(WEB_STATIC / "assets" / "swagger", "swagger-ui-bundle.js"):  # stored gzipped
        pytest.skip("web bundle not built (cd web && npm ci && npm run build): only the fallback checked")
    with TestClient(create_app(detector=detector)) as c:
        r = c.get("/docs")
        init = c.get("/docs/init.js").text
        assert r.status_code == 200 and "/docs/init.js" in r.text and "SwaggerUIBundle" in init
        assert not re.search(r"(https?:)?//", r.text + init), "the docs page references another origin"
        refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert {"/assets/swagger/swagger-ui-bundle.js", "/assets/swagger/swagger-ui.css"} <= set(refs)
        for ref in refs:
            a = c.get(ref)
            assert a.status_code == 200 and len(a.content) > 0, ref
        assert c.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]


def test_server_scores_through_the_detector_stages_with_tta_tier_and_threshold(server, detector):
    """The server is one more door onto Detector.preprocess → forward → postprocess: tta, tier and a
    threshold override give exactly what the Python API gives, and the card is never changed."""
    data = image_bytes("ai", 96, 5)
    for params, kw in (
        ({}, {}),
        ({"tta": "true"}, {"tta": True}),
        ({"tier": "hard"}, {"tier": "hard"}),
        ({"threshold": "0.2"}, {"threshold": 0.2}),
    ):
        r = post(server["base"], [("x.png", data)], **params)
        assert r.status_code == 200, r.text
        got, want = r.json()["results"][0], detector.predict(data, **kw)
        assert got["score"] == round(want.score, 6) and got["label"] == want.label, params
        assert got["threshold"] == want.threshold, params
    assert (
        detector.card.threshold
        == httpx.get(f"{server['base']}/v1/model", timeout=10).json()["card"]["threshold"]
    )
    r = post(server["base"], [("x.png", data)], threshold="1.5")
    assert r.status_code == 422 and "threshold" in r.json()["error"]["message"]
    r = post(server["base"], [("x.png", data)], tier="ultra")
    assert r.status_code == 422


def test_provenance_verdict_reaches_api_users(server):
    r = post(server["base"], [("a.png", image_bytes("real", 64, 1))], provenance="true")
    item = r.json()["results"][0]
    assert isinstance(item["provenance"], list)
    assert item["verdict"].split(" ")[0] in ("ai", "real", "uncertain")
