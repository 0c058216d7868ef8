"""Attribute directions (PCA, supervised) and the latent-sliders app, on a tiny generator made here."""
from __future__ import annotations

import re

import gradio as gr
import numpy as np
from PIL import Image
import pytest
import torch

from apps import latent_sliders, live
from tools.screenshots import AFTER_SRC, IMAGE_PIXELS, LIVE_SETTLED, WATCH_PAINTS, chromium, chromium_path, drag
from core.checkpoints import save_checkpoint
from core.directions import (Editor, apply, directions, editor_from, fit_direction, for_generator, load_directions,
                             nice_directions, pca_directions, sample_w, save_directions, supervised_directions)
from core.models import load_models
from core.nice import NICE
from core.stylegan3 import Generator
from tests.conftest import tiny_kwargs


@pytest.fixture(scope="module")
def tiny_g():
    torch.manual_seed(0)
    return Generator(**tiny_kwargs(resolution=32)).eval()


def test_fit_direction_recovers_a_planted_axis():
    torch.manual_seed(0)
    w = torch.randn(2000, 16)
    v = torch.nn.functional.normalize(torch.randn(16), dim=0)
    target = w @ v * 0.3 + 0.02 * torch.randn(2000)
    d, r2 = fit_direction(w, target)
    assert torch.dot(d, v) > 0.99 and r2 > 0.9
    _, r2_noise = fit_direction(w, torch.randn(2000))
    assert r2_noise < 0.05


def test_pca_directions_find_the_dominant_axis():
    torch.manual_seed(0)
    w = torch.randn(3000, 8) * torch.tensor([0.1, 3, 0.1, 0.1, 1, 0.1, 0.1, 0.1])
    dirs = pca_directions(w, k=2)
    assert abs(dirs["pca_0"].vector[1]) > 0.99 and dirs["pca_0"].scale == pytest.approx(3, rel=0.1)
    assert dirs["pca_0"].quality > dirs["pca_1"].quality


def test_supervised_directions_move_what_the_analyzer_reads(tiny_g, tmp_path):
    from core.analysis import load_analyzer
    analyzer = load_analyzer("synthfaces")
    dirs = supervised_directions(tiny_g, analyzer, n=300, attributes=("background", "yaw"), progress=False)
    d = dirs["background"]
    assert d.vector.norm().item() == pytest.approx(1.0, abs=1e-5) and d.scale > 0
    # moving along the fitted direction raises the analyzer's reading on new samples (held-out check)
    ws = tiny_g.mapping(torch.randn(64, tiny_g.z_dim, generator=torch.Generator().manual_seed(9)))
    with torch.no_grad():
        lo = analyzer((tiny_g.synthesis(apply(ws, {"background": -2}, dirs), noise_mode="const") + 1) / 2).factors
        hi = analyzer((tiny_g.synthesis(apply(ws, {"background": 2}, dirs), noise_mode="const") + 1) / 2).factors
    from core.synthfaces import factor_index
    assert (hi[:, factor_index("background")] - lo[:, factor_index("background")]).mean() > 0
    path = save_directions(tmp_path / "g_directions", dirs, "g")
    again = load_directions(path)
    assert torch.equal(again["yaw"].vector, dirs["yaw"].vector) and again["yaw"].quality == dirs["yaw"].quality


def test_directions_are_found_beside_the_generator_or_fall_back_to_pca(tiny_g, tmp_path):
    gpath = save_checkpoint(tmp_path / "g.safetensors", tiny_g.state_dict(),
                            {"kind": "stylegan3", "init_kwargs": tiny_g.init_kwargs})
    dirs, note = for_generator(tiny_g, str(gpath))
    assert "python -m core.directions" in note and all(d.kind == "pca" for d in dirs.values())
    save_directions(tmp_path / "g_directions", pca_directions(sample_w(tiny_g, 500), 3), "g")
    assert set(directions(str(gpath))) == {"pca_0", "pca_1", "pca_2"}


def test_editor_and_app_functions(tiny_g):
    dirs = pca_directions(sample_w(tiny_g, 1000), 3)
    editor = Editor(tiny_g, dirs)
    names = list(dirs)
    plain = latent_sliders.edit_image(editor, names, 7, 0.7, 0, 0, 0)
    assert plain.dtype == np.uint8 and plain.shape == (32, 32, 3)  # the generator's own size
    assert np.array_equal(plain, latent_sliders.edit_image(editor, [], 7, 0.7))  # zero sliders == unedited
    moved = latent_sliders.edit_image(editor, names, 7, 0.7, 2.5, 0, 0)
    assert np.abs(moved.astype(int) - plain.astype(int)).mean() > 1
    assert not np.array_equal(plain, latent_sliders.edit_image(editor, [], 8, 0.7))
    for seed, psi, alpha in ((-1, 0.7, 0), (1.5, 0.7, 0), (2 ** 40, 0.7, 0), (1, float("nan"), 0), (1, 0.7, 9),
                             ("abc", 0.7, 0), (1, 0.7, float("inf"))):
        with pytest.raises(gr.Error):
            latent_sliders.edit_image(editor, names[:1], seed, psi, alpha)


