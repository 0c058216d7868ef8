"""Latent-sliders latency, end to end: a launched app on 127.0.0.1 driven through gradio_client.

    python -m bench.app_latency                              # the embedded generator, CPU
    python -m bench.app_latency --models ffhq --device cuda  # converted FFHQ weights on a GPU

Each row is the median (and 90th percentile) over --updates slider moves of one seed: the client sends the new
slider value, the server edits W, runs the synthesis network and replies with the face inside the HTML (a data-URL
image, decoded here to check that a face of the generator's size arrived). "compute" is the same edit called
directly, without the server. The same step in a real browser (an arrow key on a slider until the face is painted,
through Gradio and through the live view) is part of `python -m bench.speed --parts browser`.
"""
from __future__ import annotations

import argparse
import base64
import io
import re
import statistics
import time
from pathlib import Path


from apps.latent_sliders import OPTIONAL, ROLES, build, edit_image
from core.directions import Editor, editor_from, for_generator
from core.models import load_models


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="embedded")
    p.add_argument("--generator")
    p.add_argument("--device", default="cpu")
    p.add_argument("--updates", type=int, default=30)
    args = p.parse_args(argv)
    from gradio_client import Client
    from PIL import Image
    if args.generator:  # a generator checkpoint on its own, with the directions stored beside it
        from core.stylegan3 import Generator
        G = Generator.from_pretrained(args.generator, device=args.device).requires_grad_(False)
        editor = Editor(G, for_generator(G, args.generator)[0])
    else:
        editor, _ = editor_from(load_models(args.models, ROLES, OPTIONAL, args.device))
    names = list(editor.dirs)
    demo = build(editor)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        times, compute = [], []
        res = editor.G.img_resolution
        for i in range(args.updates + 2):
            alphas = [0.0] * len(names)
            alphas[0] = -2.0 + 4.0 * i / (args.updates + 1)
            t0 = time.perf_counter()
            html = client.predict(7, 0.7, 0.0, 0.0, 0.0, *alphas, api_name="/edit")  # no move or turn
            t1 = time.perf_counter()
            edit_image(editor, names, 7, 0.7, *alphas)
            if i >= 2:  # the first calls warm up the server and the cache
                times.append((t1 - t0) * 1000)
                compute.append((time.perf_counter() - t1) * 1000)
            data = re.search(r'src="data:image/\w+;base64,([^"]+)"', html)
            if data is None or Image.open(io.BytesIO(base64.b64decode(data.group(1)))).size != (res, res):
                raise SystemExit(f"update {i} did not bring back a {res} px face")
        times.sort()
        print(f"{'model set':<18}{'device':<8}{'res':>5}{'median ms':>11}{'p90 ms':>9}{'compute ms':>12}{'updates':>9}")
        name = Path(args.generator).stem if args.generator else args.models
        print(f"{name:<18}{args.device:<8}{res:>5}{statistics.median(times):>11.1f}"
              f"{times[int(0.9 * (len(times) - 1))]:>9.1f}{statistics.median(compute):>12.1f}{len(times):>9}")
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
