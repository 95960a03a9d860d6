"""Checkpoint → ONNX (fp32, and static int8 QDQ), card embedded, verified against torch.

The exported graph maps a (N, 3, s, s) float32 batch to N raw logits; the card in the file's
metadata (:mod:`aivsreal.onnx_card`) and in a sidecar JSON carries preprocessing, threshold and
temperature, and the sidecar records the file's sha256.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .card import ModelCard, card_path_for
from .checkpoint import load_checkpoint
from .data import load_dataset
from .decision import calibrate, is_ai
from .fsutil import sha256_file
from .imageio import DecodeError, is_image_path
from .metrics import roc_auc
from .onnx_card import card_json_of, set_card
from .preprocess import load_views

OPSET = 17
PARITY_TOL = 1e-4
FP16_WEIGHTS_TOL = 0.1  # max |Δlogit| from rounding the stored weights (v1: 0.057); a broken file is far off


def _sample_inputs(card: ModelCard, calib: str | os.PathLike | None, n: int, seed: int = 0):
    """Up to n preprocessed images (and labels when known) from a folder/collection or the training data."""
    src = calib or card.training.get("data")
    paths: list[str] = []
    labels: list[int] = []
    if src and Path(src).exists():
        try:
            ds = load_dataset(src, seed=seed, dedupe=False)
            pool = ds.split("train") or ds.samples
            rng = np.random.default_rng(seed)
            pick = rng.permutation(len(pool))[: n * 2]
            paths = [pool[i].path for i in pick]
            labels = [pool[i].label for i in pick]
        except ValueError:
            paths = sorted(str(p) for p in Path(src).rglob("*") if is_image_path(p))[: n * 2]
            labels = []
    xs, ys = [], []
    for i, p in enumerate(paths):
        try:
            xs.append(load_views(p, card.preprocess)[0])  # what the runtime Detector feeds the model
            if labels:
                ys.append(labels[i])
        except DecodeError:
            continue
        if len(xs) >= n:
            break
    if not xs:  # no images at hand: deterministic noise still checks the graph
        rng = np.random.default_rng(seed)
        s = card.preprocess.size
        xs = list(rng.uniform(-1, 1, size=(8, 3, s, s)).astype(np.float32))
        ys = []
    return np.stack(xs).astype(np.float32), (np.asarray(ys) if len(ys) == len(xs) else None)


def _write_onnx(model: torch.nn.Module, card: ModelCard, path: Path) -> None:
    import onnx

    s = card.preprocess.size
    dummy = torch.zeros(1, 3, s, s)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / "m.onnx"
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=["input"],
            output_names=["logit"],
            dynamic_axes={"input": {0: "batch"}, "logit": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        m = onnx.load(str(tmp))
        set_card(m, card)
        onnx.checker.check_model(m)
        _atomic_onnx_save(m, path)


FP16_SUFFIX = "__fp16"


def store_weights_fp16(path: Path, out: Path | None = None, min_elements: int = 16) -> int:
    """Store the float32 weights of an ONNX file as float16 beside a Cast back to float32, in place.

    The graph still computes in float32 (every runtime, ONNX Runtime Web included, runs it unchanged); only
    the stored weights are rounded, which halves the file. Small tensors (biases, shapes) stay float32.
    ``out`` writes there instead of in place. Returns how many tensors were converted."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    kept, casts = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init) if init.data_type == onnx.TensorProto.FLOAT else None
        half = arr.astype(np.float16) if arr is not None and arr.size >= min_elements else None
        if half is None or not np.all(np.isfinite(half)):
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(half, init.name + FP16_SUFFIX))
        casts.append(
            helper.make_node(
                "Cast",
                [init.name + FP16_SUFFIX],
                [init.name],
                to=onnx.TensorProto.FLOAT,
                name=f"{init.name}/cast",
            )
        )
    del g.initializer[:]
    g.initializer.extend(kept)
    nodes = casts + list(g.node)  # the casts first: the graph stays topologically sorted
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    _atomic_onnx_save(m, out or path)
    return len(casts)


def expand_fp16_weights(m: Any) -> Any:
    """The inverse of :func:`store_weights_fp16` on a loaded model (exact: float16 → float32 is lossless),
    so tools that need weights as initializers (int8 quantisation) see a plain float32 graph."""
    import onnx
    from onnx import numpy_helper

    halves = {i.name: i for i in m.graph.initializer if i.name.endswith(FP16_SUFFIX)}
    cast_of = {
        n.input[0]: n for n in m.graph.node if n.op_type == "Cast" and n.input and n.input[0] in halves
    }
    if not cast_of:
        return m
    inits = [i for i in m.graph.initializer if i.name not in cast_of]
    for name, node in cast_of.items():
        arr = numpy_helper.to_array(halves[name]).astype(np.float32)
        inits.append(numpy_helper.from_array(arr, node.output[0]))
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    nodes = [n for n in m.graph.node if not (n.op_type == "Cast" and n.input and n.input[0] in cast_of)]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


