"""Fréchet distances between image sets, and per-factor distribution match.

`analyzer FD` is the Fréchet distance between Gaussians fitted to SynthFaces-analyzer features (unit identity
embedding + predicted factors): computable offline, comparable only with itself; it is **not** Inception FID.
`inception_features` gives torchvision Inception-v3 pool features when torchvision and its weights are on disk.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import scipy.linalg
import scipy.stats
import torch

from core.analysis.model import Analysis, analyze
from core.synthfaces.factors import FACTOR_NAMES

INCEPTION_WEIGHTS = "inception_v3_google-0cc3c7bd.pth"


class FeatureModelUnavailable(RuntimeError):
    """The feature network for a metric is not installed or its weights are not on disk."""


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for feature rows a [N, D] and b [M, D]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two feature matrices [N>=2, D] of the same width, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = scipy.linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(root).all():  # nearly singular product: regularise both covariances a little
        eps = np.eye(len(cov_a)) * 1e-6
        root = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    return float(np.square(mu_a - mu_b).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real))


def analysis_features(readings: Analysis) -> np.ndarray:
    """FD features [N, D] of analyzer readings: unit embedding ++ predicted factors."""
    return torch.cat([readings.embedding, readings.factors], dim=1).numpy()


def analyzer_features(analyzer: torch.nn.Module, images: torch.Tensor,
                      batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, D], predicted factors [N, F]) of images in [0, 1]; features = unit embedding ++ factors."""
    readings = analyze(analyzer, images, batch)
    return analysis_features(readings), readings.factors.numpy()


def factor_match(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """Per-factor 1-D Wasserstein distance between the analyzer's factor readings of two sets (0 = same)."""
    return {name: float(scipy.stats.wasserstein_distance(real[:, i], fake[:, i]))
            for i, name in enumerate(FACTOR_NAMES)}


def inception_features(images: torch.Tensor, weights: Optional[str | Path] = None, batch: int = 64) -> np.ndarray:
    """torchvision Inception-v3 2048-d pool features of images in [0, 1] (for FID). These are torchvision's
    weights, close to but not the TF-Inception graph of published FIDs, so compare only with each other."""
    try:
        import torchvision
    except ImportError as e:
        raise FeatureModelUnavailable("Inception FID needs torchvision (pip install torchvision)") from e
    path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS
    if not path.is_file():
        raise FeatureModelUnavailable(
            f"Inception-v3 weights not found at {path}; on a machine with internet run "
            "`python -c \"import torchvision; torchvision.models.inception_v3(weights='DEFAULT')\"` "
            "or pass the .pth file; the analyzer FD needs no download")
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.fc = torch.nn.Identity()
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.nn.functional.interpolate(images[start:start + batch], size=(299, 299), mode="bilinear",
                                                align_corners=False)
            out.append(model((x - mean) / std))
    return torch.cat(out).numpy()
