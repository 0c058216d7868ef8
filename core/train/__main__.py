"""`python -m core.train <model> --config configs/<recipe>.yaml [--resume] [--ship] [--set key=value ...]`.

Several processes: `accelerate launch --multi_gpu --num_processes N -m core.train <model> ...` (GPUs, and on a CPU
as well: gloo), or `torchrun --standalone --nproc_per_node N -m core.train <model> ...`; the main process alone
writes and prints.

Nothing is written outside the run folder unless `--ship` is given: then the trained model goes to the config's
`ship_to` (the shipping recipes name a file in checkpoints/; `--set ship_to=` names none)."""
from __future__ import annotations

import argparse
import importlib
import sys

from core.config import USER_ERRORS, load_config, one_line, parse_overrides
from core.hub import HubError
from core.train.placement import launch_rank

# model -> (module, config class, training function); imported only when chosen
LOOPS = {
    "analyzer": ("core.train.analyzer", "AnalyzerConfig", "train_analyzer"),
    "distill": ("core.train.distill", "DistillConfig", "train_distill"),
    "encoder": ("core.train.encoder", "EncoderConfig", "train_encoder"),
    "gan": ("core.train.gan", "GanConfig", "train_gan"),
    "vae": ("core.train.vae", "VaeConfig", "train_vae"),
    "nice": ("core.train.nice", "NiceConfig", "train_nice"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.train", description="Train a Latent Lab model.")
    p.add_argument("model", choices=sorted(LOOPS), help="which training loop")
    p.add_argument("--config", help="YAML config under configs/")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--ship", action="store_true", help="write the trained model to the config's ship_to")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)
    module_name, config_name, train_name = LOOPS[args.model]
    module = importlib.import_module(module_name)
    try:
        overrides = parse_overrides(args.set)
        if args.ship:
            overrides["ship"] = True
        cfg = load_config(getattr(module, config_name), args.config, overrides)
        report = getattr(module, train_name)(cfg, resume=args.resume)
    except (*USER_ERRORS, HubError) as e:  # a bad config, model name or file: one line, not a traceback
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    if launch_rank() == 0:
        for key, value in report.items():
            print(f"{key:>28}: {value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
