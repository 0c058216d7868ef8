"""Give a generator's mapping network an exact step in one z coordinate, by construction rather than by training.

A coordinate that the target world reads only through thresholds (the distilled generator's glasses coordinate: none,
eyeglasses or sunglasses by where it falls between two cuts) needs W to jump at the cuts and stay flat in between.
An MLP trained by gradient descent bends smoothly instead, and with the mapping network's reduced learning rate it
never grows the slope a jump needs, so faces near a cut blend two kinds. `quantize_input` puts one layer in front of
the trained ones (the mapping gets one more of its ordinary fully connected layers, so the architecture and the
checkpoint format stay StyleGAN3's):
- every other coordinate passes through exactly, as the difference of two leaky-ReLU units, lrelu(x) - lrelu(-x);
- the chosen coordinate becomes `levels[k]` on the k-th interval between `cuts`, each cut a ramp of `width` made of
  two steep units;
and folds the decoding of those units into the old first layer, which becomes the second. So the new mapping gives
exactly the old W of the same latent with the coordinate moved to its interval's level, away from the ramps.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from core.stylegan3.networks import SQRT2, Generator, estimate_w_avg

NEGATIVE_SLOPE = 0.2  # the mapping's leaky ReLU


def quantize_input(G: Generator, index: int, cuts: Sequence[float], levels: Sequence[float], width: float = 1e-3,
                   w_avg_samples: int = 100_000) -> Generator:
    """A copy of G whose mapping reads z[:, index] as `levels[k]` where it lies between cuts[k - 1] and cuts[k]
    (ramps of `width` at the cuts) and every other coordinate unchanged; the synthesis is G's. The W average (for
    truncation) is re-estimated on `w_avg_samples` latents, since the distribution of W changes."""
    mapping = G.mapping
    z_dim, w_dim = mapping.z_dim, mapping.w_dim
    if mapping.c_dim or mapping.normalize_z:
        raise ValueError("quantize_input needs an unconditional mapping that reads z as it is (normalize_z=False): "
                         "normalising z would mix the quantized coordinate into the others")
    if not 0 <= index < z_dim:
        raise ValueError(f"index must be a z coordinate (0 to {z_dim - 1}), got {index}")
    if len(levels) != len(cuts) + 1 or list(cuts) != sorted(cuts) or width <= 0:
        raise ValueError(f"need increasing cuts, one more level than cuts and width > 0, got cuts {list(cuts)}, "
                         f"levels {list(levels)}, width {width}")
    if min((b - a for a, b in zip(cuts, cuts[1:])), default=math.inf) <= width:
        raise ValueError(f"the cuts must lie more than width ({width}) apart, got {list(cuts)}")
    units = 2 * (z_dim - 1) + 2 * len(cuts)
    if units > w_dim:
        raise ValueError(f"the mapping's {w_dim} units cannot pass {z_dim - 1} coordinates and {len(cuts)} cuts "
                         f"through ({units} units needed)")
    kwargs = dict(G.init_kwargs)
    kwargs["mapping_kwargs"] = {**kwargs.get("mapping_kwargs", {}), "num_layers": mapping.num_layers + 1}
    out = Generator(**kwargs)
    out.synthesis.load_state_dict(G.synthesis.state_dict())

    # The new first layer: effective weights A0 [units, z_dim], biases b0, and the decoder D [z_dim, units] with
    # offset d that turns its outputs back into z with the coordinate quantized: z_q = D @ out0 + d.
    A0, b0 = torch.zeros(w_dim, z_dim, dtype=torch.float64), torch.zeros(w_dim, dtype=torch.float64)
    D, d = torch.zeros(z_dim, w_dim, dtype=torch.float64), torch.zeros(z_dim, dtype=torch.float64)
    through = (1 + NEGATIVE_SLOPE) * SQRT2  # lrelu(x) - lrelu(-x) = 1.2 x, times the layer's gain sqrt(2)
    unit = 0
    for i in range(z_dim):
        if i == index:
            continue
        A0[unit, i], A0[unit + 1, i] = 1.0, -1.0
        D[i, unit], D[i, unit + 1] = 1 / through, -1 / through
        unit += 2
    slope = 1 / width  # each ramp: lrelu(s (x - c + w/2)) - lrelu(s (x - c - w/2)) climbs 0.8 s w over the ramp
    rise = (1 - NEGATIVE_SLOPE) * slope * width * SQRT2
    floor = NEGATIVE_SLOPE * slope * width * SQRT2  # its value below the ramp
    d[index] = levels[0]
    for k, cut in enumerate(cuts):
        A0[unit, index] = A0[unit + 1, index] = slope
        b0[unit], b0[unit + 1] = -slope * (cut - width / 2), -slope * (cut + width / 2)
        step = levels[k + 1] - levels[k]
        D[index, unit], D[index, unit + 1] = step / rise, -step / rise
        d[index] -= step * floor / rise
        unit += 2

    old0 = mapping.fc0
    A1 = (old0.weight.double() * old0.weight_gain) @ D  # the old first layer applied to the decoded z
    b1 = old0.bias.double() * old0.bias_gain + (old0.weight.double() * old0.weight_gain) @ d
    new = out.mapping
    with torch.no_grad():
        new.fc0.weight.copy_((A0 / new.fc0.weight_gain).float())
        new.fc0.bias.copy_((b0 / new.fc0.bias_gain).float())
        new.fc1.weight.copy_((A1 / new.fc1.weight_gain).float())
        new.fc1.bias.copy_((b1 / new.fc1.bias_gain).float())
        for idx in range(1, mapping.num_layers):
            getattr(new, f"fc{idx + 1}").load_state_dict(getattr(mapping, f"fc{idx}").state_dict())
        new.w_avg.copy_(estimate_w_avg(new, w_avg_samples))
    return out.train(G.training)
