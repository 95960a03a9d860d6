"""Distributed batch scoring on Ray: ``aivsreal predict --engine ray INPUT --output OUT.parquet``.

Ray Data carries image paths (a folder, a manifest CSV/Parquet, or fsspec URIs such as ``s3://``)
to a pool of actors; each actor holds one ``Detector`` and scores with the very code the local
engine uses (``Detector.iter_predict``), so results match it per file, bad files included. The model
file travels in the object store, so cluster nodes need no shared filesystem. The driver streams
the results, in input order, into one Parquet file written atomically (temp file + rename).

``aivsreal bench --engine ray --model M`` measures local vs Ray throughput (docs/scale.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .card import card_path_for
from .fsutil import atomic_write_bytes
from .imageio import MAX_FILE_BYTES, is_image_path
from .runtime import ROW_COLUMNS, Detector, Prediction
from .sources import expand_inputs

MANIFEST_SUFFIXES = (".csv", ".parquet")
PATH_COLUMNS = ("path", "file_name")
STATS = ("_t0", "_t1", "_cpu")  # internal columns: wall start/end of the actor call, its CPU seconds per row
COLUMNS = ROW_COLUMNS


def is_uri(p: str) -> bool:
    """True for fsspec/pyarrow URIs (``s3://``, ``gs://``, ``file://`` ...), not for local paths."""
    head, sep, _ = p.partition("://")
    return bool(sep) and head.isidentifier() and len(head) > 1


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("score", pa.float64()),
            ("label", pa.string()),
            ("uncertain", pa.bool_()),
            ("threshold", pa.float64()),
            ("model_id", pa.string()),
            ("error_kind", pa.string()),
            ("error", pa.string()),
        ]
    )


# ---- inputs --------------------------------------------------------------------------------------
def _list_uri(uri: str, recursive: bool) -> list[str]:
    """Image files under a URI prefix (or the URI itself when it names one file), sorted."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(uri)
        if any(c in root for c in "*?["):
            found = sorted(fs.glob(root))
        elif fs.isdir(root):
            found = sorted(
                fs.find(root) if recursive else [e for e in fs.ls(root, detail=False) if fs.isfile(e)]
            )
            found = [f for f in found if is_image_path(f)]
        else:
            return [uri]
    except (ImportError, ValueError) as e:
        raise ValueError(
            f"{uri}: cannot open this URI ({e}); is its fsspec driver (e.g. s3fs) installed?"
        ) from None
    except OSError as e:
        raise OSError(f"{uri}: cannot list: {e}") from None
    return [fs.unstrip_protocol(f) for f in found]


def _is_manifest(p: str) -> bool:
    return p.lower().endswith(MANIFEST_SUFFIXES) and (is_uri(p) or os.path.isfile(p))


def _join(base: str, rel: str) -> str:
    """A manifest entry resolved against the manifest's folder (absolute paths and URIs kept)."""
    if is_uri(rel) or os.path.isabs(rel):
        return rel
    return f"{base.rstrip('/')}/{rel}" if is_uri(base) else os.path.join(base, rel)


def _read_manifest(manifest: str):
    """A Ray dataset of {"path"} rows from a manifest's ``path`` (or ``file_name``) column."""
    import ray.data

    reader = ray.data.read_parquet if manifest.lower().endswith(".parquet") else ray.data.read_csv
    try:
        ds = reader(manifest)
        names = ds.schema().names
    except Exception as e:  # pyarrow/ray raise many types for an unreadable table
        raise ValueError(f"{manifest}: cannot read the manifest: {type(e).__name__}: {e}") from None
    col = next((c for c in PATH_COLUMNS if c in names), None)
    if col is None:
        raise ValueError(
            f"{manifest}: a manifest needs a 'path' or 'file_name' column (has {', '.join(names)})"
        )
    base = manifest.rsplit("/", 1)[0] if is_uri(manifest) else os.path.dirname(os.path.abspath(manifest))

    def resolve(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"path": np.array([os.fsencode(_join(base, str(p))) for p in batch[col]], dtype=object)}

    return ds.select_columns([col]).map_batches(resolve, batch_format="numpy")


def _items(paths: list[str]) -> Any:
    """Paths travel as bytes (``os.fsencode``): file names that are not UTF-8 survive Arrow."""
    import ray.data

    return ray.data.from_items([{"path": os.fsencode(x)} for x in paths])


