"""Face mixing (Gradio): the identity of face A on the expression, pose and glasses of face B, through NICE.

    python -m apps.face_mixing [--models embedded] [--host 127.0.0.1] [--port 7863]

Faces come from seeds or uploads (projected into W with a progress bar). The page shows the mix, an identity x
attribute grid over two sets of seeds, and identity-only / attribute-only interpolation strips, each image with the
analyzer's similarity to the identity donor (A) and to the attribute donor (B).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import gradio as gr
import numpy as np
import torch

from apps.common import (Number, Slider, as_number, check_seed_psi, forget_session, gpu, group,
                         parse_seeds, public_message, serve, session_file, to_array)
from core.exports import save_video, zip_images
from core.imaging import save_grid
from core.mixing import FaceMixer
from core.projection import FaceInputError, RealPhotoError
from core.models import load_models

TITLE = "Face mixing"
ROLES, OPTIONAL = FaceMixer.ROLES, FaceMixer.OPTIONAL
MAX_SET = 8  # faces per side of the grid
PROJECTION_STEPS = 60  # without an encoder: the analyzer similarity to the upload is about 0.95 to 0.99 by then


class MixingPage:
    """The mixer and its projections of uploads (cached by file content, so a picture is projected once)."""

    def __init__(self, mixer: FaceMixer) -> None:
        self.mixer = mixer
        self.encoded = mixer.uploads.encoder is not None
        self.default_refine = 0 if self.encoded else PROJECTION_STEPS
        self._projected: dict[tuple[str, int], tuple[torch.Tensor, float]] = {}

    def face(self, seed, upload: Optional[str], psi, progress: Optional[gr.Progress] = None,
             label: str = "face", refine: Any = None) -> tuple[torch.Tensor, str]:
        """(w [1, w_dim], a note) of a face given by an upload when there is one (encoded, then refined by `refine`
        optimisation steps), else by its seed."""
        seed, psi = check_seed_psi(seed, psi)
        if not upload:
            return self.mixer.w_from_seed(seed, psi), f"{label}: seed {seed}"
        refine = self.default_refine if refine is None else int(as_number(refine, "refine steps", 0, 200,
                                                                          whole=True))
        if not self.encoded and refine == 0:
            refine = PROJECTION_STEPS  # without an encoder, the optimisation is the projection
        try:
            digest = hashlib.sha1(Path(upload).read_bytes()).hexdigest()
        except OSError as e:
            raise gr.Error(f"{label}: the upload could not be read ({public_message(e)})") from None
        if (digest, refine) not in self._projected:
            try:
                image = self.mixer.photo(upload)
                callback = None
                if progress is not None:
                    def callback(step: int, total: int) -> None:
                        progress(step / total, desc=f"refining {label} in W")
                result = self.mixer.project(image, steps=refine, callback=callback)
            except RealPhotoError:
                raise
            except FaceInputError as e:
                raise gr.Error(f"{label}: {public_message(e)}") from None
            self._projected[(digest, refine)] = (result.w, result.identity_similarity)
        w, sim = self._projected[(digest, refine)]
        how = ("encoded" if self.encoded else "projected") + (f", {refine} refine steps" if self.encoded and refine
                                                              else "")
        return w, f"{label}: upload, {how} (similarity to the picture {sim:.2f})"


    def mix(self, seed_a, upload_a, seed_b, upload_b, psi, refine=None, progress: Optional[gr.Progress] = None):
        """Images of A, B and the mix, and the scores as Markdown (a real photo in the embedded world: its aligned
        crop in its place, and why it cannot be mixed)."""
        found = []
        for slot, (seed, upload, label) in enumerate(((seed_a, upload_a, "face A"), (seed_b, upload_b, "face B"))):
            try:
                found.append(self.face(seed, upload, psi, progress, label, refine))
            except RealPhotoError as e:
                shown = [None, None, None]
                shown[slot] = e.aligned
                return *shown, f"**{label} is a real photo.** {e}"
        (w_a, note_a), (w_b, note_b) = found
        images = self.mixer.render(torch.cat([w_a, w_b, self.mixer.mix(w_a, w_b)]))
        to_a, to_b = self.mixer.scores(images[2:], images[:1], images[1:2])[0].tolist()
        text = (f"**Mix**: similarity to A (identity donor) **{to_a:.2f}**, to B (attribute donor) **{to_b:.2f}**  \n"
                f"{note_a} · {note_b}")
        return to_array(images[0]), to_array(images[1]), to_array(images[2]), text


    def grid(self, identity_seeds, attribute_seeds, psi, session: str = "local"):
        """Gallery items (image, caption) of every identity seed (rows) on every attribute seed (columns), the number
        of columns, and the grid as one PNG and as a zip of PNGs (files of the session, replaced each time)."""
        ids = parse_seeds(identity_seeds, "identity seeds", MAX_SET)
        attrs = parse_seeds(attribute_seeds, "attribute seeds", MAX_SET)
        _, psi = check_seed_psi(0, psi)
        w_ids = torch.cat([self.mixer.w_from_seed(s, psi) for s in ids])
        w_attrs = torch.cat([self.mixer.w_from_seed(s, psi) for s in attrs])
        images, scores = self.mixer.grid(w_ids, w_attrs)
        pairs = [(i, a) for i in ids for a in attrs]
        with session_file(session, "grid.png") as path:
            png = save_grid(images, path, len(attrs))
        with session_file(session, "grid.zip") as path:
            archive = zip_images({f"id{i}_on{a}": img for img, (i, a) in zip(images, pairs)}, path)
        return [(to_array(img), f"id {i} on {a}: A {sa:.2f} · B {sb:.2f}")
                for img, (i, a), (sa, sb) in zip(images, pairs, scores.tolist())], len(attrs), str(png), str(archive)


    def strips(self, seed_a, upload_a, seed_b, upload_b, psi, refine, steps,
               progress: Optional[gr.Progress] = None, session: str = "local"):
        """Three galleries: A's identity moving to B's (attributes kept), A's attributes moving to B's, and all of
        A moving to B in a straight line in W; each strip as a GIF (there and back), the W one also as MP4."""
        steps = int(as_number(steps, "steps", 3, 12, whole=True))
        try:
            w_a, _ = self.face(seed_a, upload_a, psi, progress, "face A", refine)
            w_b, _ = self.face(seed_b, upload_b, psi, progress, "face B", refine)
        except RealPhotoError as e:
            raise gr.Error(str(e)) from None
        out, files = [], []
        for part in ("identity", "attributes", "w"):
            images, scores = self.mixer.strip(w_a, w_b, part, steps)
            with session_file(session, f"{part}.gif") as path:
                files.append(str(save_video(images, path, fps=6, bounce=True)))
            if part == "w":
                with session_file(session, "w.mp4") as path:
                    files.append(str(save_video(images, path, fps=6, bounce=True)))
            ts = np.linspace(0, 1, steps)
            out.append([(to_array(img), f"t={t:.2f}: A {sa:.2f} · B {sb:.2f}")
                        for img, t, (sa, sb) in zip(images, ts, scores.tolist())])
        return (*out, *files)


def build(mixer: FaceMixer) -> gr.Blocks:
    """The face mixing page for one mixer."""
    page = MixingPage(mixer)

    @gpu
    def mix(seed_a, upload_a, seed_b, upload_b, psi, refine, progress=gr.Progress()):
        return page.mix(seed_a, upload_a, seed_b, upload_b, psi, refine, progress)

    @gpu
    def strips(seed_a, upload_a, seed_b, upload_b, psi, refine, steps, request: gr.Request, progress=gr.Progress()):
        return page.strips(seed_a, upload_a, seed_b, upload_b, psi, refine, steps, progress, request.session_hash)

    @gpu
    def grid(identity_seeds, attribute_seeds, psi, request: gr.Request):
        items, columns, png, archive = page.grid(identity_seeds, attribute_seeds, psi, request.session_hash)
        return gr.update(value=items, columns=columns), png, archive

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown("## Face mixing\nThe identity of face **A** on the expression, pose and glasses of face **B** "
                    "(NICE codes: A's identity code, B's attribute code). Give each face by seed, or upload a "
                    "picture: " + ("the encoder puts it in W at once; refine steps optimise it further. "
                                   if page.encoded else "it is projected into W by optimisation first. ")
                    + "Numbers are the analyzer's cosine similarity.")
        with gr.Row():
            with gr.Column():
                seed_a = Number(value=1, label="face A (identity donor): seed", precision=0, minimum=0)
                upload_a = gr.File(label="or upload face A", file_types=["image"], type="filepath")
            with gr.Column():
                seed_b = Number(value=6, label="face B (attribute donor): seed", precision=0, minimum=0)
                upload_b = gr.File(label="or upload face B", file_types=["image"], type="filepath")
            with gr.Column():
                psi = Slider(0.0, 1.5, value=0.7, step=0.05, label="truncation ψ")
                refine = Slider(0, 200, value=page.default_refine, step=1,
                                label="uploads: refine steps after the encoder" if page.encoded
                                else "uploads: projection steps")
                go = gr.Button("Mix", variant="primary")
        with gr.Row():
            img_a = gr.Image(label="A (identity)", type="numpy", interactive=False, height=256)
            img_b = gr.Image(label="B (attributes)", type="numpy", interactive=False, height=256)
            img_mix = gr.Image(label="mix: A's identity, B's attributes", type="numpy", interactive=False,
                               height=256)
        scores = gr.Markdown(elem_id="mix-scores")
        faces = [seed_a, upload_a, seed_b, upload_b, psi, refine]
        go.click(mix, faces, [img_a, img_b, img_mix, scores], api_name="mix", **group("heavy"))
        with gr.Accordion("Grid: identities (rows) x attribute donors (columns)", open=False):
            with gr.Row():
                id_seeds = gr.Textbox(value="1, 3, 5", label=f"identity seeds (up to {MAX_SET})")
                attr_seeds = gr.Textbox(value="2, 4, 6, 8", label=f"attribute seeds (up to {MAX_SET})")
                grid_go = gr.Button("Make grid")
            gallery = gr.Gallery(label="grid", columns=4, height=720, object_fit="contain")
            with gr.Row():
                grid_png, grid_zip = gr.File(label="the grid as one PNG"), gr.File(label="every image (zip)")
            grid_go.click(grid, [id_seeds, attr_seeds, psi], [gallery, grid_png, grid_zip], api_name="grid",
                          **group("heavy"))
        with gr.Accordion("Interpolation strips: A to B, one part at a time, and in W", open=False):
            with gr.Row():
                steps = Slider(3, 12, value=7, step=1, label="steps")
                strip_go = gr.Button("Make strips")
            strip_id = gr.Gallery(label="identity moves A -> B (A's attributes kept)", columns=7, height=230)
            strip_attr = gr.Gallery(label="attributes move A -> B (A's identity kept)", columns=7, height=230)
            strip_w = gr.Gallery(label="all of A moves to B, a straight line in W", columns=7, height=230)
            with gr.Row():
                gif_id, gif_attr = gr.File(label="identity strip (GIF)"), gr.File(label="attribute strip (GIF)")
                gif_w, mp4_w = gr.File(label="W strip (GIF)"), gr.File(label="W strip (MP4)")
            strip_go.click(strips, [*faces, steps], [strip_id, strip_attr, strip_w, gif_id, gif_attr, gif_w, mp4_w],
                           api_name="strips", **group("heavy"))
        demo.load(mix, faces, [img_a, img_b, img_mix, scores], **group("heavy"))
        demo.unload(forget_session)
    return demo


def page(models: str = "embedded", device: str = "cpu") -> gr.Blocks:
    """The face mixing page for a model set (raises when its models cannot be loaded; see apps.common)."""
    return build(FaceMixer.from_models(load_models(models, ROLES, OPTIONAL, device)))


if __name__ == "__main__":
    serve(page, TITLE, port=7863)
