"""Evidence items and reports: the documented shape every extractor returns, and their summary."""

from __future__ import annotations

from typing import Any

MAX_DETAIL_CHARS = 240
EXTRA_HINT = "install the [provenance] extra: pip install 'aivsreal[provenance]'"

STRENGTHS = ("strong", "moderate", "weak", "info", "error")
_RANK = {s: i for i, s in enumerate(STRENGTHS)}


def item(
    kind: str, found: str, strength: str, detail: str = "", indicates: str | None = None
) -> dict[str, Any]:
    """One piece of evidence (or an error) in the documented shape."""
    assert strength in _RANK, strength
    return {
        "kind": kind,
        "found": found,
        "strength": strength,
        "detail": _clip(detail),
        "indicates": indicates,
    }


def _clip(s: Any, n: int = MAX_DETAIL_CHARS) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _report(
    name: str, items: list[dict[str, Any]], checks: dict[str, str], error: dict | None = None
) -> dict:
    items = sorted(items, key=lambda it: _RANK[it["strength"]])
    rep: dict[str, Any] = {"path": name, "items": items, "summary": summarize(items), "checks": checks}
    if error is not None:
        rep["error"] = error
    return rep


def summarize(items: list[dict[str, Any]]) -> str:
    """One line: the strongest AI or capture evidence, else "no provenance found"."""
    for strength, prefix in (("strong", ""), ("moderate", "possible ")):
        for direction, what in (("ai", "AI provenance"), ("real", "capture provenance")):
            hits = [it for it in items if it["strength"] == strength and it["indicates"] == direction]
            if hits:
                more = f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""
                return f"{prefix}{what}: {hits[0]['found']}{more}"
    errors = sum(it["strength"] == "error" for it in items)
    return "no provenance found" + (f" ({errors} part(s) could not be parsed)" if errors else "")


def format_report(rep: dict[str, Any]) -> str:
    """Human-readable report: a summary line, one line per item, then checks that did not run."""
    lines = [f"{rep['path']}: {rep['summary']}"]
    if rep.get("error"):
        lines.append(f"  error: {rep['error']['kind']}: {rep['error']['message']}")
    for it in rep["items"]:
        detail = f" — {it['detail']}" if it["detail"] else ""
        lines.append(f"  [{it['strength']:<8}] {it['kind']}: {it['found']}{detail}")
    for name, state in rep.get("checks", {}).items():
        if not state.startswith("done"):
            lines.append(f"  ({name}: {state})")
    return "\n".join(lines)


def _guard(items: list, kind: str, fn) -> None:
    """Run one check; an unexpected failure becomes an error item, not a crash."""
    try:
        fn()
    except MemoryError:
        items.append(item(kind, f"{kind} check ran out of memory", "error"))
    except Exception as e:
        items.append(item(kind, f"{kind} check failed", "error", f"{type(e).__name__}: {e}"))
