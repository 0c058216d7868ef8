"""Latent sliders (Gradio): pick a face by seed, then move one attribute direction at a time and watch it change.

    python -m apps.latent_sliders [--models embedded] [--host 127.0.0.1] [--port 7861]
"""
from __future__ import annotations

import argparse
import random

import gradio as gr
import numpy as np

from core.directions import Editor, for_generator

MAX_SEED = 2 ** 32 - 1
ALPHA = 3.0  # slider range, in standard deviations of W along each direction


def load_editor(models: str = "embedded", device: str = "cpu", generator: str | None = None) -> tuple[Editor, str]:
    """The generator of a model set (or a checkpoint path) with its directions, plus the NICE identity and attribute
    axes when the model set has a NICE for that generator, and a note for the page."""
    from core import hub
    from core.checkpoints import CheckpointError
    from core.directions import nice_directions, sample_w
    from core.stylegan3 import Generator
    roles = {} if generator else hub.model_set(models).models
    if generator:
        G, name = Generator.from_pretrained(generator, device=device), str(generator)
    else:
        G, name = hub.load(models, "generator", device=device), roles["generator"].name
    dirs, note = for_generator(G, name)
    nice = None
    if "nice" in roles:
        try:
            nice = hub.load(models, "nice", device=device)
        except (hub.HubError, CheckpointError, OSError) as e:
            note = f"{note} NICE axes unavailable: {e}".strip()
        else:
            if nice.dim == G.w_dim:
                dirs = {**dirs, **nice_directions(nice, sample_w(G, 5000).to(device))}
            else:
                note, nice = f"{note} The model set's NICE does not fit this generator's W.".strip(), None
    return Editor(G, dirs, nice), note


DISPLAY = 256  # small faces are shown enlarged (nearest neighbour) so their pixels stay honest


def to_array(image) -> np.ndarray:
    """[3, H, W] in [0, 1] -> uint8 HxWx3, enlarged by a whole factor up to DISPLAY pixels."""
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    k = max(1, DISPLAY // array.shape[0])
    return array.repeat(k, axis=0).repeat(k, axis=1)


def check_inputs(seed, psi) -> tuple[int, float]:
    """Seed and truncation as numbers in range, or a message in the UI."""
    try:
        seed_f, psi_f = float(seed), float(psi)
    except (TypeError, ValueError):
        raise gr.Error("seed and truncation must be numbers") from None
    if not np.isfinite(seed_f) or seed_f != int(seed_f) or not 0 <= seed_f <= MAX_SEED:
        raise gr.Error(f"seed must be a whole number from 0 to {MAX_SEED}")
    if not np.isfinite(psi_f) or not 0 <= psi_f <= 1.5:
        raise gr.Error("truncation must be between 0 and 1.5")
    return int(seed_f), psi_f


def edit_image(editor: Editor, names: list[str], seed, psi, *alphas) -> np.ndarray:
    """The edited face for a seed, truncation and one slider value per direction name."""
    seed, psi = check_inputs(seed, psi)
    edits = {}
    for name, a in zip(names, alphas):
        try:
            a = float(a)
        except (TypeError, ValueError):
            raise gr.Error(f"{name}: slider value must be a number") from None
        if not np.isfinite(a) or abs(a) > ALPHA:
            raise gr.Error(f"{name}: slider values lie between -{ALPHA:g} and {ALPHA:g}")
        edits[name] = a
    return to_array(editor.image(seed, psi, edits))


def build(editor: Editor, note: str = "") -> gr.Blocks:
    """The sliders page for one editor (generator + directions)."""
    names = list(editor.dirs)
    supervised = [n for n in names if editor.dirs[n].kind == "supervised"]
    other = [n for n in names if n not in supervised]

    def render(seed, psi, *alphas):
        return edit_image(editor, names, seed, psi, *alphas)

    def both(seed, psi, *alphas):
        return edit_image(editor, [], seed, psi), render(seed, psi, *alphas)

    with gr.Blocks(title="Latent sliders") as demo:
        gr.Markdown("## Latent sliders\nMove one direction in W at a time; the left image is the unedited face.")
        if note:
            gr.Markdown(f"*{note}*")
        with gr.Row():
            seed = gr.Number(value=0, label="seed", precision=0, minimum=0, maximum=MAX_SEED)
            shuffle = gr.Button("random seed")
            psi = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="truncation ψ")
            reset = gr.Button("reset sliders")
        with gr.Row():
            before = gr.Image(label="before", type="numpy", interactive=False, height=320)
            after = gr.Image(label="after", type="numpy", interactive=False, height=320)
        sliders = {}
        with gr.Row():
            with gr.Column():
                for n in supervised:
                    sliders[n] = gr.Slider(-ALPHA, ALPHA, value=0.0, step=0.05,
                                           label=f"{n}  (fit R² {editor.dirs[n].quality:.2f})")
            with gr.Column():
                for n in other:
                    space = {"nice_identity": "identity-code", "nice_attribute": "attribute-code"}.get(
                        editor.dirs[n].kind, "W")
                    sliders[n] = gr.Slider(-ALPHA, ALPHA, value=0.0, step=0.05,
                                           label=f"{n}  ({editor.dirs[n].quality:.1%} of {space} variance)")
        ordered = [sliders[n] for n in names]
        for i, s in enumerate(ordered):  # one public endpoint ("edit"); the other sliders share its function
            s.change(render, [seed, psi, *ordered], after, trigger_mode="always_last", show_progress="hidden",
                     api_name="edit" if i == 0 else None, api_visibility="public" if i == 0 else "private")
        for trigger in (seed.change, psi.release):
            trigger(both, [seed, psi, *ordered], [before, after], show_progress="hidden")
        shuffle.click(lambda: random.randint(0, 99_999), None, seed)
        reset.click(lambda: [0.0] * len(ordered), None, ordered)
        demo.load(both, [seed, psi, *ordered], [before, after])
    return demo


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Latent sliders (Gradio)")
    p.add_argument("--models", default="embedded")
    p.add_argument("--generator", help="a generator checkpoint path instead of a model set")
    p.add_argument("--device", default="cpu")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7861)
    args = p.parse_args(argv)
    editor, note = load_editor(args.models, args.device, args.generator)
    build(editor, note).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
