"""Scripts that measure the shipped models and write their reports (tables, figures) into docs/."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def write_figure(fig: Any, out: Path, name: str) -> None:
    """A plotly figure as <name>.html and, where kaleido (and a Chrome) can draw it, <name>.png for the README."""
    fig.write_html(out / f"{name}.html", include_plotlyjs="cdn")
    try:
        fig.write_image(out / f"{name}.png", scale=1)
    except (ValueError, RuntimeError, ImportError) as e:
        print(f"{name}.png not written ({e}); {name}.html has the same figure", file=sys.stderr)


def write_report(out: Path, result: dict[str, Any], table: str) -> None:
    """The one layout of a report folder: report.json (every figure) and report.md (the table, also printed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(table)
    print(table)
