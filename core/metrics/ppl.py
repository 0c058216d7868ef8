"""Perceptual path length (Karras et al., StyleGAN; as in NVlabs stylegan2-ada-pytorch metrics/
perceptual_path_length.py): how much the image changes along small steps of an interpolation path.

For each pair z0, z1 ~ N(0, I) and t ~ U(0, 1) ('full') or t = 0 ('end'): in Z, slerp between the two latents at
t and at t + eps, then map both to W; in W, map first and lerp. Both images are synthesised with the same constant
noise, cropped to the face (rows 3/8..7/8, columns 2/8..6/8 of the side, as the StyleGAN face metrics do), and
their distance divided by eps^2 (eps = 1e-4). The mean over samples between the 1st and 99th percentiles is the
score (lower is smoother).

The papers' distance is LPIPS (VGG16); its weights cannot be downloaded here, so `ppl` takes the distance as an
argument: `lpips_distance()` when the `lpips` package and torchvision's VGG16 weights are on disk, else
`analyzer_distance(analyzer)`, the squared distance between SynthFaces-analyzer features, named as such. Numbers
from the two are not comparable. Where the generator leaves z un-normalised (the distilled generator), the Z slerp
interpolates the direction on the sphere and the norm linearly, so the path stays among typical latents.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

EPSILON = 1e-4
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # two [B, 3, H, W] in [0, 1] -> [B]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of a and b ([B, D]) at t ([B, 1]); unit-norm result."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    d = (a * b).sum(-1, keepdim=True)
    p = t * torch.acos(d.clamp(-1 + 1e-7, 1 - 1e-7))
    c = F.normalize(b - d * a, dim=-1)
    return F.normalize(a * torch.cos(p) + c * torch.sin(p), dim=-1)


def face_crop(images: torch.Tensor) -> torch.Tensor:
    c = images.shape[-1] // 8
    return images[..., c * 3:c * 7, c * 2:c * 6]


def analyzer_distance(analyzer: torch.nn.Module) -> Distance:
    """Squared distance between analyzer features (unit identity embedding, factor readings): the offline stand-in
    for LPIPS."""
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = analyzer(a), analyzer(b)
        return (fa.embedding - fb.embedding).square().sum(1) + (fa.factors - fb.factors).square().sum(1)
    return distance


def lpips_distance(device: str = "cpu") -> Distance:
    """LPIPS (VGG16) as the papers use it; raises FeatureModelUnavailable when the package or weights are missing."""
    from core.metrics.fd import FeatureModelUnavailable
    try:
        import lpips
    except ImportError as e:
        raise FeatureModelUnavailable("LPIPS needs the lpips package (pip install lpips) and torchvision's VGG16 "
                                      "weights; the analyzer distance needs neither") from e
    try:
        model = lpips.LPIPS(net="vgg", verbose=False).to(device).eval()
    except Exception as e:  # the VGG16 download fails offline, in whatever error type the network layer raises
        raise FeatureModelUnavailable(f"LPIPS could not load its VGG16 weights ({type(e).__name__}: {e}); on a "
                                      f"machine with internet they download once into torch's cache") from e

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return model(a * 2 - 1, b * 2 - 1).flatten()
    return distance


@torch.no_grad()
def ppl(G: torch.nn.Module, distance: Distance, space: str = "w", sampling: str = "full", samples: int = 10_000,
        batch: int = 64, epsilon: float = EPSILON, crop: bool = True, seed: int = 0) -> float:
    """Perceptual path length of generator G in Z or W, with 'full' or 'end' sampling of t."""
    if space not in ("z", "w") or sampling not in ("full", "end"):
        raise ValueError("space must be 'z' or 'w' and sampling 'full' or 'end'")
    if samples < 2:
        raise ValueError("PPL needs at least two samples")
    gen = torch.Generator().manual_seed(seed)
    device = G.mapping.w_avg.device
    scores = []
    for start in range(0, samples, batch):
        n = min(batch, samples - start)
        z = torch.randn(2 * n, G.z_dim, generator=gen).to(device)
        t = (torch.rand(n, 1, generator=gen) if sampling == "full" else torch.zeros(n, 1)).to(device)
        z0, z1 = z[:n], z[n:]
        if space == "z":
            ts = torch.cat([t, t + epsilon])
            path = slerp(z0.repeat(2, 1), z1.repeat(2, 1), ts)
            if not getattr(G.mapping, "normalize_z", True):
                path = path * torch.lerp(z0.norm(dim=1, keepdim=True), z1.norm(dim=1, keepdim=True), t).repeat(2, 1)
            w = G.mapping(path)[:, 0]
        else:
            w0, w1 = G.mapping(z0)[:, 0], G.mapping(z1)[:, 0]
            w = torch.cat([w0.lerp(w1, t), w0.lerp(w1, t + epsilon)])
        images = G.images_from_w(w).clamp(0, 1)
        if crop:
            images = face_crop(images)
        scores.append((distance(images[:n], images[n:]) / epsilon ** 2).float().cpu())
    d = torch.cat(scores).numpy()
    lo, hi = np.percentile(d, 1, method="lower"), np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())
