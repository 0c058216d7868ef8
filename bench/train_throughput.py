"""Training throughput of every loop: images per second in 1 and in N processes, side by side in one run.

    python -m bench.train_throughput                                 # every loop, 1 and 2 CPU processes
    python -m bench.train_throughput --loops nice,gan --processes 1,2,4,8 --device cuda   # on GPUs
    python -m bench.train_throughput --loops gan --set batch_size=64 mixed_precision=bf16  # any config override

Each row trains the loop's recipe (configs/, with the overrides below that keep a row short and leave out
evaluation) through its command line in a temporary run folder: `python -m core.train LOOP` for one process,
`python -m torch.distributed.run --standalone --nproc_per_node N -m core.train LOOP` for N (on a CPU each
process then runs one thread, on GPUs one GPU each). The rate is the images seen (every process's) over the wall
time between the first and the last logged step, so start-up and the first step's warm-up are left out. The ratio
column is N processes' rate over one process's, measured in the same run of this script.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHORT = {"log_every": 1, "ship_to": ""}
QUIET = {"sample_every": 10 ** 6, "checkpoint_every": 10 ** 6}  # loops counted in steps: no samples or checkpoints
# loop -> (module name for core.train, recipe, overrides that keep a row to a few steps with the recipe's networks)
LOOPS = {
    "distill": ("distill", "distill_synthfaces64.yaml",
                {"steps": 8, "eval_images": 0, "analyzer_from": 0, "adversarial_from": 0, **QUIET}),
    "gan": ("gan", "gan_synthfaces64.yaml", {"steps": 6, "eval_images": 0, "batch_size": 16, **QUIET}),
    "nice": ("nice", "nice_synthfaces.yaml", {"steps": 8, **QUIET}),
    "encoder": ("encoder", "encoder_synthfaces64.yaml", {"steps": 6, "image_from": 0, **QUIET}),
    "vae": ("vae", "vae_synthfaces45.yaml", {"epochs": 1, "train_identities": 205, "val_identities": 10}),
    "ae": ("vae", "ae_synthfaces45.yaml", {"epochs": 1, "train_identities": 205, "val_identities": 10}),
    "analyzer": ("analyzer", "analyzer_synthfaces64.yaml",
                 {"epochs": 1, "train_identities": 171, "val_identities": 10}),
}


def measure(loop: str, processes: int, device: str, extra: list[str]) -> float:
    """Images per second of one loop in `processes` processes, from its run's own metrics log."""
    module, recipe, overrides = LOOPS[loop]
    with tempfile.TemporaryDirectory() as tmp:
        sets = [f"{k}={v}" for k, v in {**SHORT, **overrides, "runs_dir": tmp, "name": "bench",
                                         "device": device}.items()] + extra
        launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                  if processes > 1 else [sys.executable])
        cmd = [*launch, "-m", "core.train", module, "--config", str(ROOT / "configs" / recipe), "--set", *sets]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        lines = [json.loads(x) for x in (Path(tmp) / "bench" / "metrics.jsonl").read_text().splitlines()]
    lines = [x for x in lines if "images_seen" in x]
    first, last = lines[0], lines[-1]
    return (last["images_seen"] - first["images_seen"]) / (last["time"] - first["time"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loops", default=",".join(LOOPS), help=f"comma-separated, of {', '.join(LOOPS)}")
    p.add_argument("--processes", default="1,2", help="comma-separated process counts; the first is the baseline")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="overrides for every loop")
    args = p.parse_args(argv)
    loops, counts = args.loops.split(","), [int(n) for n in args.processes.split(",")]
    unknown = sorted(set(loops) - set(LOOPS))
    if unknown:
        print(f"unknown loops {unknown}; known: {', '.join(LOOPS)}", file=sys.stderr)
        return 2
    print(f"device {args.device}, {os.cpu_count()} CPU cores; overrides: {' '.join(args.set) or '-'}\n")
    header = " | ".join(f"{n} process{'es' if n > 1 else ''} (img/s)" for n in counts)
    ratios = " | ".join(f"{n} vs {counts[0]}" for n in counts[1:])
    print(f"| loop | {header} | {ratios} |")
    print("|---|" + "---:|" * (2 * len(counts) - 1))
    for loop in loops:
        rates = [measure(loop, n, args.device, args.set) for n in counts]
        cells = " | ".join(f"{r:.1f}" for r in rates) + " | " + " | ".join(f"{r / rates[0]:.2f}x" for r in rates[1:])
        print(f"| {loop} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
