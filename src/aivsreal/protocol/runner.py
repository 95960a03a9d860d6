"""``aivsreal protocol run`` / ``score``: the held-out training runs, the scoring parts, protocol.json.

Layout of OUT (every file written atomically; protocol.json and protocol.md rewritten after each step):

- ``runs/<part>-<name>/``: ``train.csv`` (the filtered training manifest), ``spec.json`` (what the run
  is: protocol, training config, budget, held-out name, manifest hashes), ``train/`` (the training run,
  resumable), ``result.json`` (its scores; present = done, skipped on a re-run).
- ``fakes/``: the protocol's test fakes (aligned twins, synthetic fakes, JPEG copies), made once.
- ``protocol.json``, ``protocol.md``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import atomic_write_text, sha256_file
from .pool import (
    AI,
    REAL,
    Item,
    ProtocolError,
    TestPool,
    build_test_pool,
    check_no_external,
    jpeg_copy,
    read_manifest,
    summary_counts,
    training_items,
    write_manifest,
)
from .score import HEADLINE, PatchScorer, clean_float, external_shas, pairs_metrics, score_external
from .spec import PARTS, ProtocolSpec

TRAIN_PARTS = ("lofo", "lorgo")


@dataclass
class Options:
    """What one protocol invocation works on (CLI flags)."""

    manifest: Path
    out: Path
    parts: list[str]
    config: Path | None = None  # the training config (recipe) under test
    budget: str | None = None
    model: str | None = None  # scored by pairs/external/test; else the protocol trains 'full'
    external: Path | None = None  # external.csv of whole originals (default: beside the manifest)
    looks: Path | None = None  # looks log (default: the protocol file's)
    fakes_dir: Path | None = None
    weights_dir: str | None = None  # TAEF2 weights for aligned twins
    reason: str = ""
    batch_size: int = 32
    workers: int = 2
    progress: bool = True
    log: list[str] = field(default_factory=list)


class Protocol:
    """One protocol over one manifest into one OUT folder."""

    def __init__(self, spec: ProtocolSpec, opts: Options):
        bad = [p for p in opts.parts if p not in PARTS]
        if bad:
            raise ProtocolError(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
        self.spec, self.o = spec, opts
        self.out = Path(opts.out)
        self.items = read_manifest(opts.manifest)
        self.manifest_sha = sha256_file(opts.manifest)
        self.external_csv = Path(
            opts.external or Path(opts.manifest).parent / spec.external.originals
        ).absolute()
        self.external_sha = external_shas(self.external_csv)
        self.fakes_dir = Path(opts.fakes_dir or self.out / "fakes")
        self._pool: TestPool | None = None
        self.result: dict[str, Any] = {
            "protocol": {"file": spec.path, "sha256": spec.sha256, "version": spec.version},
            "manifest": {"path": str(opts.manifest), "sha256": self.manifest_sha},
            "counts": summary_counts(self.items),
            "tiers": list(spec.tiers),
            "threshold_rule": "each model's card threshold (chosen on its own validation split)",
            "parts": {},
        }

    # ---- shared pieces ------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        self.o.log.append(msg)
        if self.o.progress:
            print(f"protocol: {msg}", flush=True)

    def pool(self) -> TestPool:
        if self._pool is None:
            self._pool = build_test_pool(
                self.items,
                self.spec,
                self.fakes_dir,
                weights_dir=self.o.weights_dir,
                progress=self.o.progress,
            )
            self.result["test_pool"] = {
                "items": len(self._pool.items),
                "made_fakes": self._pool.made,
                "pairs": len(self._pool.pairs),
                "notes": self._pool.notes[:50],
            }
        return self._pool

    def scorer(self, det: Any) -> PatchScorer:
        return PatchScorer(det, self.spec.tiers, self.o.batch_size, self.o.workers, self.o.progress)

    def train_config(self) -> tuple[Any, str, dict[str, Any]]:
        from ..train import TrainConfig

        cfg = TrainConfig.from_yaml(self.o.config) if self.o.config else TrainConfig()
        name, over = self.spec.budget(self.o.budget)
        for k, v in over.items():
            setattr(cfg, k, v)
        cfg.validate()
        return cfg, name, over

    # ---- held-out training runs ---------------------------------------------------------------
    def held_out(self, part: str, name: str | None) -> tuple[Path, dict[str, Any] | None]:
        """Train (or resume, or skip) one run; returns (run dir, its result.json or None when skipped)."""
        import dataclasses

        from ..train import train

        rd = self.out / "runs" / (f"{part}-{name}" if name else part)
        rd.mkdir(parents=True, exist_ok=True)
        done = _read_json(rd / "result.json")
        train_items = training_items(self.items, part, name)
        check_no_external(train_items, self.external_sha, str(rd))
        if not {it.label for it in train_items} >= {REAL, AI}:
            raise ProtocolError(f"{rd}: the training manifest lacks a class")
        sha = write_manifest(train_items, rd / "train.csv")
        cfg, budget_name, budget = self.train_config()
        recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("data", "out")}
        spec = {
            "part": part,
            "held_out": name,
            "protocol_sha256": self.spec.sha256,
            "manifest_sha256": self.manifest_sha,
            "train_manifest_sha256": sha,
            "config": recipe,
            "budget": {"name": budget_name, **budget},
        }
        key = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
        spec["key"] = key
        old = _read_json(rd / "spec.json")
        if old and old.get("key") != key:
            raise ProtocolError(
                f"{rd}: made with another protocol, config, budget or manifest (spec.json differs); "
                "use a new --out to compare recipes"
            )
        if done and done.get("key") == key:
            self.say(f"{rd.name}: done, skipped")
            return rd, done
        atomic_write_text(rd / "spec.json", json.dumps(spec, indent=2, default=str))
        cfg.data, cfg.out = str(rd / "train.csv"), str(rd / "train")
        resume = (rd / "train" / "state.json").is_file()
        self.say(f"{rd.name}: {'resuming' if resume else 'training'} on {len(train_items)} images")
        t0 = time.monotonic()
        try:
            ckpt = train(cfg, resume=resume, progress=self.o.progress)
        except (ValueError, OSError) as e:  # this run's data or disk: recorded, the other runs go on
            self.say(f"{rd.name}: training failed: {e}")
            return rd, {"key": key, "failed": str(e)}
        return rd, {"key": key, "checkpoint": str(ckpt), "wall_seconds": round(time.monotonic() - t0, 1)}

    def _finish_run(self, rd: Path, res: dict[str, Any], sets: dict[str, list[Item]]) -> dict[str, Any]:
        """Score the run's checkpoint on its sets and record result.json (the run is then done)."""
        from ..runtime import Detector

        det = Detector.load(res["checkpoint"])
        sc = self.scorer(det)
        res["model_id"] = det.model_id
        res["threshold"] = float(det.card.threshold)
        res["epoch_seconds"] = _epoch_seconds(rd / "train")
        res["sets"] = {name: sc.set_metrics(items) for name, items in sets.items()}
        res = clean_float(res)
        atomic_write_text(rd / "result.json", json.dumps(res, indent=2))
        return res

    def run_lofo(self) -> None:
        pool = self.pool()
        reals = pool.reals()
        fams: dict[str, Any] = {}
        present = {it.family for it in self.items if it.label == AI} | {it.family for it in pool.ai()}
        for fam in self.spec.lofo.families:
            test_ai = pool.ai(fam)
            if fam not in present:
                fams[fam] = {"status": "absent from the manifest"}
                continue
            if not test_ai:
                fams[fam] = {"status": "no test images"}
                continue
            fams[fam] = self._held_out_entry("lofo", fam, test_ai + reals)
            self._part("lofo", fams, self.spec.lofo.min_families)
        self._part("lofo", fams, self.spec.lofo.min_families)

    def run_lorgo(self) -> None:
        pool = self.pool()
        ai = pool.ai()
        groups: dict[str, Any] = {}
        for g in self.spec.lorgo.groups:
            test_real = [it for it in pool.reals() if it.family == g]
            if not any(it.family == g and it.label == REAL for it in self.items):
                groups[g] = {"status": "absent from the manifest"}
                continue
            if not test_real:
                groups[g] = {"status": "no test images"}
                continue
            groups[g] = self._held_out_entry("lorgo", g, test_real + ai)
            self._part("lorgo", groups, self.spec.lorgo.min_groups)
        self._part("lorgo", groups, self.spec.lorgo.min_groups)

    def _held_out_entry(self, part: str, key: str, held_out: list) -> dict[str, Any]:
        """Train (or resume) the run without ``key`` and score it on ``held_out``: its table entry."""
        rd, res = self.held_out(part, key)
        if res is not None and "failed" in res:
            return {"status": f"failed: {res['failed']}", "run": rd.name}
        if res is not None and "sets" not in res:
            res = self._finish_run(rd, res, {"held_out": held_out})
        return {"status": "done", "run": rd.name, **_run_summary(res, "held_out")}

    def _part(self, part: str, entries: dict[str, Any], minimum: int) -> None:
        """Per-entry figures, their mean and minimum per tier, whether enough entries were scored."""
        done = {k: v for k, v in entries.items() if v.get("status") == "done"}
        summary: dict[str, Any] = {}
        for t in self.spec.tiers:
            rows = [v["tiers"][t] for v in done.values()]
            summary[t] = {
                "mean": {k: _agg(rows, k, np.mean) for k in HEADLINE},
                "min": {k: _agg(rows, k, np.min) for k in HEADLINE},
            }
        key = "families" if part == "lofo" else "groups"
        self.result["parts"][part] = clean_float(
            {
                key: entries,
                "scored": len(done),
                "minimum": minimum,
                "complete": len(done) >= minimum,
                "summary": summary,
            }
        )
        self.write()

    # ---- parts scored on one model ------------------------------------------------------------
    def candidate(self) -> Any:
        """The model scored by pairs/external/test: --model, else the protocol's 'full' run."""
        from ..runtime import Detector

        if self.o.model:
            return Detector.load(self.o.model)
        rd, res = self.held_out("full", None)
        if res is not None and "failed" in res:
            raise ProtocolError(f"{rd}: the candidate could not be trained: {res['failed']}")
        if res is not None and "sets" not in res:
            res = self._finish_run(rd, res, {})
        self.result["candidate_run"] = rd.name
        return Detector.load(res["checkpoint"])

    def run_scored(self, parts: list[str]) -> None:
        det = self.candidate()
        self.result["model"] = {"id": det.model_id, "path": str(det.path), "threshold": det.card.threshold}
        sc = self.scorer(det)
        if "test" in parts:
            self.run_test(sc)
        if "pairs" in parts:
            self.run_pairs(sc)
        if "external" in parts:
            self.run_external(det)

    def run_test(self, sc: PatchScorer) -> None:
        pool = self.pool()
        reals, ai = pool.reals(), pool.ai()
        res: dict[str, Any] = {"all": sc.set_metrics(pool.items), "families": {}, "groups": {}}
        for fam in sorted({it.family for it in ai}):
            res["families"][fam] = sc.set_metrics(pool.ai(fam) + reals)
        for g in sorted({it.family for it in reals}):
            res["groups"][g] = sc.set_metrics([it for it in reals if it.family == g] + ai)
        res["summary"] = {t: {"all": res["all"][t]} for t in self.spec.tiers}
        self.result["parts"]["test"] = clean_float(res)
        self.write()

    def run_pairs(self, sc: PatchScorer) -> None:
        pool = self.pool()
        if not pool.pairs:
            self.result["parts"]["pairs"] = {"status": "no pairs (no real test patch has a twin)"}
            self.write()
            return
        q = self.spec.pairs.jpeg_quality
        jp = [(r, jpeg_copy(t, q, self.fakes_dir)) for r, t in pool.pairs]
        res = pairs_metrics(sc, pool.pairs, jp)
        res["jpeg_quality"] = q
        res["summary"] = {
            t: {"twin": v["twin"], f"twin_jpeg{q}": v["twin_jpeg"]} for t, v in res["tiers"].items()
        }
        self.result["parts"]["pairs"] = clean_float(res)
        self.write()

    def run_external(self, det: Any) -> None:
        log = Path(self.o.looks or self.spec.looks_log_path())
        e = self.spec.external
        res = score_external(
            det,
            self.external_csv,
            self.spec.tiers,
            log=log,
            spec_sha256=self.spec.sha256,
            reason=self.o.reason,
            batch_size=min(self.o.batch_size, 16),
            minimums=e.model_dump(include={"min_ai", "min_real", "min_ai_sources", "min_real_sources"}),
        )
        clean = res["tiers"]["clean"]
        res["summary"] = {
            t: {
                "all": res["tiers"][t],
                "drop_vs_clean": {
                    k: (clean[k] - res["tiers"][t][k])
                    if clean.get(k) is not None and res["tiers"][t].get(k) is not None
                    else None
                    for k in HEADLINE
                },
            }
            for t in self.spec.tiers
        }
        self.result["parts"]["external"] = clean_float(res)
        self.write()

    # ---- outputs ------------------------------------------------------------------------------
    def targets(self) -> list[dict[str, Any]]:
        out = []
        for tg in self.spec.targets:
            part = self.result["parts"].get(tg.part)
            v: Any = None
            if part and "summary" in part and tg.tier in part["summary"]:
                v = part["summary"][tg.tier]
                for k in tg.metric.split("."):
                    v = v.get(k) if isinstance(v, dict) else None
            met = None if v is None else (v >= tg.value if tg.op == ">=" else v <= tg.value)
            out.append({**tg.model_dump(), "measured": v, "met": met})
        return out

    def write(self) -> None:
        from .report import markdown

        self.result["targets"] = self.targets()
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "protocol.json", json.dumps(clean_float(self.result), indent=2))
        atomic_write_text(self.out / "protocol.md", markdown(self.result))

    def run(self) -> dict[str, Any]:
        cfg, name, over = self.train_config()
        self.result["budget"] = {"name": name, **over}
        self.result["config"] = str(self.o.config) if self.o.config else "TrainConfig defaults"
        if "lofo" in self.o.parts:
            self.run_lofo()
        if "lorgo" in self.o.parts:
            self.run_lorgo()
        scored = [p for p in ("test", "pairs", "external") if p in self.o.parts]
        if scored:
            self.run_scored(scored)
        self.write()
        return self.result


