"""VP metric presets per latent space: seconds to the first answer and to the final one, and how far each preset's
score lies from the `paper` preset's on the same space and seed.

    python -m bench.vp                                   # every space of the VP tab, presets interactive and paper
    python -m bench.vp --spaces synthfaces,vae --presets interactive,fast,paper
    python -m bench.vp --json bench_vp.json --paper-runs 1     # one paper run per space (it takes minutes)

The first answer is the first finished run (what the VP tab shows first); the final one is the mean over all runs.
The goal: the interactive preset's first answer within 30 s on 2 cores, within 0.03 of `paper`.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from core.metrics.vp import PRESETS, vp_stream
from core.spaces import KNOWN_SPACES, SAMPLERS, known_space, latent_space


def measure(space_name: str, preset: str, models: str, device: str, seed: int = 0,
            runs: Optional[int] = None) -> dict:
    """Times and scores of one preset on one space (the space's loading time counts towards the first answer)."""
    start = time.perf_counter()
    chosen = PRESETS[preset] if runs is None else replace(PRESETS[preset], runs=runs)
    space = latent_space(space_name, models, device, resolution=chosen.resolution or 64)
    first = final = None
    bar = tqdm(total=100, desc=f"{space_name} {preset}", leave=False)
    for update in vp_stream(space.sample_fn, space.dim, chosen, space.latent_range, seed, device, space.names,
                            space.heavy):
        bar.n = int(update.fraction * 100)
        bar.refresh()
        if update.result is not None:
            elapsed = time.perf_counter() - start
            if first is None:
                first = (elapsed, update.result.score)
            final = (elapsed, update.result)
    bar.close()
    return {"space": space_name, "preset": preset, "dims": space.dim, "first_s": first[0], "first_score": first[1],
            "final_s": final[0], "score": final[1].score, "spread": final[1].spread, "runs": len(final[1].runs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", default=",".join(SAMPLERS))
    p.add_argument("--presets", default="interactive,paper")
    p.add_argument("--models", default="embedded")
    p.add_argument("--device", default="cpu")
    p.add_argument("--paper-runs", type=int, help="runs of the paper preset (default: its own 3)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    spaces, presets = args.spaces.split(","), args.presets.split(",")
    unknown = [s for s in spaces if not known_space(s)]
    if unknown:
        p.error(f"unknown space(s) {', '.join(unknown)}; known: {KNOWN_SPACES}")
    unknown = [pr for pr in presets if pr not in PRESETS]
    if unknown:
        p.error(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(PRESETS)}")
    rows = [measure(s, pr, args.models, args.device, runs=args.paper_runs if pr == "paper" else None)
            for s in spaces for pr in presets]
    paper = {r["space"]: r["score"] for r in rows if r["preset"] == "paper"}
    print(f"{'space':>15} {'preset':>12} {'dims':>5} {'first s':>8} {'first':>7} {'final s':>8} {'final':>7} "
          f"{'spread':>7} {'vs paper':>9}")
    for r in rows:
        diff = f"{r['first_score'] - paper[r['space']]:+.3f}" if r["space"] in paper and r["preset"] != "paper" else ""
        r["first_minus_paper"] = r["first_score"] - paper[r["space"]] if diff else None
        print(f"{r['space']:>15} {r['preset']:>12} {r['dims']:>5} {r['first_s']:>8.1f} {r['first_score']:>7.3f} "
              f"{r['final_s']:>8.1f} {r['score']:>7.3f} {r['spread']:>7.3f} {diff:>9}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
