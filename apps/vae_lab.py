"""VAE lab (Gradio): the LFW notebook's VAE in the suite, with its plain autoencoder as the baseline, the same pair
trained with the analyzer's terms, and the guided VAE (attribute code dimensions), whose attribute edits show most.

    python -m apps.vae_lab [--models embedded] [--port 7864]

Reconstruct an upload or a rendered SynthFaces face, sample faces from the prior, interpolate between two faces,
and add the smile / eyeglasses / sunglasses vectors (the notebook's latent arithmetic) with a strength slider.
"""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr
import torch

from apps.common import Number, Slider, as_number, gpu, group, public_message, serve, to_array
from core.projection import FaceInputError, load_face_image
from core.models import load_models
from core.vae import EDIT_ATTRIBUTES, SIDE, VAEEditor

TITLE = "VAE lab"
ROLES, OPTIONAL = ("vae",), ("guided_vae", "feature_vae", "ae", "feature_ae")
MODELS = {"guided VAE (feature VAE + attribute dims: edits that show)": "guided_vae",
          "feature VAE (conv, analyzer terms)": "feature_vae", "VAE (notebook MLP, beta 1)": "vae",
          "autoencoder baseline (same MLP, no KL)": "ae", "feature autoencoder (conv, analyzer terms)": "feature_ae"}


def rendered_face(seed: Any) -> torch.Tensor:
    """A SynthFaces face (a new identity per seed) at 64 px, [3, 64, 64] in [0, 1]."""
    from core.synthfaces import render_faces
    seed = int(as_number(seed, "face seed", 0, 2 ** 31 - 1, whole=True))
    return render_faces(torch.tensor([seed]), seed=seed).images[0]


class VAEPage:
    """The editors of the model set (VAE, and the autoencoder when the set has one), each made on first use."""

    def __init__(self, models: str, device: str) -> None:
        self.models = load_models(models, ROLES, OPTIONAL, device)
        self.roles = [role for role in MODELS.values() if role in self.models]
        self.editors: dict[str, VAEEditor] = {self.roles[0]: VAEEditor(self.models[self.roles[0]])}

    def editor(self, choice: str) -> VAEEditor:
        role = MODELS.get(choice)
        if role not in self.roles:
            raise gr.Error(f"model must be one of {', '.join(k for k, v in MODELS.items() if v in self.roles)}")
        if role not in self.editors:
            self.editors[role] = VAEEditor(self.models[role])
        return self.editors[role]

    def face(self, seed: Any, upload: Optional[str]) -> tuple[torch.Tensor, str]:
        if not upload:
            return rendered_face(seed), f"SynthFaces face {int(seed)}"
        try:
            return load_face_image(upload, 64), "upload (centre-cropped, resized)"
        except FaceInputError as e:
            raise gr.Error(f"upload: {public_message(e)}") from None

    def reconstruct(self, choice, seed, upload, smile, sunglasses, eyeglasses):
        editor = self.editor(choice)
        image, what = self.face(seed, upload)
        recon, score = editor.reconstruct(image[None])
        strengths = {"smile": smile, "sunglasses": sunglasses, "eyeglasses": eyeglasses}
        strengths = {k: as_number(v, k, -3, 3) for k, v in strengths.items()}
        edited = editor.edit(image, strengths)
        small = torch.nn.functional.interpolate(image[None], size=(SIDE, SIDE), mode="area")[0]
        return (to_array(small), to_array(recon[0]), to_array(edited),
                f"{what}: reconstruction SSIM **{float(score[0]):.3f}** at {SIDE}x{SIDE}")

    def sample(self, choice, seed):
        seed = int(as_number(seed, "sample seed", 0, 2 ** 31 - 1, whole=True))
        images = self.editor(choice).sample(8, seed)
        return [(to_array(x), f"z ~ N(0, I), seed {seed}, #{i}") for i, x in enumerate(images)]

    def interpolate(self, choice, seed_a, seed_b, steps):
        steps = int(as_number(steps, "steps", 3, 12, whole=True))
        images = self.editor(choice).interpolate(rendered_face(seed_a), rendered_face(seed_b), steps)
        return [(to_array(x), f"t={i / (steps - 1):.2f}") for i, x in enumerate(images)]


def build(page: VAEPage) -> gr.Blocks:
    choices = [k for k, v in MODELS.items() if v in page.roles]
    reconstruct, sample, interpolate = gpu(page.reconstruct), gpu(page.sample), gpu(page.interpolate)  # ZeroGPU
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown("## VAE lab\nThe LFW notebook's VAE on SynthFaces (45x45): reconstruct a face, sample from the "
                    "prior, interpolate, and add attribute vectors (mean code with the attribute minus mean code "
                    "without, from labelled SynthFaces faces). The plain autoencoder is the notebook's baseline: "
                    "sharper reconstructions, but its prior samples are not faces. The notebook's pixel loss leaves "
                    "the smile and thin eyeglasses out of the codes, so their vectors barely move them; the feature "
                    "models, trained with the analyzer's terms as well, draw the glasses, and the guided VAE, whose "
                    "first code dimensions hold the three attributes, draws them strongest (docs/guide/vae.md).")
        model = gr.Radio(choices, value=choices[0], label="model")
        with gr.Row():
            seed = Number(value=3, precision=0, minimum=0, maximum=2 ** 31 - 1, label="face seed")
            upload = gr.File(label="or upload a picture", file_types=["image"], type="filepath")
            sliders = [Slider(-3, 3, value=0, step=0.1, label=f"{name} vector strength") for name in EDIT_ATTRIBUTES]
        with gr.Row():
            original = gr.Image(label="input (45x45)", type="numpy", interactive=False, height=240)
            recon = gr.Image(label="reconstruction", type="numpy", interactive=False, height=240)
            edited = gr.Image(label="reconstruction + attribute vectors", type="numpy", interactive=False, height=240)
        note = gr.Markdown()
        inputs = [model, seed, upload, *sliders]
        outputs = [original, recon, edited, note]
        for trigger in (seed.change, upload.change, model.change, demo.load):
            trigger(reconstruct, inputs, outputs, api_visibility="private", **group("vae"))
        for s in sliders:
            s.release(reconstruct, inputs, outputs, api_name=False, **group("vae"))
        gr.Button("Reconstruct", variant="primary").click(reconstruct, inputs, outputs, api_name="reconstruct",
                                                          **group("vae"))
        with gr.Accordion("Samples from the prior", open=False):
            sample_seed = Number(value=0, precision=0, minimum=0, maximum=2 ** 31 - 1, label="sample seed")
            gallery = gr.Gallery(columns=8, height=200)
            gr.Button("Sample").click(sample, [model, sample_seed], gallery, api_name="sample", **group("vae"))
        with gr.Accordion("Interpolation between two faces", open=False):
            with gr.Row():
                seed_a = Number(value=3, precision=0, minimum=0, maximum=2 ** 31 - 1, label="face A seed")
                seed_b = Number(value=8, precision=0, minimum=0, maximum=2 ** 31 - 1, label="face B seed")
                steps = Slider(3, 12, value=8, step=1, label="steps")
            strip = gr.Gallery(columns=8, height=200)
            gr.Button("Interpolate").click(interpolate, [model, seed_a, seed_b, steps], strip,
                                           api_name="interpolate", **group("vae"))
    return demo


def page(models: str = "embedded", device: str = "cpu") -> gr.Blocks:
    """The VAE lab for a model set (raises when its VAE cannot be loaded; see apps.common)."""
    return build(VAEPage(models, device))


if __name__ == "__main__":
    serve(page, TITLE, port=7864)