def _atomic_onnx_save(m: Any, path: Path) -> None:
    from .fsutil import atomic_write_bytes

    atomic_write_bytes(path, m.SerializeToString())


def replace_card(path: Path, card: ModelCard) -> None:
    """Replace the card embedded in an ONNX file, then refresh its sidecar (new sha256)."""
    import onnx

    m = onnx.load(str(path))
    set_card(m, card)
    _atomic_onnx_save(m, path)
    _finish(card, path)


def _finish(card: ModelCard, path: Path) -> None:
    """Sidecar card with the ONNX file's sha256."""
    c = copy.deepcopy(card)
    c.weights_file = path.name
    c.weights_sha256 = sha256_file(path)
    c.write(card_path_for(path))


def _ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of the exported file through the runtime Detector's own ``forward`` (no sha256 sidecar yet)."""
    from .runtime import Detector

    return Detector.load(path, verify=False).forward(x)


_NAMED_PARTS = ("stem", "head", "se", "dw")
INT8_RULE_PARTS = (*_NAMED_PARTS, "first<N>")  # first<N>: e.g. first20


def _first_n(part: str) -> int | None:
    """N of a ``first<N>`` rule part (the first N conv/gemm nodes), else None."""
    if part.startswith("first") and part[5:].isdigit() and int(part[5:]) > 0:
        return int(part[5:])
    return None


def int8_exclusions(fp32: Path, rule: str) -> list[str]:
    """Names of the Conv/Gemm nodes a rule keeps in fp32: ``none``, or ``+``-joined parts of
    :data:`INT8_RULE_PARTS`: ``stem`` (the first conv), ``head`` (the last conv and the classifier),
    ``se`` (squeeze-excite convs), ``dw`` (depthwise convs), ``first<N>`` (the first N convs, in graph
    order: the full-resolution layers where a trace model's small pixel differences live)."""
    import onnx

    parts = [] if rule in ("", "none") else rule.split("+")
    unknown = {p for p in parts if p not in _NAMED_PARTS and _first_n(p) is None}
    if unknown:
        raise ValueError(f"unknown int8 rule part(s) {sorted(unknown)}; choose from {INT8_RULE_PARTS}")
    first = max((_first_n(p) or 0 for p in parts), default=0)
    nodes = [
        n for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.op_type in ("Conv", "Gemm")
    ]
    out: list[str] = []
    for k, n in enumerate(nodes):
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if (
            ("stem" in parts and k == 0)
            or k < first
            or ("head" in parts and k >= len(nodes) - 2)
            or ("se" in parts and "/se/" in n.name)
            or ("dw" in parts and group > 1)
        ):
            out.append(n.name)
    return out


