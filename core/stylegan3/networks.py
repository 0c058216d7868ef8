"""StyleGAN3 generator (alias-free GAN) in plain PyTorch.

Module, parameter and buffer names, shapes and constructor arguments follow NVIDIA's official
`training/networks_stylegan3.py`, so an official state dict loads with no renaming and the published
configs (stylegan3-t / stylegan3-r) are built from the same keyword arguments.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from core.checkpoints import Pretrained
from core.stylegan3.ops import design_lowpass_filter, filtered_lrelu

NOISE_MODES = ("random", "const", "none")
SQRT2 = float(np.sqrt(2))


def modulated_conv2d(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, input_gain: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Convolve each sample with the weight scaled per input channel by its style (one grouped conv)."""
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = w.shape
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    w = w.unsqueeze(0) * s.reshape(batch, 1, in_channels, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.reshape(batch, out_channels, 1, 1, 1)
    if input_gain is not None:
        w = w * input_gain.expand(batch, in_channels).reshape(batch, 1, in_channels, 1, 1)
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    w = w.reshape(batch * out_channels, in_channels, kh, kw)
    x = F.conv2d(x, w.to(x.dtype), padding=padding, groups=batch)
    return x.reshape(batch, out_channels, *x.shape[2:])


class FullyConnectedLayer(torch.nn.Module):
    """Linear layer with equalized learning rate (runtime weight scaling) and an optional activation."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear", bias: bool = True,
                 lr_multiplier: float = 1.0, weight_init: float = 1.0, bias_init: Any = 0.0) -> None:
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy(bias_init / lr_multiplier)) if bias else None
        self.weight_gain = float(lr_multiplier / np.sqrt(in_features))
        self.bias_gain = float(lr_multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t()) if b is not None else x.matmul(w.t())
        x = x.matmul(w.t())
        if b is not None:
            x = x + b
        return F.leaky_relu(x, 0.2) * SQRT2


class MappingNetwork(torch.nn.Module):
    """Z (+ optional label) -> W, broadcast to num_ws copies, with a tracked W average for truncation.

    `normalize_z=False` (not in the official code, whose default True is kept) skips the unit-RMS normalisation of
    z: the distilled generator's z coordinates each name a factor, so the overall scale of z carries meaning."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.998, normalize_z: bool = True) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.normalize_z = normalize_z
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [batch, {self.z_dim}], got {list(z.shape)}")
        if truncation_cutoff is None:
            truncation_cutoff = self.num_ws
        x = z.to(torch.float32)
        if self.normalize_z:
            x = x * (x.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this generator is conditional: c must have shape [batch, {self.c_dim}]")
            y = self.embed(c.to(torch.float32))
            y = y * (y.square().mean(1, keepdim=True) + 1e-8).rsqrt()
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


@torch.no_grad()
def estimate_w_avg(mapping: MappingNetwork, samples: int = 100_000, seed: int = 0, batch: int = 10_000) -> torch.Tensor:
    """The mean W of `samples` latents z ~ N(0, I): the truncation centre, for a mapping trained without tracking it."""
    gen = torch.Generator().manual_seed(seed)
    device = mapping.w_avg.device
    total = torch.zeros_like(mapping.w_avg)
    for start in range(0, samples, batch):
        z = torch.randn(min(batch, samples - start), mapping.z_dim, generator=gen).to(device)
        total += mapping(z)[:, 0].sum(0)
    return total / samples


def user_transform(translate_x: float = 0.0, translate_y: float = 0.0, degrees: float = 0.0) -> torch.Tensor:
    """The 3 x 3 input transform that moves a StyleGAN3 face by (translate_x, translate_y) and turns it by `degrees`
    (NVIDIA's gen_images.py convention: the inverse of the rotation-translation matrix); the identity for zeros."""
    angle = degrees / 360.0 * np.pi * 2
    s, c = np.sin(angle), np.cos(angle)
    m = np.array([[c, s, translate_x], [-s, c, translate_y], [0, 0, 1]], dtype=np.float64)
    return torch.from_numpy(np.linalg.inv(m)).float()


class SynthesisInput(torch.nn.Module):
    """Fourier features whose rotation and translation are predicted from w (plus a user transform)."""

    def __init__(self, w_dim: int, channels: int, size: int | list[int], sampling_rate: float,
                 bandwidth: float) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)
        self._grid_shape = [1, 1, int(self.size[1]), int(self.size[0])]
        self._grid_scale = [float(0.5 * self.size[0] / sampling_rate), float(0.5 * self.size[1] / sampling_rate)]
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: torch.Tensor, transform: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Features for w; `transform` (3 x 3, see `user_transform`) replaces the stored one for this call only, so
        concurrent callers of a shared generator each move their own faces."""
        batch = w.shape[0]
        transforms = (self.transform if transform is None else transform.to(self.transform)).unsqueeze(0)
        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0)
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = self._grid_scale[0]
        theta[1, 1] = self._grid_scale[1]
        grids = F.affine_grid(theta.unsqueeze(0), self._grid_shape, align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        weight = self.weight / float(np.sqrt(self.channels))
        x = x @ weight.t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(torch.nn.Module):
    """Modulated conv followed by the filtered leaky ReLU (or the final ToRGB layer)."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size: int | list[int], out_size: int | list[int],
                 in_sampling_rate: float, out_sampling_rate: float, in_cutoff: float, out_cutoff: float,
                 in_half_width: float, out_half_width: float, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False, conv_clamp: Optional[float] = 256,
                 magnitude_ema_beta: float = 0.999) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        if in_sampling_rate * self.up_factor != self.tmp_sampling_rate:
            raise ValueError("sampling rates must be integer multiples of each other")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer("up_filter", design_lowpass_filter(
            numtaps=self.up_taps, cutoff=in_cutoff, width=in_half_width * 2, fs=self.tmp_sampling_rate))

        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        if out_sampling_rate * self.down_factor != self.tmp_sampling_rate:
            raise ValueError("sampling rates must be integer multiples of each other")
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("down_filter", design_lowpass_filter(
            numtaps=self.down_taps, cutoff=out_cutoff, width=out_half_width * 2, fs=self.tmp_sampling_rate,
            radial=self.down_radial))

        # Padding so that sample locations follow the symmetric interpretation of the paper (Appendix C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                update_emas: bool = False, reference_ops: bool = False) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if update_emas:
            magnitude_cur = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude_cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * float(1 / np.sqrt(self.in_channels * (self.conv_kernel ** 2)))
        dtype = torch.float16 if (self.use_fp16 and not force_fp32 and x.device.type == "cuda") else torch.float32
        x = modulated_conv2d(x=x.to(dtype), w=self.weight, s=styles, padding=self.conv_kernel - 1,
                             demodulate=not self.is_torgb, input_gain=input_gain)
        gain = 1.0 if self.is_torgb else SQRT2
        slope = 1.0 if self.is_torgb else 0.2
        return filtered_lrelu(x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
                              up=self.up_factor, down=self.down_factor, padding=self.padding, gain=gain,
                              slope=slope, clamp=self.conv_clamp, reference=reference_ops)


