"""SynthFaces: deterministic, each factor changes only its own region, landmarks follow the face."""
from __future__ import annotations

import json
import math

import pytest
import torch

from core.synthfaces import (FACTOR_NAMES, IDENTITY_FACTORS, LANDMARK_NAMES, NUM_FACTORS, factor_index, render,
                             render_faces, sample_factors)
from core.synthfaces.__main__ import main as synthfaces_cli
from core.synthfaces.dataset import SynthFacesDataset, export
from core.synthfaces.render import ZOOM

RES = 128
L = {name: i for i, name in enumerate(LANDMARK_NAMES)}


def frontal(n: int = 1, identity: int = 3) -> torch.Tensor:
    """Factor vectors of one identity, frontal pose, no glasses, neutral expression."""
    f = sample_factors(torch.tensor([identity]), seed=0).repeat(n, 1)
    for name, value in dict(yaw=0.5, pitch=0.5, roll=0.5, eyeglasses=0, sunglasses=0, smile=0.4,
                            mouth_open=0.0, eye_open=0.8, hair_style=0.2).items():
        f[:, factor_index(name)] = value
    return f


def sweep(name: str, values: list[float], identity: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    f = frontal(len(values), identity)
    f[:, factor_index(name)] = torch.tensor(values)
    return render(f, RES)


def changed_pixels(imgs: torch.Tensor) -> torch.Tensor:
    """[H, W] mask of pixels that differ anywhere along the sweep."""
    return (imgs - imgs[:1]).abs().amax(dim=(0, 1)) > 2e-3


def box_mask(points: torch.Tensor, margin: float) -> torch.Tensor:
    """[H, W] mask of the bounding box of landmark points (pixels), grown by margin pixels."""
    lo = points.amin(dim=0) - margin
    hi = points.amax(dim=0) + margin
    idx = torch.arange(RES, dtype=torch.float32)
    inside_x = (idx >= lo[0]) & (idx <= hi[0])
    inside_y = (idx >= lo[1]) & (idx <= hi[1])
    return inside_y.view(-1, 1) & inside_x.view(1, -1)


def test_same_ids_and_seed_give_same_faces_and_identity_factors_are_fixed():
    a = render_faces(torch.tensor([1, 2, 3]), seed=5, resolution=32)
    b = render_faces(torch.tensor([1, 2, 3]), seed=5, resolution=32)
    c = render_faces(torch.tensor([1, 2, 3]), seed=6, resolution=32)
    assert torch.equal(a.images, b.images) and torch.equal(a.landmarks, b.landmarks)
    k = len(IDENTITY_FACTORS)
    assert torch.equal(a.factors[:, :k], c.factors[:, :k])
    assert not torch.equal(a.factors[:, k:], c.factors[:, k:])
    assert a.images.shape == (3, 3, 32, 32) and a.images.min() >= 0 and a.images.max() <= 1
    assert a.factors.shape == (3, NUM_FACTORS) and ((a.factors >= 0) & (a.factors <= 1)).all()
    assert a.landmarks.shape == (3, len(LANDMARK_NAMES), 2)


def test_identities_differ_and_glasses_are_exclusive():
    f = sample_factors(torch.arange(2000), seed=1)
    ident = f[:, : len(IDENTITY_FACTORS)]
    assert torch.unique(ident, dim=0).shape[0] == 2000
    glasses, sun = f[:, factor_index("eyeglasses")], f[:, factor_index("sunglasses")]
    assert not ((glasses == 1) & (sun == 1)).any()
    assert 0.15 < glasses.mean() < 0.25 and 0.15 < sun.mean() < 0.25


@pytest.mark.parametrize("name,region,margin", [
    ("smile", ("mouth_left", "mouth_right", "upper_lip", "lower_lip"), 4),
    ("mouth_open", ("mouth_left", "mouth_right", "upper_lip", "lower_lip"), 4),
    ("mouth_width", ("mouth_left", "mouth_right", "upper_lip", "lower_lip"), 8),
    ("eye_open", ("left_eye_outer", "left_eye_inner", "right_eye_inner", "right_eye_outer"), 6),
    ("iris_colour", ("left_eye_outer", "left_eye_inner", "right_eye_inner", "right_eye_outer"), 3),
    ("eyeglasses", ("left_eye_outer", "right_eye_outer", "left_pupil"), 10),
    ("sunglasses", ("left_eye_outer", "right_eye_outer", "left_pupil"), 10),
    ("brow_thickness", ("left_eye_outer", "right_eye_outer"), 12),
    ("nose_width", ("nose_tip", "left_eye_inner", "right_eye_inner"), 6),
    ("nose_length", ("nose_tip", "left_eye_inner", "right_eye_inner"), 6),
])
def test_local_factor_changes_only_its_region(name, region, margin):
    values = [0.0, 0.5, 1.0]
    imgs, lms = sweep(name, values)
    changed = changed_pixels(imgs)
    assert changed.sum() >= 4, f"{name} does not visibly change the image"
    points = torch.cat([lms[:, [L[r] for r in region]].reshape(-1, 2)])
    allowed = box_mask(points, margin * ZOOM)  # margins are given for an unzoomed face
    outside = changed & ~allowed
    assert outside.sum() == 0, f"{name} changes {int(outside.sum())} pixels outside its region"


def test_background_changes_only_background_and_skin_tone_only_skin():
    imgs, _ = sweep("background", [0.0, 0.3, 0.7])
    changed = changed_pixels(imgs)
    face_centre = imgs[0, :, RES // 2, RES // 2]
    assert not changed[RES // 2, RES // 2] and changed[2, 2] and changed[2, RES - 3]
    assert face_centre.mean() > 0  # the face is drawn
    imgs, _ = sweep("skin_tone", [0.0, 1.0])
    changed = changed_pixels(imgs)
    assert changed[RES // 2, RES // 2] and not changed[2, 2]


def test_landmarks_follow_pose_and_expression():
    _, lms = sweep("yaw", [0.1, 0.5, 0.9])
    for name in ("left_pupil", "right_pupil", "nose_tip"):
        xs = lms[:, L[name], 0]
        assert xs[0] < xs[1] < xs[2], name
    _, lms = sweep("smile", [0.0, 1.0])
    assert (lms[1, L["mouth_left"], 1] < lms[0, L["mouth_left"], 1] - 1)  # corners rise
    _, lms = sweep("mouth_open", [0.0, 1.0])
    assert lms[1, L["lower_lip"], 1] > lms[0, L["lower_lip"], 1] + 2
    _, lms = sweep("pitch", [0.1, 0.9])
    assert lms[1, L["nose_tip"], 1] < lms[0, L["nose_tip"], 1]  # looking up moves features up
    _, lms = sweep("roll", [0.5, 1.0])
    d = lms[1, L["right_pupil"]] - lms[1, L["left_pupil"]]
    assert math.degrees(math.atan2(d[1], d[0])) == pytest.approx(20.0, abs=0.5)
    _, lms = sweep("eye_open", [0.2, 1.0])
    assert torch.allclose(lms[0], lms[1])


def test_landmarks_sit_on_the_drawn_features():
    imgs, lms = render(frontal(1), RES)
    img = imgs[0].mean(0)
    for side in ("left_pupil", "right_pupil"):
        x, y = lms[0, L[side]].round().long().tolist()
        assert img[y, x] < 0.3  # the pupil is dark
    x0, y0 = lms[0, L["left_eye_outer"]].tolist()
    x1, y1 = lms[0, L["left_eye_inner"]].tolist()
    assert img[round((y0 + y1) / 2), round(x0 + (x1 - x0) * 0.15)] > 0.7  # white of the eye
    inside = ((lms[0] >= 0) & (lms[0] <= RES - 1)).all()
    assert inside


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="between 32 and 256"):
        render(frontal(1), 16)
    with pytest.raises(ValueError, match="shape"):
        render(torch.zeros(2, 5), 64)
    bad = frontal(1)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        render(bad, 64)
    with pytest.raises(KeyError, match="unknown SynthFaces factor"):
        factor_index("moustache")


def test_dataset_and_export(tmp_path):
    ds = SynthFacesDataset(identities=3, per_identity=2, resolution=32)
    assert len(ds) == 6
    item = ds[1]
    assert item["image"].shape == (3, 32, 32) and int(item["identity"]) == 0
    assert int(ds[2]["identity"]) == 1
    out = export(tmp_path / "sf", identities=2, per_identity=3, resolution=32, progress=False)
    lines = (out / "labels.jsonl").read_text().splitlines()
    assert len(lines) == 6 and len(list((out / "images").glob("*.png"))) == 6
    rec = json.loads(lines[4])
    assert rec["identity"] == 1 and set(rec["factors"]) == set(FACTOR_NAMES)
    assert len(rec["landmarks"]) == len(LANDMARK_NAMES)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resolution"] == 32


def test_cli_validates_arguments(tmp_path, capsys):
    assert synthfaces_cli(["export", "--identities", "1", "--per-identity", "2", "--resolution", "32",
                           "--out", str(tmp_path / "x")]) == 0
    assert len(list((tmp_path / "x" / "images").glob("*.png"))) == 2
    with pytest.raises(SystemExit):
        synthfaces_cli(["export", "--identities", "1", "--per-identity", "2", "--resolution", "1000",
                        "--out", str(tmp_path / "y")])


def test_compiled_renderer_gives_the_same_faces(monkeypatch):
    """fast_render (fixed chunks, padded) through torch.compile's graph capture and AOTAutograd's decompositions
    gives the faces of the eager renderer. Inductor's C++ code generation, PyTorch's own part, is left out here
    (about 25 s of compiling on a fresh machine)."""
    import importlib
    module = importlib.import_module("core.synthfaces.render")  # the module (the package's `render` is the function)
    monkeypatch.setattr(module, "_compiled_render", torch.compile(render, dynamic=False, backend="aot_eager"))
    monkeypatch.setattr(module, "FAST_BATCH", 8)
    f = sample_factors(torch.arange(13), seed=3)  # two chunks, the second padded
    eager = render(f, 32)
    fast = module.fast_render(f, 32)
    assert torch.allclose(eager[0], fast[0], atol=1e-4) and torch.allclose(eager[1], fast[1], atol=1e-4)


def test_windows_hold_every_part_at_the_extremes():
    """Small parts are drawn in per-image windows; with extreme factors they must still not be clipped."""
    f = sample_factors(torch.arange(64), seed=9)
    for name in ("smile", "mouth_open", "mouth_width", "ear_size", "nose_length", "nose_width", "eye_size"):
        f[:, factor_index(name)] = torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(1)).float()
    from core.synthfaces.render import _Patch
    original = _Patch.__init__

    def no_window(self, parent, ox, oy, size, coords):  # a window as large as the image draws without clipping
        original(self, parent, torch.zeros_like(ox), torch.zeros_like(oy), coords.shape[0], coords)

    windowed = render(f, 64)[0]
    _Patch.__init__ = no_window
    try:
        full = render(f, 64)[0]
    finally:
        _Patch.__init__ = original
    assert torch.allclose(windowed, full, atol=1e-5)
