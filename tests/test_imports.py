"""Imports run one way: no module of the package imports another that (directly or not) imports it back, and no
layer imports a later one (data -> models -> training -> evaluation -> inference -> app, cli). Read from the
source, imports inside functions included, so a cycle hidden behind a deferred import counts too."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(importlib.util.find_spec("sharpkd").submodule_search_locations[0])  # found, not imported
# earlier entries are lower layers; a module may import its own layer and lower ones
LAYERS = ["errors", "fileio", "sysinfo", "metrics", "losses", "data", "models", "training", "evaluation",
          "inference", "app", "cli"]


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (a package's own __init__ excluded as a target)."""
    edges = {}
    for name, f in mods.items():
        pkg = name if f.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in mods else target)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        edges[name] = {t for t in found if t in mods and t != name and mods[t].name != "__init__.py"}
    return edges


def test_no_import_cycle():
    edges = _imports(_modules())
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles


def test_layers_import_only_lower_layers():
    def layer(m):
        parts = m.split(".")
        return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None

    upward = [f"{m} -> {t}" for m, ts in _imports(_modules()).items() for t in ts
              if layer(m) is not None and layer(t) is not None and layer(t) > layer(m)]
    assert not upward


def test_the_checks_see_real_imports():
    edges = _imports(_modules())
    assert "sharpkd.inference.onnx_backend" in edges["sharpkd.inference.sharpener"]
    assert "sharpkd.inference.sharpener" in edges["sharpkd.inference.export"]
    assert "sharpkd.models.weights" in edges["sharpkd.inference.sharpener"]
