"""Checkpoint → TFLite (LiteRT) for Android/iOS apps, checked against the ONNX export by LiteRT.

The converter is ``litert-torch`` (formerly ``ai-edge-torch``) and the checker is ``ai-edge-litert``'s
interpreter, both from the ``tflite`` extra. The file takes one NHWC float32 image (1, s, s, 3), already
normalised as the card says (mobile apps hand over HWC pixels), and returns one raw logit. The card is
embedded in the flatbuffer's metadata (name ``aivsreal_card``) and written beside it as
``<name>.tflite.card.json`` with the file's sha256.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .card import ModelCard
from .fsutil import atomic_write_bytes, sha256_file
from .onnx_card import CARD_KEY  # the same key names the card in TFLite metadata

PARITY_TOL = 1e-3  # |Δlogit| vs ONNX Runtime; XNNPACK and MLAS sum in different orders
NEEDED = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert", "flatbuffers": "flatbuffers"}


class TFLiteUnavailable(RuntimeError):
    """The LiteRT converter or interpreter is not installed."""


def missing_packages() -> list[str]:
    """PyPI names of what TFLite export needs but cannot import here (empty when all is there)."""
    import importlib.util

    return [pip for mod, pip in NEEDED.items() if importlib.util.find_spec(mod) is None]


def _require() -> None:
    miss = missing_packages()
    if miss:
        raise TFLiteUnavailable(
            f"TFLite export needs {', '.join(miss)} (not installed): pip install 'aivsreal[tflite]' "
            "(litert-torch needs torch < 2.15; its ai-edge-litert[model-utils] pins typing-extensions "
            "< 4.13, which holds pydantic at 2.11: use a separate venv if that clashes)"
        )


def card_path_tflite(path: Path) -> Path:
    """``model.tflite`` → ``model.tflite.card.json`` (no clash with a checkpoint's ``model.card.json``)."""
    return path.with_name(path.name + ".card.json")


def embed_card(tflite: bytes, card_json: str) -> bytes:
    """The flatbuffer with ``card_json`` added as metadata ``aivsreal_card`` (replacing an older one)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    buf = schema.BufferT()
    buf.data = np.frombuffer(card_json.encode("utf-8"), dtype=np.uint8)
    m.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = CARD_KEY, len(m.buffers) - 1
    m.metadata = [md for md in (m.metadata or []) if _name(md.name) != CARD_KEY] + [entry]
    b = flatbuffers.Builder(len(tflite) + 4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _name(n: Any) -> str:
    return n.decode() if isinstance(n, bytes) else str(n)


def read_tflite_card(path: str | Path) -> ModelCard:
    """The card embedded in a TFLite file's metadata (raises ValueError naming the file when absent)."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(path).read_bytes()
    try:
        m = schema.Model.GetRootAs(data, 0)
        for i in range(m.MetadataLength()):
            md = m.Metadata(i)
            if _name(md.Name()) == CARD_KEY:
                return ModelCard.from_json(m.Buffers(md.Buffer()).DataAsNumpy().tobytes().decode("utf-8"))
    except (IndexError, ValueError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"{path}: not a readable TFLite file: {e}") from None
    raise ValueError(f"{path}: no {CARD_KEY} metadata in this TFLite file")


def tflite_logits(path: str | Path, x_nchw: np.ndarray) -> np.ndarray:
    """Raw logits of a (N, 3, s, s) batch run image by image through the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    res = []
    for img in np.asarray(x_nchw, dtype=np.float32):
        it.set_tensor(inp["index"], np.ascontiguousarray(img.transpose(1, 2, 0)[None]))
        it.invoke()
        res.append(float(np.asarray(it.get_tensor(out["index"])).reshape(-1)[0]))
    return np.asarray(res, dtype=np.float64)


def export_tflite(
    net: Any, card: ModelCard, out: Path, name: str, x: np.ndarray, ref: np.ndarray
) -> dict[str, Any]:
    """Convert ``net`` to ``out/<name>.tflite`` and check it against ONNX Runtime and torch on ``x``.

    ``ref`` holds torch's logits for ``x``. A file whose logits differ from the ONNX export's by more
    than PARITY_TOL is deleted and a RuntimeError raised.
    """
    _require()
    import litert_torch
    import torch

    from .export import _ort_logits, _write_onnx

    s = card.preprocess.size
    out = Path(out)
    path = out / f"{name}.tflite"
    wrapped = litert_torch.to_channel_last_io(net.eval(), args=[0]).eval()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / "m.tflite"
        try:  # the converter prints progress on stdout, which carries the export report: move it
            with contextlib.redirect_stdout(sys.stderr):
                litert_torch.convert(wrapped, (torch.zeros(1, s, s, 3),)).export(str(tmp))
        except Exception as e:  # the converter raises many types; name it and stop
            raise RuntimeError(
                f"litert-torch could not convert {card.backbone}: {type(e).__name__}: {e}"
            ) from None
        c = copy.deepcopy(card)
        c.weights_file = path.name
        c.weights_sha256 = ""  # the embedded card cannot hash the file that contains it
        data = embed_card(tmp.read_bytes(), c.to_json())
        # the ONNX export is the reference the apps are checked against (same graph as `aivsreal export`)
        onnx_path = Path(td) / "ref.onnx"
        _write_onnx(net, card, onnx_path)
        onnx_logits = _ort_logits(onnx_path, x)
        atomic_write_bytes(path, data)
    got = tflite_logits(path, x)
    d_onnx = float(np.max(np.abs(got - onnx_logits)))
    d_torch = float(np.max(np.abs(got - np.asarray(ref, dtype=np.float64).reshape(-1))))
    if d_onnx > PARITY_TOL:
        path.unlink()
        raise RuntimeError(f"TFLite parity check failed: max |Δlogit| vs ONNX {d_onnx:.2e} > {PARITY_TOL}")
    c.weights_sha256 = sha256_file(path)
    side = c.write(card_path_tflite(path))
    return {
        "tflite": str(path),
        "card": str(side),
        "bytes": path.stat().st_size,
        "input": {"shape": [1, s, s, 3], "layout": "NHWC", "dtype": "float32", "normalised": "per card"},
        "output": "one raw logit; P(AI) = sigmoid(logit / card.temperature)",
        "parity_images": int(len(x)),
        "max_abs_logit_diff_vs_onnx": d_onnx,
        "max_abs_logit_diff_vs_torch": d_torch,
        "converter": f"litert-torch {getattr(litert_torch, '__version__', '?')}",
    }
