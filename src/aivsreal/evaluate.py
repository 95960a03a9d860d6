"""Honest evaluation: overall, per source and per robustness tier, with a threshold chooser.

Each image is decoded once and scored clean and re-encoded as the ``web`` and ``hard`` tiers, so
format shortcuts show up as a drop between tiers. Works on ONNX models (no torch) and checkpoints.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .data import LABEL_NAMES, Sample, load_dataset
from .decision import is_ai
from .fsutil import atomic_write_bytes, atomic_write_text
from .imageio import DecodeError
from .metrics import binary_metrics, pr_curve, roc_auc, roc_curve, threshold_for_fpr
from .preprocess import load
from .runtime import Detector, Prepared

HEADLINE = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "average_precision",
    "balanced_accuracy",
    "ece",
)


def score_samples(
    det: Detector,
    samples: Sequence[Sample],
    tiers: Sequence[str] = ("clean",),
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], list[dict[str, str]], np.ndarray]:
    """Logits per tier for every decodable sample; returns (logits by tier, errors, kept mask).

    Each image is decoded once; every tier goes through the Detector's own stages (``preprocess`` of the
    decoded image with that tier, ``forward``, ``postprocess``), so evaluation scores what users get.
    """

    def prep(s: Sample) -> tuple[list[Prepared] | None, dict[str, str] | None]:
        try:
            img = load(s.path, det.pp).image
        except DecodeError as e:
            return None, {"path": s.path, **e.as_dict()}
        per_tier = [det.preprocess(img, name=s.path, tier=t) for t in tiers]
        bad = next((p.error for p in per_tier if p.error is not None), None)
        return (None, {"path": s.path, **bad}) if bad else (per_tier, None)

    logits: dict[str, list[float]] = {t: [] for t in tiers}
    errors: list[dict[str, str]] = []
    kept = np.zeros(len(samples), dtype=bool)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(samples), desc="scoring", unit="img")
    with ThreadPoolExecutor(workers) as ex:
        for start in range(0, len(samples), batch_size):
            chunk = list(ex.map(prep, samples[start : start + batch_size]))
            views: dict[str, list[Prepared]] = {t: [] for t in tiers}
            for j, (per_tier, err) in enumerate(chunk):
                if err:
                    errors.append(err)
                    continue
                kept[start + j] = True
                for t, p in zip(tiers, per_tier, strict=True):
                    views[t].append(p)
            for t in tiers:
                if views[t]:
                    logits[t].extend(p.logit for p in det.score_prepared(views[t]))
            if bar:
                bar.update(len(chunk))
    if bar:
        bar.close()
    return {t: np.asarray(v, dtype=np.float64) for t, v in logits.items()}, errors, kept


def per_source(samples: Sequence[Sample], y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, dict]:
    """Per source: n, accuracy at the threshold, mean score, and the AUC of this source against all
    images of the other class (how separable this source alone is)."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by[s.source].append(i)
    out = {}
    for src, idx in sorted(by.items()):
        idx_a = np.asarray(idx)
        lab = int(y[idx_a[0]])
        other = np.where(y != lab)[0]
        yy = np.r_[y[idx_a], y[other]]
        pp = np.r_[p[idx_a], p[other]]
        out[src] = {
            "label": LABEL_NAMES[lab],
            "n": len(idx),
            "accuracy": float(np.mean(is_ai(p[idx_a], threshold) == (y[idx_a] == 1))),
            "mean_score": float(np.mean(p[idx_a])),
            "auc_vs_other_class": roc_auc(yy, pp) if len(other) else float("nan"),
        }
    return out


