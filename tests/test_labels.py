"""The real-face labeller over an insightface pack: its 68 landmarks, and age and gender from the pack's genderage
model as insightface itself routes and runs it (the model is a tiny ONNX file written here in the pack's format;
the detector is a stand-in that finds the face where dlib does, since no pack can be downloaded here)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("insightface")


def _genderage_onnx(path, female: float, male: float, age_over_100: float) -> None:
    """A genderage model in insightface's format: a [1, 3, 96, 96] face in, [female, male, age / 100] out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weights = numpy_helper.from_array(np.zeros((3, 3), np.float32), "W")
    bias = numpy_helper.from_array(np.array([female, male, age_over_100], np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "W", "b"], ["fc1"], transB=1)],
        "genderage", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 96, 96])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3])], initializer=[weights, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))


@pytest.fixture(scope="module")
def astronaut():
    """The astronaut photo and dlib's reading of her face (box, key points, 68 landmarks)."""
    from skimage import data

    from core.analysis import faces_backend
    photo = data.astronaut()
    return photo, max(faces_backend("dlib").detect(photo), key=lambda f: f.area)


def _backend(models: dict, face, landmarks68: bool = True):
    """InsightFaces over FaceAnalysis's interface (models by task; `get` on a BGR photo runs every model but the
    detector on each face found), with a detector that finds `face`."""
    from insightface.app.common import Face

    from core.analysis.insightface_backend import InsightFaces

    class Pack:
        def __init__(self) -> None:
            self.models = models

        def get(self, bgr: np.ndarray) -> list:
            found = Face(bbox=face.bbox, kps=face.points, det_score=0.99)
            if landmarks68:
                found.landmark_3d_68 = np.c_[face.landmarks, np.zeros(68)]
            else:
                found.landmark_2d_106 = np.zeros((106, 2))
            for task, model in self.models.items():
                if task != "detection":
                    model.get(bgr, found)
            return [found]

    backend = InsightFaces.__new__(InsightFaces)
    backend.app = Pack()
    return backend


def test_an_insightface_pack_with_genderage_labels_age_and_gender_beside_the_landmark_readings(astronaut, tmp_path):
    from insightface.model_zoo import get_model

    from core.labels import LANDMARK_READINGS, LandmarkLabeller, landmark_readings
    photo, face = astronaut
    _genderage_onnx(tmp_path / "genderage.onnx", female=0.1, male=0.9, age_over_100=0.42)
    model = get_model(str(tmp_path / "genderage.onnx"), providers=["CPUExecutionProvider"])
    assert model.taskname == "genderage"  # insightface routes the file as the pack's genderage model
    images = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255

    labels = LandmarkLabeller(_backend({"detection": None, "genderage": model}, face))(images)
    assert labels.names == [*LANDMARK_READINGS, "age", "gender"] and bool(labels.found.all())
    expected = landmark_readings(face.landmarks, photo.shape[1], photo.shape[0])
    np.testing.assert_allclose(labels.values[0, :6].numpy(), expected, rtol=1e-5, atol=1e-4)
    assert labels.values[0, 6].item() == 42 and labels.values[0, 7].item() == 1  # male: the larger logit

    _genderage_onnx(tmp_path / "female.onnx", female=0.9, male=0.1, age_over_100=0.27)
    model = get_model(str(tmp_path / "female.onnx"), providers=["CPUExecutionProvider"])
    labels = LandmarkLabeller(_backend({"detection": None, "genderage": model}, face))(images)
    assert labels.values[0, 6].item() == 27 and labels.values[0, 7].item() == 0


def test_an_insightface_pack_without_genderage_or_68_landmarks(astronaut):
    from core.labels import LANDMARK_READINGS, LandmarkLabeller
    photo, face = astronaut
    images = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    labels = LandmarkLabeller(_backend({"detection": None}, face))(images)
    assert labels.names == list(LANDMARK_READINGS) and bool(labels.found.all())
    assert torch.isfinite(labels.values).all()
    labels = LandmarkLabeller(_backend({"detection": None}, face, landmarks68=False))(images)
    assert not labels.found.any() and torch.isnan(labels.values).all()  # 106 points only: counted, not read
