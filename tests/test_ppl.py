"""Perceptual path length on generators whose answer is known, and its offline analyzer distance."""
from __future__ import annotations

import pytest
import torch

from core.metrics.ppl import analyzer_distance, face_crop, ppl, slerp


class Wave(torch.nn.Module):
    """A stand-in generator: W = z, image = sin(scale * w . u) patterns; image change grows with `scale`."""

    def __init__(self, scale: float, normalize_z: bool = True) -> None:
        super().__init__()
        self.z_dim, self.scale = 4, scale
        self.mapping = torch.nn.Module()
        self.mapping.register_buffer("w_avg", torch.zeros(4))
        self.mapping.normalize_z = normalize_z
        self.mapping.forward = lambda z: z.unsqueeze(1).repeat(1, 2, 1)
        self.u = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def images_from_w(self, w: torch.Tensor) -> torch.Tensor:
        return (torch.sin(self.scale * torch.einsum("bd,dchw->bchw", w, self.u)) + 1) / 2


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square().mean((1, 2, 3))


def test_slerp_stays_on_the_sphere_and_hits_its_ends():
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    assert torch.allclose(slerp(a, b, torch.zeros(5, 1)), torch.nn.functional.normalize(a, dim=1), atol=1e-5)
    assert torch.allclose(slerp(a, b, torch.ones(5, 1)), torch.nn.functional.normalize(b, dim=1), atol=1e-4)
    assert torch.allclose(slerp(a, b, torch.full((5, 1), 0.3)).norm(dim=1), torch.ones(5), atol=1e-5)


@pytest.mark.parametrize("space", ["z", "w"])
@pytest.mark.parametrize("sampling", ["full", "end"])
def test_ppl_grows_with_how_fast_images_change(space, sampling):
    slow = ppl(Wave(0.5), mse, space, sampling, samples=200, batch=50, crop=False)
    fast = ppl(Wave(1.0), mse, space, sampling, samples=200, batch=50, crop=False)
    assert 0 < slow < fast
    assert fast / slow == pytest.approx(4, rel=0.35)  # squared distances: twice the speed, four times the length


def test_ppl_of_a_constant_generator_is_zero_and_bad_arguments_are_refused():
    assert ppl(Wave(0.0), mse, "w", samples=64, crop=False) == 0
    assert face_crop(torch.zeros(2, 3, 64, 64)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="space"):
        ppl(Wave(1.0), mse, "x")


def test_analyzer_distance_is_zero_for_the_same_face_and_positive_between_faces():
    from core.analysis import load_analyzer
    from core.synthfaces import render_faces
    faces = render_faces(torch.arange(4), seed=0).images
    d = analyzer_distance(load_analyzer("synthfaces"))
    assert torch.allclose(d(faces, faces), torch.zeros(4), atol=1e-6) and (d(faces, faces.flip(0)) > 0.1).all()
