"""docs/architecture.md is the import rule, and this test enforces it on the code.

Each module's module-level imports (an AST scan; imports inside functions are lazy and allowed) must be
the stdlib or what its row of the rooms table allows; every module must have a row; importing the
whole runtime side must not import torch.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "aivsreal"
DOC = ROOT / "docs" / "architecture.md"
TORCH = {"torch", "timm", "torchvision", "pytorch_grad_cam", "safetensors"}


def rooms() -> dict[str, dict]:
    """{module: {"side": ..., "allowed": set of names, "any_sibling": bool}} from the doc's table."""
    out = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `(\w+)` \| (runtime|torch) \| .*? \| (.*) \|$", line)
        if not m:
            continue
        cell = re.sub(r"\([^)]*\)", "", m.group(3))  # parenthesised notes name lazy imports
        out[m.group(1)] = {
            "side": m.group(2),
            "allowed": set(re.findall(r"`([\w.]+)`", cell)),
            "any_sibling": "any `aivsreal` module" in cell,
        }
    return out


def module_of(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return rel.parts[0]  # a package's files share their package's row


def module_level_imports(path: Path) -> set[tuple[str, str]]:
    """(kind, name) of every import executed when the module is imported: kind 'sibling' or 'external'."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[tuple[str, str]] = set()
    in_pkg = path.parent != PKG

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    top = a.name.split(".")[0]
                    found.add(("sibling", a.name.split(".")[1]) if top == "aivsreal" else ("external", top))
            elif isinstance(child, ast.ImportFrom):
                if child.level == 0:
                    top = (child.module or "").split(".")[0]
                    if top != "__future__":
                        found.add(("external", top))
                elif child.level == 1 and in_pkg:  # inside a sub-package: its own files, or nothing
                    continue
                else:
                    mod = (child.module or "").split(".")[0]
                    if mod:
                        found.add(("sibling", mod))
                    else:  # from . import x / from .. import x
                        for a in child.names:
                            found.add(("sibling", a.name))
            visit(child)

    visit(tree)
    return found


FILES = sorted(
    p for p in PKG.rglob("*.py") if p.name not in ("__init__.py", "__main__.py") or p.parent != PKG
)


def test_every_module_has_a_room():
    table = rooms()
    missing = sorted({module_of(p) for p in FILES} - set(table))
    assert not missing, f"modules without a row in docs/architecture.md: {missing}"
    stale = sorted(set(table) - {module_of(p) for p in FILES})
    assert not stale, f"rows for modules that do not exist: {stale}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_module_imports_follow_the_rooms_table(path):
    table = rooms()
    room = table[module_of(path)]
    bad = []
    for kind, name in sorted(module_level_imports(path)):
        if kind == "external" and name in sys.stdlib_module_names:
            continue
        if kind == "sibling" and name in ("__version__",):  # the package's own version string
            continue
        if kind == "sibling" and room["any_sibling"]:
            continue
        if name not in room["allowed"]:
            bad.append(f"{kind} {name}")
        if room["side"] == "runtime" and (
            name in TORCH or (kind == "sibling" and table.get(name, {}).get("side") == "torch")
        ):
            bad.append(f"{name} is torch-side: a runtime module may import it only lazily")
    assert not bad, f"{path.relative_to(PKG)} imports what docs/architecture.md does not allow: {bad}"


def test_importing_the_runtime_side_never_imports_torch():
    mods = sorted(m for m, r in rooms().items() if r["side"] == "runtime")
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    try:\n"
        "        importlib.import_module('aivsreal.' + m)\n"
        "    except ImportError as e:\n"
        "        print('skip', m, e, file=sys.stderr)\n"
        f"print(sorted(k for k in {sorted(TORCH)!r} if k in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"importing the runtime side pulled in {r.stdout.strip()}"


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def test_the_decision_rule_is_stated_once_in_python_and_once_in_js():
    """``score >= threshold`` lives in decision.py and decision.js; every other place calls them."""
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "decision.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.GtE, ast.Lt)) for op in node.ops):
                sides = [node.left, *node.comparators]
                if any(any("thr" in n.lower() for n in _names(s)) for s in sides) and any(
                    any("score" in n.lower() or n in {"p", "prob", "probs"} for n in _names(s)) for s in sides
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    web = ROOT / "web" / "src"
    for path in sorted(web.glob("*.js")):
        if path.name == "decision.js":
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"score\w*\s*(>=|<)\s*\w*thr|thr\w*\s*(<=|>)\s*\w*score", line, re.I):
                offenders.append(f"{path.relative_to(ROOT)}:{i}")
    assert offenders == [], f"the threshold rule is restated outside decision.py/.js: {offenders}"
