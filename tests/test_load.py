"""A real ``aivsreal serve`` on 127.0.0.1 under load: 2,000 mixed good/bad requests at concurrency 32,
slow and stalled clients alongside, then SIGTERM with requests in flight.

Asserted: no 5xx, no dropped request, every file's verdict right, server RSS growth under
``RSS_GROWTH_BOUND_MB``, stalled bodies time out (408) without slowing the rest, trickling uploads
complete, and graceful shutdown answers every request already received. p50/p99 latency and
throughput are printed (run with ``-s``) and never asserted.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import statistics
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from helpers import make_image  # noqa: E402
from hostile import make_corpus  # noqa: E402
from serve_helpers import multipart, read_response, start_server, stop_server  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

N_REQUESTS = 2000
CONCURRENCY = 32
WARMUP = 200
RSS_GROWTH_BOUND_MB = 150  # after warm-up; a leak of ~75 KiB per request would cross it
BODY_TIMEOUT_S = 30  # serve.py's default body_timeout: a stalled upload is answered 408 after this
BOUNDARY = "aivsrealBoundary7"  # the one serve_helpers.multipart writes


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _encode(img, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def payloads(tmp_path_factory) -> list[tuple[str, bytes, set[str] | None]]:
    """(name, bytes, expected error kinds or None for "must be scored"): ~2/3 good, ~1/3 bad."""
    corpus = make_corpus(tmp_path_factory.mktemp("load") / "corpus", with_specials=False)
    out: list[tuple[str, bytes, set[str] | None]] = []
    for c in corpus:
        out.append((f"corpus_{len(out)}{c.path.suffix}", c.path.read_bytes(), None if c.ok else set(c.kinds)))
    for i, (side, fmt) in enumerate(
        [(96, "JPEG"), (160, "PNG"), (256, "JPEG"), (384, "WEBP"), (512, "JPEG")] * 4
    ):
        img = make_image("ai" if i % 2 else "real", side, seed=100 + i)
        out.append((f"gen_{i}.{fmt.lower()}", _encode(img, fmt), None))
    return out


@pytest.fixture()
def server(tiny_onnx, tmp_path):
    proc, base = start_server(tiny_onnx, tmp_path / "server.log", max_upload_mb=4.0, workers=2)
    yield proc, base, tmp_path / "server.log"
    stop_server(proc)


async def _fire(base: str, jobs: list[tuple[str, bytes]], concurrency: int) -> list[dict]:
    """POST each job (one file per request) with at most ``concurrency`` in flight; one record each."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def one(i: int, name: str, data: bytes) -> dict:
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        "/v1/predict", files=[("files", (name, data, "application/octet-stream"))]
                    )
                    return {"i": i, "status": r.status_code, "body": r.json(), "s": time.perf_counter() - t0}
                except Exception as e:  # a dropped connection or timeout is recorded, then asserted on
                    return {"i": i, "status": None, "error": repr(e), "s": time.perf_counter() - t0}

        return await asyncio.gather(*(one(i, n, d) for i, (n, d) in enumerate(jobs)))


def _check(records: list[dict], jobs: list[tuple[str, bytes, set[str] | None]]) -> list[str]:
    problems = []
    for r in records:
        name, _, kinds = jobs[r["i"]]
        if r["status"] is None:
            problems.append(f"{name}: no response ({r['error']})")
            continue
        if r["status"] >= 500:
            problems.append(f"{name}: HTTP {r['status']} {r['body']}")
            continue
        res = r["body"].get("results") or [{}]
        if kinds is None and not (r["status"] == 200 and 0 <= res[0].get("score", -1) <= 1):
            problems.append(f"{name}: expected a score, got {r['status']} {r['body']}")
        if kinds is not None and (r["status"] < 400 or res[0].get("error", {}).get("kind") not in kinds):
            problems.append(f"{name}: expected 4xx with {sorted(kinds)}, got {r['status']} {r['body']}")
    return problems


def _stall(port: int, body_bytes: int) -> socket.socket:
    """A client that sends headers (and ``body_bytes`` of a declared 200 kB body) and then nothing."""
    s = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: 200000\r\n\r\n"
    ).encode()
    s.sendall(head + multipart([("s.png", b"\x89PNG" + b"\x00" * 4000)])[:body_bytes])
    return s


def _trickle(port: int, data: bytes, chunks: int, pause: float, out: dict) -> None:
    """A slow but live client: sends a valid upload in ``chunks`` pieces, ``pause`` seconds apart."""
    body = multipart([("slow.png", data)])
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            f"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        step = -(-len(body) // chunks)
        for k in range(0, len(body), step):
            s.sendall(body[k : k + step])
            time.sleep(pause)
        out["status"], out["body"] = read_response(s, timeout=60)
    out["s"] = time.perf_counter() - t0


