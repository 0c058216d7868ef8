"""Published configs build exactly the official networks: parameter counts, state-dict names and shapes.

The figures in tests/data/stylegan3_official_manifest.json were read off NVIDIA's official
training/networks_stylegan3.py, built with the kwargs of its train.py for --cfg=stylegan3-t / stylegan3-r.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.stylegan3 import Generator, generator_kwargs
from tests.conftest import tiny_kwargs

MANIFEST = json.loads((Path(__file__).parent / "data" / "stylegan3_official_manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_published_config_matches_official(name):
    cfg, res = name.rsplit("-", 1)
    G = Generator(**generator_kwargs(cfg, int(res)))
    expected = MANIFEST[name]
    assert sum(p.numel() for p in G.parameters()) == expected["num_params"]
    state = {k: list(v.shape) for k, v in G.state_dict().items()}
    assert list(state) == list(expected["state_dict"])  # same names, same order
    assert state == expected["state_dict"]


def test_known_parameter_counts():
    # Figures from the official code: 22.31M (T, 1024) and 15.09M (R, 1024) generator parameters.
    assert MANIFEST["stylegan3-t-1024"]["num_params"] == 22_313_167
    assert MANIFEST["stylegan3-r-1024"]["num_params"] == 15_093_151


@pytest.mark.parametrize("resolution", [16, 32, 64, 128, 256, 512, 1024])
def test_every_power_of_two_resolution_builds(resolution):
    G = Generator(**tiny_kwargs("stylegan3-t", resolution, channel_base=256, channel_max=8))
    assert G.num_ws == 8
    last = G.synthesis.layer_names[-1]
    assert last == f"L6_{resolution}_3"
    if resolution <= 128:
        with torch.no_grad():
            img = G(torch.randn(2, 32))
        assert img.shape == (2, 3, resolution, resolution)
        assert torch.isfinite(img).all()


@pytest.mark.parametrize("bad", [8, 48, 2048])
def test_bad_resolution_is_refused(bad):
    with pytest.raises(ValueError, match="power of two"):
        generator_kwargs("stylegan3-t", bad)


def test_unknown_config_is_refused():
    with pytest.raises(ValueError, match="unknown StyleGAN3 config"):
        generator_kwargs("stylegan4", 256)


def test_rotation_config_uses_1x1_convs_and_radial_filters():
    G = Generator(**tiny_kwargs("stylegan3-r", 32))
    layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
    assert all(layer.weight.shape[-1] == 1 for layer in layers)
    radial = [layer for layer in layers if layer.down_radial]
    assert radial and all(layer.down_filter.ndim == 2 for layer in radial)
    assert all(not layer.down_radial for layer in layers if layer.is_critically_sampled)
