"""`aivsreal bench`: the JSON report has every part, the numbers are sane and each ratio is computed
from the parts printed beside it. No timing thresholds (the CPU is shared)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from aivsreal.bench import TARGETS, format_bench


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aivsreal", "bench", *args], capture_output=True, text=True, timeout=timeout
    )


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def check_engine(e: dict, gflop: float | None, peak: dict) -> None:
    b1, b32 = e["batch1"], e["batch32"]
    assert b1["n"] >= 3
    assert 0 < b1["min_ms"] <= b1["p50_ms"] <= b1["p95_ms"]
    assert 0 < b32["min_ms"] <= b32["p50_ms"]
    assert close(b32["images_per_s"], 32 / (b32["min_ms"] / 1e3))
    if gflop is not None:
        assert close(b32["gflops"], gflop * 32 / (b32["min_ms"] / 1e3))
        assert close(b32["peak_fraction"], b32["gflops"] / peak["gflops"])
        assert close(b32["gflop_per_cpu_s"], gflop * 32 / (b32["cpu_ms_min"] / 1e3))
        assert close(b32["peak_fraction_cpu"], b32["gflop_per_cpu_s"] / peak["gflop_per_cpu_s"])
    assert e["session_options"]


def check_report(res: dict, n_images: int) -> None:
    assert res["machine"]["cores"] >= 1
    pk = res["peak"]
    measured = [v for k, v in pk.items() if k.endswith("_gflops") and v]
    assert measured and all(v > 0 for v in measured)
    assert pk["gflops"] == max(measured)
    per_cpu = [v for k, v in pk.items() if k.endswith("_gflop_per_cpu_s") and v]
    assert per_cpu and pk["gflop_per_cpu_s"] == max(per_cpu) > 0
    assert "random" in res["weights_note"]
    for m in res["models"]:
        assert m["gflop_per_image"] > 0 and m["params"] > 0
        for key in ("ort_fp32", "ort_int8", "torch_eager"):
            check_engine(m["engines"][key], m["gflop_per_image"], pk)
        assert m["engines"]["torch_eager"]["session_options"]["backend"] == "torch-eager"
        assert "intra_op_num_threads" in m["engines"]["ort_fp32"]["session_options"]
        fl = m["files"]
        assert 0 < fl["int8_bytes"] < fl["fp32_bytes"]
        assert fl["float32_bytes"] >= fl["fp32_bytes"]  # float16-stored weights count at float32 size
        assert close(fl["int8_size_ratio"], fl["int8_bytes"] / fl["float32_bytes"])
        for e in m["end_to_end"].values():
            assert e["images"] == n_images
            assert e["decode_core_ms"] > 0 and e["model_core_ms"] > 0 and e["images_per_s"] > 0
            bound = e["cores"] / ((e["decode_core_ms"] + e["model_core_ms"]) / 1e3)
            assert close(e["bound_images_per_s"], bound)
            assert close(e["ratio_to_bound"], e["images_per_s"] / bound)
            ratios = sorted(e["pass_ratios_to_bound"])  # the reported pass is the median one
            assert len(ratios) == e["passes"] and close(e["ratio_to_bound"], ratios[(len(ratios) - 1) // 2])
            assert 0 < e["process_cpu_share"]
            cpu_per_image = e["cpu_ms_per_image"]
            assert close(e["cpu_efficiency"], (e["decode_core_ms"] + e["model_core_ms"]) / cpu_per_image)
        r = m["ratios"]
        assert set(r) == set(TARGETS)
        fp32, tor = m["engines"]["ort_fp32"], m["engines"]["torch_eager"]
        assert close(
            r["ort_fp32_vs_torch_batch1_latency"], fp32["batch1"]["p50_ms"] / tor["batch1"]["p50_ms"]
        )
        assert close(r["ort_fp32_batch32_peak_fraction"], fp32["batch32"]["gflops"] / pk["gflops"])
        assert close(r["ort_fp32_batch32_peak_fraction_cpu"], fp32["batch32"]["peak_fraction_cpu"])
        assert close(r["e2e_cpu_efficiency"], m["end_to_end"]["ort_fp32"]["cpu_efficiency"])
        assert close(r["e2e_vs_bound"], m["end_to_end"]["ort_fp32"]["ratio_to_bound"])
        assert close(r["int8_file_ratio"], fl["int8_size_ratio"])
    text = format_bench(res)
    for m in res["models"]:
        assert m["name"] in text
    assert "ratios vs targets" in text and "random-init" in text


def test_bench_on_exported_tiny_model(tiny_onnx):
    """An .onnx path is timed as it is (int8 beside it); torch eager and FLOPs come from its backbone."""
    p = run_cli("--quick", "--json", "--model", str(tiny_onnx), "--images", "3", "--repeats", "3")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    check_report(res, n_images=3)
    (m,) = res["models"]
    assert m["onnx"] == str(tiny_onnx) and m["weights"] == "as exported"
    assert m["input_size"] == 64
    assert m["files"]["fp32_bytes"] == tiny_onnx.stat().st_size
    assert m["files"]["int8_bytes"] == tiny_onnx.with_name("model.int8.onnx").stat().st_size


@pytest.mark.slow
def test_bench_builds_a_timm_model():
    """A timm name is built with random weights, exported fp32 + int8 and benched at its own input size."""
    p = run_cli("--quick", "--json", "--model", "tf_mobilenetv3_small_100", "--images", "3", "--repeats", "3")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    check_report(res, n_images=3)
    (m,) = res["models"]
    assert m["name"] == "tf_mobilenetv3_small_100" and m["weights"] == "random init"
    assert m["input_size"] == 224
    assert 0.05 < m["gflop_per_image"] < 0.5  # MobileNetV3-Small is ~0.06 GMACs, i.e. ~0.11 GFLOP


def test_bench_bad_model_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.onnx"
    p = run_cli("--quick", "--model", str(missing))
    assert p.returncode == 2
    assert str(missing) in p.stderr and "not found" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_cli("--quick", "--model", "no_such_timm_model")
    assert p.returncode == 2
    assert "no_such_timm_model" in p.stderr and "Traceback" not in p.stderr


def test_bench_ray_engine_errors_are_clear(tmp_path):
    """The Ray benchmark is a bench engine (no second argparse in scale.py); bad asks fail before Ray starts."""
    missing = tmp_path / "nope.onnx"
    p = run_cli("--engine", "ray", "--model", str(missing), timeout=120)
    assert p.returncode == 2 and str(missing) in p.stderr and "Traceback" not in p.stderr
    p = run_cli("--engine", "warp", timeout=120)
    assert p.returncode == 2 and "unknown engine" in p.stderr


def test_format_ray_bench_lists_every_run():
    from aivsreal.bench import format_ray_bench

    res = {
        "model_id": "m",
        "images": 4,
        "image_size": [64, 48],
        "cores": 2,
        "loadavg_start": [1.0],
        "loadavg_end": [1.0],
        "ray_start_seconds": 3.0,
        "runs": [
            {"engine": "local", "threads": 1, "images_per_s": 10.0, "cpu_ms_per_image": 5.0},
            {
                "engine": "ray",
                "workers": 2,
                "images_per_s": 8.0,
                "scoring_images_per_s": 9.0,
                "actor_cpu_ms_per_image": 6.0,
            },
        ],
    }
    text = format_ray_bench(res)
    assert "local, threads 1" in text and "ray, 2 worker(s)" in text and "9.0" in text
