"""Constructor kwargs of the published StyleGAN3 configs, as the official train.py builds them.

stylegan3-t: channel_base 32768, channel_max 512, 3x3 convolutions; stylegan3-r doubles both channel figures,
uses 1x1 convolutions and radially symmetric down-sampling filters. Both map Z (512) to W (512) with two
layers. `magnitude_ema_beta` depends on the training batch (0.5 ** (batch / 20k)); 32 is the published batch.
"""
from __future__ import annotations

from typing import Any

CONFIG_NAMES = ("stylegan3-t", "stylegan3-r")


def generator_kwargs(cfg: str, resolution: int, batch_size: int = 32, **overrides: Any) -> dict[str, Any]:
    """Generator(**kwargs) for a published config at a power-of-two resolution; overrides replace any key."""
    if cfg not in CONFIG_NAMES:
        raise ValueError(f"unknown StyleGAN3 config {cfg!r}; expected one of {', '.join(CONFIG_NAMES)}")
    if resolution < 16 or resolution > 1024 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two from 16 to 1024, got {resolution}")
    kwargs: dict[str, Any] = dict(
        z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=32768, channel_max=512,
        magnitude_ema_beta=0.5 ** (batch_size / (20 * 1e3)), num_fp16_res=4, conv_clamp=256,
    )
    if cfg == "stylegan3-r":
        kwargs.update(conv_kernel=1, channel_base=65536, channel_max=1024, use_radial_filters=True)
    kwargs.update(overrides)
    return kwargs