def display_path(p: str) -> str:
    """A path as Parquet can store it: undecodable bytes of a file name become ``\\xNN`` escapes."""
    return os.fsencode(p).decode("utf-8", "backslashreplace")


def _datasets(paths: list[str], recursive: bool) -> Iterator[Any]:
    """Ray datasets of {"path"} rows, in the order given: manifests are read by Ray, the rest listed here."""
    pending: list[str] = []
    for p in paths:
        if p != "-" and _is_manifest(p):
            if pending:
                yield _items(pending)
                pending = []
            yield _read_manifest(p)
        elif p != "-" and is_uri(p):
            pending.extend(_list_uri(p, recursive))
        else:
            pending.extend(expand_inputs([p], recursive))
    if pending:
        yield _items(pending)


# ---- the actor -----------------------------------------------------------------------------------
def _read_remote(uri: str) -> bytes | dict[str, str]:
    """The bytes of a URI (at most one byte over the size limit), or an error dict like decode's."""
    import fsspec

    try:
        with fsspec.open(uri, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return {"kind": "not_found", "message": "no such file"}
    except IsADirectoryError:
        return {"kind": "is_directory", "message": "is a directory"}
    except Exception as e:  # network, permissions, missing driver: one file's error, not the job's
        return {"kind": "unreadable", "message": f"cannot read: {type(e).__name__}: {e}"}


def _row(path: str, p: Prediction) -> dict[str, Any]:
    """The shared result row (``Prediction.row``) with the path as the user gave it."""
    return {**p.row(), "path": path}


class _Scorer:
    """One Ray actor: the model loaded once, then batches of paths → result rows."""

    def __init__(
        self, model_ref: list[Any], main: str, threshold: float | None, threads: int, batch_size: int
    ):
        import ray

        files: dict[str, bytes] = ray.get(model_ref[0])  # wrapped in a list so Ray does not inline it
        h = hashlib.sha256()
        for name in sorted(files):
            h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        digest = h.hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / "aivsreal-models" / digest  # content-addressed: reused
        for name, data in files.items():
            if not (folder / name).is_file() or (folder / name).stat().st_size != len(data):
                atomic_write_bytes(folder / name, data)
        self.det = Detector.load(folder / main, threads=threads)
        self.threshold = threshold  # an argument of every scoring call; the card stays as shipped
        self.threads, self.batch_size = threads, batch_size

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        t0, c0 = time.time(), time.process_time()
        paths = [os.fsdecode(p) for p in batch["path"]]
        remote = [i for i, p in enumerate(paths) if is_uri(p)]
        sources: list[Any] = list(paths)
        failed: dict[int, dict[str, str]] = {}
        if remote:
            with ThreadPoolExecutor(max(2, self.threads * 2)) as ex:
                for i, got in zip(remote, ex.map(_read_remote, [paths[i] for i in remote]), strict=True):
                    if isinstance(got, dict):
                        failed[i] = got
                    else:
                        sources[i] = got
        todo = [i for i in range(len(paths)) if i not in failed]
        preds: dict[int, Prediction] = {
            i: Prediction(source=paths[i], error=e, model_id=self.det.model_id) for i, e in failed.items()
        }
        it = self.det.iter_predict(
            [sources[i] for i in todo],
            batch_size=self.batch_size,
            workers=self.threads,
            threshold=self.threshold,
        )
        preds.update(zip(todo, it, strict=True))  # iter_predict keeps input order
        rows = [_row(display_path(paths[i]), preds[i]) for i in range(len(paths))]
        tbl = pa.Table.from_pylist(rows, schema=_schema())
        # when this batch ran: the driver derives the scoring rate (start-up excluded), then drops the column
        k = len(rows)
        stats = (t0, time.time(), (time.process_time() - c0) / max(k, 1))
        for name, v in zip(STATS, stats, strict=True):
            tbl = tbl.append_column(name, pa.array([v] * k, type=pa.float64()))
        return tbl


# ---- the driver ----------------------------------------------------------------------------------
def _model_files(det: Detector) -> dict[str, bytes]:
    files = {det.path.name: det.path.read_bytes()}
    side = card_path_for(det.path)
    if side.is_file():
        files[side.name] = side.read_bytes()
    return files


def _start_ray(address: str | None, workers: int | None) -> bool:
    """Connect to ``address`` or start a quiet local instance; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    kw: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if address:
        ray.init(address=address, **kw)
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, workers or 1), include_dashboard=False, **kw)
    return True


def predict_ray(
    paths: list[str],
    model: str | os.PathLike | None = None,
    output: str | os.PathLike = "predictions.parquet",
    address: str | None = None,
    threshold: float | None = None,
    workers: int | None = None,
    batch_size: int = 16,
    recursive: bool = False,
    cpus_per_worker: int = 1,
) -> dict[str, Any]:
    """Score ``paths`` on Ray and write one Parquet file; returns a summary (n, errors, seconds, images/s).

    ``workers`` is the actor-pool size (default: the cluster's CPUs / ``cpus_per_worker``). Without
    ``address`` a local Ray instance is started and shut down again afterwards.
    """
    import pyarrow.parquet as pq

    t_start = time.perf_counter()
    if threshold is not None and not 0 < threshold < 1:
        raise ValueError("--threshold must lie in (0, 1)")  # before Ray starts
    if workers is not None and workers < 1:
        raise ValueError("--ray-workers must be at least 1")
    out = Path(output)
    if is_uri(str(output)) or re.match(
        r"^[A-Za-z][\w+.-]+:/", str(output)
    ):  # pathlib folds "s3://" to "s3:/"
        raise ValueError(f"{output}: --output must be a local file (copy it to an object store afterwards)")
    if out.is_dir():
        raise ValueError(f"{out}: --output is a directory; give a file name such as results.parquet")
    det = Detector.load(model, threads=1)  # fail early, with the CLI's error, before Ray starts
    files = _model_files(det)
    started = _start_ray(address, workers)
    try:
        import ray
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        n_workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker))
        parts = list(_datasets(list(paths), recursive))
        if not parts:
            raise ValueError("no input images found")
        ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        scored = ds.map_batches(
            _Scorer,
            batch_size=batch_size * 4,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_workers),
            num_cpus=cpus_per_worker,
            fn_constructor_kwargs=dict(
                model_ref=[ray.put(files)],
                main=det.path.name,
                threshold=threshold,
                threads=cpus_per_worker,
                batch_size=batch_size,
            ),
        )
        t_pipe = time.perf_counter()
        n, n_err, (lo, hi, cpu) = _write_parquet(scored, out, pq)
        t_end = time.perf_counter()
    finally:
        if started:
            import ray

            ray.shutdown()
    if n == 0:
        raise ValueError("no input images found")
    pipe_s = t_end - t_pipe
    return {
        "engine": "ray",
        "n": n,
        "errors": n_err,
        "seconds": round(time.perf_counter() - t_start, 3),
        "pipeline_seconds": round(pipe_s, 3),
        "images_per_s": round(n / pipe_s, 2) if pipe_s > 0 else None,
        # from the first actor call to the last (Ray and actor start-up excluded): what more workers scale
        "scoring_seconds": round(hi - lo, 3),
        "scoring_images_per_s": round(n / (hi - lo), 2) if hi > lo else None,
        # CPU time the actors spent per image (all their threads): cost per image, whatever else runs
        "actor_cpu_ms_per_image": round(1000 * cpu / n, 2) if n else None,
        "workers": n_workers,
        "address": address or "local",
        "model_id": det.model_id,
        "output": str(out),
    }


def _write_parquet(ds: Any, out: Path, pq: Any) -> tuple[int, int, tuple[float, float]]:
    """Stream the scored rows, in order, into a temp file beside ``out``; fsync and rename.
    Returns (rows, error rows, (first actor-call start, last actor-call end, actor CPU seconds))."""
    import pyarrow.compute as pc

    schema = _schema()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    n = n_err = 0
    lo, hi, cpu = float("inf"), float("-inf"), 0.0
    try:
        with pq.ParquetWriter(tmp, schema) as w:
            for tbl in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                if tbl.num_rows:
                    lo = min(lo, pc.min(tbl.column(STATS[0])).as_py())
                    hi = max(hi, pc.max(tbl.column(STATS[1])).as_py())
                    cpu += pc.sum(tbl.column(STATS[2])).as_py()
                tbl = tbl.select(schema.names).cast(schema)
                w.write_table(tbl)
                n += tbl.num_rows
                n_err += tbl.num_rows - tbl.column("error_kind").null_count
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if n:
            os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return n, n_err, (lo, hi, cpu)
