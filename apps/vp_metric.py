"""VP metric (Gradio): score how predictable single-dimension changes of a latent space are.

    python -m apps.vp_metric [--models embedded] [--port 7862]
"""
from __future__ import annotations

import argparse

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from core.metrics.vp import PRESETS, SAMPLERS, named_sampler, vp_score

LABELS = {"synthfaces": "SynthFaces factors (ground truth)", "vae": "VAE decoder", "generator-z": "StyleGAN3, Z",
          "generator-w": "StyleGAN3, W", "generator-nice": "StyleGAN3, NICE codes (identity, attributes)"}


def per_dim_figure(per_dim: np.ndarray) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(range(len(per_dim))), y=per_dim))
    fig.update_layout(title="held-out accuracy per changed dimension", xaxis_title="latent dimension",
                      yaxis_range=[0, 1], height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def confusion_figure(confusion: np.ndarray) -> go.Figure:
    rows = confusion / np.clip(confusion.sum(1, keepdims=True), 1, None)
    fig = go.Figure(go.Heatmap(z=rows, colorscale="Blues", zmin=0, zmax=1))
    fig.update_layout(title="confusion (rows: changed dimension, columns: predicted)", height=420,
                      xaxis_title="predicted", yaxis_title="changed", yaxis_autorange="reversed",
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def run_vp(space: str, preset: str, seed, models: str = "embedded", device: str = "cpu",
           progress: gr.Progress | None = None):
    """Score a latent space; returns (summary markdown, per-dimension bars, confusion heatmap)."""
    if space not in SAMPLERS:
        raise gr.Error(f"unknown latent space {space!r}")
    if preset not in PRESETS:
        raise gr.Error(f"unknown preset {preset!r}")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise gr.Error("seed must be a whole number") from None
    if not 0 <= seed < 2 ** 31:
        raise gr.Error("seed must be between 0 and 2^31 - 1")
    try:
        sample_fn, dim, latent_range = named_sampler(space, models, device)
    except (ValueError, RuntimeError) as e:
        raise gr.Error(f"{LABELS.get(space, space)} is not available: {e}") from None
    report = (lambda frac, what: progress(frac, desc=what)) if progress is not None else None
    result = vp_score(sample_fn, dim, preset, latent_range=latent_range, seed=seed, device=device, progress=report)
    text = (f"**VP score {result.score:.3f} ± {result.spread:.3f}** ({LABELS[space]}, {dim} dimensions, preset "
            f"`{preset}`, {len(result.runs)} runs: {', '.join(f'{s:.3f}' for s in result.runs)}; chance "
            f"{1 / dim:.3f})")
    return text, per_dim_figure(result.per_dim), confusion_figure(result.confusion)


def build(models: str = "embedded", device: str = "cpu") -> gr.Blocks:
    with gr.Blocks(title="VP metric") as demo:
        gr.Markdown("## Variation predictability\nPairs of images that differ in one latent dimension; a small CNN "
                    "learns to name the dimension. Higher = more disentangled.")
        with gr.Row():
            space = gr.Dropdown([(v, k) for k, v in LABELS.items()], value="synthfaces", label="latent space")
            preset = gr.Radio(list(PRESETS), value="fast", label="preset")
            seed = gr.Number(value=0, precision=0, label="seed")
            go_button = gr.Button("Score", variant="primary")
        summary = gr.Markdown()
        with gr.Row():
            bars = gr.Plot()
            confusion = gr.Plot()

        def score(space, preset, seed, progress=gr.Progress()):
            return run_vp(space, preset, seed, models, device, progress)

        go_button.click(score, [space, preset, seed], [summary, bars, confusion], api_name="score")
    return demo


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="VP metric (Gradio)")
    p.add_argument("--models", default="embedded")
    p.add_argument("--device", default="cpu")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7862)
    args = p.parse_args(argv)
    build(args.models, args.device).queue().launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
