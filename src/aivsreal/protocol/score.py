"""Scoring for the protocol: patch sets per tier, aligned pairs, the external check set and its looks log.

Patches are scored through the evaluator's ``score_samples`` (the Detector's own preprocessing, each
image decoded once, every tier from it). The external check set is scored as whole original files through
``Detector.predict`` / ``iter_predict``, exactly as a user calls the detector. Every look at the external
set is appended to an append-only JSON-lines log before the figures are returned.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..decision import is_ai
from ..fsutil import sha256_file
from ..metrics import binary_metrics
from .pool import AI, REAL, Item, ProtocolError

KEEP = (
    "n",
    "threshold",
    "balanced_accuracy",
    "roc_auc",
    "specificity",
    "recall",
    "ece",
    "accuracy",
    "confusion_matrix",
)
HEADLINE = ("balanced_accuracy", "roc_auc", "specificity", "recall", "ece")


def clean_float(v: Any) -> Any:
    """NaN/inf → None, recursively, so protocol.json is strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: clean_float(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean_float(x) for x in v]
    if isinstance(v, np.floating):
        return clean_float(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


def metrics(y: Sequence[int], p: Sequence[float], threshold: float) -> dict[str, Any]:
    """The protocol's figures for labels y (1 = AI) and calibrated scores p at the threshold."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=np.float64)
    m = binary_metrics(y, p, threshold) if len(y) else {"n": 0, "threshold": threshold}
    out = {k: m.get(k) for k in KEEP}
    out["n_ai"], out["n_real"] = int((y == AI).sum()), int((y == REAL).sum())
    return clean_float(out)


class PatchScorer:
    """Calibrated scores of patches per tier for one model, each file scored once (cached by path)."""

    def __init__(
        self, det: Any, tiers: Sequence[str], batch_size: int = 32, workers: int = 2, progress: bool = False
    ):
        self.det, self.tiers = det, list(tiers)
        self.batch_size, self.workers, self.progress = batch_size, workers, progress
        self.scores: dict[str, dict[str, float]] = {}
        self.errors: dict[str, dict[str, str]] = {}

    def score(self, items: Sequence[Item]) -> None:
        from ..data import Sample
        from ..evaluate import score_samples

        todo = sorted({it.path for it in items} - set(self.scores) - set(self.errors))
        if not todo:
            return
        samples = [Sample(p, 0) for p in todo]
        logits, errors, kept = score_samples(
            self.det, samples, self.tiers, self.batch_size, self.workers, progress=self.progress
        )
        ok = [p for p, k in zip(todo, kept) if k]
        for t in self.tiers:
            probs = self.det.score_logits(logits[t])
            for path, pr in zip(ok, probs):
                self.scores.setdefault(path, {})[t] = float(pr)
        for e in errors:
            self.errors[e["path"]] = {k: v for k, v in e.items() if k != "path"}

    def set_metrics(self, items: Sequence[Item]) -> dict[str, Any]:
        """Per tier: the figures of this set of items at the card's threshold (unscorable files left out)."""
        self.score(items)
        thr = float(self.det.card.threshold)
        ok = [it for it in items if it.path in self.scores]
        out: dict[str, Any] = {}
        for t in self.tiers:
            out[t] = metrics([it.label for it in ok], [self.scores[it.path][t] for it in ok], thr)
        out["unscored"] = len(items) - len(ok)
        return out


def pairs_metrics(
    scorer: PatchScorer, pairs: Sequence[tuple[Item, Item]], jpeg_pairs: Sequence[tuple[Item, Item]]
) -> dict[str, Any]:
    """Real test patches against their aligned twins (and the twins re-encoded as JPEG): per tier."""
    res: dict[str, Any] = {"n_pairs": len(pairs), "made_twins": sum(1 for _, t in pairs if t.made)}
    res["tiers"] = {}
    for name, prs in (("twin", pairs), ("twin_jpeg", jpeg_pairs)):
        items = [x for pr in prs for x in pr]
        scorer.score(items)
        ok = [(r, f) for r, f in prs if r.path in scorer.scores and f.path in scorer.scores]
        thr = float(scorer.det.card.threshold)
        for t in scorer.tiers:
            y = [REAL] * len(ok) + [AI] * len(ok)
            p = [scorer.scores[r.path][t] for r, _ in ok] + [scorer.scores[f.path][t] for _, f in ok]
            m = metrics(y, p, thr)
            d = np.array([scorer.scores[f.path][t] - scorer.scores[r.path][t] for r, f in ok])
            # paired order: the share of pairs whose twin scores above its own real patch (ties half)
            m["pair_order"] = float(np.mean((d > 0) + 0.5 * (d == 0))) if len(d) else None
            res["tiers"].setdefault(t, {})[name] = m
    return res


# ---- external check set ---------------------------------------------------------------------------
def read_external(path: Path) -> list[dict[str, str]]:
    """Rows of the external list (the builder's external.csv: one whole original per row), paths absolute."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ProtocolError(
            f"{path}: cannot read the external originals list ({e.strerror or e}); build the corpus "
            "with external sources (role: external) or pass --external"
        ) from None
    rows = list(csv.DictReader(io.StringIO(text)))
    for i, r in enumerate(rows, start=2):
        if not r.get("path") or (r.get("label") or "").lower() not in ("ai", "real"):
            raise ProtocolError(f"{path}:{i}: bad row (path {r.get('path')!r}, label {r.get('label')!r})")
        if not os.path.isabs(r["path"]):
            r["path"] = os.path.abspath(path.parent / r["path"])
    if not rows:
        raise ProtocolError(f"{path}: no external originals listed")
    shas = [r["orig_sha256"] for r in rows if r.get("orig_sha256")]
    if len(set(shas)) < len(shas):  # an older build listed patches: the check set is whole files
        raise ProtocolError(
            f"{path}: {len(shas)} rows for {len(set(shas))} originals: this lists patches, not whole "
            "original files (rebuild the corpus with the current builder)"
        )
    return rows


def external_shas(path: Path) -> set[str]:
    """sha256 of every external original listed (for the no-leak check); empty when there is no list."""
    if not path.is_file():
        return set()
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {r["orig_sha256"] for r in csv.DictReader(f) if r.get("orig_sha256")}


def check_log_writable(log: Path) -> None:
    """Fail before looking when the looks log cannot be appended to (no look goes unrecorded)."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.close(fd)
    except OSError as e:
        raise ProtocolError(f"{log}: the external looks log cannot be written: {e.strerror or e}") from None


def append_look(log: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line (one write, O_APPEND, fsync): earlier looks are never rewritten."""
    line = (json.dumps(clean_float(entry), sort_keys=True, ensure_ascii=False) + "\n").encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def score_external(
    det: Any,
    csv_path: Path,
    tiers: Sequence[str],
    *,
    log: Path,
    spec_sha256: str,
    reason: str = "",
    batch_size: int = 16,
    minimums: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Score every external original file through the Detector, per tier; log the look; return figures."""
    rows = read_external(csv_path)
    check_log_writable(log)
    paths = [r["path"] for r in rows]
    labels = [AI if r["label"].lower() == "ai" else REAL for r in rows]
    thr = float(det.card.threshold)
    res: dict[str, Any] = {"n_files": len(rows), "tiers": {}, "per_source": {}, "errors": []}
    for t in tiers:
        if t == "clean":
            preds = det.predict(paths, batch_size=batch_size)  # the call users make
        else:
            preds = list(det.iter_predict(paths, batch_size=batch_size, tier=t))
        ok = [i for i, pr in enumerate(preds) if pr.ok]
        m = metrics([labels[i] for i in ok], [preds[i].score for i in ok], thr)
        m["uncertain"] = sum(1 for i in ok if preds[i].uncertain)
        m["unscored"] = len(rows) - len(ok)
        res["tiers"][t] = m
        if t == tiers[0]:
            res["errors"] = [
                {"path": paths[i], **(preds[i].error or {})} for i in range(len(rows)) if not preds[i].ok
            ]
        by: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            by.setdefault(r.get("source") or "default", []).append(i)
        for src, idx in sorted(by.items()):
            good = [i for i in idx if preds[i].ok]
            acc = [bool(is_ai(preds[i].score, thr)) == (labels[i] == AI) for i in good]
            res["per_source"].setdefault(src, {"label": rows[idx[0]]["label"].lower(), "n": len(idx)})
            res["per_source"][src][t] = {
                "accuracy": float(np.mean(acc)) if acc else None,
                "mean_score": float(np.mean([preds[i].score for i in good])) if good else None,
                "unscored": len(idx) - len(good),
            }
    ai_src = {r.get("source") for r in rows if r["label"].lower() == "ai"}
    real_src = {r.get("source") for r in rows if r["label"].lower() == "real"}
    size = {
        "ai": labels.count(AI),
        "real": labels.count(REAL),
        "ai_sources": len(ai_src),
        "real_sources": len(real_src),
    }
    mins = minimums or {}
    size["meets_minimum"] = (
        size["ai"] >= mins.get("min_ai", 0)
        and size["real"] >= mins.get("min_real", 0)
        and size["ai_sources"] >= mins.get("min_ai_sources", 0)
        and size["real_sources"] >= mins.get("min_real_sources", 0)
    )
    res["size"] = size
    res["set_sha256"] = sha256_file(csv_path)
    entry = {
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "model": det.model_id,
        "model_path": str(det.path),
        "model_sha256": sha256_file(det.path),
        "external_set": str(csv_path),
        "external_set_sha256": res["set_sha256"],
        "protocol_sha256": spec_sha256,
        "n": size,
        "reason": reason,
        "figures": {t: {k: res["tiers"][t].get(k) for k in HEADLINE} for t in tiers},
    }
    append_look(log, entry)
    res["look"] = {"log": str(log), "date": entry["date"]}
    return res
