"""Face analysis: the SynthFaces analyzer (embedded, differentiable) and the InsightFace backend (real faces)."""
from __future__ import annotations

from pathlib import Path

from core.analysis.model import Analysis, FaceAnalyzer


def analyzer_checkpoint(name: str = "synthfaces") -> str:
    """The checkpoint behind an analyzer name: 'synthfaces' is the shipped one; anything else is a checkpoint."""
    return "synthfaces_analyzer" if name == "synthfaces" else name


def load_analyzer(name: str = "synthfaces", device: str = "cpu"):
    """'synthfaces' (the shipped analyzer), a path to an analyzer checkpoint, or 'insightface:<model folder>'."""
    if name.startswith("insightface:"):
        from core.analysis.insightface_backend import InsightFaceBackend
        return InsightFaceBackend(Path(name.split(":", 1)[1]))
    return FaceAnalyzer.from_pretrained(analyzer_checkpoint(name), device=device)


__all__ = ["Analysis", "FaceAnalyzer", "analyzer_checkpoint", "load_analyzer"]
