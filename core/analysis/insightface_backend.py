"""insightface for real faces, through the insightface package itself (`insightface.app.FaceAnalysis` over a
model pack such as buffalo_l): detection, 5 key points, 68 landmarks (106 where the pack has no 3D landmark model),
the ArcFace embedding, and age and gender where the pack has its genderage model; and the same recognition and
landmark ONNX models made differentiable with onnx2torch, for the DisGAN losses.

Model packs: `<root>/models/<pack>/*.onnx`. Offline, a pack must already be there (nothing is fetched and a missing
one is a clear error); with `allow_download=True` (a Space with internet) FaceAnalysis fetches it as it normally
does. insightface's own code is MIT, but its pretrained model packs are for non-commercial research only.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.analysis.align import DetectedFace
from core.analysis.model import Analysis, FaceModelUnavailable

DEFAULT_PACK = "buffalo_l"
LICENCE = "insightface model packs (buffalo_l etc.): non-commercial research only"
SAME_PERSON_COSINE = 0.3  # ArcFace: cosine similarity above this is usually the same person


def pack_dir(root: str | Path, pack: str = DEFAULT_PACK) -> Path:
    """`<root>/models/<pack>` (or `root` itself when it already holds the .onnx files)."""
    root = Path(root).expanduser()
    return root if any(root.glob("*.onnx")) else root / "models" / pack


def _missing(folder: Path) -> FaceModelUnavailable:
    return FaceModelUnavailable(
        f"no insightface model pack at {folder}: put the pack's .onnx files there (e.g. buffalo_l from "
        f"insightface's releases: det_10g.onnx, w600k_r50.onnx, 2d106det.onnx, ...); this machine cannot download "
        f"them. Licence: {LICENCE}")


def _landmarks(face) -> np.ndarray | None:
    """A face's 68 landmarks [68, 2] where insightface gave them, else its 106, else None."""
    if face.landmark_3d_68 is not None:
        return np.asarray(face.landmark_3d_68, float)[:, :2]
    return None if face.landmark_2d_106 is None else np.asarray(face.landmark_2d_106, float)


class InsightFaces:
    """insightface.app.FaceAnalysis over a local pack: faces with box, key points, landmarks, embedding
    and the pack's attributes."""

    name = "insightface"
    licence = LICENCE
    same_person_distance = 1 - SAME_PERSON_COSINE

    def __init__(self, root: str | Path = "~/.insightface", pack: str = DEFAULT_PACK, det_size: int = 640,
                 allow_download: bool = False) -> None:
        try:
            from insightface.app import FaceAnalysis
        except ImportError as e:
            raise FaceModelUnavailable("the insightface backend needs the insightface package: pip install "
                                       "insightface") from e
        folder = pack_dir(root, pack)
        if allow_download and not folder.is_dir():
            self.app = FaceAnalysis(name=pack, root=str(Path(root).expanduser()), providers=["CPUExecutionProvider"])
        elif folder.is_dir():  # an existing folder as the name: FaceAnalysis reads it and never downloads
            self.app = FaceAnalysis(name=str(folder.resolve()), providers=["CPUExecutionProvider"])
        else:
            raise _missing(folder)
        self.app.prepare(ctx_id=-1, det_size=(det_size, det_size))

    @property
    def attributes(self) -> tuple[str, ...]:
        """The attributes this pack reads besides landmarks: age and gender where it has a genderage model."""
        return ("age", "gender") if "genderage" in self.app.models else ()

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an RGB uint8 photo (insightface takes BGR). The landmarks are the pack's 68 (iBUG layout, from
        its 3D landmark model, x and y) where it has that model, else its 106."""
        with warnings.catch_warnings():  # its norm_crop uses a scikit-image call deprecated in 0.26
            warnings.simplefilter("ignore", FutureWarning)
            faces = self.app.get(np.ascontiguousarray(image[:, :, ::-1]))
        return [DetectedFace(np.asarray(f.bbox, float), float(f.det_score), np.asarray(f.kps, float),
                             _landmarks(f), None if f.embedding is None else np.asarray(f.normed_embedding, float),
                             {} if f.age is None else {"age": float(f.age), "gender": float(f.gender)})
                for f in faces]

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        """1 - cosine similarity of two embeddings."""
        return float(1 - np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class InsightFaceTorch(torch.nn.Module):
    """The pack's ArcFace recognition (and 106-point landmark) ONNX models as differentiable torch modules
    (onnx2torch), with the analyzer's interface: `model(images) -> Analysis(embedding, None, landmarks)`. Inputs are
    aligned face crops in [0, 1] (a generator's output), resized to each model's input side."""

    def __init__(self, root: str | Path, pack: str = DEFAULT_PACK) -> None:
        super().__init__()
        try:
            from insightface.model_zoo import get_model
            from onnx2torch import convert
        except ImportError as e:
            raise FaceModelUnavailable("differentiable insightface models need insightface and onnx2torch: pip "
                                       "install insightface onnx2torch") from e
        folder = pack_dir(root, pack)
        if not folder.is_dir():
            raise _missing(folder)
        found: dict[str, tuple[Path, object]] = {}
        for path in sorted(folder.glob("*.onnx")):
            try:
                model = get_model(str(path), providers=["CPUExecutionProvider"])  # insightface classifies it
            except Exception:  # noqa: BLE001 - onnxruntime raises its own types for unreadable files
                continue
            task = getattr(model, "taskname", None)
            if task in ("recognition", "landmark_2d_106") and task not in found:
                found[task] = (path, model)
        if "recognition" not in found:
            names = ", ".join(p.name for p in folder.glob("*.onnx")) or "no .onnx files"
            raise FaceModelUnavailable(f"no ArcFace recognition model in {folder} ({names}); {LICENCE}")
        path, rec = found["recognition"]
        self.recognition = convert(str(path)).eval()
        self.rec_side, self.rec_mean, self.rec_std = int(rec.input_size[0]), float(rec.input_mean), float(rec.input_std)
        self.landmarks = None
        if "landmark_2d_106" in found:
            path, lmk = found["landmark_2d_106"]
            self.landmarks = convert(str(path)).eval()
            self.lmk_side, self.lmk_mean, self.lmk_std = (int(lmk.input_size[0]), float(lmk.input_mean),
                                                          float(lmk.input_std))

    @staticmethod
    def _input(images: torch.Tensor, side: int, mean: float, std: float) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        return (x * 255 - mean) / std

    def forward(self, images: torch.Tensor) -> Analysis:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [batch, 3, H, W], got {list(images.shape)}")
        emb = F.normalize(self.recognition(self._input(images, self.rec_side, self.rec_mean, self.rec_std)), dim=1)
        landmarks = None
        if self.landmarks is not None:
            pred = self.landmarks(self._input(images, self.lmk_side, self.lmk_mean, self.lmk_std))
            landmarks = (pred.view(images.shape[0], -1, 2) + 1) * (images.shape[-1] / 2)
        return Analysis(embedding=emb, factors=None, landmarks=landmarks)
