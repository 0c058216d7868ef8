"""VP metric presets: time to score one model, and how far the `fast` score lies from the `paper` score.

    python bench/vp.py                                  # the VAE decoder, presets paper and fast
    python bench/vp.py --space generator-w --runs 1     # another latent space; fewer repeats of each preset
    python bench/vp.py --presets fast --device cuda

Each preset scores the same sampler with the same seed. The goal: `fast` at least 10x quicker than `paper`, with a
score within 0.02 of it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from core.metrics.vp import PRESETS, SAMPLERS, named_sampler, vp_score  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="vae", choices=SAMPLERS)
    p.add_argument("--models", default="embedded")
    p.add_argument("--presets", default="paper,fast")
    p.add_argument("--runs", type=int, help="repeats per preset (default: the preset's own)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    sample_fn, dim, latent_range = named_sampler(args.space, args.models, args.device)
    rows = []
    for name in args.presets.split(","):
        preset = PRESETS[name] if args.runs is None else dataclasses.replace(PRESETS[name], runs=args.runs)
        bar = tqdm(total=100, desc=name, leave=False)

        def progress(fraction: float, what: str) -> None:
            bar.n = int(fraction * 100)
            bar.set_postfix_str(what)
            bar.refresh()

        t0 = time.perf_counter()
        result = vp_score(sample_fn, dim, preset, latent_range, device=args.device, progress=progress)
        bar.close()
        rows.append(dict(preset=name, pairs=preset.pairs, epochs=preset.epochs, runs=preset.runs,
                         seconds=time.perf_counter() - t0, score=result.score, spread=result.spread))
    print(f"space {args.space} ({dim} latent dims), device {args.device}")
    print(f"{'preset':>7} {'pairs':>6} {'epochs':>6} {'runs':>4} {'seconds':>9} {'score':>7} {'spread':>7}")
    for r in rows:
        print(f"{r['preset']:>7} {r['pairs']:>6} {r['epochs']:>6} {r['runs']:>4} {r['seconds']:>9.1f} "
              f"{r['score']:>7.3f} {r['spread']:>7.3f}")
    by = {r["preset"]: r for r in rows}
    if {"paper", "fast"} <= set(by):
        print(f"fast is {by['paper']['seconds'] / by['fast']['seconds']:.1f}x quicker; score difference "
              f"{abs(by['paper']['score'] - by['fast']['score']):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
