"""HTTP API and web page: ``POST /v1/predict``, ``GET /v1/model``, ``/v1/model.onnx``, ``/healthz``, ``/``.

Uploads are parsed as they stream in (python-multipart's push parser) into memory only, so the size
limit is enforced before the whole body is read and nothing a user sends touches the disk. Decoding
and inference run in a bounded thread pool, off the event loop; every error is JSON
``{"error": {"kind", "message"}}`` with a fitting status code.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import json
import mimetypes
import os
import stat
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from . import __version__
from .api_models import Health, ModelInfo, PredictResponse, PredictUpload, error_responses
from .fsutil import sha256_file
from .imageio import MAX_PIXELS
from .runtime import Detector, Prediction

# The built page (committed, so pip installs carry it); AIVSREAL_WEB_DIR or --web-dir serves another build.
WEB_STATIC = Path(__file__).parent / "web_static"
WEB_DIR_ENV = "AIVSREAL_WEB_DIR"
TYPE_ERROR_KINDS = frozenset({"not_an_image", "unsupported_format"})
MAX_NAME_CHARS = 255
MAX_BOUNDARY_CHARS = 200
KEEP_ALIVE_S = 20  # see run(): longer than the idle expiry of common HTTP clients
# The page loads its script, styles and the ONNX Runtime wasm from this origin only.
PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' blob: data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

mimetypes.add_type("application/wasm", ".wasm")  # WebAssembly.instantiateStreaming needs this type
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


class ApiError(Exception):
    """A request-level failure, turned into ``{"error": {...}}`` with ``status``."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message}, **extra}


