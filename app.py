"""Latent Lab: `python app.py` launches the Gradio suite locally; the same file is the Hugging Face Space entry point.

Tabs: face mixing, latent sliders and the VP metric (each also runs alone: `python -m apps.face_mixing`,
`python -m apps.latent_sliders`, `python -m apps.vp_metric`). The training monitor is a Streamlit app beside this
one: its tab links to it, and `--monitor` starts it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import gradio as gr

MONITOR_APP = Path(__file__).resolve().parent / "apps" / "training_monitor.py"
MONITOR_PORT = 8501


def monitor_text(host: str = "127.0.0.1", port: int = MONITOR_PORT) -> str:
    """What the Training monitor tab says: where the Streamlit monitor lives and how to start it."""
    return (f"Live training curves, samples by step and configs side by side are in the Streamlit training "
            f"monitor: **[open it](http://{host}:{port})** (started by `python app.py --monitor`, or on its own "
            f"with `streamlit run apps/training_monitor.py -- --runs runs/`).")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'."""
    if device == "auto":
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def build_app(models: str = "embedded", device: str = "auto", monitor_url_host: str = "127.0.0.1") -> gr.Blocks:
    """The Gradio suite: one tab per app; an app whose models cannot load says why in its tab."""
    from apps import face_mixing, latent_sliders, vp_metric
    device = resolve_device(device)
    with gr.Blocks(title="Latent Lab") as demo:
        gr.Markdown(f"# Latent Lab\nInteractive tools for disentangled face latent spaces. Models: `{models}` "
                    f"on `{device}`.")
        with gr.Tab("Face mixing"):
            face_mixing.page(models, device)  # a Blocks built inside a tab renders into it
        with gr.Tab("Latent sliders"):
            try:
                editor, note = latent_sliders.load_editor(models, device)
            except (ValueError, RuntimeError, OSError) as e:
                gr.Markdown(f"**The generator of model set `{models}` could not be loaded:** {e}")
            else:
                latent_sliders.build(editor, note)
        with gr.Tab("VP metric"):
            vp_metric.build(models, device)
        with gr.Tab("Training monitor"):
            gr.Markdown(monitor_text(monitor_url_host))
    return demo


def start_monitor(host: str, runs: str, port: int = MONITOR_PORT) -> subprocess.Popen:
    """Start the Streamlit training monitor as a child process bound to `host`."""
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(MONITOR_APP), "--server.headless", "true",
                             "--server.address", host, "--server.port", str(port),
                             "--browser.gatherUsageStats", "false", "--", "--runs", runs])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; the server binds 127.0.0.1 unless --host says otherwise."""
    on_space = bool(os.environ.get("SPACE_ID"))
    p = argparse.ArgumentParser(description="Launch the Latent Lab Gradio suite.")
    p.add_argument("--host", default="0.0.0.0" if on_space else "127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 on a Hugging Face Space)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument("--models", default="embedded", help="model set: 'embedded' (offline default) or a Hub model set")
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    p.add_argument("--monitor", action="store_true", help="also start the Streamlit training monitor (port 8501)")
    p.add_argument("--runs", default="runs", help="run folder the training monitor watches")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    monitor = start_monitor(args.host, args.runs) if args.monitor else None
    try:
        build_app(args.models, args.device).queue().launch(server_name=args.host, server_port=args.port,
                                                           share=args.share)
    finally:
        if monitor is not None:
            monitor.terminate()


if __name__ == "__main__":
    main()
