"""The encoder image -> W: a tiny run learns, its reports, uploads edited in the sliders page (and refused clearly),
and the true-edit report on a tiny distilled generator."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from apps import live
from core.encoder import Encoder
from core.stylegan3 import Generator
from core.train.distill_config import DistillConfig
from core.train.encoder import EncoderConfig, train_encoder
from core.train.rundir import RunDir
from tests.test_distill import TINY
from tools.screenshots import IMAGE_PIXELS, LIVE_SETTLED, chromium, chromium_path


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A tiny generator on the distilled latent (z -> exact factors), untrained: what the tests need is its map."""
    root = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    G = Generator(**DistillConfig(name="t", **TINY).generator_kwargs())
    return root, G, G.save_pretrained(root / "g")


def test_a_tiny_encoder_run_beats_an_untrained_encoder_and_ships(distilled):
    root, G, path = distilled
    cfg = EncoderConfig(name="e", runs_dir=str(root), generator=str(path), width=8, channel_max=16, hidden=32,
                        batch_size=16, steps=40, image_from=30, lr=0.003, log_every=5, sample_every=20,
                        checkpoint_every=20, device="cpu", ship=True, ship_to=str(root / "ship" / "encoder"))
    report = train_encoder(cfg, progress=False)
    run = RunDir(root / "e")
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [5, 10, 15, 20, 25, 30, 35, 40] and "loss_identity" in lines[-1]
    assert lines[-1]["images_seen"] == 40 * 16 and report["loss_latent"] < lines[0]["loss_latent"]
    shipped = Encoder.from_pretrained(root / "ship" / "encoder.safetensors")  # stored as float16
    untrained = Encoder(G.img_resolution, G.w_dim, 8, 16, 2, 32)
    untrained.w_avg.copy_(G.mapping.w_avg)
    z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        w = G.mapping(z)[:, 0]
        faces = G.images_from_w(w).clamp(0, 1)
        errors = [float((E.eval()(faces) - w).square().mean()) for E in (untrained, shipped)]
    assert errors[1] < 0.7 * errors[0], errors
    assert sorted(p.name for p in run.samples.glob("*.png")) == ["00000020.png", "00000040.png"]


def test_the_encoder_refuses_what_it_cannot_read():
    E = Encoder(32, 16, 8, 16, 1, 16)
    with pytest.raises(ValueError, match=r"\[batch, 3, H, W\]"):
        E(torch.rand(2, 1, 32, 32))
    assert E(torch.rand(2, 3, 64, 64)).shape == (2, 16)  # another size is resized to the encoder's
    with pytest.raises(ValueError, match="power of two"):
        Encoder(48)


def test_true_edits_move_their_factor_and_are_scored_against_the_render(distilled):
    from core.analysis import load_analyzer
    from core.directions import supervised_directions
    from core.reports.edits import markdown, true_edits
    _, G, _ = distilled
    dirs = supervised_directions(G, n=400)
    result, strip = true_edits(G, dirs, load_analyzer("synthfaces"), faces=24, alpha=2.0)
    rows = result["directions"]
    assert set(rows) == set(dirs) and strip.shape == (3 * len(dirs), 3, 32, 32)
    for r in rows.values():
        assert 0 <= r["leak"] < 1 and -1 <= r["identity_cosine_to_true_edit"] <= 1 and 0 <= r["l1_to_true_edit"] < 1
    assert markdown(result).count("\n") == 4 + len(rows)  # a sentence, a blank line, the header, a rule, rows
    plain = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3, channel_base=256,
                      channel_max=16, num_layers=3, margin_size=2)  # its z maps to no factors
    with pytest.raises(ValueError, match="distilled generator"):
        true_edits(plain, dirs, load_analyzer("synthfaces"))


@pytest.fixture(scope="module")
def sliders_page():
    """The embedded sliders page and what it was built from."""
    from apps import latent_sliders
    from core.directions import editor_from
    from core.models import load_models
    models = load_models("embedded", latent_sliders.ROLES, latent_sliders.OPTIONAL)
    editor, note = editor_from(models)
    return latent_sliders, editor, latent_sliders.UploadedFaces(models)


def test_the_app_page_prepares_uploads_in_the_background(sliders_page):
    """The page the app serves builds its projector (the face check's calibration) at start, not on the first
    visitor's upload; a page without warm-up builds it on first use."""
    latent_sliders, _, lazy = sliders_page
    assert lazy.warming is None
    warm = latent_sliders.UploadedFaces(lazy.models, warm=True)
    warm.warming.join(timeout=120)
    assert not warm.warming.is_alive() and warm._uploads is not None and warm.uploads is warm._uploads
    assert warm.uploads.encoder is not None  # the embedded set's encoder


def test_bad_uploads_get_the_same_clear_messages_as_face_mixing(sliders_page, tmp_path):
    import gradio as gr
    _, _, faces = sliders_page
    (tmp_path / "notes.txt").write_text("hello")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    with open(tmp_path / "huge.png", "wb") as f:
        f.truncate(11 * 1024 * 1024)
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(tmp_path / "grey16.png")
    for name, message in (("notes.txt", "not an image"), ("noise.png", "no face found"), ("huge.png", "too large"),
                          ("grey16.png", "no face found")):
        with pytest.raises(gr.Error, match=message):
            faces.w(str(tmp_path / name), 0)


@pytest.mark.skipif(chromium_path() is None, reason="needs a system Chromium; .ci/run installs it")
def test_an_uploaded_face_is_edited_by_the_sliders_in_a_browser(sliders_page, tmp_path):
    from core.synthfaces import render_faces
    from tools.screenshots import AFTER_SRC
    latent_sliders, editor, faces = sliders_page
    face = render_faces(torch.tensor([5_000_123]), seed=9).images[0]
    Image.fromarray((face.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "face.png")
    w = faces.w(str(tmp_path / "face.png"), 0)[0]  # what the page will compute for this picture
    reconstruction = latent_sliders.edit_image(editor, [], 0, 0.7, w=w)
    demo = latent_sliders.build(editor, "", faces, live=True)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                app_kwargs={"routes": live.routes()})
    before_src = "() => { const i = document.querySelector('img[alt^=before]'); return i ? i.alt + i.src : ''; }"
    try:
        with chromium() as page:
            page.goto(demo.local_url, timeout=60_000)
            page.wait_for_function(f"({AFTER_SRC})().length > 0", timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(str(tmp_path / "face.png"))
            page.wait_for_function(f"({before_src})().startsWith('before: the upload')", timeout=60_000)
            shown = page.evaluate("() => document.querySelector('img[alt^=before]').src")
            first_after = page.evaluate(AFTER_SRC)
            slider = page.get_by_label(re.compile(r"^range slider for smile"))
            slider.focus()
            for _ in range(30):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(f"({AFTER_SRC})() !== {first_after!r}", timeout=60_000)
            page.wait_for_function(LIVE_SETTLED, timeout=60_000)
            edited = np.array(page.evaluate(IMAGE_PIXELS), dtype=np.uint8).reshape(reconstruction.shape)
    finally:
        demo.close()
    import base64
    import io
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(shown.split(",", 1)[1]))))
    assert np.array_equal(decoded, reconstruction)  # the before image is the upload's reconstruction
    names = list(editor.dirs)  # the live view drew the upload's face, not the seed's, moved by 30 steps of smile
    alphas = [1.5 if n == "smile" else 0.0 for n in names]
    assert np.array_equal(edited, latent_sliders.edit_image(editor, names, 0, 0.7, *alphas, w=w))
