"""Pure-torch signal ops of StyleGAN3: low-pass filter design, upfirdn2d and the filtered leaky ReLU.

Each op has a straightforward reference form (zero insertion, padding, convolution, decimation, as in the
paper's Appendix) and the fast form used by the networks (strided transposed / strided convolutions on one
channel at a time). Tests check that the two agree.
"""
from __future__ import annotations

import math
import weakref
from typing import Optional, Sequence

import numpy as np
import scipy.signal
import scipy.special
import torch
import torch.nn.functional as F


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Optional[torch.Tensor]:
    """Kaiser-windowed low-pass filter: separable 1-D taps, or a 2-D radially symmetric jinc; None for 1 tap."""
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f *= np.outer(window, window)
    f /= np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)


def _parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """Padding as (x0, x1, y0, y1) from an int, a pair (x, y) or a quadruple."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    raise ValueError(f"padding must have 1, 2 or 4 values, got {padding}")


def filter_size(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """(width, height) of a filter; None is the 1x1 identity."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[-1], f.shape[-2]


def upfirdn2d_reference(x: torch.Tensor, f: Optional[torch.Tensor], up: int = 1, down: int = 1,
                        padding: int | Sequence[int] = 0, gain: float = 1.0, flip_filter: bool = False) -> torch.Tensor:
    """Upsample by zero insertion, pad (or crop), convolve with f, keep every down-th sample."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _parse_padding(padding)
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None].repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


def _upsample_1d(x: torch.Tensor, f: torch.Tensor, up: int, pad0: int, pad1: int, dim: int) -> torch.Tensor:
    """Zero-insert by `up`, pad and convolve along one axis of a [N, 1, H, W] tensor, via a strided transposed conv."""
    k = f.shape[0]
    if dim == 3:
        t = F.conv_transpose2d(x, f.view(1, 1, 1, k), stride=(1, up))
    else:
        t = F.conv_transpose2d(x, f.view(1, 1, k, 1), stride=(up, 1))
    lo = pad0 - (k - 1)
    hi = up + pad1 - k
    return F.pad(t, [lo, hi, 0, 0] if dim == 3 else [0, 0, lo, hi])


MATMUL_MAX_SIZE = 512
BAND_MIN_SIZE = 128  # resampling matrices from this many inputs on are applied block by block along their band
BAND_BLOCK = 32      # output columns per block
_MATRICES: dict[int, dict] = {}  # id(filter tensor) -> {key: matrices}; entries die with the tensor


def _resample_blocks(f: torch.Tensor, n: int, up: int, down: int, pad0: int, pad1: int, gain: float,
                     flip_filter: bool, dtype: torch.dtype, banded: bool) -> list[tuple[int, int, torch.Tensor]]:
    """[(r0, r1, M[r0:r1, block])] such that 1-D upfirdn of x's last axis is the concatenation of
    `x[..., r0:r1] @ M_block` over the blocks (cached per filter tensor). M is the dense [n, n_out] resampling
    matrix; with `banded`, a large one is split into column blocks with only the rows of its band, since each
    output sample reads just a few taps' worth of inputs (not under autograd: the slices' backward costs more)."""
    key = (n, up, down, pad0, pad1, gain, flip_filter, dtype, banded, f._version)
    per_filter = _MATRICES.get(id(f))
    if per_filter is None:
        per_filter = _MATRICES[id(f)] = {}
        weakref.finalize(f, _MATRICES.pop, id(f), None)
    blocks = per_filter.get(key)
    if blocks is None:
        eye = torch.eye(n, dtype=torch.float64, device=f.device).reshape(n, 1, n, 1)
        eye = F.pad(eye, [0, up - 1]).reshape(n, 1, n * up)
        eye = F.pad(eye, [max(pad0, 0), max(pad1, 0)])
        eye = eye[:, :, max(-pad0, 0): eye.shape[2] - max(-pad1, 0)]
        taps = f.to(torch.float64) * gain
        taps = taps if flip_filter else taps.flip(0)
        m = F.conv1d(eye, taps.view(1, 1, -1))[:, 0, ::down]
        width = BAND_BLOCK if banded and n >= BAND_MIN_SIZE else m.shape[1]
        blocks = []
        for c0 in range(0, m.shape[1], width):
            rows = (m[:, c0:c0 + width] != 0).any(1).nonzero()
            r0, r1 = (int(rows.min()), int(rows.max()) + 1) if len(rows) else (0, 1)
            blocks.append((r0, r1, m[r0:r1, c0:c0 + width].to(dtype).contiguous()))
        per_filter[key] = blocks
    return blocks


def _resample_last(x: torch.Tensor, blocks: list[tuple[int, int, torch.Tensor]]) -> torch.Tensor:
    """1-D resampling of x's last axis with `_resample_blocks`."""
    if len(blocks) == 1:
        r0, r1, m = blocks[0]
        return torch.matmul(x[..., r0:r1], m)
    return torch.cat([torch.matmul(x[..., r0:r1], m) for r0, r1, m in blocks], dim=-1)


