"""protocol.md: the protocol's figures as markdown tables (one per part, every tier)."""

from __future__ import annotations

from typing import Any


def _f(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


COLS = ("balanced_accuracy", "roc_auc", "specificity", "recall", "ece")
HEAD = "| {name} | n AI | n real | tier | bal. acc. | ROC-AUC | spec. | recall | ECE |\n|---|---|---|---|---|---|---|---|---|"


def _rows(name: str, tiers: dict[str, Any]) -> list[str]:
    out = []
    for t, m in tiers.items():
        if not isinstance(m, dict):
            continue
        out.append(
            f"| {name} | {m.get('n_ai', '–')} | {m.get('n_real', '–')} | {t} | "
            + " | ".join(_f(m.get(k)) for k in COLS)
            + " |"
        )
    return out


def _held_out(title: str, part: dict[str, Any], key: str, label: str) -> list[str]:
    lines = [f"## {title}", ""]
    lines.append(
        f"{part['scored']} scored (protocol minimum {part['minimum']}: "
        f"{'complete' if part['complete'] else '**incomplete**'})."
    )
    lines += ["", HEAD.format(name=label)]
    for name, v in part[key].items():
        if v.get("status") != "done":
            lines.append(f"| {name} | – | – | – | {v.get('status')} | | | | |")
            continue
        lines += _rows(name, v["tiers"])
    for t, s in part["summary"].items():
        lines += _rows("**mean**", {t: s["mean"]}) if s["mean"].get("roc_auc") is not None else []
    for t, s in part["summary"].items():
        lines += _rows("**min**", {t: s["min"]}) if s["min"].get("roc_auc") is not None else []
    return lines + [""]


def markdown(res: dict[str, Any]) -> str:
    """The whole protocol result as markdown."""
    p = res["protocol"]
    lines = [
        "# Evaluation protocol results",
        "",
        f"Protocol `{p['file']}` (sha256 `{p['sha256'][:12]}…`), manifest `{res['manifest']['path']}` "
        f"(sha256 `{res['manifest']['sha256'][:12]}…`), threshold: {res['threshold_rule']}.",
    ]
    if res.get("budget"):
        lines.append(f"Training config {res.get('config')}, budget {res['budget']}.")
    if res.get("model"):
        m = res["model"]
        lines.append(f"Scored model `{m['id']}` ({m['path']}), threshold {_f(m['threshold'])}.")
    lines.append("")
    parts = res["parts"]
    if "lofo" in parts:
        lines += _held_out("Leave one family out", parts["lofo"], "families", "held-out family")
    if "lorgo" in parts:
        lines += _held_out(
            "Leave one real group out (specificity is the figure)", parts["lorgo"], "groups", "held-out group"
        )
    if "test" in parts:
        t = parts["test"]
        lines += ["## Test split (all families, all groups)", "", HEAD.format(name="set")]
        lines += _rows("all", t["all"])
        for fam, m in t["families"].items():
            lines += _rows(f"AI {fam} vs all real", m)
        for g, m in t["groups"].items():
            lines += _rows(f"real {g} vs all AI", m)
        lines.append("")
    if "pairs" in parts:
        pr = parts["pairs"]
        lines += ["## Aligned pairs (real test patch vs its TAEF2 twin, same group and box)", ""]
        if "tiers" not in pr:
            lines += [pr.get("status", ""), ""]
        else:
            lines.append(f"{pr['n_pairs']} pairs ({pr['made_twins']} twins made by the protocol).")
            head = HEAD.format(name="twin").split("\n")
            lines += ["", head[0] + " pair order |", head[1] + "---|"]
            for t, v in pr["tiers"].items():
                for name, m in v.items():
                    label = name if name == "twin" else f"twin JPEG q{pr['jpeg_quality']}"
                    lines += [r + f" {_f(m.get('pair_order'))} |" for r in _rows(label, {t: m})]
            lines.append("")
    if "external" in parts:
        e = parts["external"]
        s = e["size"]
        lines += [
            "## External check set (whole original files through Detector.predict)",
            "",
            f"{s['ai']} AI files from {s['ai_sources']} sources, {s['real']} real from {s['real_sources']} "
            f"(protocol minimum {'met' if s['meets_minimum'] else '**not met**'}); set sha256 "
            f"`{e['set_sha256'][:12]}…`; this look is logged in `{e['look']['log']}` ({e['look']['date']}).",
            "",
            HEAD.format(name="set"),
        ]
        lines += _rows("external", e["tiers"])
        lines += ["", "| source | class | n | " + " | ".join(f"acc. {t}" for t in res["tiers"]) + " |"]
        lines.append("|---|---|---|" + "---|" * len(res["tiers"]))
        for src, v in e["per_source"].items():
            accs = " | ".join(_f(v.get(t, {}).get("accuracy")) for t in res["tiers"])
            lines.append(f"| {src} | {v['label']} | {v['n']} | {accs} |")
        if e["errors"]:
            lines += ["", f"{len(e['errors'])} file(s) could not be scored (first: {e['errors'][0]})."]
        lines.append("")
    if res.get("targets"):
        lines += [
            "## Targets",
            "",
            "| part | figure | tier | target | measured | met |",
            "|---|---|---|---|---|---|",
        ]
        for tg in res["targets"]:
            met = {True: "yes", False: "**no**", None: "not measured"}[tg["met"]]
            lines.append(
                f"| {tg['part']} | {tg['metric']} | {tg['tier']} | {tg['op']} {tg['value']} | "
                f"{_f(tg['measured'])} | {met} |"
            )
        lines.append("")
    return "\n".join(lines)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def compare_rows(res: dict[str, Any], tier: str = "clean") -> dict[str, Any]:
    """The headline figures of one protocol.json, flat: what ``protocol compare`` puts side by side."""
    p = res.get("parts", {})
    row: dict[str, Any] = {}
    for k in ("roc_auc", "balanced_accuracy", "specificity", "recall"):
        row[f"test all {k}"] = _get(p, "test", "all", tier, k)
    for fam, v in sorted((_get(p, "test", "families") or {}).items()):
        row[f"test {fam} roc_auc"] = _get(v, tier, "roc_auc")
    row["pairs twin roc_auc"] = _get(p, "pairs", "summary", tier, "twin", "roc_auc")
    row["pairs twin pair_order"] = _get(p, "pairs", "summary", tier, "twin", "pair_order")
    jpeg = next((k for k in (_get(p, "pairs", "summary", tier) or {}) if k.startswith("twin_jpeg")), None)
    if jpeg:
        row[f"pairs {jpeg} roc_auc"] = _get(p, "pairs", "summary", tier, jpeg, "roc_auc")
    for k in ("balanced_accuracy", "roc_auc", "specificity", "recall"):
        row[f"external {k}"] = _get(p, "external", "summary", tier, "all", k)
    row["external web drop bal.acc"] = _get(
        p, "external", "summary", "web", "drop_vs_clean", "balanced_accuracy"
    )
    for part, key in (("lofo", "mean"), ("lorgo", "min")):
        for k in ("balanced_accuracy", "roc_auc", "specificity"):
            v = _get(p, part, key, k)
            if v is not None:
                row[f"{part} {key} {k}"] = v
    return row


def compare(results: dict[str, dict[str, Any]], tier: str = "clean") -> str:
    """A markdown table: one column per named protocol.json, one row per headline figure (``tier``)."""
    rows = {name: compare_rows(r, tier) for name, r in results.items()}
    keys: list[str] = []
    for r in rows.values():
        keys += [k for k in r if k not in keys]
    names = list(rows)
    lines = [
        f"| figure ({tier}) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(_f(rows[n].get(k)) for n in names) + " |")
    return "\n".join(lines) + "\n"
