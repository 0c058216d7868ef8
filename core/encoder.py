"""An encoder image -> W for one generator (in the style of pSp / e4e): a small ResNet that reads a face and answers
the w the generator draws it from, so an upload can be edited by every page at once instead of after a projection.

It predicts one w (the generator's W, as `G.images_from_w` takes it), not W+: the sliders' directions, the NICE
codes and the report card all live in W, and the distilled generator's W already draws every SynthFaces face, so
W+ would add freedom that no other part of the suite can use. Output: the generator's W average plus a learned
offset, so an untrained encoder answers the average face.

    E = Encoder.from_pretrained("synthfaces_encoder")
    w = E(images)                    # images [B, 3, R, R] in [0, 1] -> w [B, w_dim]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.checkpoints import Pretrained


class ResidualBlock(torch.nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (a 1x1 convolution where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.shortcut = (torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                             torch.nn.BatchNorm2d(cout)) if stride != 1 or cin != cout
                         else torch.nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.bn1(self.conv1(x)), 0.2)
        return F.leaky_relu(self.bn2(self.conv2(y)) + self.shortcut(x), 0.2)


class Encoder(torch.nn.Module, Pretrained):
    """Image [B, 3, R, R] in [0, 1] -> w [B, w_dim]: a stem, stages that halve the side down to 4 x 4 (channels
    doubling from `width` up to `channel_max`), then two linear layers onto W, added to the W average."""

    kind = "encoder"
    config_limits = {"resolution": 1024, "blocks": 16}

    def __init__(self, resolution: int = 64, w_dim: int = 256, width: int = 32, channel_max: int = 128,
                 blocks: int = 2, hidden: int = 512) -> None:
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.resolution, self.w_dim = resolution, w_dim
        layers: list[torch.nn.Module] = [torch.nn.Conv2d(3, width // 2, 3, 1, 1, bias=False),
                                         torch.nn.BatchNorm2d(width // 2), torch.nn.LeakyReLU(0.2)]
        channels, side = width // 2, resolution
        while side > 4:
            out = width if side == resolution else min(channel_max, channels * 2)
            layers += [ResidualBlock(channels, out, 2)] + [ResidualBlock(out, out, 1) for _ in range(blocks - 1)]
            channels, side = out, side // 2
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channels * 16, hidden),
                                        torch.nn.LeakyReLU(0.2), torch.nn.Linear(hidden, w_dim))
        torch.nn.init.zeros_(self.head[-1].weight)
        torch.nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [batch, 3, H, W], got {list(images.shape)}")
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            images = F.interpolate(images, size=(self.resolution, self.resolution), mode="area")
        return self.w_avg + self.head(self.features(images * 2 - 1))
