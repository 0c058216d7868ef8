"""Latent-sliders latency, end to end: a launched app on 127.0.0.1 driven through gradio_client.

    python bench/app_latency.py                              # the embedded generator, CPU
    python bench/app_latency.py --models ffhq --device cuda  # converted FFHQ weights on a GPU

Each row is the median (and 90th percentile) over --updates slider moves of one seed: the client sends the new
slider value, the server edits W, runs the synthesis network and returns the PNG.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.latent_sliders import build, load_editor  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="embedded")
    p.add_argument("--generator")
    p.add_argument("--device", default="cpu")
    p.add_argument("--updates", type=int, default=30)
    args = p.parse_args(argv)
    from gradio_client import Client
    editor, _ = load_editor(args.models, args.device, args.generator)
    names = list(editor.dirs)
    demo = build(editor)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        times = []
        for i in range(args.updates + 2):
            alphas = [0.0] * len(names)
            alphas[0] = -2.0 + 4.0 * i / (args.updates + 1)
            t0 = time.perf_counter()
            client.predict(7, 0.7, *alphas, api_name="/edit")
            if i >= 2:  # the first calls warm up the server and the cache
                times.append((time.perf_counter() - t0) * 1000)
        res = editor.G.img_resolution
        times.sort()
        print(f"{'model set':<12}{'device':<8}{'res':>5}{'median ms':>11}{'p90 ms':>9}{'updates':>9}")
        print(f"{Path(args.generator).stem if args.generator else args.models:<12}{args.device:<8}{res:>5}{statistics.median(times):>11.1f}"
              f"{times[int(0.9 * (len(times) - 1))]:>9.1f}{len(times):>9}")
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
