"""The offline real-face backend: dlib's detector, landmarks and 128-d face descriptor, with the weights that the
`face-recognition-models` package ships (no download, runs on a CPU in about 0.1-0.5 s per photo).

Why dlib: it is the only face-recognition model with real weights that installs from the package registry here
(`dlib-bin` is a ready wheel; `face-recognition-models` carries the weights), so real photos can be processed and
tested offline. insightface stays the real path where its model packs can be fetched.

Licences: dlib (Boost), the HOG detector, the 5-point landmark model and the ResNet descriptor (Davis King: public
domain / CC0). The 68-point landmark model is trained on iBUG 300-W, which excludes commercial use: it is used
only for the mouth corners that the FFHQ alignment needs (the 5-point model has no mouth). Descriptors of the same
person lie within 0.6 (Euclidean) of each other; different people lie further apart.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from core.analysis.align import DetectedFace
from core.analysis.model import FaceModelUnavailable

SAME_PERSON_DISTANCE = 0.6
LICENCE = ("dlib detector, 5-point landmarks and ResNet descriptor: public domain (CC0); 68-point landmarks: "
           "iBUG 300-W, non-commercial use only")


def model_dir() -> Path:
    """Where face-recognition-models keeps its .dat files (found without importing it: it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelUnavailable("the offline face models are not installed: pip install face-recognition-models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibFaces:
    """Detect faces, their key points and 68 landmarks, and a 128-d identity descriptor, with dlib."""

    name = "dlib"
    licence = LICENCE
    same_person_distance = SAME_PERSON_DISTANCE

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as e:
            raise FaceModelUnavailable("the offline face backend needs dlib: pip install dlib-bin") from e
        folder = model_dir()
        self.detector = dlib.get_frontal_face_detector()
        self.points5 = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.points68 = dlib.shape_predictor(str(folder / "shape_predictor_68_face_landmarks.dat"))
        self.recognition = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an RGB uint8 photo, each with its box, key points, 68 landmarks and descriptor."""
        image = np.ascontiguousarray(image)
        rects, scores, _ = self.detector.run(image, 1)
        faces = []
        for rect, score in zip(rects, scores):
            lm = np.array([[p.x, p.y] for p in self.points68(image, rect).parts()], dtype=np.float64)
            points = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
            descriptor = np.array(self.recognition.compute_face_descriptor(image, self.points5(image, rect)))
            faces.append(DetectedFace(np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], float),
                                      float(score), points, lm, descriptor))
        return faces

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        """Euclidean distance between descriptors (same person below SAME_PERSON_DISTANCE)."""
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