def test_faces_travel_as_data_url_images_and_download_as_png():
    import base64
    import io
    import re

    small = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    html = latent_sliders.face_html(small, "after")
    urls = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(urls) == 1 and "image-rendering:pixelated" in html and "(64 x 64)" in html
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(urls[0])))), small)  # lossless
    assert 'width="256"' in html  # small faces are shown enlarged
    html = latent_sliders.face_html(np.zeros((1024, 1024, 3), np.uint8), "after")
    assert "data:image/jpeg;base64," in html and 'width="512"' in html
    path = latent_sliders.png_file(small, 7)
    assert path.endswith("seed7_edited.png") and np.array_equal(np.asarray(Image.open(path)), small)
    assert latent_sliders.png_file(None, 7) is None
    from pathlib import Path
    for seed in range(20):  # every slider move replaces the session's one file
        last = latent_sliders.png_file(small, seed, session="moves")
    assert [p.name for p in Path(last).parent.iterdir()] == ["seed19_edited.png"]


def test_a_slider_sweep_exports_as_video(tiny_g):
    import cv2
    editor = Editor(tiny_g, pca_directions(sample_w(tiny_g, 300), 2))
    mp4, gif = latent_sliders.sweep_videos(editor, "pca_1", 4, 0.7, 6, session="sweep")
    assert int(cv2.VideoCapture(mp4).get(cv2.CAP_PROP_FRAME_COUNT)) == 6 + 4  # there and back
    assert Image.open(gif).n_frames == 10
    with pytest.raises(gr.Error, match="direction must be one of"):
        latent_sliders.sweep_videos(editor, "smile", 4, 0.7, 6)


def test_nice_axes_move_one_code_only(tiny_g):
    torch.manual_seed(3)
    nice = NICE(tiny_g.w_dim, 12, hidden=32, depth=2)
    for p in nice.parameters():
        torch.nn.init.normal_(p, std=0.1)
    w = sample_w(tiny_g, 800)
    dirs = nice_directions(nice, w, k=3)
    assert sorted(dirs) == sorted([f"nice_{part}_{i}" for part in ("identity", "attribute") for i in range(3)])
    ws = tiny_g.mapping(tiny_g.z_from_seed(4), truncation_psi=0.7)
    with torch.no_grad():
        moved = apply(ws, {"nice_identity_0": 2.0}, dirs, nice)
        before, after = nice.encode(ws[:, 0]), nice.encode(moved[:, 0])
    assert torch.allclose(before[:, 12:], after[:, 12:], atol=1e-4)  # attribute code untouched
    shift = after[:, :12] - before[:, :12]
    assert torch.allclose(shift[0], 2.0 * dirs["nice_identity_0"].scale * dirs["nice_identity_0"].vector[:12],
                          atol=1e-4)
    assert torch.allclose(moved[:, 0], moved[:, -1])  # every layer gets the same edited w
    with pytest.raises(ValueError, match="NICE axes need"):
        apply(ws, {"nice_attribute_1": 1.0}, dirs)
    editor = Editor(tiny_g, {**pca_directions(w, 2), **dirs}, nice)
    names = list(editor.dirs)
    plain = latent_sliders.edit_image(editor, [], 4, 0.7)
    edited = latent_sliders.edit_image(editor, names, 4, 0.7, *[0.0] * (len(names) - 1), 2.5)
    assert np.abs(edited.astype(int) - plain.astype(int)).mean() > 1


def test_embedded_sliders_include_nice_axes():
    editor, note = editor_from(load_models("embedded", latent_sliders.ROLES, latent_sliders.OPTIONAL))
    kinds = {d.kind for d in editor.dirs.values()}
    assert {"supervised", "pca", "nice_identity", "nice_attribute"} <= kinds and editor.nice is not None


def test_sliders_page_builds_with_one_slider_per_direction(tiny_g):
    dirs = pca_directions(sample_w(tiny_g, 500), 4)
    demo = latent_sliders.build(Editor(tiny_g, dirs), note="PCA only")
    config = demo.get_config_file()
    sliders = [c for c in config["components"] if c.get("type") == "slider"]
    # four directions; truncation, the upload's refine steps, move x, move y, rotate; the sweep's frame count
    assert len(sliders) == 4 + 5 + 1
    assert any("PCA only" in c["props"].get("value", "") for c in config["components"] if c.get("type") == "markdown")


