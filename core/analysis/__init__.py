"""Face analysis on one interface (`model(images) -> Analysis(embedding, factors, landmarks)`): the SynthFaces
analyzer (embedded, differentiable), insightface's models made differentiable (real faces, for training), and the
real-face detectors that find, align and recognise faces in photos (dlib offline, insightface where it is
available)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from core.analysis.model import Analysis, FaceAnalyzer, FaceModelUnavailable, analyze


def analyzer_checkpoint(name: str = "synthfaces") -> str:
    """The checkpoint behind an analyzer name: 'synthfaces' is the shipped one; anything else is a checkpoint."""
    return "synthfaces_analyzer" if name == "synthfaces" else name


def load_analyzer(name: str = "synthfaces", device: str = "cpu"):
    """'synthfaces' (the shipped analyzer), a path to an analyzer checkpoint, or 'insightface:<pack folder>' (its
    recognition and landmark models as differentiable torch modules). Every one is a torch module."""
    if name.startswith("insightface:"):
        from core.analysis.insightface_backend import InsightFaceTorch
        return InsightFaceTorch(Path(name.split(":", 1)[1])).to(device)
    return FaceAnalyzer.from_pretrained(analyzer_checkpoint(name), device=device)


def offline() -> bool:
    """True where nothing may be downloaded (HF_HUB_OFFLINE or LATENT_LAB_OFFLINE set)."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "LATENT_LAB_OFFLINE"))


def faces_backend(spec: Optional[str] = None):
    """The real-face detector and recogniser by name: 'dlib' (offline, weights from the package registry; the
    default, or $LATENT_LAB_FACES) or 'insightface[:ROOT]' (model packs under ROOT, fetched only when online)."""
    spec = spec or os.environ.get("LATENT_LAB_FACES", "dlib")
    if spec == "dlib":
        from core.analysis.dlib_backend import DlibFaces
        return DlibFaces()
    if spec.startswith("insightface"):
        from core.analysis.insightface_backend import InsightFaces
        root = spec.split(":", 1)[1] if ":" in spec else "~/.insightface"
        return InsightFaces(root, allow_download=not offline())
    raise ValueError(f"unknown face backend {spec!r}; known: dlib, insightface[:ROOT]")


__all__ = ["Analysis", "FaceAnalyzer", "FaceModelUnavailable", "analyze", "analyzer_checkpoint", "faces_backend",
           "load_analyzer", "offline"]
