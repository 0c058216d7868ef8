"""`python -m core.train <model> --config configs/<recipe>.yaml [--resume] [--set key=value ...]`."""
from __future__ import annotations

import argparse
import sys

from core.config import load_config, parse_overrides


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.train", description="Train a Latent Lab model.")
    p.add_argument("model", choices=["analyzer"], help="which training loop")
    p.add_argument("--config", help="YAML config under configs/")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)
    from core.train.analyzer import AnalyzerConfig, train_analyzer
    try:
        cfg = load_config(AnalyzerConfig, args.config, parse_overrides(args.set))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = train_analyzer(cfg, resume=args.resume)
    for key, value in report.items():
        print(f"{key:>28}: {value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
