"""Measure an int8 model on every int8 kernel path ONNX Runtime can take, and write the spread into its card.

    python scripts/int8_isa_spread.py src/aivsreal/models_dist/default.int8.onnx --data ../shared/data/dev

ONNX Runtime picks its x86 int8 kernels by instruction set (AMX, AVX-512 VNNI, AVX-VNNI, AVX-512 core,
AVX2, SSE4.1); u8s8 products summed in int16 without VNNI can saturate. This runs ``aivsreal``'s own
``evaluate`` (the dev test split, every tier) natively and under ``qemu-x86_64 -cpu MODEL`` (Debian
``qemu-user``; it emulates an older CPU, so ONNX Runtime takes that CPU's kernels) for each ``--cpus``
model, then records in the card: the CPU the card's ``dev_test`` figures were measured on, each path's
figures and decision agreement with the fp32 sibling, and the spread (max − min over paths) that
``tests/test_default_model.py`` allows. Emulation is slow (about 10 min per path on 2 idle cores; the paths run side by side).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from aivsreal.cpu import cpu_info, int8_path
from aivsreal.evaluate import evaluate, public
from aivsreal.export import replace_card
from aivsreal.runtime import Detector

KEYS = ("balanced_accuracy", "roc_auc", "specificity", "recall")
# qemu CPU model → the features ONNX Runtime sees there (TCG in QEMU 7.2 emulates AVX2 but no AVX-512).
QEMU_CPUS = {"Haswell-v4": ["sse4_1", "avx2"], "Nehalem": ["sse4_1"]}


def measure(model: Path, data: str) -> dict:
    """Every tier's figures and the clean-tier scores of one model on the dev test split."""
    res = evaluate(model, data, split="test")
    return {"public": public(res), "scores": np.asarray(res["_scores"]).tolist()}


def run_path(model: Path, data: str, qemu_cpu: str | None) -> dict:
    """``measure`` in a child process, natively or under qemu emulating ``qemu_cpu``."""
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "r.json"
        cmd = [sys.executable, __file__, "--child", str(model), "--data", data, "--out", str(out)]
        if qemu_cpu:
            cmd = ["qemu-x86_64", "-cpu", qemu_cpu, *cmd]
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL if qemu_cpu else None)
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", default="../shared/data/dev")
    ap.add_argument("--cpus", nargs="*", default=list(QEMU_CPUS), help="qemu CPU models to emulate")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dry-run", action="store_true", help="print, do not write the card")
    a = ap.parse_args()
    if a.child:
        a.out.write_text(json.dumps(measure(a.model, a.data), default=float))
        return
    fp32 = a.model.with_name(a.model.name.replace(".int8.onnx", ".onnx"))
    ref = np.asarray(measure(fp32, a.data)["scores"])
    here = cpu_info()
    paths: dict[str, dict] = {}
    native = f"{here['int8_path']} (native: {here['model']})"
    runs = [(native, None)]
    if shutil.which("qemu-x86_64") and here["machine"] in ("x86_64", "AMD64"):
        runs += [(f"{int8_path(QEMU_CPUS.get(c, []), 'x86_64')} (qemu -cpu {c})", c) for c in a.cpus]
    else:
        print(
            "qemu-x86_64 not found (apt-get install qemu-user): measuring this CPU's path only",
            file=sys.stderr,
        )
    thr = Detector.load(a.model).card.threshold
    print(f"measuring {', '.join(n for n, _ in runs)} …", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(len(runs)) as ex:  # one process per path, side by side
        results = list(ex.map(lambda run: run_path(a.model, a.data, run[1]), runs))
    for (name, _), r in zip(runs, results):
        s = np.asarray(r["scores"])
        paths[name] = {
            "tiers": {t: {k: m[k] for k in KEYS} for t, m in r["public"]["tiers"].items()},
            "decision_agreement_fp32": float(np.mean((s >= thr) == (ref >= thr))),
        }
    tiers = next(iter(paths.values()))["tiers"]
    spread = {
        t: {
            k: max(p["tiers"][t][k] for p in paths.values()) - min(p["tiers"][t][k] for p in paths.values())
            for k in KEYS
        }
        for t in tiers
    }
    isa = {
        "measured_on": {**here, "path": native, "onnxruntime": __import__("onnxruntime").__version__},
        "paths": paths,
        "spread": spread,
        "decision_agreement_fp32_min": min(p["decision_agreement_fp32"] for p in paths.values()),
        "how": "scripts/int8_isa_spread.py: aivsreal evaluate natively and under qemu-x86_64 -cpu MODEL",
    }
    print(json.dumps(isa, indent=2))
    if a.dry_run:
        return
    card = Detector.load(a.model).card
    for t, m in paths[native]["tiers"].items():  # the headline figures are this CPU's, as measured_on says
        card.metrics.setdefault("dev_test", {}).setdefault(t, {}).update(m)
    card.metrics["int8_isa"] = isa
    replace_card(a.model, card)


if __name__ == "__main__":
    main()
