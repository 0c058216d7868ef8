"""Face mixing: upload checks, the face check, projection into W, mixes, grids and strips, and the Gradio page."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from apps import face_mixing
from tools.screenshots import chromium, chromium_path
from core.imaging import to_pil
from core.mixing import FaceMixer
from core.projection import FaceInputError, load_face_image
from core.synthfaces import render_faces


@pytest.fixture(scope="module")
def mixer() -> FaceMixer:
    return FaceMixer.load("embedded")


@pytest.fixture(scope="module")
def face_png(tmp_path_factory):
    """A SynthFaces picture at 128 px (not the generator's size), as a user would upload it."""
    path = tmp_path_factory.mktemp("faces") / "face.png"
    to_pil(render_faces(torch.tensor([31337]), seed=5, resolution=128).images[0]).save(path)
    return path


def test_uploads_are_read_cropped_and_resized(tmp_path, face_png):
    img = load_face_image(face_png, 64)
    assert img.shape == (3, 64, 64) and 0 <= img.min() and img.max() <= 1
    wide = tmp_path / "wide.png"
    canvas = Image.new("RGB", (192, 128), (255, 0, 0))
    canvas.paste(Image.open(face_png), (32, 0))
    canvas.save(wide)
    assert torch.allclose(load_face_image(wide, 64), img, atol=1e-6)  # the centre square is the face


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("this is not a picture"), "not an image"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "not an image"),
    (lambda p: Image.new("1", (5100, 5100)).save(p), "too large"),
    (lambda p: Image.new("RGB", (9000, 64)).save(p), "too large"),
    (lambda p: Image.new("RGB", (8, 8)).save(p), "too small"),
])
def test_bad_uploads_get_clear_messages(tmp_path, make, message):
    path = tmp_path / "upload.png"
    make(path)
    with pytest.raises(FaceInputError, match=message):
        load_face_image(path, 64)


def test_truncated_upload_is_refused(tmp_path, face_png):
    path = tmp_path / "cut.png"
    path.write_bytes(face_png.read_bytes()[:600])
    with pytest.raises(FaceInputError, match="not an image|truncated or corrupt"):
        load_face_image(path, 64)


