"""The package's imports point one way: no module imports, even lazily, one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lintorch"


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The lintorch modules ``path`` imports: at its top, or anywhere (inside functions too)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # from . import a / from .a import
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lintorch."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lintorch.")}
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {m: imports(p) & set(modules) - {m} for m, p in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, as the modules along it."""
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                found.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_lazy_imports_included():
    assert cycles(graph()) == []


def test_the_leaf_modules_import_nothing_of_lintorch():
    for leaf in ("files", "console", "rawdata", "losses", "models", "cuda_graph", "gradcheck"):
        assert graph()[leaf] == set(), leaf
    assert graph()["stacked"] == {"models"}  # the stacked models score through models.linear


def test_the_command_line_layer_is_imported_only_inside_functions():
    for path in PACKAGE.glob("*.py"):
        assert "cli" not in imports(path, top_level_only=True), path.name


def test_no_private_attribute_of_another_library_is_used():
    # An upgrade may rename or remove any name that starts with "_"; the package's own private
    # names (self._x, a module's _helper) are its own to change.
    own = {p.stem for p in PACKAGE.glob("*.py")} | {"self", "cls"}
    found = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr"
                    and isinstance(node.args[1], ast.Constant)):
                node = ast.Attribute(node.args[0], node.args[1].value, lineno=node.lineno)
            if not (isinstance(node, ast.Attribute) and str(node.attr).startswith("_")
                    and not node.attr.startswith("__")) or node.attr == "_exit":  # os._exit
                continue
            base = node.value.func if isinstance(node.value, ast.Call) else node.value
            if not (isinstance(base, ast.Name) and base.id in own):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert found == []


def test_training_runs_without_matplotlib(tmp_path):
    # matplotlib is an extra, for the experiments' figures: a training run must not need it.
    import os
    import subprocess
    import sys

    import numpy as np

    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    g = np.random.default_rng(0)
    np.savez(tmp_path / "tiny.npz", x_train=g.normal(size=(60, 4)).astype(np.float32),
             y_train=np.arange(60) % 3, x_test=g.normal(size=(9, 4)).astype(np.float32),
             y_test=np.arange(9) % 3)
    path = os.pathsep.join([str(tmp_path / "fake"), str(PACKAGE.parent)])
    r = subprocess.run([sys.executable, "-m", "lintorch.train", "--dataset",
                        str(tmp_path / "tiny.npz"), "--epochs", "1", "--quiet", "--device", "cpu",
                        "--logdir", str(tmp_path / "runs")], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": path})
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "runs").glob("*/metrics.json"))