@pytest.mark.skipif(chromium_path() is None, reason="needs a system Chromium; .ci/run installs it")
def test_moving_a_slider_in_a_real_browser_changes_the_image(tiny_g, tmp_path):
    """Keys: the Gradio event's exact face reaches the download. A mouse drag: the live view paints the faces
    in between, and the last one is the exact face of the released value."""
    dirs = pca_directions(sample_w(tiny_g, 500), 2)
    demo = latent_sliders.build(Editor(tiny_g, dirs))
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                app_kwargs={"routes": live.routes()})
    try:
        with chromium() as page:
            page.goto(demo.local_url, timeout=60_000)
            after = AFTER_SRC
            page.wait_for_function(f"({after})().length > 0", timeout=60_000)
            first = page.evaluate(after)
            slider = page.get_by_label(re.compile(r"^range slider for pca_0"))  # the first direction
            slider.focus()
            for _ in range(30):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(f"({after})() !== {first!r}", timeout=60_000)
            page.screenshot(path=str(tmp_path / "sliders.png"), full_page=True)
            # 30 steps of 0.05: the download button holds the face edited by 1.5 along the first direction
            expected = latent_sliders.edit_image(Editor(tiny_g, dirs), list(dirs), 0, 0.7, 1.5, 0.0)
            for _ in range(20):
                with page.expect_download() as download:
                    page.get_by_text("download the edited face (PNG)").click()
                got = np.asarray(Image.open(download.value.path()))
                if np.array_equal(got, expected):
                    break
                page.wait_for_timeout(250)  # the button is refreshed by its own event, just after the image
            assert download.value.suggested_filename == "seed0_edited.png" and np.array_equal(got, expected)

            page.evaluate(WATCH_PAINTS)
            drag(page, slider, 0.3, 0.7, 40)
            page.mouse.up()
            released = float(slider.input_value())
            page.wait_for_function(LIVE_SETTLED)
            assert page.evaluate("window.paints.length") >= 5  # faces painted while the slider moved
            final = np.array(page.evaluate(IMAGE_PIXELS), dtype=np.uint8).reshape(expected.shape)
            assert np.array_equal(final, latent_sliders.edit_image(Editor(tiny_g, dirs), list(dirs), 0, 0.7,
                                                                   released, 0.0))
    finally:
        demo.close()


@pytest.mark.skipif(chromium_path() is None, reason="needs a system Chromium; .ci/run installs it")
def test_without_its_websocket_the_page_falls_back_to_gradio_on_every_move(tiny_g):
    """The live view's socket refused (here: the app serves no /live route): a drag still redraws the face
    through Gradio's event as the slider moves, and ends on the released value's exact face."""
    dirs = pca_directions(sample_w(tiny_g, 500), 2)
    demo = latent_sliders.build(Editor(tiny_g, dirs), live=True)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        with chromium() as page:
            page.goto(demo.local_url, timeout=60_000)
            page.wait_for_function(f"({AFTER_SRC})().length > 0", timeout=60_000)
            page.wait_for_function("document.querySelector('[data-live-view]').dataset.live === 'off'")
            page.evaluate(WATCH_PAINTS)
            slider = page.get_by_label(re.compile(r"^range slider for pca_0"))
            drag(page, slider, 0.3, 0.7, 40)
            assert page.evaluate("window.paints.length") >= 2  # faces painted before the release
            page.mouse.up()
            released = float(slider.input_value())
            expected = latent_sliders.edit_image(Editor(tiny_g, dirs), list(dirs), 0, 0.7, released, 0.0)
            for _ in range(40):
                final = np.array(page.evaluate(IMAGE_PIXELS), dtype=np.uint8).reshape(expected.shape)
                if np.array_equal(final, expected):
                    break
                page.wait_for_timeout(250)
            assert np.array_equal(final, expected)
    finally:
        demo.close()


def test_the_distilled_generator_gets_directions_from_the_exact_factors_of_z(tiny_g):
    from core.synthfaces import factor_index
    from core.synthfaces.latent import factors_from_z
    from core.train.distill_config import DistillConfig
    from tests.test_distill import TINY
    torch.manual_seed(0)
    G = Generator(**DistillConfig(name="t", **TINY).generator_kwargs()).eval()
    names = ("yaw", "smile", "skin_tone")
    dirs = supervised_directions(G, None, n=600, attributes=names, progress=False)  # no analyzer: exact labels
    z = torch.randn(500, G.z_dim, generator=torch.Generator().manual_seed(99))  # held out
    with torch.no_grad():
        w = G.mapping(z)[:, 0]
    factors = factors_from_z(z)
    for name, d in dirs.items():
        along = ((w - w.mean(0)) @ d.vector).numpy()
        corr = {o: abs(np.corrcoef(along, factors[:, factor_index(o)].numpy())[0, 1]) for o in names}
        # measured over three seeds: own factor 0.56 to 0.84, the others at most 0.13
        assert corr[name] > 0.35 and corr[name] > 2 * max(c for o, c in corr.items() if o != name), (name, corr)
        assert d.kind == "supervised" and 0.2 < d.quality <= 1
    with pytest.raises(ValueError, match="need an analyzer"):
        supervised_directions(tiny_g, None, n=100, attributes=("yaw",), progress=False)
    with pytest.raises(ValueError, match="needs at least 66 samples"):  # 32-d W: 33 unknowns per fit
        supervised_directions(tiny_g, None, n=50, attributes=("yaw",), progress=False)


def test_the_directions_command_refuses_too_few_samples_and_writes_nothing(tiny_g, tmp_path, capsys):
    from core.directions import main
    g = tiny_g.save_pretrained(tmp_path / "g")
    assert main(["--generator", str(g), "--samples", "10"]) == 2
    assert main(["--generator", str(g), "--pca", "33"]) == 2
    assert "needs at least 66 samples" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "g.safetensors"]
