"""`python -m core.synthfaces export --identities N --per-identity K --resolution R --out DIR`, or `sheet --out PNG`."""
from __future__ import annotations

import argparse
import sys

from core.synthfaces.dataset import contact_sheet, export
from core.synthfaces.render import MAX_RES, MIN_RES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.synthfaces", description="SynthFaces dataset tools")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write PNGs plus labels.jsonl (identity, factors, landmarks)")
    e.add_argument("--identities", type=int, required=True)
    e.add_argument("--per-identity", type=int, required=True)
    e.add_argument("--resolution", type=int, default=64)
    e.add_argument("--out", required=True)
    e.add_argument("--seed", type=int, default=0, help="attribute sampling seed")
    e.add_argument("--world-seed", type=int, default=0, help="which world of identities")
    e.add_argument("--fast", action="store_true", help="compiled renderer: ~10x faster after a 1-2 minute compile")
    sh = sub.add_parser("sheet", help="write a PNG contact sheet of different identities")
    sh.add_argument("--out", required=True)
    sh.add_argument("--count", type=int, default=48)
    sh.add_argument("--nrow", type=int, default=12)
    sh.add_argument("--resolution", type=int, default=64)
    sh.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not MIN_RES <= args.resolution <= MAX_RES:
        p.error(f"--resolution must be between {MIN_RES} and {MAX_RES}")
    if args.command == "sheet":
        print(f"wrote {contact_sheet(args.out, args.count, args.nrow, args.resolution, args.seed)}", file=sys.stderr)
        return 0
    if args.identities < 1 or args.per_identity < 1:
        p.error("--identities and --per-identity must be >= 1")
    out = export(args.out, args.identities, args.per_identity, args.resolution, args.seed, args.world_seed,
                 fast=args.fast)
    print(f"wrote {args.identities * args.per_identity} images to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