class PrecompressedFiles(StaticFiles):
    """Static files where a large asset may be stored only gzipped (``NAME.gz``, as the web build writes the
    ONNX Runtime wasm and Swagger UI): sent as is with ``Content-Encoding: gzip``, or decompressed for a
    client that does not accept gzip."""

    async def check_config(self) -> None:
        """No web build at all is not a server error: every asset is then simply not found (404)."""
        if self.directory is not None and not os.path.isdir(self.directory):
            return
        await super().check_config()

    async def get_response(self, path: str, scope: Any) -> Response:
        try:
            return await super().get_response(path, scope)
        except StarletteHTTPException as e:
            if e.status_code != 404:
                raise
        full, st = await asyncio.get_running_loop().run_in_executor(None, self.lookup_path, path + ".gz")
        if st is None or not stat.S_ISREG(st.st_mode):
            raise StarletteHTTPException(404)
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        headers = {"Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
        if "gzip" in Headers(scope=scope).get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return FileResponse(full, media_type=media, headers=headers, stat_result=st)
        return Response(gzip.decompress(Path(full).read_bytes()), media_type=media, headers=headers)


def find_asset(static: Path, rel: str) -> bool:
    """Whether the page build in ``static`` holds ``rel``, stored plain or gzipped."""
    return (static / rel).is_file() or (static / f"{rel}.gz").is_file()


# ---- multipart, streamed into memory -----------------------------------------------------------------
class _Part:
    __slots__ = ("headers", "name", "filename", "data", "_field", "_value")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.name: str | None = None
        self.filename: str | None = None
        self.data: bytearray | None = None  # None: a part we ignore (not 'files')
        self._field = bytearray()
        self._value = bytearray()


class ByteBudget:
    """Upload bytes held in memory across all requests, and per client address, bounded (thread-safe).

    A request takes bytes as they arrive (its declared Content-Length up front) and gives them back when
    it is answered; past either bound it is refused with 503 + Retry-After, so many clients each holding
    a large body open cannot grow the server's memory without limit, and one client cannot starve others.
    """

    def __init__(self, total: int, per_client: int):
        self.total, self.per_client = total, per_client
        self.used = 0
        self.by_client: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, client: str, n: int) -> None:
        with self._lock:
            mine = self.by_client.get(client, 0)
            if self.used + n > self.total or mine + n > self.per_client:
                who = "all clients" if self.used + n > self.total else "this client"
                raise ApiError(
                    503,
                    "busy",
                    f"too many upload bytes in flight for {who}; retry shortly",
                    {"Retry-After": "2"},
                )
            self.used += n
            self.by_client[client] = mine + n

    def give(self, client: str, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.used -= n
            left = self.by_client.get(client, 0) - n
            if left > 0:
                self.by_client[client] = left
            else:
                self.by_client.pop(client, None)


class Reservation:
    """The bytes one request holds in a :class:`ByteBudget`; ``release`` once it is answered."""

    def __init__(self, budget: ByteBudget | None, client: str):
        self.budget, self.client, self.held = budget, client, 0

    def need(self, total: int) -> None:
        """Hold at least ``total`` bytes (503 when the budget cannot give them)."""
        if self.budget is not None and total > self.held:
            self.budget.take(self.client, total - self.held)
            self.held = total

    def release(self) -> None:
        if self.budget is not None:
            self.budget.give(self.client, self.held)
        self.held = 0


async def read_files(
    request: Request,
    *,
    limit: int,
    max_files: int,
    timeout: float,
    field: str = "files",
    deadline: float | None = None,
    reservation: Reservation | None = None,
) -> list[tuple[str, bytes]]:
    """The ``(filename, bytes)`` of each ``field`` part of a multipart body, refusing bodies over ``limit``
    bytes as soon as they pass it (Content-Length first, then the bytes actually received).

    ``timeout`` bounds each wait for data and ``deadline`` the whole body (seconds), both 408; the bytes are
    held in ``reservation`` as they arrive (503 past the server's in-flight budget)."""
    mime, params = parse_options_header(request.headers.get("content-type"))
    if mime != b"multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send multipart/form-data with one or more images in the field 'files'",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart body without a boundary")
    if len(boundary) > MAX_BOUNDARY_CHARS:  # RFC 2046: 1 to 70 characters; the parser refuses > 256
        raise ApiError(
            400,
            "bad_request",
            f"multipart boundary of {len(boundary)} characters (at most {MAX_BOUNDARY_CHARS})",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413, "too_large", f"request body of {int(declared)} bytes exceeds the {limit} byte limit"
        )
    if reservation is not None and declared is not None and declared.isdigit():
        reservation.need(int(declared))  # before reading a byte

    parts: list[_Part] = []
    cur: list[_Part] = []
    n_files = 0

    def on_part_begin() -> None:
        cur[:] = [_Part()]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        cur[0]._field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        cur[0]._value += data[start:end]

    def on_header_end() -> None:
        p = cur[0]
        p.headers[p._field.decode("latin-1").strip().lower()] = p._value.decode("latin-1").strip()
        p._field, p._value = bytearray(), bytearray()

    def on_headers_finished() -> None:
        nonlocal n_files
        p = cur[0]
        _, disp = parse_options_header(p.headers.get("content-disposition", ""))
        p.name = disp.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in disp:
            p.filename = disp[b"filename"].decode("utf-8", "replace")
        if p.name == field:
            n_files += 1
            if n_files > max_files:
                raise ApiError(413, "too_many_files", f"more than {max_files} files in one request")
            p.data = bytearray()
            parts.append(p)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if cur and cur[0].data is not None:
            cur[0].data += data[start:end]

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    received = 0
    stream = request.stream().__aiter__()
    loop = asyncio.get_running_loop()
    end = None if deadline is None else loop.time() + deadline
    try:
        while True:
            wait = timeout if end is None else min(timeout, end - loop.time())
            if wait <= 0:
                raise ApiError(408, "timeout", f"request body not received within {deadline:g} s")
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), wait)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                if end is not None and loop.time() >= end:
                    raise ApiError(
                        408, "timeout", f"request body not received within {deadline:g} s"
                    ) from None
                raise ApiError(408, "timeout", f"no request data for {timeout:g} s") from None
            received += len(chunk)
            if received > limit:
                raise ApiError(413, "too_large", f"request body exceeds the {limit} byte limit")
            if reservation is not None:
                reservation.need(received)
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except FormParserError as e:
        raise ApiError(400, "bad_request", f"malformed multipart body: {e}") from None
    if not parts:
        raise ApiError(400, "no_files", f"no file in the form field '{field}'")
    out = []
    for i, p in enumerate(parts):
        name = (p.filename or f"file{i}")[:MAX_NAME_CHARS]
        out.append((name, bytes(p.data or b"")))
    return out


