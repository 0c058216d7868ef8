"""VP metric (Gradio): score how predictable single-dimension changes of a latent space are, while you watch.

    python -m apps.vp_metric [--models embedded] [--port 7862]

The job streams: each finished run updates the score, its spread and the plots, and the Stop button (or closing
the tab) stops the computation within a moment. Finished scores are kept per space, preset and seed, so a second
visit answers at once. A browser session runs one job at a time and the server a few, with a clear "busy" note.
"""
from __future__ import annotations

import json
import time
from collections import OrderedDict
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator, Optional

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from apps.common import JOBS, Number, as_number, gpu, public_message, serve
from core.config import short
from core.metrics.vp import PRESET_NOTES, PRESETS, VPResult, vp_stream
from core.spaces import LatentSpace, SAMPLERS, latent_space

TITLE = "VP metric"
LABELS = {"synthfaces": "SynthFaces factors (ground truth)", "vae": "VAE decoder", "generator-z": "StyleGAN3, Z",
          "generator-w": "StyleGAN3, W", "generator-nice": "StyleGAN3, NICE codes (identity, attributes)"}
RESULTS: "OrderedDict[tuple, VPResult]" = OrderedDict()  # finished scores: (models, space, preset, seed) -> result
SPACES: "OrderedDict[tuple, LatentSpace]" = OrderedDict()
KEEP = 32
STATUS_EVERY_S = 0.5


def _remember(store: OrderedDict, key: tuple, value: Any) -> Any:
    store[key] = value
    store.move_to_end(key)
    while len(store) > KEEP:
        store.popitem(last=False)
    return value


def _labels(result: VPResult) -> list[str]:
    return result.names or [str(i) for i in range(len(result.per_dim))]


def per_dim_figure(result: VPResult) -> go.Figure:
    fig = go.Figure(go.Bar(x=_labels(result), y=result.per_dim))
    fig.update_layout(title="held-out accuracy per changed dimension", xaxis_title="latent dimension",
                      yaxis_range=[0, 1], height=340, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_type="category")
    return fig


def confusion_figure(result: VPResult) -> go.Figure:
    rows = result.confusion / np.clip(result.confusion.sum(1, keepdims=True), 1, None)
    names = _labels(result)
    fig = go.Figure(go.Heatmap(z=rows, x=names, y=names, colorscale="Blues", zmin=0, zmax=1))
    fig.update_layout(title="confusion (rows: changed dimension, columns: predicted)", height=460,
                      xaxis_title="predicted", yaxis_title="changed", yaxis_autorange="reversed",
                      xaxis_type="category", yaxis_type="category", margin=dict(l=10, r=10, t=40, b=10))
    return fig


def summary(result: VPResult, space: str, preset: str, final: bool, seconds: float) -> str:
    runs = len(result.runs)
    state = "final" if final else f"refining: {runs} of {PRESETS[preset].runs} runs"
    return (f"**VP score {result.score:.3f} ± {result.spread:.3f}** ({state}; {LABELS[space]}, {len(result.per_dim)} "
            f"dimensions, chance {1 / len(result.per_dim):.3f}; runs: {', '.join(f'{s:.3f}' for s in result.runs)}; "
            f"{seconds:.0f} s)  \nPreset `{preset}`: {PRESET_NOTES[preset]}.")


CARD = Path(__file__).resolve().parent.parent / "docs" / "report_card" / "report.json"
CARD_SPACES = {"synthfaces": "factors", "vae": "vae", "generator-z": "generator-z", "generator-w": "generator-w",
               "generator-nice": "generator-nice"}  # VP tab space -> report-card row


def card_text(space: str, card_path: Path = CARD) -> str:
    """The disentanglement report card's row for a space (core.reports.disentanglement), as Markdown."""
    from core.reports.disentanglement import LABELS, METRICS, VP_COMPARABLE
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError):
        return ("No report card yet: `python -m core.reports.disentanglement` writes docs/report_card/ (DCI, MIG, "
                "SAP, FactorVAE, beta-VAE and VP against SynthFaces' ground truth).")
    row = next((r for r in card.get("rows", []) if r.get("space") == CARD_SPACES.get(space)), None)
    if row is None:
        return f"The report card has no row for {LABELS.get(space, space)}."
    if "error" in row:
        return f"Report card, {row['label']}: not scored ({row['error']})."
    cells = " | ".join("—" if row.get(m) is None else f"{row[m]:.3f}" for m in METRICS)
    return (f"**Report card, {row['label']}** (SynthFaces ground truth; higher is better; sample sizes in "
            f"docs/report_card/report.json)\n\n| " + " | ".join(LABELS[m] for m in METRICS) + " |\n|"
            + "---:|" * len(METRICS) + f"\n| {cells} |\n\n{VP_COMPARABLE}")


FAMILY = CARD.parent.parent / "vp_family" / "report.json"


