"""What this CPU offers ONNX Runtime's int8 kernels, so cards and failing tests can say where a figure came from.

ONNX Runtime (MLAS) picks its x86 int8 GEMM by instruction set; u8s8 products summed in int16 (AVX2 and
AVX-512 without VNNI) can saturate, VNNI and AMX cannot. Quantising weights to 7 bits (``reduce_range``)
keeps every path exact; these names record which path measured a card's int8 figures.
"""

from __future__ import annotations

import platform
from pathlib import Path

# Flags (as Linux names them in /proc/cpuinfo) that change which int8 kernel ONNX Runtime runs.
INT8_FLAGS = ("sse4_1", "avx2", "avx512f", "avx512bw", "avx_vnni", "avx512_vnni", "amx_int8")


def _linux_cpu() -> tuple[str, set[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def int8_path(features: set[str] | list[str], machine: str | None = None) -> str:
    """The int8 kernel family ONNX Runtime uses on a CPU with these features (x86), else the machine name."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i686", "x86"):
        return machine or "unknown"
    f = set(features)
    for flag, name in (
        ("amx_int8", "amx"),
        ("avx512_vnni", "avx512-vnni"),
        ("avx_vnni", "avx-vnni"),
        ("avx512bw", "avx512-core"),
        ("avx2", "avx2"),
        ("sse4_1", "sse4.1"),
    ):
        if flag in f:
            return name
    return "sse2"


def cpu_info() -> dict[str, object]:
    """This machine's CPU model, its int8-relevant features and the int8 path they select."""
    model, flags = _linux_cpu()
    features = sorted(f for f in INT8_FLAGS if f in flags)
    return {
        "model": model or platform.processor() or "unknown",
        "machine": platform.machine(),
        "features": features,
        "int8_path": int8_path(features),
    }


def describe() -> str:
    """One line for error messages: model, machine and int8 path."""
    c = cpu_info()
    return f"{c['model']} ({c['machine']}; int8 path {c['int8_path']}; features {' '.join(c['features']) or 'none'})"
