"""Latent sliders (Gradio): pick a face by seed, then move one attribute direction at a time and watch it change.

    python -m apps.latent_sliders [--models embedded] [--host 127.0.0.1] [--port 7861]

The before/after faces travel inside the event's reply as data-URL images (PNG at the generator's own size, shown
enlarged with square pixels), so a slider update is one round trip with no second request for an image file.
"""
from __future__ import annotations

import random
from typing import Optional

import gradio as gr
import numpy as np

from apps.common import (MAX_SEED, Number, Slider, as_number, check_seed_psi, face_html, forget_session, gpu,
                         group, native_array, serve, session_file)
from core.directions import Editor, editor_from
from core.models import load_models
from core.exports import save_video, sweep

TITLE = "Latent sliders"
ROLES, OPTIONAL = Editor.ROLES, Editor.OPTIONAL
ALPHA = 3.0  # slider range, in standard deviations of W along each direction


def png_file(array: Optional[np.ndarray], seed, session: str = "local") -> Optional[str]:
    """The face shown as "after", written to the session's one edited-face PNG for the download button (None
    before the first face); the previous one is removed, so slider moves leave no files behind."""
    if array is None:
        return None
    from PIL import Image
    with session_file(session, f"seed{int(seed)}_edited.png") as path:
        for old in path.parent.glob("*_edited.png"):
            old.unlink()
        Image.fromarray(array).save(path)
    return str(path)


def sweep_videos(editor: Editor, name, seed, psi, frames, session: str = "local") -> tuple[str, str]:
    """(MP4, GIF) of the face moving along one direction from -ALPHA to +ALPHA and back."""
    if name not in editor.dirs:
        raise gr.Error(f"direction must be one of {', '.join(editor.dirs)}")
    seed, psi = check_seed_psi(seed, psi)
    images = sweep(editor, name, seed, psi, int(as_number(frames, "frames", 4, 60, whole=True)), ALPHA)
    stem = f"seed{seed}_{name}"
    files = []
    for suffix in (".mp4", ".gif"):
        with session_file(session, stem + suffix) as path:
            files.append(str(save_video(images, path, bounce=True)))
    return files[0], files[1]


def edit_image(editor: Editor, names: list[str], seed, psi, *alphas) -> np.ndarray:
    """The edited face (uint8, the generator's size) for a seed, truncation and one slider value per direction."""
    seed, psi = check_seed_psi(seed, psi)
    edits = {name: as_number(a, name, -ALPHA, ALPHA) for name, a in zip(names, alphas)}
    return native_array(editor.image(seed, psi, edits))


def build(editor: Editor, note: str = "") -> gr.Blocks:
    """The sliders page for one editor (generator + directions)."""
    names = list(editor.dirs)
    supervised = [n for n in names if editor.dirs[n].kind == "supervised"]
    other = [n for n in names if n not in supervised]

    # The "after" face also goes to a per-session State; a follow-up event writes it to the download button, so
    # the image itself arrives in the first reply and no file is written while dragging waits on it.
    @gpu
    def render(seed, psi, *alphas):
        array = edit_image(editor, names, seed, psi, *alphas)
        return face_html(array, "after"), array


    @gpu
    def both(seed, psi, *alphas):
        return face_html(edit_image(editor, [], seed, psi), "before"), *render(seed, psi, *alphas)

    def download(array, seed, request: gr.Request):
        return png_file(array, seed, request.session_hash)

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown("## Latent sliders\nMove one direction in W at a time; the left image is the unedited face.")
        if note:
            gr.Markdown(f"*{note}*")
        with gr.Row():
            seed = Number(value=0, label="seed", precision=0, minimum=0, maximum=MAX_SEED)
            shuffle = gr.Button("random seed")
            psi = Slider(0.0, 1.5, value=0.7, step=0.05, label="truncation ψ")
            reset = gr.Button("reset sliders")
        with gr.Row():
            before = gr.HTML(label="before", padding=False)
            after = gr.HTML(label="after", padding=False)
        shown = gr.State()
        download_button = gr.DownloadButton("download the edited face (PNG)", size="sm")
        sliders = {}
        with gr.Row():
            with gr.Column():
                for n in supervised:
                    sliders[n] = Slider(-ALPHA, ALPHA, value=0.0, step=0.05,
                                        label=f"{n}  (fit R² {editor.dirs[n].quality:.2f})")
            with gr.Column():
                for n in other:
                    space = {"nice_identity": "identity-code", "nice_attribute": "attribute-code"}.get(
                        editor.dirs[n].kind, "W")
                    sliders[n] = Slider(-ALPHA, ALPHA, value=0.0, step=0.05,
                                        label=f"{n}  ({editor.dirs[n].quality:.1%} of {space} variance)")
        ordered = [sliders[n] for n in names]
        for i, s in enumerate(ordered):  # one public endpoint ("edit"); the other sliders share its function
            s.change(render, [seed, psi, *ordered], [after, shown], trigger_mode="always_last", show_progress="hidden",
                     api_name="edit" if i == 0 else None, api_visibility="public" if i == 0 else "private",
                     **group("edit"))
        for trigger in (seed.change, psi.release, demo.load):
            trigger(both, [seed, psi, *ordered], [before, after, shown], show_progress="hidden",
                    api_visibility="private", **group("edit"))
        after.change(download, [shown, seed], download_button, trigger_mode="always_last", show_progress="hidden",
                     api_visibility="private", **group("edit"))
        with gr.Accordion("Export a sweep (MP4 and GIF)", open=False):
            with gr.Row():
                which = gr.Dropdown(names, value=names[0] if names else None, label="direction")
                frames = Slider(4, 60, value=24, step=1, label="frames")
                make = gr.Button("make the videos")
            with gr.Row():
                mp4, gif = gr.File(label="MP4"), gr.File(label="GIF")


        @gpu
        def videos(name, seed, psi, frames, request: gr.Request):
            return sweep_videos(editor, name, seed, psi, frames, request.session_hash)

        make.click(videos, [which, seed, psi, frames], [mp4, gif], api_name="sweep", **group("heavy"))
        demo.unload(forget_session)
        shuffle.click(lambda: random.randint(0, 99_999), None, seed)
        reset.click(lambda: [0.0] * len(ordered), None, ordered)
    return demo


def page(models: str = "embedded", device: str = "cpu") -> gr.Blocks:
    """The sliders page for a model set's generator (with its directions and NICE axes)."""
    return build(*editor_from(load_models(models, ROLES, OPTIONAL, device)))


if __name__ == "__main__":
    serve(page, TITLE, port=7861)
