"""Image grids and PNG output shared by the dataset tools, samplers and apps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_grid(images: torch.Tensor, nrow: int, pad: int = 2, fill: float = 1.0) -> torch.Tensor:
    """Tile [N, 3, H, W] images in [0, 1] into one [3, rows*(H+pad)+pad, nrow*(W+pad)+pad] image."""
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got {list(images.shape)}")
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    grid = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), fill, dtype=images.dtype)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
    return grid


def to_pil(image: torch.Tensor) -> Image.Image:
    """[3, H, W] tensor in [0, 1] -> RGB PIL image."""
    array = (image.detach().clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, pad: int = 2) -> Path:
    """Write a PNG contact sheet of [N, 3, H, W] images."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(make_grid(images, nrow, pad)).save(path)
    return path