def test_face_check_accepts_faces_and_refuses_non_faces(mixer):
    check = mixer.uploads._check
    faces = render_faces(torch.arange(50_000, 50_128), seed=11).images
    assert check.is_face(faces).all()
    gen = torch.Generator().manual_seed(0)
    non_faces = torch.stack([torch.rand(3, 64, 64, generator=gen), torch.full((3, 64, 64), 0.5),
                             torch.zeros(3, 64, 64), torch.linspace(0, 1, 64).expand(3, 64, 64).clone(),
                             (torch.arange(64) // 8 % 2).float().view(1, 1, 64).expand(3, 64, 64).clone()])
    assert not check.is_face(non_faces).any()
    with pytest.raises(FaceInputError, match="no face found"):
        mixer.check_face(non_faces[0])


def test_mix_grid_and_strips_follow_the_nice_codes(mixer):
    w = torch.cat([mixer.w_from_seed(s) for s in (1, 2, 3)])
    assert torch.allclose(mixer.mix(w, w), w, atol=1e-4)  # own identity on own attributes changes nothing
    mixed = mixer.mix(w[:1], w[1:2])
    id_code, attr_code = mixer.nice(mixed)
    assert torch.allclose(id_code, mixer.nice(w[:1])[0], atol=1e-4)
    assert torch.allclose(attr_code, mixer.nice(w[1:2])[1], atol=1e-4)
    images, scores = mixer.grid(w[:2], w)
    assert images.shape == (6, 3, 64, 64) and scores.shape == (6, 2)
    assert torch.allclose(images[1], mixer.render(mixed)[0], atol=1e-5)  # row 0 (identity 1), column 1 (seed 2)
    strip, s = mixer.strip(w[:1], w[1:2], "attributes", steps=5)
    assert strip.shape == (5, 3, 64, 64) and s.shape == (5, 2)
    assert torch.allclose(strip[0], mixer.render(w[:1])[0], atol=1e-4)
    assert torch.allclose(strip[-1], mixer.render(mixed)[0], atol=1e-4)
    strip, _ = mixer.strip(w[:1], w[1:2], "identity", steps=3)
    assert torch.allclose(strip[-1], mixer.render(mixer.mix(w[1:2], w[:1]))[0], atol=1e-4)
    with pytest.raises(ValueError):
        mixer.strip(w[:1], w[1:2], "identity", steps=100)


def test_projection_finds_a_face_that_reads_like_the_upload(mixer, face_png, monkeypatch):
    target = load_face_image(face_png, 64)
    calls = []
    encoded = mixer.project(target, steps=0)  # the embedded set's encoder alone (measured 0.976)
    result = mixer.project(target, steps=30, callback=lambda step, total: calls.append((step, total)))
    assert calls[-1] == (30, 30) and len(calls) == 30
    assert encoded.encoded and encoded.identity_similarity > 0.9
    assert result.identity_similarity > max(0.99, encoded.identity_similarity)  # refined (measured 0.997)
    monkeypatch.setattr(mixer.uploads, "encoder", None)  # a set without an encoder: optimisation alone
    start = mixer.project(target, steps=0)  # the best of the random starting points
    result = mixer.project(target, steps=30)
    assert not start.encoded and result.identity_similarity > 0.9
    assert result.identity_similarity > start.identity_similarity + 0.1
    monkeypatch.undo()
    assert result.w.shape == (1, mixer.G.w_dim) and result.image.shape == (3, 64, 64)
    with pytest.raises(FaceInputError, match="expected"):
        mixer.project(torch.rand(3, 32, 32))
    with pytest.raises(FaceInputError, match="NaN"):
        mixer.project(torch.full((3, 64, 64), float("nan")))
    with pytest.raises(FaceInputError, match="no face found"):
        mixer.project(torch.rand(3, 64, 64))


def test_page_functions(mixer, face_png, tmp_path, monkeypatch):
    monkeypatch.setattr(face_mixing, "PROJECTION_STEPS", 5)
    page = face_mixing.MixingPage(mixer)
    a, b, m, text = page.mix(1, None, 2, None, 0.7)
    assert a.shape == b.shape == m.shape == (256, 256, 3) and not np.array_equal(a, m)
    assert "identity donor" in text and "seed 1" in text
    _, _, _, text = page.mix(1, str(face_png), 2, None, 0.7)
    assert f"face A: upload, {'encoded' if page.encoded else 'projected'}" in text
    items, columns, png, archive = page.grid("1, 2", "3 4 5", 0.7, session="t")
    assert len(items) == 6 and columns == 3 and items[0][1].startswith("id 1 on 3: A ")
    assert Image.open(png).size == (3 * 66 + 2, 2 * 66 + 2)
    assert len(__import__("zipfile").ZipFile(archive).namelist()) == 6
    *strips, gif_id, gif_attr, gif_w, mp4_w = page.strips(1, None, 2, None, 0.7, None, 4, session="t")
    assert [len(s) for s in strips] == [4, 4, 4] and Image.open(gif_id).n_frames == 4 + 2
    assert Image.open(gif_w).n_frames == 4 + 2 and mp4_w.endswith(".mp4") and strips[2][0][1].startswith("t=0.00: A 1")
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noise)
    for call, message in [(lambda: page.mix(1, str(not_image), 2, None, 0.7), "not an image"),
                          (lambda: page.mix(1, None, 2, str(noise), 0.7), "no face found"),
                          (lambda: page.mix(-3, None, 2, None, 0.7), "seed"),
                          (lambda: page.mix(1, None, 2, None, float("nan")), "truncation"),
                          (lambda: page.grid("1, x", "2", 0.7), "must be a whole number"),
                          (lambda: page.grid(",".join(map(str, range(9))), "2", 0.7), "at most"),
                          (lambda: page.strips(1, None, 2, None, 0.7, None, 50), "3 to 12")]:
        with pytest.raises(gr.Error, match=message):
            call()


def test_page_without_nice_says_which_role_is_missing_and_what_builds_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from apps.common import page_or_note
    assert face_mixing.ROLES == ("generator", "nice")
    demo = page_or_note(face_mixing.page, face_mixing.TITLE, "ffhq", "cpu")  # a generator and nothing else
    texts = [c["props"].get("value", "") for c in demo.get_config_file()["components"] if c.get("type") == "markdown"]
    assert any("Not available" in t and "has no 'nice' model" in t and "train-disentanglement" in t for t in texts)


@pytest.mark.skipif(chromium_path() is None, reason="needs a system Chromium; .ci/run installs it")
def test_mixing_in_a_real_browser(mixer, tmp_path):
    demo = face_mixing.build(mixer)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        with chromium(1200, 900) as page:
            page.goto(demo.local_url, timeout=60_000)
            scores = "() => document.querySelector('#mix-scores')?.innerText || ''"
            page.wait_for_function(f"({scores})().includes('seed 1')", timeout=60_000)
            page.locator("input[type=number]").nth(1).fill("5")  # face B: seed 5
            page.get_by_role("button", name="Mix", exact=True).click()
            page.wait_for_function(f"({scores})().includes('seed 5')", timeout=60_000)
            text = page.evaluate(scores)
            assert "identity donor" in text
            images = page.evaluate("() => [...document.querySelectorAll('img')].filter(e => e.src.includes('/file='))"
                                   ".length")
            assert images >= 3
            page.screenshot(path=str(tmp_path / "mixing.png"), full_page=True)
    finally:
        demo.close()
