"""A model set rebuilt by `python -m core.build` against the shipped embedded set: the figures the shipped set
publishes, each with a stated tolerance, and what each stage of the build cost.

    python -m core.build --generator synthfaces_stylegan3 --labeller synthfaces --out sets/synthfaces_full \
        --encoder-steps 1000
    python -m core.reports.rebuild --set sets/synthfaces_full [--out docs/rebuild] [--update]

Compared, where the build has got that far:
- supervised directions: each label's R^2, rebuilt against checkpoints/synthfaces_stylegan3_directions;
- NICE: the NICE report (core.reports.nice, with the samples and pairs of docs/nice/report.json) of the rebuilt NICE
  against that report: a mix's similarity to its identity and attribute donors, and DCI D of the NICE codes over W;
- the report card's rows for the generator's z, W and NICE where the build's reports stage has run, against
  docs/report_card;
- seconds per stage, from each stage's run folder (a stage resumed after a stop counts its last stretch only).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from core.checkpoints import resolve_checkpoint
from core.reports import write_report

SHIPPED_DIRECTIONS = "synthfaces_stylegan3_directions"
DOCS = Path(__file__).resolve().parents[2] / "docs"
SHIPPED_NICE_REPORT = DOCS / "nice" / "report.json"
SHIPPED_CARD = DOCS / "report_card" / "report.json"
NICE_CONFIG = str(DOCS.parent / "configs" / "nice_synthfaces.yaml")
STAGES = ("pca", "labels", "directions", "nice", "encoder", "reports")
# How far a rebuilt figure may lie from the shipped one: the same seeds give the same labels and directions on any
# machine up to float rounding; NICE training and the metrics' own sampling move their figures by a few hundredths.
TOLERANCE = {"r2": 0.02, "similarity_to_identity_donor": 0.05, "similarity_to_attribute_donor": 0.05,
             "dci_disentanglement": 0.03}
CARD_SPACES = ("generator-z", "generator-w", "generator-nice")
NICE_ROWS = ("NICE:", "DCI D of the NICE codes over W's")  # how the NICE report's rows begin
QUICK_SAMPLES, QUICK_PAIRS, QUICK_PROBE_STEPS, QUICK_TREES = 40, 4, 5, 20  # --quick: a smoke test, not a report


def _row(what: str, shipped: float, rebuilt: float, tolerance: float) -> dict[str, Any]:
    return {"what": what, "shipped": shipped, "rebuilt": rebuilt, "tolerance": tolerance,
            "holds": abs(rebuilt - shipped) <= tolerance}


def direction_rows(set_dir: Path) -> list[dict[str, Any]]:
    """R^2 of every supervised direction the shipped set has, rebuilt against shipped."""
    shipped = json.loads(resolve_checkpoint(SHIPPED_DIRECTIONS).with_suffix(".json").read_text())["directions"]
    rebuilt = json.loads((set_dir / "directions.json").read_text())["directions"]
    return [_row(f"direction {name}: R²", info["quality"], rebuilt[name]["quality"], TOLERANCE["r2"])
            for name, info in shipped.items() if info["kind"] == "supervised" and name in rebuilt]


def nice_rows(set_dir: Path, quick: bool = False, progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The NICE report of the rebuilt NICE on the set's generator against the shipped one's, with its samples and
    pairs (`quick`: smoke-test sizes, which make no comparison worth reading); returns (rows, the rebuilt report)."""
    from dataclasses import replace

    from core.config import load_config
    from core.reports.nice import report
    from core.world import WorldConfig
    shipped = json.loads(SHIPPED_NICE_REPORT.read_text())
    cfg = replace(load_config(WorldConfig, NICE_CONFIG, known_only=True),
                  generator=str(set_dir / "generator.safetensors"))
    sizes = (QUICK_SAMPLES, QUICK_PAIRS) if quick else (shipped["samples"], shipped["pairs"])
    rebuilt, _ = report(replace(cfg, disc_steps=QUICK_PROBE_STEPS) if quick else cfg,
                        str(set_dir / "nice.safetensors"), *sizes, progress=progress,
                        dci_trees=QUICK_TREES if quick else 100)
    rows = [_row(f"{NICE_ROWS[0]} {key.replace('_', ' ')}", shipped["spaces"]["NICE"][key],
                 rebuilt["spaces"]["NICE"][key], TOLERANCE[key])
            for key in ("similarity_to_identity_donor", "similarity_to_attribute_donor", "dci_disentanglement")]
    d_nice, d_w = (rebuilt["spaces"][s]["dci_disentanglement"] for s in ("NICE", "W"))
    gain = shipped["spaces"]["NICE"]["dci_disentanglement"] - shipped["spaces"]["W"]["dci_disentanglement"]
    rows.append({"what": f"{NICE_ROWS[1]}: above 0", "shipped": gain, "rebuilt": d_nice - d_w,
                 "tolerance": None, "holds": d_nice > d_w})
    return rows, rebuilt


