"""Latent Lab: `python app.py` launches the Gradio suite locally; the same file is the Hugging Face Space entry point.

At this stage the suite is a placeholder: the face-mixing, latent-slider and VP-metric apps are built by later
issues, and each tab says so on screen.
"""
from __future__ import annotations

import argparse
import os

import gradio as gr

PLANNED_TABS = {
    "Face mixing": "Identity of face A on the expression, pose and glasses of face B, with similarity scores.",
    "Latent sliders": "Move one attribute of a generated face with a slider and watch nothing else change.",
    "VP metric": "Score how disentangled a latent space is with the variation-predictability metric.",
    "Training monitor": "Live training curves and samples (a Streamlit app beside this one).",
}
PLACEHOLDER_NOTE = ("**Placeholder suite.** The StyleGAN3 core is in place; this app is not built yet "
                    "and shows no results.")


def build_app() -> gr.Blocks:
    """The Gradio suite: one tab per app."""
    with gr.Blocks(title="Latent Lab") as demo:
        gr.Markdown("# Latent Lab\nInteractive tools for disentangled face latent spaces.")
        for name, purpose in PLANNED_TABS.items():
            with gr.Tab(name):
                gr.Markdown(f"{PLACEHOLDER_NOTE}\n\n{name}: {purpose}")
    return demo


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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    build_app().launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
