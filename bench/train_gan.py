"""GAN training throughput: images per second of the real training loop (D step + lazy R1 + G step + EMA).

    python -m bench.train_gan                                  # the configs/gan_synthfaces64.yaml recipe, CPU
    python -m bench.train_gan --device cuda --batch 32,64      # on a GPU
    python -m bench.train_gan --set channel_max=32 num_layers=6  # any config override

Each row runs `train_gan` for --steps steps in a temporary run folder (no evaluation) and reports the rate
over the steps after the first (which pays for warm-up).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


import torch

from core.config import load_config, parse_overrides
from core.train.gan import GanConfig, train_gan

ROOT = Path(__file__).resolve().parent.parent


def measure(cfg: GanConfig) -> float:
    """Images per second after the first step, from the run's own metrics log."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg.runs_dir, cfg.name = tmp, "bench"
        train_gan(cfg, progress=False)
        lines = [json.loads(x) for x in (Path(tmp) / "bench" / "metrics.jsonl").read_text().splitlines()]
    first, last = lines[0], lines[-1]
    return (last["images_seen"] - first["images_seen"]) / (last["time"] - first["time"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "gan_synthfaces64.yaml"))
    p.add_argument("--batch", default="16", help="comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="no", help="comma-separated: no, bf16")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"
    elif not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    print(f"{'device':<8}{'batch':>6}  {'precision':<10}{'G params':>10}{'img/s':>10}   "
          f"overrides: {' '.join(args.set) or '-'}")
    for batch in map(int, args.batch.split(",")):
        for precision in args.precision.split(","):
            overrides = {**parse_overrides(args.set), "batch_size": batch, "mixed_precision": precision,
                         "steps": args.steps + 1, "log_every": 1, "eval_images": 0, "sample_every": 10 ** 9,
                         "checkpoint_every": 10 ** 9, "ship_to": "", "r1_interval": 4}
            cfg = load_config(GanConfig, args.config, overrides)
            from core.stylegan3.networks import Generator
            params = sum(p.numel() for p in Generator(**cfg.generator_kwargs()).parameters())
            rate = measure(cfg)
            print(f"{args.device:<8}{batch:>6}  {precision:<10}{params / 1e6:>9.2f}M{rate:>10.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
