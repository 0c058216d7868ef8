"""Latent spaces by name, for the VP metric and the report card: a sampler (codes -> images), its dimension,
sampling range and, where it has them, dimension names. The models behind them come from the one model-set loader
(`core.models`), so the metrics themselves never load a checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch


@dataclass
class LatentSpace:
    """A latent space to score: its sampler, dimension, sampling range and, where it has them, dimension names."""

    sample_fn: Callable[[torch.Tensor], torch.Tensor]
    dim: int
    latent_range: tuple[float, float]
    names: Optional[list[str]] = None
    heavy: bool = False  # slow to draw (a generator): interactive presets use fewer pairs


SAMPLERS = ("synthfaces", "vae", "generator-z", "generator-w", "generator-nice")
KNOWN_SPACES = f"{', '.join(SAMPLERS)} or vae:<checkpoint>"  # what known_space accepts, for error messages
ROLES = {"vae": ("vae",), "generator-z": ("generator",), "generator-w": ("generator",),
         "generator-nice": ("generator", "nice")}  # the model-set roles each space draws with


def known_space(name: str) -> bool:
    """Whether latent_space accepts this name: one of SAMPLERS or 'vae:<checkpoint>'."""
    return name in SAMPLERS or (name.startswith("vae:") and len(name) > 4)


def latent_space(name: str, models: str = "embedded", device: str = "cpu", resolution: int = 64) -> LatentSpace:
    """A named latent space. synthfaces = the renderer driven by its own factors (the ground-truth 'perfect'
    latent, dimensions named by factor); vae = the VAE decoder; generator-z = G from Z (named by factor when G is
    the distilled generator, whose z coordinates each drive one factor); generator-w = G from W and
    generator-nice = G from NICE codes (identity, then attribute coordinates), both in standardised coordinates
    (mean + u * std of sampled codes). 'vae:<checkpoint>' is the decoder of any VAE checkpoint."""
    if name == "synthfaces":
        from core.synthfaces import FACTOR_NAMES, NUM_FACTORS, render
        return LatentSpace(lambda z: render(z, resolution)[0], NUM_FACTORS, (0.0, 1.0), list(FACTOR_NAMES))
    if not known_space(name):
        raise ValueError(f"unknown latent space {name!r}; known: {KNOWN_SPACES}")
    if name.startswith("vae:"):
        from core.vae import VAE
        vae = VAE.from_pretrained(name[4:], device=device)
        return LatentSpace(lambda z: vae.decode(z.to(device)).cpu(), vae.dim_z, (-2.0, 2.0))
    from core.models import load_models
    loaded = load_models(models, ROLES[name], device=device)
    if name == "vae":
        vae = loaded["vae"]
        return LatentSpace(lambda z: vae.decode(z.to(device)).cpu(), vae.dim_z, (-2.0, 2.0))
    from core.synthfaces.latent import LATENT_NAMES, is_distilled
    G = loaded["generator"]

    def render_w(w: torch.Tensor) -> torch.Tensor:
        return G.images_from_w(w.to(device)).clamp(0, 1).cpu()

    if name == "generator-z":
        distilled = is_distilled(G)
        return LatentSpace(lambda z: render_w(G.mapping(z.to(device))[:, 0]), G.z_dim, (-2.0, 2.0),
                           list(LATENT_NAMES) if distilled else None, heavy=True)
    with torch.no_grad():
        w = G.mapping(torch.randn(4000, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device))[:, 0]
    if name == "generator-w":
        mean, std = w.mean(0), w.std(0)
        return LatentSpace(lambda u: render_w(mean + u.to(device) * std), G.w_dim, (-2.0, 2.0), heavy=True)
    nice = loaded["nice"]
    with torch.no_grad():
        codes = nice.encode(w)
    mean, std = codes.mean(0), codes.std(0)
    names = ([f"identity_{i}" for i in range(nice.id_dim)]
             + [f"attribute_{i}" for i in range(nice.dim - nice.id_dim)])
    return LatentSpace(lambda u: render_w(nice.decode(mean + u.to(device) * std)), nice.dim, (-2.0, 2.0), names,
                       heavy=True)