def evaluate(
    model: str | os.PathLike | None,
    data: str | os.PathLike,
    *,
    split: str = "test",
    tiers: Sequence[str] = ("clean", "web", "hard"),
    threshold: float | None = None,
    max_fpr: float | None = None,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
    detector: Detector | None = None,
) -> dict[str, Any]:
    """Score a split of a collection and return every metric (see README for the JSON shape)."""
    det = detector or Detector.load(model)
    ds = load_dataset(data, seed=seed)
    samples = ds.samples if split == "all" else ds.split(split)
    if not samples:
        raise ValueError(f"{data}: split {split!r} is empty")
    thr_note = "card"
    thr = det.card.threshold if threshold is None else float(threshold)
    if threshold is not None:
        thr_note = "given"
    if max_fpr is not None:
        val = ds.split("val")
        if not val:
            raise ValueError("--max-fpr needs a validation split to choose the threshold on")
        lv, _, kv = score_samples(det, val, ("clean",), batch_size)
        yv = np.array([s.label for s, k in zip(val, kv) if k])
        thr = threshold_for_fpr(yv, det.score_logits(lv["clean"]), max_fpr)
        thr_note = f"chosen on the val split for FPR ≤ {max_fpr}"
    logits, errors, kept = score_samples(det, samples, tiers, batch_size, progress=progress)
    ok = [s for s, k in zip(samples, kept) if k]
    y = np.array([s.label for s in ok])
    result: dict[str, Any] = {"model": det.model_id, "data": str(data), "split": split, "n": len(ok)}
    result["threshold"] = thr
    result["threshold_source"] = thr_note
    result["tiers"] = {}
    result["per_source"] = {}
    for t in tiers:
        p = det.score_logits(logits[t])
        result["tiers"][t] = binary_metrics(y, p, thr)
        result["per_source"][t] = per_source(ok, y, p, thr)
        if t == tiers[0]:
            result.update({k: result["tiers"][t][k] for k in (*HEADLINE, "specificity", "confusion_matrix")})
            result["_scores"] = p
    result["errors"] = errors
    result["_y"] = y
    return result


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-serialisable part of a result (drops raw score arrays)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"model {result['model']} · {result['data']} [{result['split']}] · n={result['n']} · "
        f"threshold {result['threshold']:.4f} ({result['threshold_source']})",
        "",
    ]
    lines.append(f"{'tier':<8}" + "".join(f"{k[:10]:>11}" for k in HEADLINE) + f"{'spec.':>8}")
    for t, m in result["tiers"].items():
        lines.append(f"{t:<8}" + "".join(f"{m[k]:>11.4f}" for k in HEADLINE) + f"{m['specificity']:>8.4f}")
    lines += ["", f"confusion matrix (clean) [[tn, fp], [fn, tp]]: {result['confusion_matrix']}", ""]
    tiers = list(result["per_source"])
    lines.append(
        f"{'source':<44}{'label':>6}{'n':>5}" + "".join(f"{'acc ' + t:>11}" for t in tiers) + f"{'AUC':>7}"
    )
    first = result["per_source"][tiers[0]]
    for src in first:
        r = first[src]
        accs = "".join(f"{result['per_source'][t][src]['accuracy']:>11.3f}" for t in tiers)
        lines.append(f"{src[:43]:<44}{r['label']:>6}{r['n']:>5}{accs}{r['auc_vs_other_class']:>7.3f}")
    if result["errors"]:
        lines += ["", f"{len(result['errors'])} file(s) could not be scored:"]
        lines += [f"  {e['path']}: {e['kind']}: {e['message']}" for e in result["errors"][:20]]
    return "\n".join(lines)


def write_report(result: dict[str, Any], out: str | os.PathLike) -> Path:
    """Confusion matrix, ROC and PR PNGs, metrics.json and report.md into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    y, p = result["_y"], result["_scores"]

    def save(fig, name):
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(d / name, buf.getvalue())

    cm = np.array(result["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="black", fontsize=12)
    ax.set_xticks([0, 1], ["real", "ai"])
    ax.set_yticks([0, 1], ["real", "ai"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"threshold {result['threshold']:.3f}")
    save(fig, "confusion_matrix.png")
    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.plot(fpr, tpr, label=f"AUC {result['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false-positive rate (real flagged)")
    ax.set_ylabel("true-positive rate")
    ax.legend()
    save(fig, "roc.png")
    prec, rec = pr_curve(y, p)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.plot(rec, prec, label=f"AP {result['average_precision']:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend()
    save(fig, "pr.png")
    atomic_write_text(d / "metrics.json", json.dumps(public(result), indent=2, default=float))
    md = [
        "# Evaluation report",
        "",
        "```",
        format_table(result),
        "```",
        "",
        "![confusion matrix](confusion_matrix.png) ![ROC](roc.png) ![PR](pr.png)",
        "",
    ]
    atomic_write_text(d / "report.md", "\n".join(md))
    return d
