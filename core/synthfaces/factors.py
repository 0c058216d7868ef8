"""SynthFaces ground-truth factors: names, normalisation, and deterministic sampling.

Every factor is stored normalised to [0, 1]. Identity factors are a pure function of the identity id (and the
world seed), so one identity looks the same in every image; attribute factors vary per image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

IDENTITY_FACTORS = (
    "face_width", "jaw", "skin_tone", "eye_size", "eye_spacing", "iris_colour", "nose_length", "nose_width",
    "mouth_width", "brow_thickness", "hair_colour", "hair_style", "ear_size",
)
ATTRIBUTE_FACTORS = (
    "smile", "mouth_open", "eye_open", "yaw", "pitch", "roll", "eyeglasses", "sunglasses",
    "light_direction", "light_strength", "background",
)
FACTOR_NAMES = IDENTITY_FACTORS + ATTRIBUTE_FACTORS
BINARY_FACTORS = ("eyeglasses", "sunglasses")
NUM_IDENTITY = len(IDENTITY_FACTORS)
NUM_FACTORS = len(FACTOR_NAMES)

# Physical ranges of the normalised [0, 1] attribute factors (angles in degrees).
POSE_RANGE_DEG = {"yaw": 30.0, "pitch": 20.0, "roll": 20.0}
GLASSES_PROBS = (0.6, 0.2, 0.2)  # none, eyeglasses, sunglasses (never both)
GLASSES_KINDS = ("none", "eyeglasses", "sunglasses")


def factor_index(name: str) -> int:
    """Position of a named factor in the factor vector."""
    try:
        return FACTOR_NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown SynthFaces factor {name!r}; known: {', '.join(FACTOR_NAMES)}") from None


def glasses_kind(factors: torch.Tensor) -> torch.Tensor:
    """[N] glasses kind (0 none, 1 eyeglasses, 2 sunglasses) of [N, NUM_FACTORS] factors or an analyzer's readings
    of them: a factor counts above 0.5, and sunglasses win where a reading has both."""
    if factors.ndim != 2 or factors.shape[1] != NUM_FACTORS:
        raise ValueError(f"factors must have shape [batch, {NUM_FACTORS}], got {list(factors.shape)}")
    eye, sun = (factors[:, FACTOR_NAMES.index(n)] > 0.5 for n in BINARY_FACTORS)
    return torch.where(sun, 2, torch.where(eye, 1, 0))


def _hash_uniform(ids: torch.Tensor, salt: int, count: int) -> torch.Tensor:
    """Deterministic pseudo-random numbers in [0, 1), shape [len(ids), count], from integer ids (a 32-bit mix)."""
    x = (ids.to(torch.int64).unsqueeze(1) * 0x9E3779B1 + torch.arange(count, dtype=torch.int64) * 0x85EBCA77
         + salt * 0xC2B2AE3D)
    x = x & 0xFFFFFFFF
    for mul in (0x7FEB352D, 0x846CA68B):
        x = x ^ (x >> 16)
        x = (x * mul) & 0xFFFFFFFF
    x = x ^ (x >> 16)
    return x.to(torch.float64).div(2.0 ** 32).to(torch.float32)


def identity_factors(identity_ids: torch.Tensor, world_seed: int = 0) -> torch.Tensor:
    """[N, NUM_IDENTITY] identity factors in [0, 1], a fixed function of each id."""
    return _hash_uniform(torch.as_tensor(identity_ids), salt=world_seed * 7919 + 1, count=NUM_IDENTITY)


def attribute_factors(n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, len(ATTRIBUTE_FACTORS)] attribute factors: uniform in [0, 1], glasses one-hot-or-none."""
    attrs = torch.rand(n, len(ATTRIBUTE_FACTORS), generator=generator)
    kind = torch.multinomial(torch.tensor(GLASSES_PROBS), n, replacement=True, generator=generator)
    attrs[:, ATTRIBUTE_FACTORS.index("eyeglasses")] = (kind == 1).float()
    attrs[:, ATTRIBUTE_FACTORS.index("sunglasses")] = (kind == 2).float()
    return attrs


@dataclass
class FaceBatch:
    """Images with their ground truth: identity ids, factor vectors, landmarks in pixel coordinates (x, y)."""

    images: torch.Tensor       # [N, 3, R, R] in [0, 1]
    identity: torch.Tensor     # [N] int64
    factors: torch.Tensor      # [N, NUM_FACTORS] in [0, 1]
    landmarks: torch.Tensor    # [N, NUM_LANDMARKS, 2] pixels


def sample_factors(identity_ids: torch.Tensor, seed: int, world_seed: int = 0) -> torch.Tensor:
    """Full factor vectors for the given identities: their identity factors and fresh attributes from `seed`."""
    ids = torch.as_tensor(identity_ids, dtype=torch.int64)
    g = torch.Generator().manual_seed(int(seed))
    return torch.cat([identity_factors(ids, world_seed), attribute_factors(len(ids), g)], dim=1)