def _read_json(p: Path) -> dict[str, Any] | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _epoch_seconds(run: Path) -> float | None:
    """Training time summed over epochs (history.csv), across every resume."""
    try:
        with open(run / "history.csv", newline="") as f:
            return round(sum(float(r["seconds"]) for r in csv.DictReader(f)), 1)
    except (OSError, KeyError, ValueError):
        return None


def _run_summary(res: dict[str, Any], set_name: str) -> dict[str, Any]:
    s = res["sets"][set_name]
    tiers = {k: v for k, v in s.items() if isinstance(v, dict)}
    return {
        "threshold": res.get("threshold"),
        "epoch_seconds": res.get("epoch_seconds"),
        "n_ai": tiers["clean"]["n_ai"],
        "n_real": tiers["clean"]["n_real"],
        "tiers": tiers,
    }


def _agg(rows: list[dict[str, Any]], key: str, fn: Any) -> float | None:
    vals = [r.get(key) for r in rows if r.get(key) is not None]
    return float(fn(vals)) if vals else None


def plan_protocol(spec: ProtocolSpec, opts: Options) -> dict[str, Any]:
    """What a run would train and score, from the manifest alone (no training, no fakes made)."""
    from .pool import chosen_reals

    p = Protocol(spec, opts)
    items = p.items
    test = [it for it in items if it.split == "test"]
    chosen = chosen_reals(items, spec)
    made_ai = {"aligned": len(chosen) if spec.test_fakes.aligned else 0}
    made_ai["synthetic"] = len(chosen) if spec.test_fakes.synthetic else 0
    n_real = sum(1 for it in test if it.label == REAL)
    out: dict[str, Any] = {"protocol_sha256": spec.sha256, "lofo": {}, "lorgo": {}}
    for fam in spec.lofo.families:
        n_ai = sum(1 for it in test if it.label == AI and it.family == fam) or made_ai.get(fam, 0)
        tr = training_items(items, "lofo", fam)
        out["lofo"][fam] = {"train_val": len(tr), "held_out_train_val": len(items) - len(test) - len(tr)}
        out["lofo"][fam] |= {"test_ai": n_ai, "test_real": n_real, "scored": n_ai > 0}
    for g in spec.lorgo.groups:
        n = sum(1 for it in test if it.label == REAL and it.family == g)
        tr = training_items(items, "lorgo", g)
        out["lorgo"][g] = {"train_val": len(tr), "test_real": n, "scored": n > 0}
    for part, minimum in (("lofo", spec.lofo.min_families), ("lorgo", spec.lorgo.min_groups)):
        k = sum(1 for v in out[part].values() if v["scored"])
        out[part + "_complete"] = {"scored": k, "minimum": minimum, "complete": k >= minimum}
    out["pairs"] = {"real_test_patches_with_fakes": len(chosen)}
    leak = None
    try:
        check_no_external(training_items(items, "full", None), p.external_sha, str(opts.manifest))
    except ProtocolError as e:
        leak = str(e)
    out["external"] = {"list": str(p.external_csv), "originals": len(p.external_sha), "leak": leak}
    return out


def run_protocol(spec: ProtocolSpec, opts: Options) -> dict[str, Any]:
    """Run the named parts (training the held-out models it needs); returns protocol.json's content."""
    return Protocol(spec, opts).run()


def score_model(spec: ProtocolSpec, opts: Options) -> dict[str, Any]:
    """The parts that need no training (test, pairs, external) on ``opts.model``."""
    if not opts.model:
        raise ProtocolError("protocol score needs a model")
    bad = [p for p in opts.parts if p in TRAIN_PARTS]
    if bad:
        raise ProtocolError(f"protocol score cannot run {', '.join(bad)} (they train): use protocol run")
    p = Protocol(spec, opts)
    p.result["budget"] = None
    p.run_scored(opts.parts)
    p.write()
    return p.result


__all__ = ["Options", "Protocol", "plan_protocol", "run_protocol", "score_model"]