def family_view(path: Path = FAMILY) -> tuple[str, Optional[go.Figure]]:
    """The VP-vs-ground-truth study (core.reports.vp_family): VP against DCI across spaces whose disentanglement
    is known by construction, and the answer in words."""
    from core.reports.vp_family import figure, verdict
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return ("No study yet: `python -m core.reports.vp_family` writes docs/vp_family/ (every report-card metric "
                "on the factor space turned step by step from itself to a random rotation).", None)
    return (f"The factor space turned by R(t), t = {', '.join(f'{t:g}' for t in result['ts'])} (0: the factors, "
            f"1: a random rotation); VP preset `{result['vp_preset']}`. Does VP rank these spaces as the ground "
            f"truth does?\n\n{verdict(result)}\n\nTables: docs/vp_family/report.md"), figure(result)


def check(space: Any, preset: Any, seed: Any) -> tuple[str, str, int]:
    if space not in SAMPLERS:
        raise gr.Error(f"latent space must be one of {', '.join(SAMPLERS)}, got {short(space)}")
    if preset not in PRESETS:
        raise gr.Error(f"preset must be one of {', '.join(PRESETS)}, got {short(preset)}")
    return space, preset, int(as_number(seed, "seed", 0, 2 ** 31 - 1, whole=True))


def get_space(space: str, preset: str, models: str, device: str) -> LatentSpace:
    resolution = PRESETS[preset].resolution or 64
    key = (models, space, device, resolution)
    if key not in SPACES:
        try:
            _remember(SPACES, key, latent_space(space, models, device, resolution=resolution))
        except (ValueError, RuntimeError, OSError) as e:
            raise gr.Error(f"{LABELS.get(space, space)} is not available: {public_message(e)}") from None
    return SPACES[key]


def run_vp(space: Any, preset: Any, seed: Any, models: str = "embedded", device: str = "cpu",
           session: str = "local") -> Iterator[tuple]:
    """Score a latent space, yielding (summary markdown, per-dimension bars, confusion heatmap) as runs finish and
    status text in between (gr.skip() leaves a component as it is)."""
    space, preset, seed = check(space, preset, seed)
    key = (models, space, preset, seed)
    if key in RESULTS:
        result = RESULTS[key]
        yield summary(result, space, preset, True, 0) + " *(kept from an earlier run)*", \
            per_dim_figure(result), confusion_figure(result)
        return
    with JOBS.hold(session, f"a VP score of {LABELS[space]}"):
        start, shown = time.time(), 0.0
        latent = get_space(space, preset, models, device)
        result: Optional[VPResult] = None
        with closing(vp_stream(latent.sample_fn, latent.dim, preset, latent.latent_range, seed, device,
                               latent.names, latent.heavy)) as stream:
            for update in stream:
                now = time.time()
                if update.result is not None:
                    result, shown = update.result, now
                    final = len(result.runs) == PRESETS[preset].runs
                    yield summary(result, space, preset, final, now - start), per_dim_figure(result), \
                        confusion_figure(result)
                elif now - shown >= STATUS_EVERY_S:
                    shown = now
                    head = summary(result, space, preset, False, now - start) + "  \n" if result else ""
                    yield f"{head}*{update.stage}: {update.fraction:.0%}*", gr.skip(), gr.skip()
                else:
                    yield gr.skip(), gr.skip(), gr.skip()  # a point where a cancelled job stops
        _remember(RESULTS, key, result)


def build(models: str = "embedded", device: str = "cpu") -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown("## Variation predictability\nPairs of images that differ in one latent dimension; a small CNN "
                    "learns to name the dimension. Higher = more disentangled. `interactive` answers within "
                    "seconds and refines while you watch; `paper` is the authors' protocol (minutes).")
        with gr.Row():
            space = gr.Dropdown([(v, k) for k, v in LABELS.items()], value="synthfaces", label="latent space")
            preset = gr.Radio(list(PRESETS), value="interactive", label="preset")
            seed = Number(value=0, precision=0, minimum=0, maximum=2 ** 31 - 1, label="seed")
            go_button = gr.Button("Score", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        summary_md = gr.Markdown(elem_id="vp-summary")
        with gr.Row():
            bars = gr.Plot()
            confusion = gr.Plot()
        with gr.Accordion("The disentanglement report card for this space", open=False):
            card = gr.Markdown(card_text("synthfaces"))
        space.change(card_text, space, card, api_visibility="private")
        with gr.Accordion("Does VP agree with ground truth? A family of known disentanglement", open=False):
            family_md, family_plot = family_view()
            gr.Markdown(family_md)
            if family_plot is not None:
                gr.Plot(family_plot)


        @gpu
        def score(space, preset, seed, request: gr.Request):
            yield from run_vp(space, preset, seed, models, device, request.session_hash)

        job = go_button.click(score, [space, preset, seed], [summary_md, bars, confusion], api_name="score",
                              show_progress="minimal", concurrency_limit=None)
        stop.click(None, cancels=[job])
    return demo


def page(models: str = "embedded", device: str = "cpu") -> gr.Blocks:
    """The VP page (its models load when a space is scored, so the page itself always builds)."""
    return build(models, device)


if __name__ == "__main__":
    serve(page, TITLE, port=7862)
