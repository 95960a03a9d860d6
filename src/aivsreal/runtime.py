"""``Detector``: load a model (ONNX, or a training checkpoint) and score images. No torch needed.

One pipeline serves every door (CLI, Python, server, Ray, evaluate, explain, export checks), in three
public stages, as Hugging Face pipelines do:

- :meth:`Detector.preprocess`: decode once, apply a robustness tier, cut the plan's views → ``Prepared``;
- :meth:`Detector.forward`: the backend (ONNX Runtime, or torch for a checkpoint): inputs → raw logits;
- :meth:`Detector.postprocess`: aggregate an image's view logits, calibrate, label, uncertain
  (:mod:`aivsreal.decision`) → ``Prediction``.

:meth:`Detector.iter_predict` runs them as a pipeline: sources are decoded in a thread pool (Pillow
releases the GIL) while the model runs on batches gathered across files. A bad input becomes a
``Prediction`` with ``error`` set; the rest go on. A threshold override is an argument, never a change
to the card.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import decision, registry
from .card import CardError, ModelCard, card_path_for
from .imageio import MAX_PIXELS, DecodeError, ImageSource, describe_source
from .onnx_card import ModelLoadError, read_onnx_card
from .preprocess import TIERS, decode_views, load_views

DEFAULT_MODEL_DIR = registry.MODELS_DIR
DEFAULT_MODEL_NAME = registry.MODELS[registry.DEFAULT]
MODEL_ENV = "AIVSREAL_MODEL"
MIN_SIDE = 32  # an image smaller than this on a side is scored but marked uncertain: too little to judge


def too_small(size: tuple[int, int]) -> str | None:
    """Why an image of ``size`` (w, h) is too small to judge, or None."""
    w, h = size
    if min(w, h) < MIN_SIDE:
        return f"too small to judge: {w}x{h} px (under {MIN_SIDE} px on a side)"
    return None


class PredictionError(ValueError):
    """An input that could not be scored, raised by ``Detector.predict(..., strict=True)``.

    ``kind`` is the stable error code of the JSON output (``not_found``, ``not_an_image``, ``corrupt`` ...).
    """

    def __init__(self, source: str, kind: str, message: str):
        super().__init__(f"{source}: {message} ({kind})")
        self.source, self.kind, self.message = source, kind, message


# The columns of a result row, in order: CSV (``predict --csv``) and Parquet (``--engine ray``) files.
ROW_COLUMNS = ("path", "score", "label", "uncertain", "threshold", "model_id", "error_kind", "error")


@dataclass
class Prepared:
    """One source after :meth:`Detector.preprocess`: its model inputs (k views), or why there are none."""

    source: str
    inputs: np.ndarray | None = None  # (k, 3, size, size) float32
    error: dict[str, str] | None = None
    reason: str | None = None  # why the prediction will be uncertain whatever its score (too small)


@dataclass
class Prediction:
    """The result for one input: a score, or an error saying why there is none.

    Errors are results, not exceptions, so one bad file never stops a batch: when ``ok`` is false,
    ``score``/``label``/``uncertain`` are None and ``error`` is ``{"kind", "message"}``. Check ``ok``
    before using the score, or call ``predict(..., strict=True)`` to get a :class:`PredictionError`.
    """

    source: str
    score: float | None = None  # calibrated P(AI)
    label: str | None = None  # "ai" | "real"
    uncertain: bool | None = None
    threshold: float | None = None
    model_id: str | None = None
    logit: float | None = None
    error: dict[str, str] | None = None
    provenance: list[dict[str, Any]] | None = None
    verdict: str | None = None  # label after combining with provenance (see provenance.combine)
    reason: str | None = None  # why the score is marked uncertain beyond its distance to the threshold

    @property
    def ok(self) -> bool:
        return self.error is None

    def row(self) -> dict[str, Any]:
        """The flat result row (:data:`ROW_COLUMNS`), the one definition CSV and Parquet are written from."""
        if self.error is not None:
            return {
                **dict.fromkeys(ROW_COLUMNS),
                "path": self.source,
                "model_id": self.model_id,
                "error_kind": self.error["kind"],
                "error": self.error["message"],
            }
        return {
            "path": self.source,
            "score": float(self.score),
            "label": self.label,
            "uncertain": bool(self.uncertain),
            "threshold": self.threshold,
            "model_id": self.model_id,
            "error_kind": None,
            "error": None,
        }

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        """The documented JSON shape: {path, score, label, uncertain, ...} or {path, error}."""
        if self.error is not None:
            d: dict[str, Any] = {"path": self.source, "error": self.error}
        else:
            d = {
                "path": self.source,
                "score": round(float(self.score), 6),
                "label": self.label,
                "uncertain": bool(self.uncertain),
                "threshold": self.threshold,
                "model_id": self.model_id,
            }
            if self.reason:
                d["reason"] = self.reason
            if full:
                d["logit"] = self.logit
        if self.provenance is not None:
            d["provenance"] = self.provenance
            d["verdict"] = self.verdict
        return d


# ---- backends --------------------------------------------------------------------------------------
class OnnxBackend:
    """ONNX Runtime session; threads default to the machine's cores.

    Intra-op threads do not spin between runs: the decode threads share the same cores, and spinning
    workers burned ~30 % of the CPU that decoding needed (measured by ``aivsreal bench``).
    """

    def __init__(self, path: Path, intra_threads: int | None = None, spinning: bool = False):
        self.path, self._spinning, self._single = path, spinning, None
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_threads:
            so.intra_op_num_threads = intra_threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=so, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"{path}: not a loadable ONNX model: {e}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.session_options = {
            "intra_op_num_threads": so.intra_op_num_threads,
            "graph_optimization_level": str(so.graph_optimization_level),
            "intra_op.allow_spinning": spinning,
            "providers": self.session.get_providers(),
        }
        self._lock = threading.Lock()

    def single_thread(self) -> OnnxBackend:
        """A one-thread session of the same model (created once), for pipelines that run several batches
        at a time: each run then costs exactly its single-thread core time (no intra-op barriers)."""
        if self.session_options["intra_op_num_threads"] == 1:
            return self
        with self._lock:
            if self._single is None:
                self._single = OnnxBackend(self.path, intra_threads=1, spinning=self._spinning)
            return self._single

    def logits(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)


class TorchBackend:
    """A training checkpoint (safetensors) run in torch eager mode; imports torch lazily."""

    def __init__(self, weights: Path, card: ModelCard):
        from .checkpoint import load_model

        self.model = load_model(weights, card)
        self.session_options = {"backend": "torch-eager"}

    def logits(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return (
                self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).double().numpy()
            )


def default_model_path() -> Path:
    env = os.environ.get(MODEL_ENV)
    return Path(env) if env else DEFAULT_MODEL_DIR / DEFAULT_MODEL_NAME


# ---- the detector ----------------------------------------------------------------------------------
class Detector:
    """Score images as AI-generated or real. ``Detector.load(path).predict(x)``."""

    def __init__(self, backend: Any, card: ModelCard, path: Path):
        self.backend = backend
        self.card = card
        self.path = path
        self.pp = card.preprocess
        # decode only the plan's region of a JPEG (aivsreal.jpegcrop; same pixels). Off by default: with
        # the libjpeg-turbo 2.x that Debian ships, the lossless crop still entropy-decodes the whole file
        # and measured no cheaper than a full decode (aivsreal bench: bound_gain_region_decode < 1)
        self.region_decode = False
        # run the model in its own thread, overlapping decoding; False: the caller's thread (bench compares)
        self.overlap = True

    @classmethod
    def load(
        cls, path: str | os.PathLike | None = None, *, threads: int | None = None, verify: bool = True
    ) -> Detector:
        """Load an ONNX file, a checkpoint (``.safetensors`` + card, needs torch) or a run dir.

        With no path, the default model shipped in the package (or ``$AIVSREAL_MODEL``) is used.
        The weights' sha256 must match the card; a mismatch is refused.
        """
        p = Path(path) if path is not None else default_model_path()
        named = registry.resolve(str(path)) if path is not None and not p.exists() else None
        if named is not None:  # a shipped model's name: aivsreal-default-v1, default ...
            p = named
        if p.is_dir():
            cands = [p / "model.onnx", p / "model.safetensors"]
            found = next((c for c in cands if c.is_file()), None)
            if found is None:
                raise ModelLoadError(f"{p}: no model.onnx or model.safetensors inside")
            p = found
        if not p.is_file():
            hint = (
                " (the default model is not installed; pass --model PATH)"
                if path is None
                else f" (nor a shipped model's name: {', '.join(registry.names())})"
            )
            raise ModelLoadError(f"model file {p} not found{hint}")
        try:
            if p.suffix == ".onnx":
                _verify_onnx(p, verify)  # before parsing: a tampered file is refused as such
                card = read_onnx_card(p)
                backend: Any = OnnxBackend(p, threads)
            elif p.suffix == ".safetensors":
                cp = card_path_for(p)
                if not cp.is_file():
                    raise ModelLoadError(f"{p}: no card {cp.name} beside the weights")
                card = ModelCard.read(cp)
                if verify:
                    card.verify(p)
                try:
                    backend = TorchBackend(p, card)
                except ImportError as e:
                    raise ModelLoadError(f"{p}: a checkpoint needs torch (the [train] extra): {e}") from None
                except (ValueError, RuntimeError, KeyError) as e:  # not safetensors, or other tensors
                    raise ModelLoadError(f"{p}: cannot load weights: {e}") from None
            else:
                raise ModelLoadError(f"{p}: unknown model type (expected .onnx or .safetensors)")
        except CardError as e:
            raise ModelLoadError(str(e)) from None
        return cls(backend, card, p)

    @property
    def model_id(self) -> str:
        return self.card.model_id or self.path.stem

    # ---- the three stages ------------------------------------------------------------------------
    def preprocess(
        self,
        source: ImageSource,
        *,
        name: str | None = None,
        tier: str = "clean",
        views: str | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> Prepared:
        """Decode once, degrade as ``tier`` says, cut the plan's ``views`` (default: the card's view set);
        a bad input is a Prepared error."""
        label = name if name is not None else describe_source(source)
        views = views or self.pp.views
        try:
            x, size = decode_views(
                source,
                self.pp,
                tier=tier,
                views=views,
                max_pixels=max_pixels,
                region_decode=self.region_decode,
            )
            return Prepared(label, x, reason=too_small(size))
        except DecodeError as e:
            return Prepared(label, error=e.as_dict())
        except Exception as e:  # an unexpected decoder failure is still one file's error
            return Prepared(label, error={"kind": "decode_failed", "message": f"{type(e).__name__}: {e}"})

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """Raw logits (float64, one per input row) of a (n, 3, size, size) batch from the backend."""
        return self.backend.logits(inputs)

    def postprocess(
        self,
        source: str,
        view_logits: Sequence[float] | np.ndarray,
        *,
        threshold: float | None = None,
        reason: str | None = None,
    ) -> Prediction:
        """Aggregate an image's view logits, calibrate, and label with the card's (or the given) threshold.

        ``reason`` (e.g. too small to judge) marks the prediction uncertain whatever its score.
        """
        c = self.card
        thr = c.threshold if threshold is None else float(threshold)
        z = decision.aggregate(view_logits)
        score = float(decision.calibrate(z, c.temperature))
        if not math.isfinite(score):  # never NaN in JSON: a model that outputs NaN/inf is this file's error
            err = {"kind": "bad_model_output", "message": f"the model returned a non-finite logit ({z})"}
            return Prediction(source=source, error=err, model_id=self.model_id)
        label, uncertain = decision.decide(score, thr, c.uncertain_band, c.labels)
        return Prediction(
            source=source,
            score=score,
            label=label,
            uncertain=bool(reason) or uncertain,
            threshold=thr,
            model_id=self.model_id,
            logit=z,
            reason=reason,
        )

    def score_prepared(
        self, prepared: Sequence[Prepared], *, threshold: float | None = None, backend: Any = None
    ) -> list[Prediction]:
        """Run ``forward`` once over every view of every prepared source, then ``postprocess`` each.

        ``backend`` replaces the Detector's own for this call (the pipeline's one-thread session)."""
        ok = [p for p in prepared if p.inputs is not None]
        batch = np.concatenate([p.inputs for p in ok]) if ok else None
        if batch is None:
            logits = np.empty(0)
        else:
            logits = self.forward(batch) if backend is None else backend.logits(batch)
        out, at = [], 0
        for p in prepared:
            if p.inputs is None:
                out.append(Prediction(source=p.source, error=p.error, model_id=self.model_id))
                continue
            k = len(p.inputs)
            out.append(self.postprocess(p.source, logits[at : at + k], threshold=threshold, reason=p.reason))
            at += k
        return out

    # ---- conveniences over the stages --------------------------------------------------------------
    def score_logits(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated P(AI) from raw logits (temperature from the card)."""
        return decision.calibrate(logits, self.card.temperature)

    def make_prediction(
        self, source: str, logit: float, reason: str | None = None, threshold: float | None = None
    ) -> Prediction:
        """``postprocess`` of a single logit (kept for callers written before the stages)."""
        return self.postprocess(source, [logit], threshold=threshold, reason=reason)

    def prepare(self, source: ImageSource, tier: str = "clean", tta: bool = False) -> list[np.ndarray]:
        """Decode and preprocess one source into its model input view(s). Raises DecodeError."""
        return list(load_views(source, self.pp, tier=tier, views="tta" if tta else self.pp.views))

    def predict(
        self,
        x: ImageSource | Sequence[ImageSource],
        *,
        batch_size: int = 16,
        tta: bool = False,
        workers: int | None = None,
        tier: str = "clean",
        views: str | None = None,
        threshold: float | None = None,
        strict: bool = False,
    ) -> Prediction | list[Prediction]:
        """Score one input (path, bytes, PIL image, HxWxC array) or a list of them.

        An input that cannot be scored gives a ``Prediction`` with ``error`` set and ``score`` None (a batch
        goes on); with ``strict=True`` it raises :class:`PredictionError` instead.
        """
        single = not isinstance(x, (list, tuple))
        items = [x] if single else list(x)
        preds = []
        scored = self.iter_predict(
            items,
            batch_size=batch_size,
            tta=tta,
            workers=workers,
            tier=tier,
            views=views,
            threshold=threshold,
        )
        for p in scored:
            if strict and p.error is not None:
                raise PredictionError(p.source, p.error["kind"], p.error["message"])
            preds.append(p)
        return preds[0] if single else preds

    def iter_predict(
        self,
        sources: Iterable[ImageSource],
        *,
        batch_size: int = 16,
        tta: bool = False,
        workers: int | None = None,
        tier: str = "clean",
        names: Callable[[Any], str] = describe_source,
        views: str | None = None,
        threshold: float | None = None,
    ) -> Iterator[Prediction]:
        """Stream predictions in input order: parallel decode, bounded look-ahead, batched model."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; choose from {', '.join(TIERS)}")
        threshold = decision.check_threshold(threshold)
        views = views or ("tta" if tta else self.pp.views)
        workers = workers or max(1, min(4, os.cpu_count() or 1))

        def prep(src: Any) -> Prepared:
            return self.preprocess(src, name=names(src), tier=tier, views=views)

        if not self.overlap:
            yield from self._iter_serial(sources, prep, batch_size, workers, threshold)
            return
        # Decode threads keep a look-ahead of futures full; forward threads take them batch by batch
        # (waiting on each decode themselves), so decoding never stops while the model runs and the model
        # never waits for the caller. With several cores the batches run concurrently on a one-thread
        # session (ORT sessions are thread-safe), so every core does single-thread work, the cost the
        # bench's bound assumes. Results come back in input order.
        cores = _cores()
        single = getattr(self.backend, "single_thread", None)
        backend = single() if single is not None and cores > 1 else None
        n_fwd = cores if backend is not None else 1
        with (
            ThreadPoolExecutor(workers) as ex,
            ThreadPoolExecutor(n_fwd, thread_name_prefix="forward") as fwd,
        ):
            it = iter(sources)
            pending: deque[Any] = deque()
            running: deque[Any] = deque()
            ahead = max(2 * batch_size, 2 * workers)
            exhausted, size = False, batch_size

            def run(chunk: list[Any]) -> list[Prediction]:
                return self.score_prepared([f.result() for f in chunk], threshold=threshold, backend=backend)

            while True:
                while not exhausted and len(pending) < ahead:
                    try:
                        pending.append(ex.submit(prep, next(it)))
                    except StopIteration:
                        # the tail is split evenly over the forward threads: no core idles while one
                        # thread finishes a last full batch alone
                        exhausted, size = True, min(batch_size, max(1, -(-len(pending) // n_fwd)))
                while pending and len(running) < n_fwd + 1 and (len(pending) >= batch_size or exhausted):
                    chunk = [pending.popleft() for _ in range(min(size, len(pending)))]
                    running.append(fwd.submit(run, chunk))
                if not running:
                    break
                yield from running.popleft().result()

    def _iter_serial(
        self,
        sources: Iterable[Any],
        prep: Callable[[Any], Prepared],
        batch_size: int,
        workers: int,
        threshold: float | None,
    ) -> Iterator[Prediction]:
        """The pipeline before overlap (kept for bench's side-by-side): the caller's thread runs the model."""
        with ThreadPoolExecutor(workers) as ex:
            it = iter(sources)
            pending: list[Any] = []
            ahead = max(2 * batch_size, 2 * workers)
            exhausted = False
            while True:
                while not exhausted and len(pending) < ahead:
                    try:
                        pending.append(ex.submit(prep, next(it)))
                    except StopIteration:
                        exhausted = True
                if not pending:
                    break
                chunk, pending = pending[:batch_size], pending[batch_size:]
                yield from self.score_prepared([f.result() for f in chunk], threshold=threshold)

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "model_id": self.model_id, "card": self.card.to_dict()}


def _cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _verify_onnx(path: Path, verify: bool) -> None:
    """ONNX files carry their card inside, so the sha256 check uses the sidecar's weights_sha256
    when one exists next to the file (the card inside cannot hash the file that contains it)."""
    if not verify:
        return
    side = card_path_for(path)
    if side.is_file():
        ModelCard.read(side).verify(path)


def predictions_to_jsonl(preds: Iterable[Prediction]) -> Iterator[str]:
    for p in preds:
        yield json.dumps(p.to_dict(), ensure_ascii=False)


__all__ = ["Detector", "Prediction", "Prepared", "PredictionError", "ModelLoadError", "ROW_COLUMNS", "asdict"]
