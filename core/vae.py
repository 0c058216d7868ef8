"""The VAE of the LFW notebook, and a convolutional variant.

MLP (the notebook's): a 45x45x3 image flattened to 6075 values; encoder 6075-1500-1000 with BatchNorm and ReLU;
linear heads for mu and logvar; decoder dim_z-1000-1500-6075 (BatchNorm + ReLU between, Sigmoid at the end).
Loss: summed binary cross-entropy of the reconstruction plus beta times the KL divergence to N(0, I), per image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

SIDE = 45
INPUT = SIDE * SIDE * 3
ARCHITECTURES = ("mlp", "conv")


@dataclass
class VAEOutput:
    recon: torch.Tensor  # [B, 3, 45, 45] in [0, 1]
    mu: torch.Tensor
    logvar: torch.Tensor


def _dense(a: int, b: int) -> list[torch.nn.Module]:
    return [torch.nn.Linear(a, b), torch.nn.BatchNorm1d(b), torch.nn.ReLU(inplace=True)]


class VAE(torch.nn.Module):
    """Images [B, 3, 45, 45] in [0, 1] <-> codes [B, dim_z]."""

    def __init__(self, dim_z: int = 100, architecture: str = "mlp", width: int = 32) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if dim_z < 1:
            raise ValueError("dim_z must be >= 1")
        self.dim_z, self.architecture = dim_z, architecture
        self.init_kwargs = dict(dim_z=dim_z, architecture=architecture, width=width)
        if architecture == "mlp":
            self.encoder = torch.nn.Sequential(*_dense(INPUT, 1500), *_dense(1500, 1000))
            self.decoder = torch.nn.Sequential(*_dense(dim_z, 1000), *_dense(1000, 1500), torch.nn.Linear(1500, INPUT),
                                               torch.nn.Sigmoid())
            features = 1000
        else:  # 45 -> 22 -> 11 -> 5 by stride-2 convs; 6 -> 12 -> 24 -> 48 back, cropped to 45
            w = width
            self.encoder = torch.nn.Sequential(
                torch.nn.Conv2d(3, w, 4, 2, 1), torch.nn.BatchNorm2d(w), torch.nn.ReLU(inplace=True),
                torch.nn.Conv2d(w, 2 * w, 4, 2, 1), torch.nn.BatchNorm2d(2 * w), torch.nn.ReLU(inplace=True),
                torch.nn.Conv2d(2 * w, 4 * w, 4, 2, 1), torch.nn.BatchNorm2d(4 * w), torch.nn.ReLU(inplace=True),
                torch.nn.Flatten())
            features = 4 * w * 5 * 5
            self.decoder = torch.nn.Sequential(
                torch.nn.Linear(dim_z, 4 * w * 6 * 6), torch.nn.ReLU(inplace=True), torch.nn.Unflatten(1, (4 * w, 6, 6)),
                torch.nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), torch.nn.BatchNorm2d(2 * w), torch.nn.ReLU(inplace=True),
                torch.nn.ConvTranspose2d(2 * w, w, 4, 2, 1), torch.nn.BatchNorm2d(w), torch.nn.ReLU(inplace=True),
                torch.nn.ConvTranspose2d(w, 3, 4, 2, 1), torch.nn.Sigmoid())
        self.mu = torch.nn.Linear(features, dim_z)
        self.logvar = torch.nn.Linear(features, dim_z)

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, SIDE, SIDE):
            raise ValueError(f"VAE images must be [batch, 3, {SIDE}, {SIDE}] in [0, 1], got {list(images.shape)}; "
                             "resize with core.vae.prepare_images")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        return images.flatten(1) if self.architecture == "mlp" else images

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | x)."""
        h = self.encoder(self._check(images))
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x | z), [B, 3, 45, 45] in [0, 1]."""
        if z.ndim != 2 or z.shape[1] != self.dim_z:
            raise ValueError(f"codes must be [batch, {self.dim_z}], got {list(z.shape)}")
        x = self.decoder(z)
        return x.reshape(-1, 3, SIDE, SIDE) if self.architecture == "mlp" else x[..., 1:SIDE + 1, 1:SIDE + 1]

    def forward(self, images: torch.Tensor, sample: bool = True) -> VAEOutput:
        mu, logvar = self.encode(images)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu  # reparameterisation
        return VAEOutput(self.decode(z), mu, logvar)

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path = "synthfaces_vae", device: str | torch.device = "cpu") -> "VAE":
        from core.checkpoints import load_module
        return load_module(cls, path_or_name, kind="vae", device=device)


def vae_loss(images: torch.Tensor, out: VAEOutput, beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction BCE, KL), each summed over pixels / code dimensions and averaged over the batch."""
    bce = F.binary_cross_entropy(out.recon.flatten(1), images.flatten(1), reduction="sum") / len(images)
    kl = -0.5 * (1 + out.logvar - out.mu.square() - out.logvar.exp()).sum() / len(images)
    return bce + beta * kl, bce, kl


def prepare_images(images: torch.Tensor) -> torch.Tensor:
    """Any [B, 3, H, W] images in [0, 1] -> the VAE's 45x45 (area-averaged, so small faces stay sharp)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [batch, 3, H, W], got {list(images.shape)}")
    return F.interpolate(images, size=(SIDE, SIDE), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
