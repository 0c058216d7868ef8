"""Live speed as ratios measured side by side in one run, so that they hold on any machine.

    python -m bench.speed                               # every part, the embedded generator, this CPU
    python -m bench.speed --parts synthesis --nvlabs ~/src/stylegan3   # with NVlabs' pure-PyTorch code beside ours
    python -m bench.speed --device cuda --models ffhq                  # GPU rows (every part)

Parts:
- synthesis: ms per image at batch 1 and 8, per config (T, R) and side (64, 256 px, at the shipped generator's
  width), of our generator and, given a local checkout of NVlabs/stylegan3 (--nvlabs), their pure-PyTorch code
  (what their `--impl=ref` runs on a CPU) with the same weights, timed in turns; and the fraction of this
  machine's peak (a large matmul's GFLOP/s) that our synthesis reaches, from its counted FLOPs. The shipped 64 px
  generator is the first row. Our eager PyTorch is the app's path: an ONNX Runtime export (torch.onnx, dynamo)
  and a banded-matrix rewrite were tried and were slower here (see docs/benchmarks.md).
- browser (needs playwright and a system Chromium): the sliders page in headless Chromium, three ways: the live
  view (websocket), the Gradio event alone, and a page with the same sliders whose handler does no work (the floor
  of Gradio's event path). Faces painted per second during a 3 s drag (an input every 33 ms), and input-to-paint
  per single step (arrow key, median and p90).
- vp: seconds to the VP tab's first and final answers (interactive preset, the generator's W).
"""
from __future__ import annotations

import argparse
import re
import statistics
import time
from typing import Any, Callable, Optional

import torch

from core.stylegan3 import Generator, generator_kwargs

SHIPPED = "checkpoints/synthfaces_stylegan3"


def timed(fn: Callable[[], Any], seconds: float = 1.5, least: int = 5, warmup: int = 2) -> float:
    """Median ms of fn over about `seconds` (after `warmup` calls)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < least or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def alternately(calls: dict[str, Callable[[], Any]], rounds: int = 5, seconds: float = 0.4) -> dict[str, float]:
    """Median ms per call of each function, timed in turns (round after round), so that a machine whose speed
    drifts during the run slows each of them alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            times[name].append(timed(fn, seconds, least=1, warmup=0))
    return {name: statistics.median(t) for name, t in times.items()}


def peak_gflops(device: torch.device, n: int = 1024) -> float:
    """This machine's practical peak: GFLOP/s of an n x n fp32 matmul."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def run() -> None:
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
    return 2 * n ** 3 / timed(run) / 1e6


def synthesis_flops(G: Generator, ws: torch.Tensor) -> float:
    """FLOPs of one synthesis call, counted by torch's FlopCounterMode (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        G.synthesis(ws, noise_mode="const", force_fp32=True)
    return float(counter.get_total_flops())


WIDTH = dict(channel_base=2048, channel_max=64)  # the shipped generator's width (the official 512 channels take
# seconds a face on a CPU)


