"""Shared fixtures: small generator configs that build and run fast on a 2-core CPU."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(2)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def tiny_kwargs(cfg: str = "stylegan3-t", resolution: int = 32, **overrides):
    """A published config shrunk in width so that tests run in milliseconds."""
    from core.stylegan3 import generator_kwargs
    base = dict(z_dim=32, w_dim=32, channel_base=1024, channel_max=32, num_layers=6, num_critical=2)
    if cfg == "stylegan3-r":
        base.update(channel_base=2048, channel_max=64)
    base.update(overrides)
    return generator_kwargs(cfg, resolution, **base)


@pytest.fixture
def tiny_generator():
    from core.stylegan3 import Generator
    torch.manual_seed(0)
    return Generator(**tiny_kwargs()).eval()
