"""Project an aligned face photo into a generator's W by optimisation (for real model sets: the FFHQ generator).

Start from the W average (the best of a few sampled W by the same loss), then optimise w with Adam on
    identity (1 - cosine of a differentiable identity model's embeddings, e.g. ArcFace through onnx2torch)
  + pixel (mean squared error on a downsampled copy, so the coarse layout is matched first)
  + perceptual (LPIPS when its weights are on disk; else 1 - SSIM at two scales, named as such).
Each term is weighted; the per-step loss is returned so callers (and tests) can see it fall.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from core.metrics.ssim import ssim


@dataclass
class Inversion:
    w: torch.Tensor  # [1, w_dim]
    image: torch.Tensor  # [3, H, W] in [0, 1], the generated face
    losses: list[float] = field(default_factory=list)  # total loss per step
    perceptual: str = "ssim"  # which perceptual term was used


def _perceptual() -> tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    from core.metrics.fd import FeatureModelUnavailable
    from core.metrics.ppl import lpips_distance
    try:
        return "lpips", lpips_distance()
    except FeatureModelUnavailable:
        def structural(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            half = (F.avg_pool2d(a, 2), F.avg_pool2d(b, 2))
            return (1 - ssim(a, b)) + (1 - ssim(*half))
        return "1 - SSIM at two scales", structural


def invert(G: torch.nn.Module, target: torch.Tensor, identity: Optional[torch.nn.Module] = None, steps: int = 100,
            lr: float = 0.05, starts: int = 8, weights: tuple[float, float, float] = (1.0, 1.0, 1.0), seed: int = 0,
            callback: Optional[Callable[[int, int], None]] = None) -> Inversion:
    """w whose image matches `target` ([3, H, W] in [0, 1] at the generator's resolution, FFHQ-aligned)."""
    side = G.img_resolution
    if target.ndim != 3 or tuple(target.shape) != (3, side, side):
        raise ValueError(f"target must be a [3, {side}, {side}] image, got {list(target.shape)}")
    if not torch.isfinite(target).all():
        raise ValueError("target holds NaN or infinite values")
    device = G.mapping.w_avg.device
    x = target.to(device).unsqueeze(0).clamp(0, 1)
    name, perceptual = _perceptual()
    w_identity, w_pixel, w_perceptual = weights
    pool = max(1, side // 64)
    with torch.no_grad():
        target_emb = identity(x).embedding if identity is not None else None

    def loss_of(w: torch.Tensor) -> torch.Tensor:
        img = G.images_from_w(w).clamp(0, 1)
        loss = w_pixel * (F.avg_pool2d(img, pool) - F.avg_pool2d(x, pool)).square().mean((1, 2, 3))
        loss = loss + w_perceptual * perceptual(img, x.expand_as(img))
        if target_emb is not None:
            loss = loss + w_identity * (1 - (identity(img).embedding * target_emb).sum(1))
        return loss

    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        candidates = torch.cat([G.mapping.w_avg[None], G.mapping(torch.randn(starts, G.z_dim, generator=gen).to(
            device), truncation_psi=0.7)[:, 0]])
        start = candidates[int(torch.cat([loss_of(c[None]) for c in candidates]).argmin())]
    w = start.clone()[None].requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    losses = []
    for step in range(steps):
        loss = loss_of(w).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if callback is not None:
            callback(step + 1, steps)
    w = w.detach()
    with torch.no_grad():
        image = G.images_from_w(w).clamp(0, 1)[0].cpu()
    return Inversion(w, image, losses, name)
