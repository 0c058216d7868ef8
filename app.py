"""Latent Lab: `python app.py` serves the whole suite on one port; the same file is the Hugging Face Space entry.

The Gradio suite is served at `/` with one tab per page (each page also runs alone: `python -m apps.<page>`), and
the Streamlit training monitor, a child process on 127.0.0.1, is reverse-proxied at `/monitor/` through the same
port and shown in its tab (`--monitor`; on by default on a Space). Settings come from flags or LATENT_LAB_MODELS,
LATENT_LAB_DEVICE and LATENT_LAB_RUNS (flags win). On a ZeroGPU Space the GPU work runs under `spaces.GPU`.
"""
from __future__ import annotations

try:  # ZeroGPU: `spaces` must be imported before torch touches CUDA; absent elsewhere
    import spaces  # noqa: F401
except ImportError:
    pass

import argparse
import contextlib
import ctypes
from typing import Optional

import gradio as gr

from apps import face_mixing, latent_sliders, live, vae_lab, vp_metric
from apps.common import MAX_FILE_SIZE, launch_parser, on_space, page_or_note
from apps.monitor_proxy import PREFIX, MonitorProcess, proxy_routes
from core import hub
from core.devices import resolve_device

# One tab per page; each page module declares the model-set roles it needs (ROLES) and uses when present (OPTIONAL).
PAGES = [face_mixing, latent_sliders, vp_metric, vae_lab]
MONITOR_TITLE = "Training monitor"
DELETE_CACHE = (1800, 3600)  # every 30 min, delete uploads and cached outputs older than an hour


def monitor_html(enabled: bool) -> str:
    """The monitor tab: the proxied Streamlit page in a frame, or how to turn it on."""
    if enabled:
        return (f'<iframe src="/{PREFIX}/" title="training monitor" style="width:100%;height:1100px;border:0">'
                f'</iframe><p>Also at <a href="/{PREFIX}/" target="_blank">/{PREFIX}/</a>.</p>')
    return ("Live training curves, samples by step and configs side by side are in the Streamlit training monitor. "
            "Start the suite with `python app.py --monitor` to see it here (served through this same port at "
            f"`/{PREFIX}/`), or run it alone: `streamlit run apps/training_monitor.py --server.address 127.0.0.1 "
            "-- --runs runs/`.")


def build_app(models: str = "embedded", device: str = "auto", monitor: bool = False) -> gr.Blocks:
    """The Gradio suite: one tab per page; a page whose models cannot load says why in its tab."""
    device = resolve_device(device)
    with gr.Blocks(title="Latent Lab", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(f"# Latent Lab\nInteractive tools for disentangled face latent spaces. Models: `{models}` "
                    f"on `{device}`.")
        for page in PAGES:
            with gr.Tab(page.TITLE):
                page_or_note(page.page, page.TITLE, models, device)  # a Blocks built inside a tab renders into it
        with gr.Tab(MONITOR_TITLE):
            if monitor:
                gr.HTML(monitor_html(True))
            else:
                gr.Markdown(monitor_html(False))
    return demo


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line flags (else LATENT_LAB_* variables); the server binds 127.0.0.1 unless told otherwise."""
    p = launch_parser("Launch the Latent Lab suite.", port=7860)
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument("--monitor", action=argparse.BooleanOptionalAction, default=on_space(),
                   help="serve the Streamlit training monitor at /monitor/ (default: on a Space only)")
    return p.parse_args(argv)


def launch(args: argparse.Namespace, block: bool = True) -> tuple[gr.Blocks, Optional[MonitorProcess]]:
    """Start the monitor child (if asked) and the suite on one port; returns them (block=False for tests)."""
    if args.models.startswith("hf:"):  # a Space's pinned set: fetched once into the cache, before the pages load
        try:
            hub.fetch_set(args.models)
        except hub.HubError as e:
            print(f"warning: {e}; the pages that need its models will say so", flush=True)
    monitor = MonitorProcess(args.runs).start() if args.monitor else None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            if monitor is not None:
                monitor.stop()

    demo = build_app(args.models, args.device, monitor is not None)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
        prevent_thread_lock=not block,
        app_kwargs={"routes": live.routes() + (proxy_routes(monitor) if monitor else []), "lifespan": lifespan})
    return demo, monitor


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (one per thread by default, up to 8 per core), so the memory that a burst of
    concurrent requests takes goes back to the pool instead of staying spread over dozens of arenas (measured with
    bench.load: 50 clients left the server 20 to 27 % larger a minute later; with 2 arenas, 5 %). Linux only."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX


def main(argv: Optional[list[str]] = None) -> None:
    limit_malloc_arenas()
    launch(parse_args(argv))


if __name__ == "__main__":
    main()
