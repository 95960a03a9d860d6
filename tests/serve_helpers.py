"""Helpers for tests that run ``aivsreal serve`` as a real process on 127.0.0.1 and send it images."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
from helpers import make_image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: Path,
    log: Path,
    *,
    max_upload_mb: float = 4.0,
    workers: int = 2,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start ``aivsreal serve`` on a free loopback port; returns (process, base URL) once /healthz answers."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "aivsreal",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        str(model),
        "--workers",
        str(workers),
        "--max-upload-mb",
        str(max_upload_mb),
        *(extra or []),
    ]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=full_env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start in 90 s: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen, timeout: float = 40) -> int:
    """SIGTERM (graceful shutdown), then wait; kill if it hangs. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def image_bytes(kind: str, size: int = 96, seed: int = 0, fmt: str = "PNG", w: int | None = None) -> bytes:
    buf = io.BytesIO()
    make_image(kind, size, seed, w=w).save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A small PNG whose header declares width×height pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    row = b"\x00" + b"\x00" * width
    idat = zlib.compress(row * 64, 9)  # the first rows only: enough for a header check
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def recalibrated(onnx_path: Path, out_dir: Path, temperature: float = 1.0) -> Path:
    """A copy of an exported model whose card has another temperature (metadata and sidecar).

    The tiny test model is calibrated to a large temperature, which squeezes every score near 0.5;
    temperature 1 spreads them so score comparisons mean something.
    """
    import onnx

    from aivsreal.card import ModelCard, card_path_for
    from aivsreal.fsutil import sha256_file
    from aivsreal.onnx_card import card_json_of, set_card

    m = onnx.load(str(onnx_path))
    card = ModelCard.from_json(card_json_of(m))
    card.temperature = temperature
    card.model_id = f"{card.model_id}-t{temperature:g}"
    set_card(m, card)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "model.onnx"
    out.write_bytes(m.SerializeToString())
    card.weights_file, card.weights_sha256 = out.name, sha256_file(out)
    card_path_for(out).write_text(card.to_json())
    return out


def multipart(
    files: list[tuple[str, bytes]], field: str = "files", boundary: str = "aivsrealBoundary7"
) -> bytes:
    """A multipart/form-data body by hand (for raw-socket tests)."""
    out = bytearray()
    for name, data in files:
        out += f"--{boundary}\r\n".encode()
        out += f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'.encode()
        out += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def read_response(sock: socket.socket, timeout: float = 20) -> tuple[int, dict]:
    """Read one HTTP/1.1 response with Content-Length from a raw socket: (status, JSON body)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = sock.recv(65536)
        if not got:
            break
        buf += got
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        (int(v) for k, v in (ln.split(":", 1) for ln in lines[1:]) if k.lower() == "content-length"), 0
    )
    while len(body) < length:
        got = sock.recv(65536)
        if not got:
            break
        body += got
    return status, json.loads(body[:length] or b"{}")
