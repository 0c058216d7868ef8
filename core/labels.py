"""Labellers: what a face shows, read from its picture, as the labels that supervised directions and the NICE's
attribute targets are fitted on.

- `synthfaces`: the SynthFaces analyzer's factor readings (every factor of the embedded world).
- `dlib` / `insightface[:ROOT]`: real faces, read from their 68 landmarks (iBUG layout): head pose (yaw, pitch,
  roll in degrees, from `cv2.solvePnP` against a generic 3D face), mouth opening and eye openness (landmark
  ratios) and smile (mouth width over the outer eye-corner distance); where insightface's pack has its genderage
  model, age and gender too. A face the backend does not find is counted and left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

POSE_NAMES = ("yaw", "pitch", "roll")
LANDMARK_READINGS = POSE_NAMES + ("mouth_open", "eye_open", "smile")
# A generic 3D face (millimetres; x right, y up, z towards the camera) at six of the 68 landmarks.
MODEL_POINTS = np.array([(0.0, 0.0, 0.0), (0.0, -330.0, -65.0), (-225.0, 170.0, -135.0), (225.0, 170.0, -135.0),
                         (-150.0, -150.0, -125.0), (150.0, -150.0, -125.0)])
MODEL_LANDMARKS = [30, 8, 36, 45, 48, 54]  # nose tip, chin, outer eye corners, mouth corners (iBUG indices)


@dataclass
class Labels:
    """Readings [N, K] of N faces (rows of faces not found are NaN), their names, and which faces were found."""

    values: torch.Tensor
    names: list[str]
    found: torch.Tensor  # [N] bool


def head_pose(landmarks: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face from its 68 landmarks [68, 2] in pixels, by solvePnP with a pinhole
    camera (focal length the image width, centre the image centre). Yaw is positive when the face turns to its
    left (the picture's right), roll when it tilts clockwise in the picture."""
    import cv2
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
    image_points = np.asarray(landmarks, dtype=np.float64)[MODEL_LANDMARKS]
    flipped = MODEL_POINTS * np.array([1.0, -1.0, -1.0])  # into the camera's axes: y down, z away
    ok, rvec, _ = cv2.solvePnP(flipped, image_points, camera, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("solvePnP found no head pose for these landmarks")
    rotation, _ = cv2.Rodrigues(rvec)
    pitch, yaw, roll = cv2.RQDecomp3x3(rotation)[0]
    return float(-yaw), float(pitch), float(roll)


def landmark_readings(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """[yaw, pitch, roll, mouth_open, eye_open, smile] of one face's 68 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmark readings need the 68-point layout, got {list(lm.shape)}")

    def dist(a: int, b: int) -> float:
        return float(np.linalg.norm(lm[a] - lm[b]))

    mouth_width = dist(48, 54)
    mouth_open = dist(62, 66) / max(mouth_width, 1e-6)
    eyes = [(dist(37, 41) + dist(38, 40)) / (2 * max(dist(36, 39), 1e-6)),
            (dist(43, 47) + dist(44, 46)) / (2 * max(dist(42, 45), 1e-6))]
    smile = mouth_width / max(dist(36, 45), 1e-6)
    return np.array([*head_pose(lm, width, height), mouth_open, float(np.mean(eyes)), smile])


class LandmarkLabeller:
    """Real faces read by a face backend (dlib, insightface) from their 68 landmarks, and the attributes its models
    read where it has any (insightface's genderage: age, gender)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.attributes = list(getattr(backend, "attributes", ()))
        self.names = list(LANDMARK_READINGS) + self.attributes

    def __call__(self, images: torch.Tensor) -> Labels:
        values = torch.full((len(images), len(self.names)), float("nan"))
        found = torch.zeros(len(images), dtype=torch.bool)
        for i, image in enumerate(images):
            photo = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            faces = self.backend.detect(photo)
            if not faces:
                continue
            face = max(faces, key=lambda f: f.area)
            if face.landmarks is None or len(face.landmarks) != 68:
                continue
            try:
                readings = landmark_readings(face.landmarks, photo.shape[1], photo.shape[0])
            except ValueError:  # no head pose for these landmarks: counted as a face not found
                continue
            extra = [face.attributes.get(name, float("nan")) for name in self.attributes]
            values[i] = torch.tensor([*readings, *extra], dtype=torch.float32)
            found[i] = True
        return Labels(values, self.names, found)


class AnalyzerLabeller:
    """The SynthFaces analyzer's factor readings: every face is read (generated faces of the embedded world)."""

    def __init__(self, analyzer: torch.nn.Module) -> None:
        from core.synthfaces.factors import FACTOR_NAMES
        self.analyzer, self.names = analyzer, list(FACTOR_NAMES)

    def __call__(self, images: torch.Tensor) -> Labels:
        from core.analysis.model import analyze
        factors = analyze(self.analyzer, images).factors
        return Labels(factors, self.names, torch.ones(len(images), dtype=torch.bool))


def check_labeller(spec: str) -> None:
    """Refuse a labeller name that is none of: synthfaces, dlib, insightface[:ROOT]."""
    if not (spec in ("synthfaces", "dlib", "insightface") or spec.startswith("insightface:")):
        raise ValueError(f"unknown labeller {spec!r}; known: synthfaces, dlib, insightface[:ROOT]")


def labeller(spec: str, device: str = "cpu"):
    """A labeller by name: 'synthfaces' (the embedded analyzer), 'dlib', or 'insightface[:ROOT]'."""
    from core.analysis import faces_backend, load_analyzer
    check_labeller(spec)
    if spec == "synthfaces":
        return AnalyzerLabeller(load_analyzer("synthfaces", device=device).eval())
    return LandmarkLabeller(faces_backend(spec))


def identity_model(spec: str) -> Optional[str]:
    """The differentiable identity model that NICE training uses with a labeller (a load_analyzer name), or None
    where the labeller has none (dlib's descriptor is not differentiable)."""
    if spec == "synthfaces":
        return "synthfaces"
    if spec.startswith("insightface"):
        root = spec.split(":", 1)[1] if ":" in spec else "~/.insightface"
        return f"insightface:{root}"
    return None
