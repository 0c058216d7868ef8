"""The built quantizer layer in front of a mapping network: exact pass-through, exact steps, unchanged synthesis."""
from __future__ import annotations

import pytest
import torch

from core.stylegan3 import Generator
from core.stylegan3.networks import estimate_w_avg
from core.stylegan3.quantize import quantize_input

CUTS, LEVELS = (-0.5, 0.7), (-1.2, 0.1, 1.5)


def small(normalize_z: bool = False, w_dim: int = 32, z_dim: int = 6) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=16, img_channels=3, channel_base=128,
                     channel_max=8, num_layers=3, margin_size=2,
                     mapping_kwargs=dict(num_layers=2, lr_multiplier=0.1, normalize_z=normalize_z)).eval()


def quantized_z(z: torch.Tensor, index: int) -> torch.Tensor:
    out = z.clone()
    out[:, index] = torch.tensor(LEVELS)[torch.bucketize(z[:, index].contiguous(), torch.tensor(CUTS))]
    return out


@pytest.mark.parametrize("index", [0, 3, 5])
def test_the_new_mapping_is_the_old_one_at_the_levels_and_jumps_only_at_the_cuts(index):
    G = small()
    Q = quantize_input(G, index, CUTS, LEVELS, width=1e-3).eval()
    assert Q.mapping.num_layers == 3 and Q.init_kwargs["mapping_kwargs"]["num_layers"] == 3
    z = torch.randn(500, 6, generator=torch.Generator().manual_seed(1)) * 1.5
    z[:, index] = torch.where((z[:, index:index + 1] - torch.tensor(CUTS)).abs().amin(1) < 2e-3, 2.0, z[:, index])
    with torch.no_grad():
        assert torch.allclose(Q.mapping(z), G.mapping(quantized_z(z, index)), atol=2e-3)  # float32: large ramp units
        line = torch.zeros(400, 6)
        line[:, index] = torch.linspace(-2, 2, 400)  # no point within a ramp
        w = Q.mapping(line)[:, 0]
        jumps = (w[1:] - w[:-1]).norm(dim=1)
        cuts = torch.tensor(CUTS)
        crossing = ((line[:-1, index:index + 1] < cuts) & (line[1:, index:index + 1] >= cuts)).any(1)
        assert int(crossing.sum()) == 2 and bool((jumps[crossing] > 0.1).all())  # a jump at each cut
        assert float(jumps[~crossing].max()) < 5e-3  # flat everywhere else, up to float32 noise
        ws = Q.mapping.w_avg
        assert torch.allclose(ws, estimate_w_avg(Q.mapping), atol=1e-6)
        img = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(Q(img, noise_mode="const"), G(quantized_z(img, index), noise_mode="const"), atol=1e-3)
    assert torch.equal(Q.synthesis.state_dict()["input.weight"], G.synthesis.state_dict()["input.weight"])


def test_a_quantized_generator_saves_and_loads_as_an_ordinary_stylegan3(tmp_path):
    Q = quantize_input(small(), 2, CUTS, LEVELS)
    Q.save_pretrained(tmp_path / "q")
    back = Generator.from_pretrained(tmp_path / "q")
    z = torch.randn(8, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(back.mapping(z), Q.eval().mapping(z))


def test_what_cannot_be_quantized_is_refused():
    with pytest.raises(ValueError, match="normalize_z"):
        quantize_input(small(normalize_z=True), 0, CUTS, LEVELS)
    with pytest.raises(ValueError, match="index"):
        quantize_input(small(), 6, CUTS, LEVELS)
    with pytest.raises(ValueError, match="one more level"):
        quantize_input(small(), 0, CUTS, LEVELS[:2])
    with pytest.raises(ValueError, match="increasing"):
        quantize_input(small(), 0, CUTS[::-1], LEVELS)
    with pytest.raises(ValueError, match="apart"):
        quantize_input(small(), 0, (0.0, 0.0005), LEVELS, width=1e-3)
    with pytest.raises(ValueError, match="units"):
        quantize_input(small(w_dim=8, z_dim=6), 0, CUTS, LEVELS)
