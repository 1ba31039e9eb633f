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


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    mods = {}
    for f in package.rglob("*.py"):
        parts = f.relative_to(package.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports: `from ..training import X`, X not a module, imports the
    subpackage `training` (its __init__)."""
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
        edges[name] = {t for t in found if t in mods and t != name}
    return edges


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """'a -> b' for every import of a later layer's module or subpackage."""
    return [f"{m} -> {t}" for m, ts in _imports(_modules(package)).items() for t in sorted(ts)
            if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)]


def import_cycles(package: Path = PACKAGE) -> list[str]:
    """'a -> b -> a' for every cycle found by a depth-first walk of the imports."""
    edges = _imports(_modules(package))
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
    return cycles


def test_no_import_cycle():
    assert not import_cycles()


def test_layers_import_only_lower_layers():
    assert not upward_imports()


def test_an_import_through_a_subpackage_init_counts(tmp_path):
    """`from ..training import fit` in data/ imports training/__init__, which imports training.run: upward, and a
    cycle back to data.io."""
    pkg = tmp_path / "sharpkd"
    files = {"__init__.py": "", "training/__init__.py": "from .run import fit\n",
             "training/run.py": "from ..data.io import read\n\ndef fit(): ...\n",
             "data/__init__.py": "", "data/io.py": "def read():\n    from ..training import fit\n"}
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    assert upward_imports(pkg) == ["sharpkd.data.io -> sharpkd.training"]
    assert import_cycles(pkg) == ["sharpkd.data.io -> sharpkd.training -> sharpkd.training.run -> sharpkd.data.io"]


def test_the_checks_see_real_imports():
    edges = _imports(_modules())
    assert "sharpkd.inference.onnx_backend" in edges["sharpkd.inference.sharpener"]
    assert "sharpkd.inference.sharpener" in edges["sharpkd.inference.export"]
    assert "sharpkd.models.weights" in edges["sharpkd.inference.sharpener"]
    assert "sharpkd.inference" in edges["sharpkd.app.ui"]  # `from ..inference import load`: the subpackage
