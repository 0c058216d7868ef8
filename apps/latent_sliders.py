"""Latent sliders (Gradio): pick a face by seed, then move one attribute direction at a time and watch it change.

    python -m apps.latent_sliders [--models embedded] [--host 127.0.0.1] [--port 7861]

The before/after faces travel inside the event's reply as data-URL images (PNG at the generator's own size, shown
enlarged with square pixels), so a slider update is one round trip with no second request for an image file.
"""
from __future__ import annotations

import random
import threading
from typing import Any, Optional

import gradio as gr
import numpy as np
import torch

from apps import live as live_view
from apps.common import (MAX_SEED, Number, Slider, as_number, check_seed_psi, face_html, forget_session, gpu,
                         group, native_array, public_message, serve, session_file)
from core.directions import Editor, editor_from
from core.analysis import FaceModelUnavailable
from core.models import load_models
from core.projection import FaceInputError, Uploads
from core.exports import save_video, sweep

TITLE = "Latent sliders"
ROLES, OPTIONAL = Editor.ROLES, Editor.OPTIONAL + ("encoder", "analyzer")
PROJECTION_STEPS = 60  # uploads without an encoder are projected by optimisation alone
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


MOVE, TURN = 0.5, 180.0  # the StyleGAN3 input transform's ranges: translation (of the canvas), rotation (degrees)


def transform_of(tx, ty, degrees) -> Optional[torch.Tensor]:
    """The StyleGAN3 input transform for the move and turn sliders (None when they are at zero)."""
    from core.stylegan3.networks import user_transform
    tx, ty = as_number(tx, "move x", -MOVE, MOVE), as_number(ty, "move y", -MOVE, MOVE)
    degrees = as_number(degrees, "rotate", -TURN, TURN)
    return None if tx == ty == degrees == 0 else user_transform(tx, ty, degrees).to(torch.float32)


def edit_image(editor: Editor, names: list[str], seed, psi, *alphas, transform=None, w=None) -> np.ndarray:
    """The edited face (uint8, the generator's size) for a seed (or an encoded upload's w), truncation, one slider
    value per direction and the input transform."""
    seed, psi = check_seed_psi(seed, psi)
    edits = {name: as_number(a, name, -ALPHA, ALPHA) for name, a in zip(names, alphas)}
    return native_array(editor.image(seed, psi, edits, transform, w))


class UploadedFaces:
    """Uploads for the sliders: encoded (then refined by optional optimisation steps) once per picture and step
    count. The projector calibrates its face check on reference faces (about 2 s on a CPU): made on first use, or,
    with `warm`, in the background from the start, so that the first visitor's upload is as quick as the next."""

    def __init__(self, models: Any, warm: bool = False) -> None:
        self.models, self._uploads, self._done = models, None, {}
        self._lock = threading.Lock()
        self.warming = threading.Thread(target=self._warm, name="uploads-warm-up", daemon=True) if warm else None
        if self.warming is not None:
            self.warming.start()

    def _warm(self) -> None:
        try:
            self.uploads
        except gr.Error:
            pass  # the first upload says why

    @property
    def uploads(self) -> Uploads:
        with self._lock:
            if self._uploads is None:
                try:
                    self._uploads = Uploads.from_models(self.models)
                except (FaceModelUnavailable, ValueError, OSError) as e:
                    raise gr.Error(f"uploads need a face analyzer: {public_message(e)}") from None
            return self._uploads

    def face(self, key: str) -> torch.Tensor:
        """The w of an upload already encoded, by the key that `w` gave it (for the live view)."""
        if key not in self._done:
            raise gr.Error("the uploaded face is no longer held here: upload it again")
        return self._done[key][0]

    def w(self, upload: str, refine) -> tuple[torch.Tensor, str, str]:
        """(w [1, w_dim], a note, its key) of an uploaded picture."""
        import hashlib
        from pathlib import Path
        refine = int(as_number(refine, "refine steps", 0, 200, whole=True))
        try:
            key = f"{hashlib.sha1(Path(upload).read_bytes()).hexdigest()}:{refine}"
        except OSError as e:
            raise gr.Error(f"upload: the file could not be read ({public_message(e)})") from None
        if key not in self._done:
            uploads = self.uploads
            steps = refine if uploads.encoder is not None else max(refine, PROJECTION_STEPS)
            try:
                result = uploads.project(uploads.photo(upload), steps=steps)
            except FaceInputError as e:
                raise gr.Error(f"upload: {public_message(e)}") from None
            how = "encoded" if result.encoded else "projected"
            self._done[key] = (result.w.cpu(), f"the upload, {how}" + (f" and refined {steps} steps" if
                               result.encoded and steps else "") + f" (similarity {result.identity_similarity:.2f})")
        return (*self._done[key], key)