# ---- the service -------------------------------------------------------------------------------------
class Service:
    """The detector, its thread pool and the limits; shared by every request."""

    def __init__(
        self,
        det: Detector,
        workers: int,
        max_upload_bytes: int,
        max_pixels: int,
        max_files: int,
        max_queue: int,
        body_timeout: float,
        body_deadline: float = 120.0,
        max_inflight_bytes: int | None = None,
    ):
        self.det = det
        self.workers = max(1, int(workers))
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="aivsreal-infer")
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.max_files = max_files
        self.max_queue = max_queue
        self.body_timeout = body_timeout
        self.body_deadline = body_deadline
        total = max_inflight_bytes if max_inflight_bytes is not None else max(8 * max_upload_bytes, 64 << 20)
        # one client address may hold at most half of it: it cannot starve the others, and behind a reverse
        # proxy (one address for everyone) half the budget is still several uploads
        self.budget = ByteBudget(total, max(total // 2, max_upload_bytes + (1 << 20)))
        self.pending = 0
        self._lock = threading.Lock()
        self.onnx_sha256 = sha256_file(det.path) if det.path.suffix == ".onnx" else None

    def model_info(self) -> dict[str, Any]:
        return {
            "model_id": self.det.model_id,
            "card": self.det.card.to_dict(),
            "format": "onnx" if self.onnx_sha256 else "checkpoint",
            "onnx_url": "/v1/model.onnx" if self.onnx_sha256 else None,
            "onnx_sha256": self.onnx_sha256,
            "version": __version__,
        }

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in the pool; refuse with 503 when too many requests already wait for it."""
        with self._lock:
            if self.pending >= self.max_queue:
                raise ApiError(503, "busy", "too many requests waiting; retry shortly", {"Retry-After": "1"})
            self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            with self._lock:
                self.pending -= 1

    def score(
        self,
        files: list[tuple[str, bytes]],
        provenance: bool,
        heatmap: bool,
        *,
        tta: bool = False,
        tier: str = "clean",
        threshold: float | None = None,
    ) -> list[dict[str, Any]]:
        """Score every file through the Detector's stages in one model call; a bad file is an error item."""
        det = self.det
        views = "tta" if tta else det.pp.views
        prepared = [
            det.preprocess(data, name=name, tier=tier, views=views, max_pixels=self.max_pixels)
            for name, data in files
        ]
        preds = det.score_prepared(prepared, threshold=threshold)
        results = []
        for (_, data), pred in zip(files, preds, strict=True):
            if provenance:
                _attach_provenance(pred, data)  # evidence items and the verdict, as predict --provenance
            r = pred.to_dict()
            if heatmap and pred.ok:
                r["heatmap"] = _heatmap(data, None if det.path.suffix == ".onnx" else str(det.path))
            results.append(r)
        return results

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _attach_provenance(pred: Prediction, data: bytes) -> None:
    """Set ``pred.provenance`` (evidence items) and ``pred.verdict``; a failing inspection is an item."""
    try:
        from .provenance import attach

        attach(pred, data)
    except Exception as e:
        from .provenance import combine, item

        pred.provenance = [item("file", "provenance inspection failed", "error", f"{type(e).__name__}: {e}")]
        pred.verdict = combine(pred, pred.provenance)


def _heatmap(data: bytes, model: str | None) -> dict[str, Any]:
    if model is None:  # the requirement is the model, whatever is installed: ONNX has no gradients
        return error_body(
            "needs_checkpoint",
            "heatmaps need a torch checkpoint (ONNX models have no gradients): start the server with "
            "aivsreal serve --model RUN_DIR (or CHECKPOINT.safetensors), with the [train] extra installed",
        )
    try:
        from .explain import heatmap_png
    except (ImportError, AttributeError) as e:
        return error_body("unavailable", f"heatmaps need torch and grad-cam (the [train] extra): {e}")
    try:
        return {"png_base64": base64.b64encode(heatmap_png(data, model=model)).decode("ascii")}
    except Exception as e:  # ExplainError carries a kind (e.g. needs_torch for an ONNX-only server)
        return error_body(getattr(e, "kind", "failed"), f"heatmap failed: {e}")


def all_failed_status(results: list[dict[str, Any]]) -> int | None:
    """Status for a request none of whose files could be scored; None when at least one was."""
    if not results or any("error" not in r for r in results):
        return None
    kinds = {r["error"]["kind"] for r in results}
    if kinds <= TYPE_ERROR_KINDS:
        return 415
    if kinds <= {"too_many_pixels", "too_large"}:
        return 413
    return 422


# ---- the app -----------------------------------------------------------------------------------------
def create_app(
    model: str | os.PathLike | None = None,
    workers: int = 2,
    max_upload_mb: float = 20.0,
    detector: Detector | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    max_files: int = 64,
    max_queue: int = 256,
    body_timeout: float = 30.0,
    body_deadline: float = 120.0,
    max_inflight_mb: float | None = None,
    static_dir: str | os.PathLike | None = None,
) -> FastAPI:
    """Build the FastAPI app around ``detector`` (or the model at ``model``; default: shipped model).

    Raises ``ModelLoadError`` when the model cannot be loaded, so a server never starts without one.
    """
    if detector is None:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        detector = Detector.load(model, threads=threads)
    svc = Service(
        detector,
        workers,
        int(max_upload_mb * 1024 * 1024),
        max_pixels,
        max_files,
        max_queue,
        body_timeout,
        body_deadline,
        None if max_inflight_mb is None else int(max_inflight_mb * 1024 * 1024),
    )
    static = Path(static_dir or os.environ.get(WEB_DIR_ENV) or WEB_STATIC)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        svc.close()

    app = FastAPI(
        title="aivsreal",
        version=__version__,
        description="Tell AI-generated images from real photographs. Scores are calibrated P(AI).",
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: FastAPI's default loads Swagger UI from a CDN
        redoc_url=None,
    )
    app.state.service = svc

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(error_body(e.kind, e.message), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse(error_body(kind, str(e.detail)), status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(d.get("loc", ())), "msg": d.get("msg", "")} for d in e.errors()]
        msg = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail) or "invalid request"
        return JSONResponse(error_body("invalid_request", msg, detail=detail), status_code=422)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.get("/healthz", tags=["service"], summary="Liveness: the model is loaded", response_model=Health)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model_id": svc.det.model_id, "pending": svc.pending, "workers": svc.workers}

    @app.get(
        "/v1/model",
        tags=["model"],
        summary="The model card (preprocessing, threshold, metrics)",
        response_model=ModelInfo,
    )
    async def model_card() -> dict[str, Any]:
        return svc.model_info()

    @app.get(
        "/v1/model.onnx",
        tags=["model"],
        summary="The ONNX model file, for on-device scoring",
        response_class=FileResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The ONNX file"},
            **error_responses(404),
        },
    )
    async def model_file() -> FileResponse:
        if not svc.onnx_sha256:
            raise ApiError(404, "not_found", "this server runs a checkpoint, not an ONNX model")
        return FileResponse(
            svc.det.path,
            media_type="application/octet-stream",
            filename=f"{svc.det.model_id}.onnx",
            headers={"Cache-Control": "no-cache", "ETag": f'"{svc.onnx_sha256}"'},
        )

    upload_schema = {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": PredictUpload.model_json_schema()}},
        }
    }

    @app.post(
        "/v1/predict",
        tags=["predict"],
        summary="Score one or more images (multipart field 'files')",
        description=(
            "Returns {model_id, results: [...]} with one item per file, in order: "
            "{path, score, label, uncertain, threshold, model_id} or {path, error: {kind, message}}. "
            "200 when at least one file was scored; when none was: 415 (all unsupported types), "
            "413 (all too many pixels), 422 (otherwise). Request errors: 400 malformed multipart, "
            "408 body too slow, 413 body over the limit or too many files, 415 not multipart, 503 busy. "
            "With provenance=true each result also has provenance (evidence items) and verdict."
        ),
        openapi_extra=upload_schema,
        response_model=PredictResponse,
        responses=error_responses(400, 408, 413, 415, 422, 503),
    )
    async def predict(
        request: Request,
        provenance: bool = False,
        heatmap: bool = False,
        tta: bool = False,
        tier: Literal["clean", "web", "hard"] = "clean",
        threshold: float | None = Query(None, gt=0.0, lt=1.0),
    ) -> Response:
        held = Reservation(svc.budget, request.client.host if request.client else "?")
        try:
            try:
                files = await read_files(
                    request,
                    limit=svc.max_upload_bytes,
                    max_files=svc.max_files,
                    timeout=svc.body_timeout,
                    deadline=svc.body_deadline,
                    reservation=held,
                )
            except ClientDisconnect:
                return JSONResponse(error_body("disconnected", "client went away"), status_code=400)
            score = functools.partial(svc.score, tta=tta, tier=tier, threshold=threshold)
            results = await svc.run(score, files, provenance, heatmap)
        finally:
            held.release()  # the upload's bytes are no longer held once it is scored (or refused)
        body: dict[str, Any] = {"model_id": svc.det.model_id, "results": results}
        status = all_failed_status(results)
        if status is not None:
            body = {**error_body("no_image_scored", "none of the uploaded files could be scored"), **body}
        # default=str: provenance reports may hold values (bytes, dates) that JSON has no type for
        text = json.dumps(body, ensure_ascii=False, default=str, allow_nan=False)
        return Response(text, status_code=status or 200, media_type="application/json")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        swagger = static / "assets" / "swagger"
        if not find_asset(swagger, "swagger-ui-bundle.js"):
            return HTMLResponse(
                _NOT_BUILT.format(
                    what="API docs page", link='its schema at <a href="/openapi.json">/openapi.json</a>'
                )
            )
        return HTMLResponse(DOCS_HTML, headers={"Content-Security-Policy": DOCS_CSP})

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(DOCS_INIT_JS, media_type="text/javascript")

    @app.get("/", include_in_schema=False)
    async def index() -> Any:
        page = static / "index.html"
        if not page.is_file():
            page_html = _NOT_BUILT.format(what="web page", link='<a href="/docs">/docs</a>')
            return HTMLResponse(page_html, headers={"Content-Security-Policy": PAGE_CSP})
        return FileResponse(page, media_type="text/html", headers={"Content-Security-Policy": PAGE_CSP})

    app.mount("/assets", PrecompressedFiles(directory=static / "assets", check_dir=False), name="assets")
    return app