def synthesis_rows(device: str, nvlabs: Optional[str], batches: list[int]) -> list[dict]:
    """Per generator and batch: ms per image of our synthesis and NVlabs' (where given), timed alternately."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    generators: list[tuple[str, Generator]] = [("shipped 64 (T)", Generator.from_pretrained(SHIPPED, device=device))]
    for cfg, res in (("stylegan3-t", 64), ("stylegan3-r", 64), ("stylegan3-t", 256), ("stylegan3-r", 256)):
        torch.manual_seed(0)
        generators.append((f"{cfg[-1].upper()} {res}", Generator(**generator_kwargs(cfg, res, **WIDTH)).to(dev)))
    peak = peak_gflops(dev)
    rows = []
    for name, G in generators:
        G = G.eval().requires_grad_(False)
        theirs = None
        if nvlabs:
            from bench.official import official_generator
            theirs = official_generator(nvlabs, G)
        for batch in batches:
            gen = torch.Generator().manual_seed(batch)
            ws = G.mapping(torch.randn(batch, G.z_dim, generator=gen).to(dev), truncation_psi=0.7)
            calls = {"ours": lambda: (G.synthesis(ws, noise_mode="const", force_fp32=True), sync())}
            if theirs is not None:
                calls["nvlabs"] = lambda: (theirs.synthesis(ws, noise_mode="const", force_fp32=True), sync())
            with torch.no_grad():
                ms = alternately(calls)
            flops = synthesis_flops(G, ws)
            rows.append(dict(generator=name, batch=batch, ours_ms=ms["ours"] / batch,
                             nvlabs_ms=ms["nvlabs"] / batch if theirs is not None else None,
                             peak_fraction=flops / (ms["ours"] / 1000) / (peak * 1e9)))
    return rows


def print_synthesis(rows: list[dict], nvlabs: Optional[str]) -> None:
    print(f"\nsynthesis ({'NVlabs from ' + nvlabs if nvlabs else 'no --nvlabs checkout: NVlabs columns skipped'})")
    print(f"{'generator':<16}{'batch':>6}{'ours ms/img':>13}{'NVlabs ms/img':>15}{'speed-up':>10}{'of peak':>9}")
    for r in rows:
        theirs = (f"{r['nvlabs_ms']:>15.1f}{r['nvlabs_ms'] / r['ours_ms']:>9.2f}x" if r["nvlabs_ms"]
                  else f"{'-':>15}{'-':>10}")
        print(f"{r['generator']:<16}{r['batch']:>6}{r['ours_ms']:>13.1f}{theirs}{r['peak_fraction']:>9.1%}")


def browser_row(url: str, label: str, steps: int, drag_s: float = 3.0) -> dict:
    """Faces painted per second during a drag of the slider labelled `label`, and single-step input-to-paint."""
    from tools.screenshots import WATCH_PAINTS, chromium, drag
    with chromium(1400, 1000) as page:
        page.goto(url, timeout=120_000)
        page.wait_for_function("document.querySelector('img[alt=after]') !== null", timeout=120_000)
        page.wait_for_timeout(1500)
        page.evaluate(WATCH_PAINTS)
        slider = page.get_by_label(re.compile(rf"^range slider for {re.escape(label)}")).first
        slider.focus()
        lags = []
        for i in range(steps + 2):
            painted = page.evaluate("window.paints.length")
            page.keyboard.press("ArrowRight" if i % 20 < 10 else "ArrowLeft")
            page.wait_for_function(f"window.paints.length > {painted}", timeout=30_000, polling=1)
            if i >= 2:
                lags.append(page.evaluate("window.paints[window.paints.length - 1] - "
                                          "window.inputs[window.inputs.length - 1]"))
            page.wait_for_timeout(400)  # the step's other replies land before the next one
        page.evaluate("window.inputs = []; window.paints = [];")
        drag(page, slider, 0.1, 0.9, int(drag_s / 0.033))
        page.mouse.up()
        page.wait_for_timeout(1000)
        first, last = page.evaluate("[window.inputs[0], window.inputs[window.inputs.length - 1]]")
        paints = page.evaluate(f"window.paints.filter(t => t >= {first} && t <= {last} + 50).length")
    lags.sort()
    return dict(fps=paints / ((last - first) / 1000), step_median=statistics.median(lags),
                step_p90=lags[int(0.9 * (len(lags) - 1))], steps=len(lags))


def empty_page(editor: Any) -> Any:
    """The sliders page's controls with a handler that does no work: it alternates between two ready-made faces
    (the floor that Gradio's event path sets)."""
    import gradio as gr
    import numpy as np

    from apps.common import face_html
    from apps.latent_sliders import ALPHA, MOVE, TURN
    res = editor.G.img_resolution
    faces = [face_html(np.full((res, res, 3), v, np.uint8), "after") for v in (60, 200)]
    count = iter(range(1, 10 ** 9))  # the page starts on faces[0]: every reply differs from the last
    with gr.Blocks() as demo:
        gr.Number(0, label="seed")
        gr.Slider(0.0, 1.5, value=0.7, label="truncation ψ")
        for label, span, step in (("move x", MOVE, 0.01), ("move y", MOVE, 0.01), ("rotate", TURN, 1)):
            gr.Slider(-span, span, value=0.0, step=step, label=label)
        after = gr.HTML(faces[0])
        for name in editor.dirs:
            gr.Slider(-ALPHA, ALPHA, value=0.0, step=0.05, label=name).change(
                lambda *_: faces[next(count) % 2], None, after, trigger_mode="always_last", show_progress="hidden")
    return demo


def browser_rows(models: str, device: str, steps: int) -> list[dict]:
    """The sliders page with the live view, without it, and the empty-handler floor."""
    from apps import live
    from apps.latent_sliders import OPTIONAL, ROLES, build
    from core.directions import editor_from
    from core.models import load_models
    editor, note = editor_from(load_models(models, ROLES, OPTIONAL, device))
    label = next(iter(editor.dirs))
    rows = []
    for name, demo in (("live view (websocket)", build(editor, note, live=True)),
                       ("Gradio event", build(editor, note, live=False)),
                       ("empty Gradio handler", empty_page(editor))):
        demo.queue(default_concurrency_limit=4).launch(
            server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
            app_kwargs={"routes": live.routes()})
        try:
            rows.append(dict(browser_row(demo.local_url, label, steps), page=name))
        finally:
            demo.close()
    return rows


def print_browser(rows: list[dict]) -> None:
    floor = rows[-1]
    print("\nbrowser (headless Chromium on the same machine)")
    print(f"{'page':<24}{'faces/s':>9}{'vs floor':>10}{'step p50 ms':>13}{'step p90 ms':>13}{'p50 vs floor':>14}")
    for r in rows:
        print(f"{r['page']:<24}{r['fps']:>9.1f}{r['fps'] / floor['fps']:>9.2f}x{r['step_median']:>13.0f}"
              f"{r['step_p90']:>13.0f}{floor['step_median'] / r['step_median']:>13.2f}x")


def vp_row(models: str, device: str) -> dict:
    """Seconds to the VP tab's first and final answers on the generator's W (interactive preset)."""
    from bench.vp import measure
    return measure("generator-w", "interactive", models, device)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="synthesis,browser,vp")
    p.add_argument("--models", default="embedded")
    p.add_argument("--device", default="cpu")
    p.add_argument("--nvlabs", help="a local checkout of github.com/NVlabs/stylegan3 (else its columns are skipped)")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--steps", type=int, default=20, help="single slider steps per page in the browser part")
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    if "synthesis" in parts:
        print_synthesis(synthesis_rows(args.device, args.nvlabs, [int(b) for b in args.batches.split(",")]),
                        args.nvlabs)
    if "browser" in parts:
        from tools.screenshots import chromium_path
        if chromium_path() is None:
            print("\nbrowser: skipped (no system Chromium; Debian: apt-get install chromium)")
        else:
            print_browser(browser_rows(args.models, args.device, args.steps))
    if "vp" in parts:
        row = vp_row(args.models, args.device)
        print(f"\nVP (interactive preset, W): first answer {row['first_s']:.1f} s, final {row['final_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
