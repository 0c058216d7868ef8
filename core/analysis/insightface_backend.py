"""InsightFace backend for real faces: ArcFace identity embedding and 106-point landmarks from ONNX models.

Point it at a local folder holding InsightFace model-zoo files (e.g. the `buffalo_l` pack: `w600k_r50.onnx`
for recognition, `2d106det.onnx` for landmarks); nothing is downloaded. Models are recognised by their input
and output layout: recognition takes [N, 3, 112, 112] and returns [N, D]; landmarks take [N, 3, 192, 192]
and return [N, 212]. Inputs must be aligned face crops (as generators produce). InsightFace's pretrained
models are for non-commercial research only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from core.analysis.model import Analysis

RECOGNITION_SIZE = 112
LANDMARK_SIZE = 192
LANDMARK_OUTPUTS = 212


class FaceModelUnavailable(RuntimeError):
    """A real-face model (or its runtime) is not installed here; the message says what to install or download."""


def _session(path: Path) -> Any:
    import onnxruntime as ort
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise FaceModelUnavailable(f"{path} is not a readable ONNX model: {e}") from e


def _layout(session: Any) -> tuple[Optional[int], Optional[int]]:
    """(input side, flat output size) of a single-input single-output image model."""
    shape = session.get_inputs()[0].shape
    out = session.get_outputs()[0].shape
    side = shape[2] if len(shape) == 4 and shape[2] == shape[3] and isinstance(shape[2], int) else None
    size = out[-1] if len(out) == 2 and isinstance(out[-1], int) else None
    return side, size


class InsightFaceBackend:
    """Same interface as the SynthFaces analyzer (`backend(images) -> Analysis`), for real faces."""

    def __init__(self, model_dir: str | Path) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise FaceModelUnavailable("the InsightFace backend needs onnxruntime: pip install onnxruntime") from e
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FaceModelUnavailable(
                f"no InsightFace models at {model_dir}: download an InsightFace model pack (e.g. buffalo_l: "
                f"w600k_r50.onnx and 2d106det.onnx) into that folder; they cannot be fetched from here")
        self.recognition = self.landmarks = None
        self.input_names: dict[str, str] = {}
        for path in sorted(model_dir.glob("*.onnx")):
            session = _session(path)
            side, size = _layout(session)
            if side == RECOGNITION_SIZE and size is not None and self.recognition is None:
                self.recognition = session
            elif side == LANDMARK_SIZE and size == LANDMARK_OUTPUTS and self.landmarks is None:
                self.landmarks = session
        if self.recognition is None:
            found = ", ".join(p.name for p in model_dir.glob("*.onnx")) or "no .onnx files"
            raise FaceModelUnavailable(
                f"no ArcFace recognition model (input [N, 3, 112, 112], output [N, D]) in {model_dir} ({found})")

    @staticmethod
    def _blob(images: torch.Tensor, side: int, mean: float, std: float) -> np.ndarray:
        x = F.interpolate(images.float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        return ((x * 255 - mean) / std).cpu().numpy().astype(np.float32)

    def __call__(self, images: torch.Tensor) -> Analysis:
        """images: [B, 3, H, W] RGB in [0, 1], aligned face crops."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [batch, 3, H, W], got {list(images.shape)}")
        rec_in = self.recognition.get_inputs()[0].name
        emb = self.recognition.run(None, {rec_in: self._blob(images, RECOGNITION_SIZE, 127.5, 127.5)})[0]
        embedding = F.normalize(torch.from_numpy(emb).float(), dim=1)
        landmarks = None
        if self.landmarks is not None:
            lm_in = self.landmarks.get_inputs()[0].name
            pred = self.landmarks.run(None, {lm_in: self._blob(images, LANDMARK_SIZE, 0.0, 1.0)})[0]
            pts = torch.from_numpy(pred).float().view(images.shape[0], -1, 2)
            landmarks = (pts + 1) * (images.shape[-1] / 2)
        return Analysis(embedding=embedding, factors=None, landmarks=landmarks)
