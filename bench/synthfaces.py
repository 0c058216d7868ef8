"""SynthFaces rendering throughput on this machine: images per second by resolution and batch size.

    python -m bench.synthfaces                 # eager rows at 64 and 256 px
    python -m bench.synthfaces --compile       # also the compiled renderer (first call compiles, not timed)
"""
from __future__ import annotations

import argparse
import time


import torch

from core.synthfaces import render, sample_factors
from core.synthfaces.render import fast_render


def measure(fn, factors: torch.Tensor, resolution: int, repeats: int) -> float:
    """Images per second of fn(factors, resolution), after one warm-up call."""
    with torch.no_grad():
        fn(factors, resolution)
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(factors, resolution)
        return repeats * factors.shape[0] / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolutions", default="64,256")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    args = p.parse_args(argv)
    modes = [("eager", render)] + ([("compiled", fast_render)] if args.compile else [])
    print(f"{'res':>5}{'batch':>7}  {'mode':<10}{'img/s':>10}   (cpu threads: {torch.get_num_threads()})")
    for res in map(int, args.resolutions.split(",")):
        batch = args.batch
        factors = sample_factors(torch.arange(batch), seed=0)
        for name, fn in modes:
            print(f"{res:>5}{batch:>7}  {name:<10}{measure(fn, factors, res, args.repeats):>10.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
