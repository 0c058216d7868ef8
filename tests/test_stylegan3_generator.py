"""Generator behaviour: determinism, truncation, EMAs, input checks, gradients."""
from __future__ import annotations

import pytest
import torch

from core.stylegan3 import Generator
from tests.conftest import tiny_kwargs


def test_same_seed_truncation_and_noise_mode_give_same_image(tiny_generator):
    G = tiny_generator
    with torch.no_grad():
        a = G(G.z_from_seed(7), truncation_psi=0.7, noise_mode="const")
        b = G(G.z_from_seed(7), truncation_psi=0.7, noise_mode="const")
        c = G(G.z_from_seed(8), truncation_psi=0.7, noise_mode="const")
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-4


def test_same_weights_in_a_new_instance_give_same_image(tiny_generator):
    other = Generator(**tiny_kwargs())
    other.load_state_dict(tiny_generator.state_dict())
    z = tiny_generator.z_from_seed(3, batch=2)
    with torch.no_grad():
        assert torch.equal(tiny_generator(z), other.eval()(z))


def test_truncation_pulls_towards_w_avg(tiny_generator):
    G = tiny_generator
    G.mapping.w_avg.normal_()
    z = torch.randn(4, G.z_dim)
    ws_full = G.mapping(z, truncation_psi=1.0)
    ws_zero = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(ws_zero, G.mapping.w_avg.expand_as(ws_zero))
    ws_half = G.mapping(z, truncation_psi=0.5)
    assert torch.allclose(ws_half, 0.5 * (ws_full + G.mapping.w_avg), atol=1e-5)
    ws_cut = G.mapping(z, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.allclose(ws_cut[:, :2], ws_zero[:, :2]) and torch.allclose(ws_cut[:, 2:], ws_full[:, 2:])
    with torch.no_grad():
        imgs = G(z, truncation_psi=0.0)
    assert torch.allclose(imgs, imgs[:1].expand_as(imgs), atol=1e-6)


def test_update_emas_tracks_w_average_and_input_magnitudes(tiny_generator):
    G = tiny_generator.train()
    before_w = G.mapping.w_avg.clone()
    layer = getattr(G.synthesis, G.synthesis.layer_names[0])
    before_mag = layer.magnitude_ema.clone()
    z = torch.randn(8, G.z_dim)
    with torch.no_grad():
        G(z, update_emas=True)
        w = G.mapping.fc1(G.mapping.fc0(z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()))
    beta = G.mapping.w_avg_beta
    assert torch.allclose(G.mapping.w_avg, beta * before_w + (1 - beta) * w.mean(0), atol=1e-6)
    assert not torch.equal(layer.magnitude_ema, before_mag)
    with torch.no_grad():
        G(z)  # without update_emas nothing moves
    assert torch.allclose(G.mapping.w_avg, beta * before_w + (1 - beta) * w.mean(0), atol=1e-6)


def test_bad_inputs_raise_clear_errors(tiny_generator):
    G = tiny_generator
    with pytest.raises(ValueError, match="z must have shape"):
        G(torch.randn(2, G.z_dim + 1))
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(torch.randn(2, G.num_ws - 1, G.w_dim))
    with pytest.raises(ValueError, match="noise_mode"):
        G(torch.randn(1, G.z_dim), noise_mode="loud")


def test_conditional_generator_needs_labels():
    G = Generator(**tiny_kwargs(c_dim=5)).eval()
    with pytest.raises(ValueError, match="conditional"):
        G(torch.randn(2, 32))
    c = torch.nn.functional.one_hot(torch.tensor([0, 3]), 5).float()
    with torch.no_grad():
        a = G(torch.randn(2, 32, generator=torch.Generator().manual_seed(0)), c)
        b = G(torch.randn(2, 32, generator=torch.Generator().manual_seed(0)), c.flip(0))
    assert (a - b).abs().mean() > 1e-5


@pytest.mark.parametrize("cfg", ["stylegan3-t", "stylegan3-r"])
def test_gradients_reach_every_parameter(cfg):
    G = Generator(**tiny_kwargs(cfg))
    G(torch.randn(2, 32)).square().mean().backward()
    for name, p in G.named_parameters():
        if name.startswith("mapping.embed"):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in G.synthesis.parameters())


def test_fast_ops_match_reference_ops_end_to_end():
    for cfg in ["stylegan3-t", "stylegan3-r"]:
        torch.manual_seed(1)
        G = Generator(**tiny_kwargs(cfg, 64)).eval()
        z = torch.randn(2, 32)
        with torch.no_grad():
            fast = G(z)
            ref = G(z, reference_ops=True)
        assert torch.allclose(fast, ref, atol=1e-5 * max(1.0, ref.abs().max().item()))


def test_compiled_synthesis_gives_same_images():
    """torch.compile captures the whole synthesis network in one graph (no graph break), and the captured graph
    computes the same images. The capture runs through AOTAutograd's decompositions without Inductor's C++ code
    generation (PyTorch's own part, and 25 s of compiling here)."""
    G = Generator(**tiny_kwargs("stylegan3-t", 16, channel_base=256, channel_max=16)).eval()
    ws = G.mapping(torch.randn(2, 32))
    fast = torch.compile(G.synthesis, dynamic=False, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        assert torch.allclose(fast(ws), G.synthesis(ws), atol=1e-5)
