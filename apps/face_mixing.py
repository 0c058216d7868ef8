"""Face mixing (Gradio): the identity of face A on the expression, pose and glasses of face B, through NICE.

    python -m apps.face_mixing [--models embedded] [--host 127.0.0.1] [--port 7863]

Faces come from seeds or uploads (projected into W with a progress bar). The page shows the mix, an identity x
attribute grid over two sets of seeds, and identity-only / attribute-only interpolation strips, each image with the
analyzer's similarity to the identity donor (A) and to the attribute donor (B).
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Optional

import gradio as gr
import numpy as np
import torch

from apps.latent_sliders import check_inputs, to_array
from core.mixing import FaceInputError, FaceMixer, load_face_image

MAX_SET = 8  # faces per side of the grid
PROJECTION_STEPS = 60  # the analyzer similarity to the upload is about 0.95 to 0.99 by then


class MixingPage:
    """The mixer and its projections of uploads (cached by file content, so a picture is projected once)."""

    def __init__(self, mixer: FaceMixer) -> None:
        self.mixer = mixer
        self._projected: dict[str, tuple[torch.Tensor, float]] = {}

    def face(self, seed, upload: Optional[str], psi, progress: Optional[gr.Progress] = None,
             label: str = "face") -> tuple[torch.Tensor, str]:
        """(w [1, w_dim], a note) of a face given by an upload when there is one, else by its seed."""
        seed, psi = check_inputs(seed, psi)
        if not upload:
            return self.mixer.w_from_seed(seed, psi), f"{label}: seed {seed}"
        try:
            digest = hashlib.sha1(Path(upload).read_bytes()).hexdigest()
        except OSError as e:
            raise gr.Error(f"{label}: the upload could not be read ({e})") from None
        if digest not in self._projected:
            try:
                image = load_face_image(upload, self.mixer.resolution)
                callback = None
                if progress is not None:
                    def callback(step: int, total: int) -> None:
                        progress(step / total, desc=f"projecting {label} into W")
                result = self.mixer.project(image, steps=PROJECTION_STEPS, callback=callback)
            except FaceInputError as e:
                raise gr.Error(f"{label}: {e}") from None
            self._projected[digest] = (result.w, result.identity_similarity)
        w, sim = self._projected[digest]
        return w, f"{label}: upload, projected (similarity to the picture {sim:.2f})"

    def mix(self, seed_a, upload_a, seed_b, upload_b, psi, progress: Optional[gr.Progress] = None):
        """Images of A, B and the mix, and the scores as Markdown."""
        w_a, note_a = self.face(seed_a, upload_a, psi, progress, "face A")
        w_b, note_b = self.face(seed_b, upload_b, psi, progress, "face B")
        images = self.mixer.render(torch.cat([w_a, w_b, self.mixer.mix(w_a, w_b)]))
        to_a, to_b = self.mixer.scores(images[2:], images[:1], images[1:2])[0].tolist()
        text = (f"**Mix**: similarity to A (identity donor) **{to_a:.2f}**, to B (attribute donor) **{to_b:.2f}**  \n"
                f"{note_a} · {note_b}")
        return to_array(images[0]), to_array(images[1]), to_array(images[2]), text

    def grid(self, identity_seeds, attribute_seeds, psi):
        """Gallery items (image, caption) of every identity seed (rows) on every attribute seed (columns), and the
        number of columns."""
        ids, attrs = parse_seeds(identity_seeds, "identity seeds"), parse_seeds(attribute_seeds, "attribute seeds")
        _, psi = check_inputs(0, psi)
        w_ids = torch.cat([self.mixer.w_from_seed(s, psi) for s in ids])
        w_attrs = torch.cat([self.mixer.w_from_seed(s, psi) for s in attrs])
        images, scores = self.mixer.grid(w_ids, w_attrs)
        pairs = [(i, a) for i in ids for a in attrs]
        return [(to_array(img), f"id {i} on {a}: A {sa:.2f} · B {sb:.2f}")
                for img, (i, a), (sa, sb) in zip(images, pairs, scores.tolist())], len(attrs)

    def strips(self, seed_a, upload_a, seed_b, upload_b, psi, steps, progress: Optional[gr.Progress] = None):
        """Two galleries: A's identity moving to B's (attributes kept), and A's attributes moving to B's."""
        try:
            steps = int(steps)
        except (TypeError, ValueError):
            raise gr.Error("steps must be a whole number") from None
        if not 3 <= steps <= 12:
            raise gr.Error("an interpolation strip has 3 to 12 steps")
        w_a, _ = self.face(seed_a, upload_a, psi, progress, "face A")
        w_b, _ = self.face(seed_b, upload_b, psi, progress, "face B")
        out = []
        for part in ("identity", "attributes"):
            images, scores = self.mixer.strip(w_a, w_b, part, steps)
            ts = np.linspace(0, 1, steps)
            out.append([(to_array(img), f"t={t:.2f}: A {sa:.2f} · B {sb:.2f}")
                        for img, t, (sa, sb) in zip(images, ts, scores.tolist())])
        return out[0], out[1]


def parse_seeds(text, what: str) -> list[int]:
    """'1, 2, 3' -> [1, 2, 3], at most MAX_SET whole numbers, or a message in the UI."""
    parts = [p for p in str(text or "").replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts:
        raise gr.Error(f"{what}: give one to {MAX_SET} seeds, e.g. 1, 2, 3")
    if len(parts) > MAX_SET:
        raise gr.Error(f"{what}: at most {MAX_SET} seeds, got {len(parts)}")
    seeds = []
    for p in parts:
        try:
            seeds.append(check_inputs(p, 0.7)[0])
        except gr.Error:
            raise gr.Error(f"{what}: {p!r} is not a seed (a whole number from 0 to 2^32-1)") from None
    return seeds


def build(mixer: FaceMixer) -> gr.Blocks:
    """The face mixing page for one mixer."""
    page = MixingPage(mixer)

    def mix(seed_a, upload_a, seed_b, upload_b, psi, progress=gr.Progress()):
        return page.mix(seed_a, upload_a, seed_b, upload_b, psi, progress)

    def strips(seed_a, upload_a, seed_b, upload_b, psi, steps, progress=gr.Progress()):
        return page.strips(seed_a, upload_a, seed_b, upload_b, psi, steps, progress)

    def grid(identity_seeds, attribute_seeds, psi):
        items, columns = page.grid(identity_seeds, attribute_seeds, psi)
        return gr.update(value=items, columns=columns)

    with gr.Blocks(title="Face mixing") as demo:
        gr.Markdown("## Face mixing\nThe identity of face **A** on the expression, pose and glasses of face **B** "
                    "(NICE codes: A's identity code, B's attribute code). Give each face by seed, or upload a "
                    "picture (it is projected into W first). Numbers are the analyzer's cosine similarity.")
        with gr.Row():
            with gr.Column():
                seed_a = gr.Number(value=1, label="face A (identity donor): seed", precision=0, minimum=0)
                upload_a = gr.File(label="or upload face A", file_types=["image"], type="filepath")
            with gr.Column():
                seed_b = gr.Number(value=6, label="face B (attribute donor): seed", precision=0, minimum=0)
                upload_b = gr.File(label="or upload face B", file_types=["image"], type="filepath")
            with gr.Column():
                psi = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="truncation ψ")
                go = gr.Button("Mix", variant="primary")
        with gr.Row():
            img_a = gr.Image(label="A (identity)", type="numpy", interactive=False, height=256)
            img_b = gr.Image(label="B (attributes)", type="numpy", interactive=False, height=256)
            img_mix = gr.Image(label="mix: A's identity, B's attributes", type="numpy", interactive=False,
                               height=256)
        scores = gr.Markdown(elem_id="mix-scores")
        faces = [seed_a, upload_a, seed_b, upload_b, psi]
        go.click(mix, faces, [img_a, img_b, img_mix, scores], api_name="mix")
        with gr.Accordion("Grid: identities (rows) x attribute donors (columns)", open=False):
            with gr.Row():
                id_seeds = gr.Textbox(value="1, 3, 5", label=f"identity seeds (up to {MAX_SET})")
                attr_seeds = gr.Textbox(value="2, 4, 6, 8", label=f"attribute seeds (up to {MAX_SET})")
                grid_go = gr.Button("Make grid")
            gallery = gr.Gallery(label="grid", columns=4, height=720, object_fit="contain")
            grid_go.click(grid, [id_seeds, attr_seeds, psi], gallery, api_name="grid")
        with gr.Accordion("Interpolation strips: A to B, one part at a time", open=False):
            with gr.Row():
                steps = gr.Slider(3, 12, value=7, step=1, label="steps")
                strip_go = gr.Button("Make strips")
            strip_id = gr.Gallery(label="identity moves A -> B (A's attributes kept)", columns=7, height=230)
            strip_attr = gr.Gallery(label="attributes move A -> B (A's identity kept)", columns=7, height=230)
            strip_go.click(strips, [*faces, steps], [strip_id, strip_attr], api_name="strips")
        demo.load(mix, faces, [img_a, img_b, img_mix, scores])
    return demo


def unavailable(models: str, error: Exception) -> gr.Blocks:
    """What the page shows when the model set has no NICE (or another model cannot load)."""
    with gr.Blocks(title="Face mixing") as demo:
        gr.Markdown(f"## Face mixing\n**Not available for model set `{models}`:** {error}\n\nFace mixing needs a "
                    "generator, an analyzer and a trained NICE for that generator (`train-disentanglement`).")
    return demo


def page(models: str = "embedded", device: str = "cpu") -> gr.Blocks:
    """The page for a model set: the mixer when it loads, else a clear note."""
    from core.hub import HubError
    from core.checkpoints import CheckpointError
    try:
        return build(FaceMixer.load(models, device))
    except (HubError, CheckpointError, ValueError, OSError) as e:
        return unavailable(models, e)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Face mixing (Gradio)")
    p.add_argument("--models", default="embedded")
    p.add_argument("--device", default="cpu")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7863)
    args = p.parse_args(argv)
    page(args.models, args.device).queue().launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
