"""Structural similarity (SSIM, Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, range 1."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _window(size: int, sigma: float, channels: int, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of two [B, C, H, W] image batches in [0, 1] (valid region, averaged over channels)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two image batches of the same shape [B, C, H, W], got {list(a.shape)} and "
                         f"{list(b.shape)}")
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    w = _window(window, sigma, a.shape[1], a.dtype).to(a.device)
    blur = lambda x: F.conv2d(x, w, groups=a.shape[1])  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a.square()
    var_b = blur(b * b) - mu_b.square()
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a.square() + mu_b.square() + c1) * (var_a + var_b + c2))
    return s.mean(dim=1)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image, [B]."""
    return ssim_map(a, b).mean(dim=[1, 2])