def quantize_int8(fp32: Path, out: Path, calib: np.ndarray, exclude: list[str] | None = None) -> None:
    """Static QDQ int8 calibrated on ``calib`` images: Conv/Gemm only (per-channel weights, uint8
    activations with 99.99th-percentile ranges). On the default MobileNetV3-Small this kept more decisions
    than quantizing every op with min-max (94.0 % vs 92.4 % of dev test images) at a smaller file.

    Weights use 7 bits (``reduce_range``), as ONNX Runtime advises for x86: its u8s8 kernels without VNNI
    (AVX2, AVX-512 core) sum pairs of u8×s8 products in int16, which saturates for 8-bit weights, so the
    same file gave other decisions there than on VNNI CPUs (dev clean balanced accuracy 0.695 vs 0.709).
    With |w| ≤ 64 no pair can overflow, every kernel path computes the same integers, and
    ``scripts/int8_isa_spread.py`` measures what remains (rounding order) into the card. ``exclude`` names
    nodes kept in fp32 (:func:`int8_exclusions`; ``scripts/int8_search.py`` compares the rules)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        q = Path(td) / "q.onnx"
        plain = Path(td) / "fp32.onnx"
        onnx.save(expand_fp16_weights(onnx.load(str(fp32))), str(plain))  # weights as initializers
        quant_pre_process(str(plain), str(pre), skip_symbolic_shape=True)
        with contextlib.redirect_stdout(sys.stderr):  # the percentile calibrator prints progress
            quantize_static(
                str(pre),
                str(q),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv", "Gemm"],
                nodes_to_exclude=list(exclude or []),
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": 99.99},
            )
        m = onnx.load(str(q))
        card_json = card_json_of(onnx.load(str(fp32), load_external_data=False))
        if card_json is None:
            raise ValueError(f"{fp32}: no aivsreal card in its metadata")
        set_card(m, card_json)
        _atomic_onnx_save(m, out)


def export_model(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    int8: bool = False,
    calib: str | os.PathLike | None = None,
    fmt: str = "onnx",
    name: str = "model",
    n_check: int = 16,
    n_calib: int = 64,
    int8_rule: str = "none",
    fp16_weights: bool = False,
    input_size: int | None = None,
) -> dict[str, Any]:
    """Export and verify; returns a report (parity, int8 agreement, file sizes). ``int8_rule`` names the
    layers kept in fp32 (:func:`int8_exclusions`); ``fp16_weights`` stores the fp32 file's weights as float16
    (:func:`store_weights_fp16`: half the size, float32 compute), after int8 was calibrated on the exact graph.
    ``input_size`` exports a fully convolutional model at another input size than it was trained at (a
    larger native crop sees more of the image); the card records both."""
    net, card, _ = load_checkpoint(model)
    if input_size is not None and input_size != card.preprocess.size:
        card.extra["trained_input_size"] = card.preprocess.size
        card.preprocess = dataclasses.replace(card.preprocess, size=input_size)  # validates the size
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = _sample_inputs(card, calib, max(n_check, n_calib if int8 else 0))
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).double().numpy()
    if fmt == "tflite":
        from .export_tflite import export_tflite

        return export_tflite(net, card, out, name, x, ref)
    path = out / f"{name}.onnx"
    _write_onnx(net, card, path)
    got = _ort_logits(path, x)
    delta = float(np.max(np.abs(got - ref)))
    if delta > PARITY_TOL:
        path.unlink()
        raise RuntimeError(f"ONNX parity check failed: max |Δlogit| {delta:.2e} > {PARITY_TOL}")
    _finish(card, path)
    report: dict[str, Any] = {
        "onnx": str(path),
        "opset": OPSET,
        "parity_images": int(len(x)),
        "max_abs_logit_diff": delta,
        "bytes": path.stat().st_size,
    }
    if int8:
        qpath = out / f"{name}.int8.onnx"
        kept = int8_exclusions(path, int8_rule)
        quantize_int8(path, qpath, x[:n_calib], exclude=kept)
        _finish(card, qpath)
        q = _ort_logits(qpath, x)
        thr = card.threshold
        p32, p8 = calibrate(got, card.temperature), calibrate(q, card.temperature)
        report["int8"] = {
            "onnx": str(qpath),
            "bytes": qpath.stat().st_size,
            "size_ratio": qpath.stat().st_size / path.stat().st_size,
            "decision_agreement": float(np.mean(is_ai(p32, thr) == is_ai(p8, thr))),
            "max_abs_logit_diff": float(np.max(np.abs(q - got))),
            "images": int(len(x)),
            "fp32_rule": int8_rule,
            "fp32_nodes": len(kept),
            "note": "agreement measured on calibration-pool images; see evaluate for held-out data",
        }
        if y is not None and len(np.unique(y)) == 2:
            report["int8"]["roc_auc_fp32"] = roc_auc(y, p32)
            report["int8"]["roc_auc_int8"] = roc_auc(y, p8)
    if fp16_weights:
        report["fp16_weights"] = finish_fp16_weights(path, card, x, ref)
        report["bytes"] = path.stat().st_size
    return report


def finish_fp16_weights(path: Path, card: ModelCard, x: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Store ``path``'s weights as float16, check the logits against ``ref`` and record it in the card."""
    before = path.stat().st_size
    with tempfile.TemporaryDirectory(dir=path.parent) as td:  # checked before it replaces the file
        tmp = Path(td) / path.name
        n = store_weights_fp16(path, out=tmp)
        delta = float(np.max(np.abs(_ort_logits(tmp, x) - ref)))
        if delta > FP16_WEIGHTS_TOL:
            raise RuntimeError(f"float16 weights moved a logit by {delta:.2e} > {FP16_WEIGHTS_TOL}")
        card.extra["weights_storage"] = "float16 (computed in float32)"
        replace_card(tmp, card)
        os.replace(tmp, path)
    _finish(card, path)
    return {
        "tensors": n,
        "max_abs_logit_diff": delta,
        "images": int(len(x)),
        "float32_bytes": before,
        "bytes": path.stat().st_size,
    }
