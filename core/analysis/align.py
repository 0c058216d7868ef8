"""Face alignment for real photos, with OpenCV: the FFHQ crop that StyleGAN generators expect, and ArcFace's
112x112 crop (insightface's own `norm_crop`).

FFHQ (NVlabs ffhq-dataset, `recreate_aligned_images`): from the eye centres and mouth corners, an oriented square
(quad) around the face: x = eye_to_eye - rot90(eye_to_mouth), scaled to max(2 |eye_to_eye|, 1.8 |eye_to_mouth|),
centred at eye_avg + 0.1 eye_to_mouth. The quad is mapped onto the output square by one affine warp
(cv2.warpAffine); a large photo is first shrunk with area averaging so the warp does not alias, and what falls
outside the photo is filled by reflection (the recipe also blurs that padding; we do not).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# The order of the 5 key points everywhere in core.analysis (image left and right, as insightface's `kps`).
POINTS = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass
class DetectedFace:
    """One face found in a photo: box (x0, y0, x1, y1), detector score, 5 key points [5, 2] in POINTS order,
    dense landmarks [L, 2] where the backend has them (68 in the iBUG layout where it can), identity embedding
    where it computes one, and the attributes its models read (insightface's genderage: age in years, gender 1
    for male and 0 for female)."""

    bbox: np.ndarray
    score: float
    points: np.ndarray
    landmarks: Optional[np.ndarray] = None
    embedding: Optional[np.ndarray] = None
    attributes: dict[str, float] = field(default_factory=dict)

    @property
    def area(self) -> float:
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))


def ffhq_quad(points: np.ndarray) -> np.ndarray:
    """[4, 2] corners (top-left, bottom-left, bottom-right, top-right) of the FFHQ crop from 5 key points."""
    p = np.asarray(points, dtype=np.float64)
    eye_left, eye_right, mouth_left, mouth_right = p[0], p[1], p[3], p[4]
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def align_ffhq(image: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """The FFHQ-aligned [size, size, 3] uint8 crop of an RGB uint8 photo, given its 5 key points."""
    import cv2
    quad = ffhq_quad(points)
    side = np.hypot(*(quad[3] - quad[0]))
    shrink = int(np.floor(side / size * 0.5))
    if shrink > 1:  # area-average the photo first, as the recipe does, so the warp does not alias
        h, w = image.shape[:2]
        image = cv2.resize(image, (max(1, round(w / shrink)), max(1, round(h / shrink))), interpolation=cv2.INTER_AREA)
        quad = quad / shrink
    dst = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]], np.float32)
    m = cv2.getAffineTransform(quad[:3].astype(np.float32), dst)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def align_arcface(image: np.ndarray, points: np.ndarray, size: int = 112) -> np.ndarray:
    """ArcFace's crop ([size, size, 3] uint8): the similarity transform onto its 5-point template
    (insightface.utils.face_align.norm_crop)."""
    from insightface.utils.face_align import norm_crop
    return norm_crop(np.ascontiguousarray(image), np.asarray(points, dtype=np.float32), image_size=size)


def draw_face(image: np.ndarray, face: DetectedFace) -> np.ndarray:
    """A copy of the photo with the face's box, key points and dense landmarks drawn on it (for the pipeline
    picture and the app)."""
    import cv2
    out = np.ascontiguousarray(image.copy())
    scale = max(1, round(max(image.shape[:2]) / 400))
    x0, y0, x1, y1 = (int(round(v)) for v in face.bbox)
    cv2.rectangle(out, (x0, y0), (x1, y1), (0, 220, 0), 2 * scale)
    for x, y in (face.landmarks if face.landmarks is not None else []):
        cv2.circle(out, (int(round(x)), int(round(y))), scale, (255, 200, 0), -1)
    for x, y in face.points:
        cv2.circle(out, (int(round(x)), int(round(y))), 3 * scale, (255, 0, 0), -1)
    return out