def card_rows(set_dir: Path) -> list[dict[str, Any]]:
    """DCI D of the report card's generator rows, rebuilt against shipped (the build's reports stage's card)."""
    path = set_dir / "reports" / "card" / "report.json"
    if not path.is_file():
        return []
    rebuilt = {r["space"]: r for r in json.loads(path.read_text())["rows"]}
    shipped = {r["space"]: r for r in json.loads(SHIPPED_CARD.read_text())["rows"]}
    return [_row(f"report card, {space}: DCI D", shipped[space]["dci_disentanglement"],
                 rebuilt[space]["dci_disentanglement"], TOLERANCE["dci_disentanglement"])
            for space in CARD_SPACES if space in rebuilt and space in shipped and "error" not in rebuilt[space]]


def stage_times(set_dir: Path) -> dict[str, Optional[float]]:
    """Seconds per finished stage (None for a stage not finished), from each stage's status.json."""
    times: dict[str, Optional[float]] = {}
    for stage in STAGES:
        path = set_dir / "stages" / stage / "status.json"
        status = json.loads(path.read_text()) if path.is_file() else {}
        times[stage] = status.get("seconds") if status.get("state") == "finished" else None
    return times


def markdown(result: dict[str, Any]) -> str:
    """The comparison table, then the stage times."""
    def num(v: Optional[float]) -> str:
        return "" if v is None else f"{v:.3f}"

    lines = ["| figure | shipped | rebuilt | tolerance | holds |", "|---|---:|---:|---:|:---:|"]
    lines += [f"| {r['what']} | {num(r['shipped'])} | {num(r['rebuilt'])} | "
              f"{'' if r['tolerance'] is None else '±' + format(r['tolerance'], 'g')} | "
              f"{'yes' if r['holds'] else 'no'} |" for r in result["rows"]]
    lines += ["", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {stage} | {'not finished' if s is None else round(s)} |" for stage, s in result["stages"].items()]
    done = [s for s in result["stages"].values() if s is not None]
    lines.append(f"| all finished stages | {round(sum(done))} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.reports.rebuild", description=__doc__.splitlines()[0])
    p.add_argument("--set", required=True, help="the folder the build wrote (e.g. sets/synthfaces_full)")
    p.add_argument("--out", default="docs/rebuild")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes for the NICE report (not a comparison)")
    p.add_argument("--update", action="store_true",
                   help="keep the NICE rows of the report already in --out when the set's NICE is the same file")
    args = p.parse_args(argv)
    set_dir = Path(args.set)
    if not (set_dir / "build.json").is_file():
        print(f"error: {set_dir} holds no build (no build.json): run python -m core.build first", file=sys.stderr)
        return 2
    rows = direction_rows(set_dir) if (set_dir / "directions.json").is_file() else []
    nice_report, nice_sha = None, None
    if (set_dir / "nice.safetensors").is_file():
        nice_sha = json.loads((set_dir / "nice.json").read_text()).get("sha256")
        old = Path(args.out) / "report.json"
        kept = json.loads(old.read_text()) if args.update and old.is_file() else {}
        if nice_sha and kept.get("nice_sha256") == nice_sha:  # the same NICE, scored already: its rows are kept
            nice_report = kept["nice_report"]
            rows += [r for r in kept["rows"] if r["what"].startswith(NICE_ROWS)]
        else:
            more, nice_report = nice_rows(set_dir, args.quick)
            rows += more
    rows += card_rows(set_dir)
    result = {"set": str(set_dir), "build": json.loads((set_dir / "build.json").read_text()), "rows": rows,
              "stages": stage_times(set_dir), "nice_report": nice_report, "nice_sha256": nice_sha}
    write_report(Path(args.out), result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