def _resample_rows(x: torch.Tensor, blocks: list[tuple[int, int, torch.Tensor]]) -> torch.Tensor:
    """1-D resampling of x's second-to-last axis with `_resample_blocks`."""
    if len(blocks) == 1:
        r0, r1, m = blocks[0]
        return torch.matmul(m.t(), x[..., r0:r1, :])
    return torch.cat([torch.matmul(m.t(), x[..., r0:r1, :]) for r0, r1, m in blocks], dim=-2)


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: int = 1, down: int = 1,
              padding: int | Sequence[int] = 0, gain: float = 1.0, flip_filter: bool = False) -> torch.Tensor:
    """Same result as `upfirdn2d_reference`, computed fast.

    Separable filters on images up to MATMUL_MAX_SIZE become matrix products with cached banded resampling
    matrices, one per axis (much faster than depthwise convolutions on CPU), split into blocks along the band
    from BAND_MIN_SIZE inputs on when no gradient is needed; larger images use polyphase (strided) convolutions
    on one channel at a time.
    """
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _parse_padding(padding)
    if f is None:
        return upfirdn2d_reference(x, None, up=up, down=down, padding=(px0, px1, py0, py1), gain=gain)
    if f.ndim == 1 and max(h, w) <= MATMUL_MAX_SIZE and not torch.compiler.is_compiling():
        axis_gain = gain ** 0.5
        banded = not (torch.is_grad_enabled() and x.requires_grad)
        x = _resample_last(x, _resample_blocks(f, w, up, down, px0, px1, axis_gain, flip_filter, x.dtype, banded))
        return _resample_rows(x, _resample_blocks(f, h, up, down, py0, py1, axis_gain, flip_filter, x.dtype, banded))
    y = x.reshape(n * c, 1, h, w)
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if f.ndim == 1:
        # Transposed convolution applies the filter unflipped, which is true convolution (the reference's flip).
        fk = f.flip(0) if flip_filter else f
        if up > 1:
            y = _upsample_1d(y, fk, up, px0, px1, dim=3)
            y = _upsample_1d(y, fk, up, py0, py1, dim=2)
            y = y[:, :, ::down, ::down] if down > 1 else y
        else:
            y = F.pad(y, [px0, px1, py0, py1])
            fc = fk.flip(0)
            y = F.conv2d(y, fc.view(1, 1, 1, -1), stride=(1, down))
            y = F.conv2d(y, fc.view(1, 1, -1, 1), stride=(down, 1))
        return y.reshape(n, c, y.shape[2], y.shape[3])
    if up > 1:
        raise ValueError("2-D (radial) filters are only supported for downsampling")
    fc = f if flip_filter else f.flip([0, 1])
    y = F.pad(x, [px0, px1, py0, py1])
    return F.conv2d(y, fc[None, None].repeat(c, 1, 1, 1), stride=down, groups=c)


def bias_lrelu(x: torch.Tensor, b: Optional[torch.Tensor], slope: float, gain: float,
               clamp: Optional[float]) -> torch.Tensor:
    """Add a per-channel bias, leaky ReLU with `slope`, scale by `gain`, clamp to [-clamp, clamp]."""
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0 and _may_exceed(x, clamp):
        x = x.clamp(-clamp, clamp)
    return x


def _may_exceed(x: torch.Tensor, bound: float) -> bool:
    """Whether clamping x to +-bound could change it. On the CPU one read decides, which spares the clamp and its
    backward when nothing is out of range; elsewhere (no host sync wanted) and when compiling, always."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return True
    lo, hi = torch.aminmax(x.detach())
    return bool(lo < -bound or hi > bound)


def _output_size(in_size: int, up: int, down: int, p0: int, p1: int, fu: int, fd: int) -> int:
    return (in_size * up + (p0 + p1) - (fu - 1) - (fd - 1) + (down - 1)) // down


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: int | Sequence[int] = 0,
                   gain: float = math.sqrt(2), slope: float = 0.2, clamp: Optional[float] = None,
                   reference: bool = False) -> torch.Tensor:
    """Bias, upsample (fu), leaky ReLU with gain and clamp, downsample (fd): StyleGAN3's alias-free nonlinearity."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fuw, fuh = filter_size(fu)
    fdw, fdh = filter_size(fd)
    n, c, h, w = x.shape
    out_w = _output_size(w, up, down, px0, px1, fuw, fdw)
    out_h = _output_size(h, up, down, py0, py1, fuh, fdh)
    op = upfirdn2d_reference if reference else upfirdn2d
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = op(x, fu, up=up, padding=(px0, px1, py0, py1), gain=up ** 2)
    if reference or gain <= 0:
        x = bias_lrelu(x, None, slope=slope, gain=gain, clamp=clamp)
        x = op(x, fd, down=down)
    else:  # the leaky ReLU is positively homogeneous: the gain moves into the down filter, a pass fewer
        x = bias_lrelu(x, None, slope=slope, gain=1, clamp=None if clamp is None or clamp < 0 else clamp / gain)
        x = op(x, fd, down=down, gain=gain)
    if x.shape[2] != out_h or x.shape[3] != out_w:
        raise RuntimeError(f"filtered_lrelu produced {tuple(x.shape)}, expected spatial size {out_h}x{out_w}")
    return x
