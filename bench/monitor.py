"""Training-monitor speed: time to open a run with many logged steps, and to refresh after new lines.

    python -m bench.monitor                 # 100,000 steps x 6 scalars
    python -m bench.monitor --steps 1000000

'open' is the monitor page's first script run (streamlit AppTest: reading metrics.jsonl, smoothing, building every
plotly figure), which is the server-side part of opening the page; the browser then draws at most ~2,000 points
per curve. 'refresh' is a re-run after 100 new lines, which reads only the new bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


from core.train.runs import MetricsTail

APP = Path(__file__).resolve().parent.parent / "apps" / "training_monitor.py"
KEYS = ("loss_d", "loss_g", "logits_real", "logits_fake", "lr", "images_per_s")


def write_metrics(path: Path, start: int, stop: int) -> None:
    with open(path, "a") as f:
        for step in range(start, stop):
            record = {"step": step, "time": 1.7e9 + step * 0.1, **{k: 1.0 / (1 + step) + i for i, k in enumerate(KEYS)}}
            f.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    args = p.parse_args(argv)
    from streamlit.testing.v1 import AppTest
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "big"
        run.mkdir()
        (run / "config.yaml").write_text("name: big\n")
        write_metrics(run / "metrics.jsonl", 1, args.steps + 1)
        size = (run / "metrics.jsonl").stat().st_size
        t0 = time.perf_counter()
        MetricsTail(run / "metrics.jsonl").poll()
        read = time.perf_counter() - t0
        os.environ["LATENT_LAB_RUNS"] = tmp
        at = AppTest.from_file(str(APP), default_timeout=120)
        t0 = time.perf_counter()
        at.run()
        opened = time.perf_counter() - t0
        if at.exception:
            print(at.exception, file=sys.stderr)
            return 1
        write_metrics(run / "metrics.jsonl", args.steps + 1, args.steps + 101)
        t0 = time.perf_counter()
        at.run()
        refresh = time.perf_counter() - t0
    print(f"{'steps':>9} {'scalars':>8} {'file MiB':>9} {'read s':>7} {'open s':>7} {'refresh s':>10}")
    print(f"{args.steps:>9} {len(KEYS):>8} {size / 2 ** 20:>9.1f} {read:>7.2f} {opened:>7.2f} {refresh:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
