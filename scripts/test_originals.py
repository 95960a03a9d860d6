"""Score the corpus' TEST originals as whole files, the way users call the detector, per view set.

The protocol's test part scores 256 px patches; the external set is for choosing between finished
candidates only. This check sits between them: the whole original files behind the test split (held out
from training and validation by the builder's group split, never external), scored through
``Detector.predict`` with each view set (``center``, ``tta``, ``patches``). It is where a model's view policy
is chosen. Files are read from the mirrors at the catalog's pinned commits and checked against
``originals.csv``'s sha256 before use.

  python scripts/test_originals.py --model runs/x/model.onnx [--model default] \
      [--views center,patches] [--out runs/test-originals] [--json docs/protocol/x/test_originals.json]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def materialise(catalog: Path, originals: Path, mirrors: str, out: Path) -> list[dict[str, str]]:
    """Write every kept test original under ``out/files`` (once); returns rows path,label,source."""
    from aivsreal.corpus.catalog import load_catalog
    from aivsreal.corpus.origins import open_reader

    cat = load_catalog(catalog)
    by_name = {s.name: s for s in cat.sources}
    want: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(originals, newline="") as f:
        for r in csv.DictReader(f):
            if r["status"] == "ok" and r["split"] == "test" and r["source"] in by_name:
                want[r["source"]].append(r)
    rows, bad = [], 0
    cache = Path("~/.cache/aivsreal/downloads").expanduser()
    for name in sorted(want):
        src = by_name[name]
        if src.role != "train":
            continue
        with open_reader(src, mirrors=mirrors, cache=cache, base=cat.base_dir()) as reader:
            for r in want[name]:
                path = r["origin"].rsplit(":", 1)[1]  # every locator ends ":<path inside the origin>"
                ext = Path(r["origin"]).suffix.lower() or ".img"
                dst = out / "files" / name / f"{r['sha256'][:16]}{ext}"
                if not dst.is_file():
                    try:
                        data = reader.read(path)
                    except Exception as e:  # a missing blob: named, the rest go on
                        print(f"{name}: {path}: {e}", file=sys.stderr)
                        bad += 1
                        continue
                    if hashlib.sha256(data).hexdigest() != r["sha256"]:
                        print(f"{name}: {path}: sha256 differs from originals.csv, skipped", file=sys.stderr)
                        bad += 1
                        continue
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_name(dst.name + ".tmp")
                    tmp.write_bytes(data)
                    tmp.replace(dst)
                rows.append({"path": str(dst), "label": r["label"], "source": name})
    if bad:
        print(f"{bad} test originals could not be read", file=sys.stderr)
    return rows


def write_manifest(rows: list[dict[str, str]], path: Path) -> None:
    """The materialised files as a manifest ``load_dataset`` reads (every row in split ``test``)."""
    from aivsreal.fsutil import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["path", "label", "source", "split"])
    w.writeheader()
    w.writerows({**r, "split": "test"} for r in rows)
    atomic_write_text(path, buf.getvalue())


def score(model: str, rows: list[dict[str, str]], views: list[str]) -> dict[str, dict]:
    from aivsreal.protocol.score import metrics
    from aivsreal.runtime import Detector

    det = Detector.load(model)
    y = [1 if r["label"] == "ai" else 0 for r in rows]
    out = {}
    for v in views:
        preds = list(det.iter_predict([r["path"] for r in rows], batch_size=16, views=v))
        keep = [i for i, p in enumerate(preds) if p.ok]
        m = metrics([y[i] for i in keep], [preds[i].score for i in keep], det.card.threshold)
        per = defaultdict(list)
        for i in keep:
            per[rows[i]["source"]].append(int(preds[i].label == rows[i]["label"]))
        m["per_source_accuracy"] = {k: round(sum(a) / len(a), 4) for k, a in sorted(per.items())}
        m["unscored"] = len(rows) - len(keep)
        out[v] = m
    return {"model": det.model_id, "threshold": det.card.threshold, "views": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="model name or path (repeatable)")
    ap.add_argument("--views", default="center,patches")
    ap.add_argument("--catalog", default=str(ROOT / "catalog/sources.yaml"))
    ap.add_argument("--originals", default=str(ROOT / "docs/corpus/originals.csv"))
    ap.add_argument("--mirrors", default="/work/.mirror")
    ap.add_argument("--out", default=str(Path("~/.cache/aivsreal/test-originals").expanduser()))
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--manifest-out", help="also write the files as a labelled manifest (split test)")
    a = ap.parse_args(argv)
    rows = materialise(Path(a.catalog), Path(a.originals), a.mirrors, Path(a.out))
    n_ai = sum(r["label"] == "ai" for r in rows)
    print(
        f"{len(rows)} test originals ({n_ai} AI, {len(rows) - n_ai} real) from {len({r['source'] for r in rows})} sources"
    )
    if a.manifest_out:
        write_manifest(rows, Path(a.manifest_out))
    res = {"files": len(rows), "ai": n_ai, "real": len(rows) - n_ai, "models": []}
    for m in a.model:
        r = score(m, rows, a.views.split(","))
        res["models"].append(r)
        for v, x in r["views"].items():
            print(
                f"{r['model']:<40} {v:<8} ROC-AUC {x['roc_auc']:.3f}  bal.acc {x['balanced_accuracy']:.3f}  "
                f"spec {x['specificity']:.3f}  recall {x['recall']:.3f}"
            )
    if a.json:
        from aivsreal.fsutil import atomic_write_text

        atomic_write_text(a.json, json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
