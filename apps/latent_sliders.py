"""Latent sliders (Gradio): pick a face by seed, then move one attribute direction at a time and watch it change.

    python -m apps.latent_sliders [--models embedded] [--host 127.0.0.1] [--port 7861]

The before/after faces travel inside the event's reply as data-URL images (PNG at the generator's own size, shown
enlarged with square pixels), so a slider update is one round trip with no second request for an image file.
"""
from __future__ import annotations

import argparse
import base64
import io
import random
import tempfile
from pathlib import Path
from typing import Optional

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
        G, name = hub.load_frozen(models, "generator", device=device), roles["generator"].name
    dirs, note = for_generator(G, name)
    nice = None
    if "nice" in roles:
        try:
            nice = hub.load_frozen(models, "nice", device=device)
        except (hub.HubError, CheckpointError, OSError) as e:
            note = f"{note} NICE axes unavailable: {e}".strip()
        else:
            if nice.dim == G.w_dim:
                dirs = {**dirs, **nice_directions(nice, sample_w(G, 5000).to(device))}
            else:
                note, nice = f"{note} The model set's NICE does not fit this generator's W.".strip(), None
    return Editor(G, dirs, nice), note


DISPLAY = 256  # small faces are shown enlarged (nearest neighbour) so their pixels stay honest


def native_array(image) -> np.ndarray:
    """[3, H, W] in [0, 1] -> uint8 HxWx3 at the image's own size."""
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def to_array(image) -> np.ndarray:
    """[3, H, W] in [0, 1] -> uint8 HxWx3, enlarged by a whole factor up to DISPLAY pixels."""
    array = native_array(image)
    k = max(1, DISPLAY // array.shape[0])
    return array.repeat(k, axis=0).repeat(k, axis=1)


def face_html(array: np.ndarray, label: str) -> str:
    """A face as self-contained HTML: the image as a data URL (PNG up to 256 px, JPEG above, where PNG would be
    megabytes per update), shown at least DISPLAY px wide with square pixels."""
    from PIL import Image
    h, w = array.shape[:2]
    buf = io.BytesIO()
    kind = "png" if max(h, w) <= 256 else "jpeg"
    Image.fromarray(array).save(buf, format=kind, **({"compress_level": 1} if kind == "png" else {"quality": 95}))
    url = f"data:image/{kind};base64,{base64.b64encode(buf.getvalue()).decode()}"
    shown = max(DISPLAY, min(w, 512))
    style = "image-rendering:pixelated;max-width:100%;height:auto;display:block;margin:0 auto"
    return (f'<figure style="margin:0;text-align:center"><img alt="{label}" src="{url}" width="{shown}" '
            f'height="{shown * h // w}" style="{style}"><figcaption>{label} ({w} x {h})</figcaption></figure>')


def png_file(array: Optional[np.ndarray], seed) -> Optional[str]:
    """The face shown as "after", written to a PNG file for the download button (None before the first face)."""
    if array is None:
        return None
    from PIL import Image
    path = Path(tempfile.mkdtemp(prefix="latent_lab_")) / f"seed{int(seed)}_edited.png"
    Image.fromarray(array).save(path)
    return str(path)


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
    """The edited face (uint8, the generator's size) for a seed, truncation and one slider value per direction."""
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
    return native_array(editor.image(seed, psi, edits))


def build(editor: Editor, note: str = "") -> gr.Blocks:
    """The sliders page for one editor (generator + directions)."""
    names = list(editor.dirs)
    supervised = [n for n in names if editor.dirs[n].kind == "supervised"]
    other = [n for n in names if n not in supervised]

    # The "after" face also goes to a per-session State; a follow-up event writes it to the download button, so
    # the image itself arrives in the first reply and no file is written while dragging waits on it.
    def render(seed, psi, *alphas):
        array = edit_image(editor, names, seed, psi, *alphas)
        return face_html(array, "after"), array

    def both(seed, psi, *alphas):
        return face_html(edit_image(editor, [], seed, psi), "before"), *render(seed, psi, *alphas)

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
            before = gr.HTML(label="before", padding=False)
            after = gr.HTML(label="after", padding=False)
        shown = gr.State()
        download = gr.DownloadButton("download the edited face (PNG)", size="sm")
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
            s.change(render, [seed, psi, *ordered], [after, shown], trigger_mode="always_last", show_progress="hidden",
                     api_name="edit" if i == 0 else None, api_visibility="public" if i == 0 else "private")
        for trigger in (seed.change, psi.release, demo.load):
            trigger(both, [seed, psi, *ordered], [before, after, shown], show_progress="hidden",
                    api_visibility="private")
        after.change(png_file, [shown, seed], download, trigger_mode="always_last", show_progress="hidden",
                     api_visibility="private")
        shuffle.click(lambda: random.randint(0, 99_999), None, seed)
        reset.click(lambda: [0.0] * len(ordered), None, ordered)
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