def test_load_mixed_good_and_bad_with_slow_and_stalled_clients(server, payloads, record_property):
    proc, base, log = server
    port = int(base.rsplit(":", 1)[1])
    jobs = [payloads[i % len(payloads)] for i in range(N_REQUESTS)]
    n_bad = sum(k is not None for _, _, k in jobs)
    assert 0.2 < n_bad / N_REQUESTS < 0.5

    warm = asyncio.run(_fire(base, [(n, d) for n, d, _ in jobs[:WARMUP]], CONCURRENCY))
    assert not _check(warm, jobs[:WARMUP])
    rss0 = _rss_mb(proc.pid)

    stalled_t0 = time.monotonic()
    stalled = [_stall(port, body_bytes=300) for _ in range(4)]
    slow: list[dict] = [{} for _ in range(2)]
    slow_threads = [
        threading.Thread(target=_trickle, args=(port, payloads[-1][1], 10, 0.5, out), daemon=True)
        for out in slow
    ]
    for t in slow_threads:
        t.start()
    t0 = time.perf_counter()
    records = asyncio.run(_fire(base, [(n, d) for n, d, _ in jobs], CONCURRENCY))
    wall = time.perf_counter() - t0
    rss1 = _rss_mb(proc.pid)
    for t in slow_threads:
        t.join(60)

    problems = _check(records, jobs)
    assert not problems, f"{len(problems)} bad responses, e.g.:\n" + "\n".join(problems[:10])
    assert len(records) == N_REQUESTS and all(r["status"] is not None for r in records)
    lat = sorted(r["s"] for r in records)
    p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
    figures = {
        "requests": N_REQUESTS,
        "concurrency": CONCURRENCY,
        "bad_share": round(n_bad / N_REQUESTS, 3),
        "throughput_rps": round(N_REQUESTS / wall, 1),
        "p50_ms": round(p50 * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(lat[-1] * 1000, 1),
        "rss_after_warmup_mb": round(rss0, 1),
        "rss_after_load_mb": round(rss1, 1),
        "rss_growth_mb": round(rss1 - rss0, 1),
        "slow_clients_s": [round(o.get("s", -1), 1) for o in slow],
    }
    print("\nLOAD", json.dumps(figures))
    for k, v in figures.items():
        record_property(k, v)
    assert rss1 - rss0 < RSS_GROWTH_BOUND_MB, figures

    # trickling uploads (5 s each) were served alongside the load
    for o in slow:
        assert o.get("status") == 200 and "score" in o["body"]["results"][0], o
    # stalled uploads are answered 408 once the body timeout passes (not held forever, nor a 5xx)
    for s in stalled:
        left = BODY_TIMEOUT_S + 15 - (time.monotonic() - stalled_t0)
        status, body = read_response(s, timeout=max(left, 1))
        assert status == 408 and body["error"]["kind"], (status, body)
        s.close()
    assert proc.poll() is None, log.read_text()[-2000:]


def test_graceful_shutdown_answers_every_request_in_flight(server, payloads):
    """32 requests of 24 files each are received, then SIGTERM: all 32 get complete 200 answers and
    the server exits (0 or re-raised SIGTERM) instead of dropping them."""
    proc, base, log = server
    port = int(base.rsplit(":", 1)[1])
    good = sorted(((n, d) for n, d, k in payloads if k is None), key=lambda x: -len(x[1]))[:24]  # the largest
    body = multipart(good)
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
    for s in socks:
        s.sendall(head + body)
    time.sleep(0.5)  # every request received; most still queued for the 2 inference threads
    proc.send_signal(signal.SIGTERM)
    answers = [read_response(s, timeout=60) for s in socks]
    for s in socks:
        s.close()
    assert [a[0] for a in answers] == [200] * 32
    assert all(len(a[1]["results"]) == 24 and all("score" in r for r in a[1]["results"]) for a in answers)
    assert proc.wait(40) in (0, -signal.SIGTERM), log.read_text()[-2000:]
    # the shutdown really overlapped the work: requests were still answered after it began
    text = log.read_text()
    assert "Shutting down" in text, text[-2000:]
    after = text.split("Shutting down", 1)[1].count("POST /v1/predict")
    print(f"\nSHUTDOWN: {after} of 32 requests answered after SIGTERM")
    assert after >= 1, text[-3000:]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_idle_connections_do_not_lock_out_real_clients(server):
    proc, base, _ = server
    port = int(base.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(330)]
    try:
        time.sleep(1.0)
        r = httpx.get(f"{base}/healthz", timeout=10)
        assert r.status_code == 200, r.status_code
    finally:
        for s in idle:
            s.close()


def test_keep_alive_outlasts_common_client_idle_expiry(server):
    """A connection left idle for 6 s (past httpx's default 5 s expiry, which equalled uvicorn's default) is
    still open: reusing it answers 200 on the same socket instead of a connection reset.

    With equal timeouts a client can reuse a connection just as the server closes it; that race dropped one
    request in 2,000 under load (ReadError), and a 1 s server keep-alive reproduced it."""
    from aivsreal.serve import KEEP_ALIVE_S

    _, base, _ = server
    assert KEEP_ALIVE_S > 15  # httpx 5 s, aiohttp 15 s
    with httpx.Client(base_url=base, limits=httpx.Limits(keepalive_expiry=60), timeout=10) as client:
        peers = []
        for wait in (0, 6.0):
            time.sleep(wait)
            r = client.get("/healthz")
            assert r.status_code == 200
            peers.append(r.extensions["network_stream"].get_extra_info("client_addr"))
        assert peers[0] == peers[1], "the idle connection was closed by the server and a new one opened"
