"""The dependency map: no import cycle among the modules, and core/ never imports the UI (apps/, Gradio, Streamlit)."""
from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules a file imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def graph(top_level_only: bool) -> dict[str, set[str]]:
    files = {module_name(p): p for folder in ("core", "apps") for p in (ROOT / folder).rglob("*.py")}
    return {name: {m for m in imports(path, top_level_only) if m in files and m != name}
            for name, path in files.items()}


def test_no_import_cycles_at_module_level():
    edges = graph(top_level_only=True)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_core_never_imports_the_ui():
    for path in (ROOT / "core").rglob("*.py"):
        found = imports(path, top_level_only=False)
        ui = sorted(m for m in found if m.split(".")[0] in ("apps", "gradio", "streamlit"))
        assert not ui, f"{path.relative_to(ROOT)} imports {ui}"


def test_publishing_sits_above_the_loader():
    """core.hub only loads; nothing below core.publish imports it."""
    everywhere = graph(top_level_only=False)
    assert not any(m.startswith("core.train") or m == "core.publish" for m in everywhere["core.hub"])
    users = sorted(name for name, deps in everywhere.items() if "core.publish" in deps)
    assert users == [], users


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (requirements-dev.txt installs it)")
def test_the_code_passes_the_linter():
    ruff = shutil.which("ruff")
    done = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
