"""The fast filter ops agree with their reference forms; the filters are proper low-pass filters."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from core.stylegan3.ops import design_lowpass_filter, filtered_lrelu, upfirdn2d, upfirdn2d_reference


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2), (4, 2), (3, 1)])
@pytest.mark.parametrize("padding", [(0, 0, 0, 0), (7, 7, 7, 7), (-3, 2, 4, -1), (20, -5, 3, 3)])
@pytest.mark.parametrize("flip", [False, True])
def test_upfirdn2d_matches_reference(up, down, padding, flip):
    g = torch.Generator().manual_seed(up * 100 + down)
    x = torch.randn(2, 3, 20, 17, generator=g)
    f = torch.randn(7, generator=g)
    fast = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=up ** 2)
    ref = upfirdn2d_reference(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=up ** 2)
    assert fast.shape == ref.shape
    assert torch.allclose(fast, ref, atol=1e-5 * ref.abs().max().item())


def test_radial_2d_downsampling_matches_reference():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 24, 24, generator=g)
    f = design_lowpass_filter(12, cutoff=8, width=6, fs=32, radial=True)
    assert f.ndim == 2
    for pad in [(0, 0, 0, 0), (1, 2, 1, 2)]:
        assert torch.allclose(upfirdn2d(x, f, down=2, padding=pad), upfirdn2d_reference(x, f, down=2, padding=pad),
                              atol=1e-6)


def test_filtered_lrelu_fast_equals_reference_and_output_size():
    g = torch.Generator().manual_seed(5)
    for up, down, pad in [(2, 2, (10, 11, 10, 11)), (4, 2, (30, 29, 30, 29)), (2, 1, (5, 6, 5, 6))]:
        x = torch.randn(2, 3, 16, 16, generator=g) * 50
        fu = design_lowpass_filter(6 * up, cutoff=4, width=4, fs=16 * up)
        fd = design_lowpass_filter(6 * down, cutoff=4, width=4, fs=16 * up) if down > 1 else None
        b = torch.randn(3, generator=g)
        fast = filtered_lrelu(x, fu, fd, b, up, down, pad, clamp=256)
        ref = filtered_lrelu(x, fu, fd, b, up, down, pad, clamp=256, reference=True)
        assert torch.allclose(fast, ref, atol=1e-4)
        assert fast.abs().max() <= 256  # clamp holds


def test_lowpass_filters_are_normalised_symmetric_and_low_pass():
    for numtaps, radial in itertools.product([12, 24], [False, True]):
        f = design_lowpass_filter(numtaps, cutoff=8, width=8, fs=64, radial=radial).double().numpy()
        assert abs(f.sum() - 1) < 1e-6
        assert np.allclose(f, f[::-1])
        if not radial:
            response = np.abs(np.fft.rfft(f, 512))
            freqs = np.fft.rfftfreq(512, d=1 / 64)
            assert response[freqs <= 4].min() > 0.9      # pass band
            assert response[freqs >= 16].max() < 0.05    # stop band
    assert design_lowpass_filter(1, cutoff=8, width=8, fs=64) is None
    with pytest.raises(ValueError):
        design_lowpass_filter(0, cutoff=8, width=8, fs=64)


@pytest.mark.parametrize("up,down", [(1, 2), (4, 1), (2, 2)])
def test_large_images_resample_by_band_blocks_without_autograd_and_densely_with_it(up, down):
    """From BAND_MIN_SIZE inputs on, inference applies the resampling matrices block by block along their band;
    under autograd the dense matrices are used. Both equal the reference."""
    from core.stylegan3 import ops
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 2, 150, 140, generator=g)
    f = torch.randn(12, generator=g)
    ref = upfirdn2d_reference(x, f, up=up, down=down, padding=(5, 6, 5, 6), gain=up ** 2)
    with torch.no_grad():
        fast = upfirdn2d(x, f, up=up, down=down, padding=(5, 6, 5, 6), gain=up ** 2)
    blocks = next(v for k, v in ops._MATRICES[id(f)].items() if k[0] == 140 and k[-2])  # the banded width matrix
    assert len(blocks) > 1 and sum(r1 - r0 for r0, r1, _ in blocks) < 0.6 * 140 * len(blocks)
    xg = x.clone().requires_grad_(True)
    dense = upfirdn2d(xg, f, up=up, down=down, padding=(5, 6, 5, 6), gain=up ** 2)
    for y in (fast, dense):
        assert y.shape == ref.shape and torch.allclose(y, ref, atol=1e-5 * ref.abs().max().item())
    dense.square().sum().backward()
    xr = x.clone().requires_grad_(True)
    upfirdn2d_reference(xr, f, up=up, down=down, padding=(5, 6, 5, 6), gain=up ** 2).square().sum().backward()
    assert torch.allclose(xg.grad, xr.grad, atol=1e-4 * xr.grad.abs().max().item())


@pytest.mark.parametrize("scale", [1.0, 200.0])  # within the clamp, and far beyond it
def test_filtered_lrelu_gradients_equal_the_reference_whether_or_not_the_clamp_bites(scale):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 40, 40, generator=g) * scale
    fu = design_lowpass_filter(24, cutoff=4, width=4, fs=64)
    fd = design_lowpass_filter(12, cutoff=4, width=4, fs=64)
    grads = []
    for reference in (False, True):
        xi = x.clone().requires_grad_(True)
        y = filtered_lrelu(xi, fu, fd, None, 4, 2, (20, 19, 20, 19), clamp=256, reference=reference)
        (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
        grads.append((y.detach(), xi.grad))
    (y_fast, g_fast), (y_ref, g_ref) = grads
    assert torch.allclose(y_fast, y_ref, atol=1e-4 * max(1.0, y_ref.abs().max().item()))
    assert torch.allclose(g_fast, g_ref, atol=1e-4 * g_ref.abs().max().item())
    assert (y_fast.abs().max() > 200) == (scale > 1)  # the large input really reaches the clamp region
