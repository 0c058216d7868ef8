"""Real photographs: find the face, align it, and embed it, with a real-face backend (dlib offline, insightface
where its packs are available).

    photo -> detect (the largest face; the others are counted) -> FFHQ-aligned crop for the generator, ArcFace
    crop for recognition -> identity embedding (the backend's own recogniser)

`pipeline_picture` draws the steps side by side (the README's picture).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.analysis.align import DetectedFace, align_arcface, align_ffhq, draw_face
from core.imaging import ImageInputError, read_image


class NoFaceError(ImageInputError):
    """No face was found in a photo."""


@dataclass
class PhotoFace:
    """The face chosen in a photo, its aligned crops, and notes for the user."""

    photo: np.ndarray  # RGB uint8
    face: DetectedFace
    faces_found: int
    ffhq: np.ndarray  # [size, size, 3] uint8, the generator's alignment
    arcface: np.ndarray  # [112, 112, 3] uint8
    notes: list[str] = field(default_factory=list)

    @property
    def embedding(self) -> np.ndarray:
        return self.face.embedding


def find_face(photo: np.ndarray, backend, size: int = 256, notes: list[str] | None = None) -> PhotoFace:
    """The largest face of an RGB uint8 photo, aligned; NoFaceError when there is none."""
    faces = backend.detect(photo)
    if not faces:
        raise NoFaceError("no face found in the photo; use a picture with one clearly visible, roughly frontal face")
    face = max(faces, key=lambda f: f.area)
    notes = list(notes or [])
    if len(faces) > 1:
        notes.append(f"{len(faces)} faces found; the largest was used")
    with warnings.catch_warnings():  # insightface's norm_crop uses a scikit-image call deprecated in 0.26
        warnings.simplefilter("ignore", FutureWarning)
        arcface = align_arcface(photo, face.points)
    return PhotoFace(photo, face, len(faces), align_ffhq(photo, face.points, size), arcface, notes)


def analyze_photo(path: str | Path, backend, size: int = 256) -> PhotoFace:
    """Read a photo file (size limits, transparency) and find its face."""
    photo, notes = read_image(path)
    return find_face(photo, backend, size, notes)


def identity_distance(a: PhotoFace, b: PhotoFace, backend) -> tuple[float, bool]:
    """(the backend's identity distance between two photos' faces, whether it calls them the same person)."""
    if a.embedding is None or b.embedding is None:
        raise ValueError(f"the {backend.name} backend computed no identity embedding")
    d = backend.distance(a.embedding, b.embedding)
    return d, d < backend.same_person_distance


def pipeline_picture(face: PhotoFace, height: int = 256) -> np.ndarray:
    """The photo with the face marked, then the FFHQ crop, then the ArcFace crop, side by side (RGB uint8)."""
    import cv2
    drawn = draw_face(face.photo, face.face)
    scale = height / drawn.shape[0]
    parts = [cv2.resize(drawn, (round(drawn.shape[1] * scale), height), interpolation=cv2.INTER_AREA),
             cv2.resize(face.ffhq, (height, height), interpolation=cv2.INTER_AREA),
             cv2.resize(face.arcface, (height, height), interpolation=cv2.INTER_NEAREST)]
    gap = np.full((height, 8, 3), 255, np.uint8)
    return np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1)
