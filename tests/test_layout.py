"""The dependency map (docs/architecture.md): no import cycle, imports go down the layers only. core/ never imports
the UI (apps/, Gradio, Streamlit) or the tools; apps never import app.py; reports never import training loops;
metrics never load checkpoints."""
from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path
from typing import Callable

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
    """core.hub only loads; core.publish is a command, used only by the one command above it (core.build --publish)."""
    everywhere = graph(top_level_only=False)
    assert not any(m.startswith("core.train") or m == "core.publish" for m in everywhere["core.hub"])
    users = sorted(name for name, deps in everywhere.items() if "core.publish" in deps)
    assert users == ["core.build"], users


def _importers(folder: str, forbidden: Callable[[str], bool]) -> list[str]:
    """Files under `folder` that import (anywhere in the file) a module for which `forbidden` is true."""
    return sorted(f"{path.relative_to(ROOT)}: {m}" for path in (ROOT / folder).rglob("*.py")
                  for m in imports(path, top_level_only=False) if forbidden(m))


def test_core_never_imports_the_tools_and_apps_never_import_the_app():
    assert not _importers("core", lambda m: m.split(".")[0] == "tools")
    assert not _importers("apps", lambda m: m == "app" or m.startswith("app.") or m.split(".")[0] == "tools")


def test_reports_never_import_training_loops():
    assert not _importers("core/reports", lambda m: m == "core.train" or m.startswith("core.train."))


def test_metrics_never_load_checkpoints():
    """A metric takes samplers, codes and models; what loads them (hub, models, spaces, world, checkpoints, the
    analyzer loader) sits above it."""
    loaders = ("core.hub", "core.models", "core.spaces", "core.world", "core.checkpoints",
               "core.analysis.load_analyzer")
    assert not _importers("core/metrics", lambda m: m in loaders or m.startswith(tuple(f"{x}." for x in loaders)))


# Files over 10 MB that the history already holds (the Hub refuses such plain files; every clone carries them).
# Nothing joins them: new checkpoints go to a Hub model repository (python -m core.publish) or stay untracked.
HISTORY_LARGE = {"checkpoints/synthfaces_ae.safetensors", "checkpoints/synthfaces_nice.safetensors",
                 "checkpoints/synthfaces_vae.safetensors",
                 "examples/runs/distill_synthfaces64/checkpoints/00030000.safetensors"}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_no_new_file_over_10_mb_enters_git():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    large = {name for name in tracked.decode().split("\0") if name and (ROOT / name).is_file()
             and (ROOT / name).stat().st_size > 10 * 1024 * 1024}
    assert large <= HISTORY_LARGE, sorted(large - HISTORY_LARGE)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (requirements-dev.txt installs it)")
def test_the_code_passes_the_linter():
    ruff = shutil.which("ruff")
    done = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
