"""StyleGAN2-style residual discriminator, the one StyleGAN3 is trained against.

Layout (as in the official `networks_stylegan2.Discriminator`, architecture "resnet"): a 1x1 fromRGB at full
resolution, one residual block per resolution down to 4x4 (two 3x3 convs, the second blurring with [1,3,3,1] and
down-sampling, plus a 1x1 down-sampled skip, summed with gain sqrt(1/2)), then an epilogue with minibatch
standard deviation, a 3x3 conv and two fully connected layers. Every weight uses the equalised learning rate.
"""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F

from core.stylegan3.networks import FullyConnectedLayer
from core.stylegan3.ops import upfirdn2d

LRELU_GAIN = math.sqrt(2)
BLUR = torch.tensor([1.0, 3.0, 3.0, 1.0])


class Conv2dLayer(torch.nn.Module):
    """Equalised-lr conv with optional blur + 2x down-sampling, bias, leaky ReLU (gain sqrt 2) and clamping."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, activation: str = "lrelu",
                 down: int = 1, conv_clamp: float | None = 256) -> None:
        super().__init__()
        self.down, self.activation, self.conv_clamp = down, activation, conv_clamp
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2
        self.register_buffer("blur", BLUR / BLUR.sum(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        kernel = self.weight.shape[-1]
        if self.down > 1 and kernel == 1:  # blur + decimate, then the 1x1 conv (cheaper in that order)
            pad = (len(self.blur) - self.down + 1) // 2
            x = F.conv2d(upfirdn2d(x, self.blur.to(x.dtype), down=self.down, padding=pad), w)
        elif self.down > 1:  # blur, then a strided conv: the same sampling grid as the official layer
            pad = self.padding + (len(self.blur) - self.down + 1) // 2
            x = F.conv2d(upfirdn2d(x, self.blur.to(x.dtype), padding=pad), w, stride=self.down)
        else:
            x = F.conv2d(x, w, padding=self.padding)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).view(1, -1, 1, 1)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class DiscriminatorBlock(torch.nn.Module):
    """Residual block at one resolution: conv, conv + down, plus a 1x1 down-sampled skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3)
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, down=2)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, activation="linear", down=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x) * math.sqrt(0.5)
        return y + self.conv1(self.conv0(x)) * math.sqrt(0.5)


class MinibatchStd(torch.nn.Module):
    """Append the standard deviation across groups of samples as extra feature maps (discourages mode collapse)."""

    def __init__(self, group_size: int, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g:
            raise ValueError(f"batch {n} must be a multiple of the minibatch-std group {g}")
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class Discriminator(torch.nn.Module):
    """Image [B, C, R, R] in [-1, 1] -> one real/fake logit per image."""

    def __init__(self, img_resolution: int, img_channels: int = 3, channel_base: int = 32768, channel_max: int = 512,
                 mbstd_group: int = 4, mbstd_channels: int = 1) -> None:
        super().__init__()
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        self.img_resolution, self.img_channels = img_resolution, img_channels
        resolutions = [2 ** i for i in range(int(math.log2(img_resolution)), 2, -1)]
        channels = {r: min(channel_base // r, channel_max) for r in resolutions + [4]}
        self.from_rgb = Conv2dLayer(img_channels, channels[img_resolution], 1)
        self.blocks = torch.nn.ModuleList(DiscriminatorBlock(channels[r], channels[r // 2]) for r in resolutions)
        c4 = channels[4]
        self.mbstd = MinibatchStd(mbstd_group, mbstd_channels)
        self.conv = Conv2dLayer(c4 + mbstd_channels, c4, 3)
        self.fc = FullyConnectedLayer(c4 * 16, c4, activation="lrelu")
        self.out = FullyConnectedLayer(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"discriminator expects images [batch, {', '.join(map(str, expected))}], "
                             f"got {list(img.shape)}")
        x = self.from_rgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)