VIEW = ("seed", "psi", "tx", "ty", "degrees")  # the live view's fields before the directions' ones


def build(editor: Editor, note: str = "", faces: Optional[UploadedFaces] = None,
          live: Optional[bool] = None) -> gr.Blocks:
    """The sliders page for one editor (generator + directions), with uploads where the model set allows them.

    With a live view (`live`, by default where `apps.live.enabled()`), a drag redraws the "after" face over the
    page's websocket as the slider moves, and the Gradio event runs on release (the exact face, the download,
    the API's /edit); without one, the Gradio event runs on every change."""
    names = list(editor.dirs)
    supervised = [n for n in names if editor.dirs[n].kind == "supervised"]
    other = [n for n in names if n not in supervised]
    live = live_view.enabled() if live is None else live

    def live_frame(values: dict[str, Any], key: str) -> np.ndarray:
        if key and faces is None:
            raise gr.Error("this page takes no uploads")
        w = faces.face(key) if key else None
        return edit_image(editor, names, values["seed"], values["psi"], *(values[f"direction {n}"] for n in names),
                          transform=transform_of(values["tx"], values["ty"], values["degrees"]), w=w)

    view_live = live_view.LiveView(live_frame, [*VIEW, *(f"direction {n}" for n in names)]) if live else None

    def elem(field: str) -> Optional[str]:
        return view_live.fields[field] if view_live else None

    # The "after" face also goes to a per-session State; a follow-up event writes it to the download button, so
    # the image itself arrives in the first reply and no file is written while dragging waits on it.
    @gpu
    def render(seed, psi, tx, ty, degrees, *alphas_and_face):
        *alphas, face = alphas_and_face
        array = edit_image(editor, names, seed, psi, *alphas, transform=transform_of(tx, ty, degrees), w=face)
        return face_html(array, "after"), array

    @gpu
    def both(seed, psi, tx, ty, degrees, *alphas_and_face):
        face = alphas_and_face[-1]
        before = edit_image(editor, [], seed, psi, transform=transform_of(tx, ty, degrees), w=face)
        return face_html(before, "before" if face is None else "before: the upload's face"), *render(
            seed, psi, tx, ty, degrees, *alphas_and_face)

    @gpu
    def encode(upload, refine, seed, psi, tx, ty, degrees, *alphas):
        """A new upload (or none): its w for the session, the faces redrawn from it, and what was done."""
        if not upload:
            return None, *both(seed, psi, tx, ty, degrees, *alphas, None), "", ""
        w, how, key = faces.w(upload, refine)
        return w, *both(seed, psi, tx, ty, degrees, *alphas, w), how, key

    @gpu
    def edit_upload(upload, refine, tx, ty, degrees, *alphas):
        """API: an uploaded picture, encoded, then edited: (before, after) as HTML."""
        if not upload:
            raise gr.Error("upload: give a picture")
        w = faces.w(upload, refine)[0]
        return both(0, 1.0, tx, ty, degrees, *alphas, w)[:2]

    def download(array, seed, request: gr.Request):
        return png_file(array, seed, request.session_hash)

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown("## Latent sliders\nMove one direction in W at a time; the left image is the unedited face. "
                    + ("Upload a face to edit it instead of a seed's." if faces else ""))
        if note:
            gr.Markdown(f"*{note}*")
        with gr.Row():
            seed = Number(value=0, label="seed", precision=0, minimum=0, maximum=MAX_SEED, elem_id=elem("seed"))
            shuffle = gr.Button("random seed")
            psi = Slider(0.0, 1.5, value=0.7, step=0.05, label="truncation ψ", elem_id=elem("psi"))
            reset = gr.Button("reset sliders")
        with gr.Row():
            upload = gr.File(label="or upload a face to edit", file_types=["image"], type="filepath",
                             visible=faces is not None)
            refine = Slider(0, 200, value=0, step=1, label="refine steps after the encoder", visible=faces is not None)
            how = gr.Markdown(elem_id="upload-note")
        with gr.Row():
            tx = Slider(-MOVE, MOVE, value=0.0, step=0.01, label="move x (StyleGAN3 input)", elem_id=elem("tx"))
            ty = Slider(-MOVE, MOVE, value=0.0, step=0.01, label="move y", elem_id=elem("ty"))
            degrees = Slider(-TURN, TURN, value=0.0, step=1, label="rotate (degrees)", elem_id=elem("degrees"))
        with gr.Row():
            before = gr.HTML(label="before", padding=False)
            after = gr.HTML(label="after", padding=False)
        shown, face = gr.State(), gr.State()
        face_key = view_live.component() if view_live else gr.State("")
        download_button = gr.DownloadButton("download the edited face (PNG)", size="sm")
        sliders = {}
        with gr.Row():
            with gr.Column():
                for n in supervised:
                    sliders[n] = Slider(-ALPHA, ALPHA, value=0.0, step=0.05, elem_id=elem(f"direction {n}"),
                                        label=f"{n}  (fit R² {editor.dirs[n].quality:.2f})")
            with gr.Column():
                for n in other:
                    space = {"nice_identity": "identity-code", "nice_attribute": "attribute-code"}.get(
                        editor.dirs[n].kind, "W")
                    sliders[n] = Slider(-ALPHA, ALPHA, value=0.0, step=0.05, elem_id=elem(f"direction {n}"),
                                        label=f"{n}  ({editor.dirs[n].quality:.1%} of {space} variance)")
        ordered = [sliders[n] for n in names]
        view = [seed, psi, tx, ty, degrees, *ordered]
        for i, s in enumerate(ordered):  # one public endpoint ("edit"); the other sliders share its function
            moved = s.release if view_live else s.change
            moved(render, [*view, face], [after, shown], trigger_mode="always_last", show_progress="hidden",
                  api_name="edit" if i == 0 else None, api_visibility="public" if i == 0 else "private",
                  **group("edit"))
        for trigger in (seed.change, psi.release, tx.release, ty.release, degrees.release, demo.load):
            trigger(both, [*view, face], [before, after, shown], show_progress="hidden",
                    api_visibility="private", **group("edit"))
        if faces is not None:
            for trigger in (upload.change, refine.release):
                trigger(encode, [upload, refine, *view], [face, before, after, shown, how, face_key],
                        api_visibility="private", **group("heavy"))
            api_only = gr.Button(visible=False)
            api_only.click(edit_upload, [upload, refine, tx, ty, degrees, *ordered], [before, after],
                           api_name="edit_upload", **group("edit"))
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
        demo.live_view = view_live  # the page holds its live view (the websocket's registry holds it weakly)
        shuffle.click(lambda: random.randint(0, 99_999), None, seed)
        reset.click(lambda: [0.0] * len(ordered), None, ordered)
    return demo


def page(models: str = "embedded", device: str = "cpu") -> gr.Blocks:
    """The sliders page for a model set's generator (with its directions and NICE axes, and uploads through its
    encoder and analyzer)."""
    loaded = load_models(models, ROLES, OPTIONAL, device)
    return build(*editor_from(loaded), UploadedFaces(loaded, warm=True))


if __name__ == "__main__":
    serve(page, TITLE, port=7861)
