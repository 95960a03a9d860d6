"""``Detector``: load a model (ONNX, or a training checkpoint) and score images. No torch needed.

One pipeline serves every door: sources are decoded in a thread pool (Pillow releases the GIL),
preprocessed with the card's numbers, batched, and run through ONNX Runtime while the next batch
decodes. A bad input becomes a ``Prediction`` with ``error`` set; the rest go on.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .card import CardError, ModelCard, card_path_for
from .imageio import DecodeError, ImageSource, describe_source
from .metrics import sigmoid
from .onnx_card import ModelLoadError, read_onnx_card
from .preprocess import apply_tier, load, to_input, tta_views

DEFAULT_MODEL_DIR = Path(__file__).parent / "models_dist"
DEFAULT_MODEL_NAME = "default.onnx"
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

    @classmethod
    def load(
        cls, path: str | os.PathLike | None = None, *, threads: int | None = None, verify: bool = True
    ) -> Detector:
        """Load an ONNX file, a checkpoint (``.safetensors`` + card, needs torch) or a run dir.

        With no path, the default model shipped in the package (or ``$AIVSREAL_MODEL``) is used.
        The weights' sha256 must match the card; a mismatch is refused.
        """
        p = Path(path) if path is not None else default_model_path()
        if p.is_dir():
            cands = [p / "model.onnx", p / "model.safetensors"]
            found = next((c for c in cands if c.is_file()), None)
            if found is None:
                raise ModelLoadError(f"{p}: no model.onnx or model.safetensors inside")
            p = found
        if not p.is_file():
            hint = " (the default model is not installed; pass --model PATH)" if path is None else ""
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

    # ---- scoring -------------------------------------------------------------------------------
    def score_logits(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated P(AI) from raw logits (temperature from the card)."""
        return sigmoid(np.asarray(logits, dtype=np.float64) / float(self.card.temperature))

    def make_prediction(self, source: str, logit: float, reason: str | None = None) -> Prediction:
        """The prediction for a logit; ``reason`` (e.g. too small) marks it uncertain whatever the score."""
        c = self.card
        score = float(self.score_logits(np.array([logit]))[0])
        return Prediction(
            source=source,
            score=score,
            label=c.labels[1] if score >= c.threshold else c.labels[0],
            uncertain=bool(reason) or abs(score - c.threshold) < c.uncertain_band,
            threshold=c.threshold,
            model_id=self.model_id,
            logit=float(logit),
            reason=reason,
        )

    def prepare(self, source: ImageSource, tier: str = "clean", tta: bool = False) -> list[np.ndarray]:
        """Decode and preprocess one source into its model input view(s). Raises DecodeError."""
        return self._prepare(source, tier, tta)[0]

    def _prepare(self, source: ImageSource, tier: str, tta: bool) -> tuple[list[np.ndarray], str | None]:
        """Model input view(s) and, for an image too small to judge, the reason."""
        dec = load(source, self.pp)
        img = dec.image
        if tier != "clean":
            img = apply_tier(img, tier)
        views = tta_views(img, self.pp) if tta else [to_input(img, self.pp)]
        return views, too_small(dec.original_size)

    def predict(
        self,
        x: ImageSource | Sequence[ImageSource],
        *,
        batch_size: int = 16,
        tta: bool = False,
        workers: int | None = None,
        strict: bool = False,
    ) -> Prediction | list[Prediction]:
        """Score one input (path, bytes, PIL image, HxWxC array) or a list of them.

        An input that cannot be scored gives a ``Prediction`` with ``error`` set and ``score`` None (a batch
        goes on); with ``strict=True`` it raises :class:`PredictionError` instead.
        """
        single = not isinstance(x, (list, tuple))
        items = [x] if single else list(x)
        preds = []
        for p in self.iter_predict(items, batch_size=batch_size, tta=tta, workers=workers):
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
    ) -> Iterator[Prediction]:
        """Stream predictions in input order: parallel decode, bounded look-ahead, batched model."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        workers = workers or max(1, min(4, os.cpu_count() or 1))

        def prep(src: Any) -> tuple[str, list[np.ndarray] | None, dict[str, str] | None, str | None]:
            name = names(src)
            try:
                views, reason = self._prepare(src, tier, tta)
                return name, views, None, reason
            except DecodeError as e:
                return name, None, e.as_dict(), None
            except Exception as e:  # an unexpected decoder failure is still one file's error
                return name, None, {"kind": "decode_failed", "message": f"{type(e).__name__}: {e}"}, None

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
                yield from self._run_chunk([f.result() for f in chunk])

    def _run_chunk(
        self, prepared: list[tuple[str, list[np.ndarray] | None, dict[str, str] | None, str | None]]
    ):
        views, owners = [], []
        for i, (_, v, _, _) in enumerate(prepared):
            if v is not None:
                views.extend(v)
                owners.extend([i] * len(v))
        logits_per: dict[int, list[float]] = {}
        if views:
            out = self.backend.logits(np.stack(views))
            for i, z in zip(owners, out):
                logits_per.setdefault(i, []).append(float(z))
        for i, (name, _, err, reason) in enumerate(prepared):
            if err is not None:
                yield Prediction(source=name, error=err, model_id=self.model_id)
            else:
                yield self.make_prediction(name, float(np.mean(logits_per[i])), reason)

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "model_id": self.model_id, "card": self.card.to_dict()}


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


__all__ = ["Detector", "Prediction", "PredictionError", "ModelLoadError", "asdict"]