class SynthesisNetwork(torch.nn.Module):
    """W+ -> image: Fourier input, num_layers synthesis layers on a geometric cutoff schedule, then ToRGB."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs: Any) -> None:
        super().__init__()
        if img_resolution < 16 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 16, got {img_resolution}")
        if num_layers <= num_critical:
            raise ValueError(f"num_layers ({num_layers}) must exceed num_critical ({num_critical})")
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels

        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
                                    sampling_rate=sampling_rates[0], bandwidth=cutoffs[0])
        self.layer_names: list[str] = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=(idx == num_layers), is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(sampling_rates[idx] * (2 ** num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f"L{idx}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, transform: Optional[torch.Tensor] = None, **layer_kwargs: Any) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must have shape [batch, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws_list = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws_list[0], transform)
        for name, w in zip(self.layer_names, ws_list[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)


class Generator(torch.nn.Module, Pretrained):
    """Mapping + synthesis, with the official constructor signature: Generator(z_dim, c_dim, w_dim, ...)."""

    kind = "stylegan3"
    config_limits = {"num_layers": 64, "num_critical": 64, "img_resolution": 4096, "img_channels": 16,
                     "margin_size": 1024, "num_fp16_res": 64}

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, **synthesis_kwargs: Any) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False,
                **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

    def images_from_w(self, w: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] [B, 3, H, W] of single W vectors [B, w_dim] (the same w at every layer, constant noise)."""
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        return (self.synthesis(ws, noise_mode="const") + 1) * 0.5

    def z_from_seed(self, seed: int, batch: int = 1) -> torch.Tensor:
        """The latent that the official gen_images.py draws for a seed (numpy RandomState), on G's device."""
        z = np.random.RandomState(seed).randn(batch, self.z_dim)
        return torch.from_numpy(z).to(device=self.mapping.w_avg.device, dtype=torch.float32)
