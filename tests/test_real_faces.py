"""Real photographs that packages ship (scikit-image's astronaut, Eileen Collins; insightface's group photo), through
detect -> align -> embed with the offline dlib backend; the insightface path through its own API on tiny ONNX models
made here; inversion into an official-architecture generator; face mixing of a real photo."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.analysis import faces_backend, load_analyzer
from core.analysis.photos import NoFaceError, analyze_photo, find_face, identity_distance, pipeline_picture
from tests.onnx_faces import write_pack

pytest.importorskip("dlib")
pytest.importorskip("insightface")


@pytest.fixture(scope="module")
def dlib_faces():
    return faces_backend("dlib")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    import insightface
    import skimage.data
    astronaut = skimage.data.astronaut()
    return {"astronaut": astronaut, "mirrored": np.ascontiguousarray(astronaut[:, ::-1]),
            "group": np.ascontiguousarray(insightface.data.get_image("t1", to_rgb=True))}


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return write_pack(tmp_path_factory.mktemp("insightface")).parent.parent


def test_detect_align_embed_and_tell_people_apart(dlib_faces, photos, tmp_path):
    astronaut = find_face(photos["astronaut"], dlib_faces, size=256)
    x0, y0, x1, y1 = astronaut.face.bbox
    eyes = astronaut.face.points[:2]
    assert (x0 < eyes[:, 0]).all() and (eyes[:, 0] < x1).all() and (y0 < eyes[:, 1]).all()  # eyes inside the box
    assert astronaut.ffhq.shape == (256, 256, 3) and astronaut.arcface.shape == (112, 112, 3)
    assert astronaut.face.landmarks.shape == (68, 2) and astronaut.embedding.shape == (128,)
    group = find_face(photos["group"], dlib_faces)
    assert group.faces_found >= 4 and any("largest" in n for n in group.notes)
    mirrored = find_face(photos["mirrored"], dlib_faces)
    d_other, same_other = identity_distance(astronaut, group, dlib_faces)
    d_self, same_self = identity_distance(astronaut, mirrored, dlib_faces)
    assert not same_other and same_self and d_self < d_other  # measured: 0.19 (same) vs 0.83 (different)
    picture = pipeline_picture(astronaut)
    assert picture.shape[0] == 256 and picture.shape[1] > 3 * 256
    # in the FFHQ crop the eyes sit level, at the recipe's height (about 0.4 of the side)
    again = dlib_faces.detect(astronaut.ffhq)
    assert again and abs(again[0].points[0, 1] - again[0].points[1, 1]) < 4
    assert 0.3 < again[0].points[:2, 1].mean() / 256 < 0.5


def test_files_without_a_face_or_with_transparency(dlib_faces, photos, tmp_path):
    from PIL import Image
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(NoFaceError, match="no face found"):
        analyze_photo(tmp_path / "grey.png", dlib_faces)
    rgba = np.concatenate([photos["astronaut"], np.full((512, 512, 1), 255, np.uint8)], axis=2)
    rgba[:20, :20, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    face = analyze_photo(tmp_path / "alpha.png", dlib_faces)
    assert any("transparent" in n for n in face.notes)


def test_insightface_path_through_its_own_api(pack):
    from core.analysis.insightface_backend import InsightFaces, InsightFaceTorch
    faces = InsightFaces(pack, det_size=128)
    image = np.zeros((128, 128, 3), np.uint8)
    image[40:72, 56:88] = 255  # a bright block is what the tiny detector calls a face
    found = faces.detect(image)
    assert found and found[0].points.shape == (5, 2) and found[0].embedding.shape == (512,)
    assert found[0].landmarks.shape == (106, 2) and abs(np.linalg.norm(found[0].embedding) - 1) < 1e-4
    model = load_analyzer(f"insightface:{pack}")
    assert isinstance(model, InsightFaceTorch) and isinstance(model, torch.nn.Module)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = model(x)
    assert out.embedding.shape == (2, 512) and out.landmarks.shape == (2, 106, 2) and out.factors is None
    out.embedding.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable, for the DisGAN losses
    # the torch conversion computes what onnxruntime computes (insightface's own session, same preprocessing)
    import onnxruntime as ort
    session = ort.InferenceSession(str(pack / "models" / "buffalo_l" / "w600k_r50.onnx"))
    blob = model._input(x.detach(), 112, model.rec_mean, model.rec_std).numpy()
    expected = torch.nn.functional.normalize(torch.from_numpy(session.run(None, {"data": blob})[0]), dim=1)
    assert torch.allclose(out.embedding.detach(), expected, atol=1e-5)


def test_missing_packs_say_what_to_do(tmp_path):
    from core.analysis import FaceModelUnavailable
    from core.analysis.insightface_backend import InsightFaces
    with pytest.raises(FaceModelUnavailable, match="non-commercial research only"):
        InsightFaces(tmp_path / "nothing")
    with pytest.raises(FaceModelUnavailable, match="no insightface model pack"):
        load_analyzer(f"insightface:{tmp_path / 'nothing'}")
    with pytest.raises(ValueError, match="unknown face backend"):
        faces_backend("opencv")


def test_nice_trains_with_the_insightface_analyzer(pack, tmp_path):
    """`train-disentanglement --set analyzer=insightface:DIR` runs (it crashed before: the backend was no module)."""
    from core.stylegan3 import Generator
    from core.train.nice import train_disentanglement
    from tests.conftest import tiny_kwargs
    torch.manual_seed(0)
    g = Generator(**tiny_kwargs(resolution=32)).save_pretrained(tmp_path / "g")
    args = ["--set", "name=real", f"runs_dir={tmp_path}", f"generator={g}", f"analyzer=insightface:{pack}",
            "id_dim=12", "hidden=32", "depth=2", "batch_size=4", "steps=3", "log_every=1", "sample_every=3",
            "checkpoint_every=3"]
    assert train_disentanglement(args) == 0


def test_inversion_into_an_official_architecture_generator_lowers_its_loss(pack, dlib_faces, photos):
    from core.inversion import invert
    from core.stylegan3 import Generator, generator_kwargs
    torch.manual_seed(0)  # the official StyleGAN3-T layout, narrowed so that it runs here; random weights
    G = Generator(**generator_kwargs("stylegan3-t", 64, channel_base=2048, channel_max=32)).eval()
    G.requires_grad_(False)
    face = find_face(photos["astronaut"], dlib_faces, size=64)
    target = torch.from_numpy(face.ffhq.astype(np.float32) / 255).permute(2, 0, 1)
    ticks = []
    result = invert(G, target, load_analyzer(f"insightface:{pack}"), steps=25, starts=2,
                     callback=lambda step, total: ticks.append(step))
    assert ticks == list(range(1, 26)) and result.image.shape == (3, 64, 64)
    assert result.losses[-1] < 0.9 * result.losses[0] and result.perceptual.startswith("1 - SSIM")
    with pytest.raises(ValueError, match=r"\[3, 64, 64\]"):
        invert(G, target[:, :32], None)


def test_face_mixing_accepts_a_real_photo_for_real_sets_and_explains_it_for_the_embedded_one(pack, photos,
                                                                                              tmp_path):
    from PIL import Image

    from core.mixing import FaceMixer
    from core.nice import NICE
    from core.projection import RealPhotoError, Uploads
    from core.stylegan3 import Generator
    from tests.conftest import tiny_kwargs
    Image.fromarray(photos["astronaut"]).save(tmp_path / "astronaut.png")
    torch.manual_seed(0)
    G = Generator(**tiny_kwargs(resolution=32))
    real = FaceMixer(NICE(G.w_dim, 12, hidden=32, depth=2),
                     Uploads(G, load_analyzer(f"insightface:{pack}"), faces=lambda: faces_backend("dlib")))
    assert real.real
    image = real.photo(tmp_path / "astronaut.png")
    assert image.shape == (3, 32, 32)
    projected = real.project(image, steps=5, starts=2)
    assert projected.w.shape == (1, G.w_dim) and -1 <= projected.identity_similarity <= 1
    mix = real.render(real.mix(projected.w, real.w_from_seed(3)))
    assert mix.shape == (1, 3, 32, 32)
    embedded = FaceMixer.load("embedded")
    with pytest.raises(RealPhotoError, match="only draws SynthFaces") as e:
        embedded.photo(tmp_path / "astronaut.png")
    assert e.value.aligned.shape == (256, 256, 3)


def test_face_distances_of_mixes_with_the_real_backend(dlib_faces, photos):
    from core.metrics.identity import face_distances
    a, mirrored, group = photos["astronaut"], photos["mirrored"], photos["group"]
    # a "mix" that is the identity donor mirrored: close to A, far from B
    scores = face_distances([a], [group], [mirrored], dlib_faces)
    assert scores.pairs == 1 and scores.to_identity_donor < 0.6 < scores.to_attribute_donor
    assert scores.same_person_rate == 1.0
    with pytest.raises(ValueError, match="found no face"):
        face_distances([np.zeros((64, 64, 3), np.uint8)], [a], [a], dlib_faces)
