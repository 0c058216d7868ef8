"""The distilled generator's latent: a fixed, documented map from z ~ N(0, I) to SynthFaces factors.

Each z coordinate drives exactly one factor, so every coordinate is used and a change in one coordinate changes
one factor only:
- every continuous factor is the normal CDF of its coordinate, Phi(z_i), which is uniform in [0, 1] exactly as the
  world draws it (identity factors are uniform hashes, attributes uniform draws);
- the glasses kind comes from one coordinate, cut at the world's probabilities (none 0.6, eyeglasses 0.2,
  sunglasses 0.2): Phi(z) < 0.6 is none, < 0.8 eyeglasses, else sunglasses.
So N(0, I) in z reproduces the world's factor distribution, and `render(factors_from_z(z))` is the target that
the embedded StyleGAN3 learns to draw. `z_from_factors` inverts the map: exactly for continuous factors (up to
clamping at the ends), and to the middle of its interval for the glasses kind, which has no exact inverse.
"""
from __future__ import annotations

import torch

from core.synthfaces.factors import (ATTRIBUTE_FACTORS, BINARY_FACTORS, FACTOR_NAMES, GLASSES_PROBS, IDENTITY_FACTORS,
                                     NUM_FACTORS, glasses_kind)

GLASSES = "glasses"
CONTINUOUS_FACTORS = IDENTITY_FACTORS + tuple(f for f in ATTRIBUTE_FACTORS if f not in BINARY_FACTORS)
LATENT_NAMES = CONTINUOUS_FACTORS + (GLASSES,)  # the name of each z coordinate
Z_DIM = len(LATENT_NAMES)
_CONTINUOUS_INDEX = torch.tensor([FACTOR_NAMES.index(f) for f in CONTINUOUS_FACTORS])
_EYEGLASSES, _SUNGLASSES = FACTOR_NAMES.index("eyeglasses"), FACTOR_NAMES.index("sunglasses")
_CUTS = torch.tensor([GLASSES_PROBS[0], GLASSES_PROBS[0] + GLASSES_PROBS[1]])  # Phi(z) cut points
_EPS = 1e-6  # keeps the inverse finite at factors 0 and 1

_normal = torch.distributions.Normal(0.0, 1.0)
GLASSES_CUTS_Z = tuple(float(c) for c in _normal.icdf(_CUTS))  # the glasses coordinate's cuts in z (0.253, 0.842)
_MIDDLES = _normal.icdf((torch.cat([torch.zeros(1), _CUTS]) + torch.cat([_CUTS, torch.ones(1)])) / 2)
GLASSES_MIDDLES_Z = tuple(float(m) for m in _MIDDLES)  # the middle of each kind's interval in z (none, eye, sun)


def _check(x: torch.Tensor, width: int, what: str) -> None:
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"{what} must have shape [batch, {width}], got {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} holds NaN or infinite values")


def factors_from_z(z: torch.Tensor) -> torch.Tensor:
    """[B, Z_DIM] latents -> [B, NUM_FACTORS] SynthFaces factors in [0, 1] (deterministic, elementwise)."""
    _check(z, Z_DIM, "z")
    u = _normal.cdf(z.float())
    out = torch.zeros(z.shape[0], NUM_FACTORS, dtype=torch.float32, device=z.device)
    out[:, _CONTINUOUS_INDEX.to(z.device)] = u[:, :-1]
    kind = torch.bucketize(u[:, -1].contiguous(), _CUTS.to(z.device), right=True)  # 0 none, 1 eyeglasses, 2 sun
    out[:, _EYEGLASSES] = (kind == 1).float()
    out[:, _SUNGLASSES] = (kind == 2).float()
    return out


def z_from_factors(factors: torch.Tensor) -> torch.Tensor:
    """Inverse of `factors_from_z`: Phi^-1 of each continuous factor; the glasses coordinate at the middle of its
    kind's interval (Phi^-1 of 0.3, 0.7 or 0.9). factors_from_z(z_from_factors(f)) == f up to float error."""
    _check(factors, NUM_FACTORS, "factors")
    f = factors.float()
    z = torch.empty(f.shape[0], Z_DIM, dtype=torch.float32, device=f.device)
    z[:, :-1] = _normal.icdf(f[:, _CONTINUOUS_INDEX.to(f.device)].clamp(_EPS, 1 - _EPS))
    z[:, -1] = _MIDDLES.to(f.device)[glasses_kind(f)]
    return z


def glasses_cut_distance(z: torch.Tensor) -> torch.Tensor:
    """[B] distance in z from each latent's glasses coordinate to the nearer of the two cuts between kinds: where
    the target switches kind abruptly and a smooth generator is most likely to draw the wrong one."""
    _check(z, Z_DIM, "z")
    return (z[:, -1:].float() - torch.tensor(GLASSES_CUTS_Z, device=z.device)).abs().amin(1)


EVAL_SEED = 777_777  # held-out latents: a stream that no training step draws from


def eval_latents(count: int, seed: int = 0) -> torch.Tensor:
    """Held-out latents for evaluation and reports (the same for every caller with the same seed)."""
    return torch.randn(count, Z_DIM, generator=torch.Generator().manual_seed(EVAL_SEED + seed))


def targets(z: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images in [0, 1], landmarks in pixels, factors) that the distilled generator must draw for latents z:
    the renderer's faces of `factors_from_z(z)`."""
    from core.synthfaces.render import render
    factors = factors_from_z(z)
    images, landmarks = render(factors, resolution)
    return images, landmarks, factors


def is_distilled(G: torch.nn.Module) -> bool:
    """Whether a generator takes this latent: a z of Z_DIM coordinates that the mapping does not normalise (the
    distilled generator), so that factors_from_z(z) are the exact factors of G(z)."""
    return G.z_dim == Z_DIM and not getattr(G.mapping, "normalize_z", True)