# /docs: Swagger UI from this server's assets. The init script registers JsonSchema_string_binary (a file
# input), the component Swagger UI looks up for arrays of files and would otherwise log as missing.
DOCS_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>aivsreal API</title>
<link rel="stylesheet" href="/assets/swagger/swagger-ui.css">
<link rel="icon" type="image/png" href="/assets/swagger/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/assets/swagger/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script></body></html>"""
DOCS_INIT_JS = """"use strict";
const fileInput = (system) =>
  function JsonSchemaStringBinary(props) {
    return system.React.createElement("input", {
      type: "file",
      disabled: props.disabled,
      onChange: (e) => props.onChange(e.target.files[0], props.keyName),
    });
  };
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis],
  plugins: [(system) => ({ components: { JsonSchema_string_binary: fileInput(system) } })],
});
"""
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

# Only a broken install or a --web-dir without a build gets here: the package carries the built page.
_NOT_BUILT = """<!doctype html><html lang="en"><meta charset="utf-8"><title>aivsreal</title>
<body><h1>aivsreal</h1><p>The {what} is missing from this installation (its files belong in
<code>aivsreal/web_static</code>). Reinstall with <code>pip install --force-reinstall "aivsreal[serve]"</code>;
in a clone, <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code> rebuilds it, then restart with
<code>aivsreal serve --web-dir src/aivsreal/web_static</code> (or use an editable install).
The API works: {link}, <code>POST /v1/predict</code>.</p></body></html>"""


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str | os.PathLike | None = None,
    workers: int = 2,
    max_upload_mb: float = 20.0,
    web_dir: str | os.PathLike | None = None,
    max_inflight_mb: float | None = None,
    body_deadline: float = 120.0,
) -> None:
    """Serve the app with uvicorn until SIGINT/SIGTERM (in-flight requests finish, up to 30 s)."""
    import uvicorn

    from .runtime import ModelLoadError

    if max_upload_mb <= 0 or workers < 1:
        print("aivsreal: error: --max-upload-mb must be > 0 and --workers >= 1", file=sys.stderr)
        raise SystemExit(2)
    if web_dir is not None and not (Path(web_dir) / "index.html").is_file():
        print(
            f"aivsreal: error: --web-dir {web_dir}: no index.html inside (build it: cd web && npm run build)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        app = create_app(
            model,
            workers=workers,
            max_upload_mb=max_upload_mb,
            static_dir=web_dir,
            max_inflight_mb=max_inflight_mb,
            body_deadline=body_deadline,
        )
    except ModelLoadError as e:
        print(f"aivsreal: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    svc: Service = app.state.service
    print(f"aivsreal: serving {svc.det.model_id} on http://{host}:{port} (docs at /docs)", file=sys.stderr)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # Idle keep-alive connections are closed after KEEP_ALIVE_S. It must outlast the idle expiry of common
        # clients (httpx 5 s, aiohttp 15 s): when both are equal, a client may reuse a connection at the very
        # moment the server closes it, and that request is lost to a connection reset.
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=30,  # on SIGTERM, in-flight requests get 30 s to finish
        # No uvicorn limit_concurrency: it counts idle sockets too, so silent clients could lock everyone out.
        # Back-pressure is the app's own bounded queue (503 + Retry-After past max_queue waiting requests).
        server_header=False,
        log_level="info",
    )
    try:
        uvicorn.Server(config).run()
    except OSError as e:
        print(f"aivsreal: error: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        raise SystemExit(2) from None
