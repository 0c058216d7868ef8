"""The SynthFaces face analyzer: one small CNN with identity, factor and landmark heads.

It is the embedded, differentiable stand-in for InsightFace: `identity` is an L2-normalised embedding (trained
with an ArcFace margin loss), `factors` predicts every SynthFaces factor in [0, 1], `landmarks` the landmark
positions (trained as fractions of the image size, returned in pixels). Any input size is resized to the
analyzer's resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from core.checkpoints import Pretrained
from core.synthfaces.factors import NUM_FACTORS
from core.synthfaces.render import NUM_LANDMARKS


@dataclass
class Analysis:
    """Analyzer outputs for a batch: embedding [B, D] (unit norm), factors [B, F] in [0, 1] (None where the
    backend predicts none), landmarks [B, L, 2] in input pixels."""

    embedding: torch.Tensor
    factors: Optional[torch.Tensor]
    landmarks: Optional[torch.Tensor]


@torch.no_grad()
def analyze(analyzer: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> Analysis:
    """The analyzer's outputs for any number of images in [0, 1], batch by batch, gathered on the CPU, so that a
    caller reads each image set once and reuses the readings."""
    device = next(analyzer.parameters()).device
    outs = [analyzer(images[s:s + batch].to(device)) for s in range(0, len(images), batch)]

    def gather(field: str) -> Optional[torch.Tensor]:
        parts = [getattr(o, field) for o in outs]
        return None if not parts or parts[0] is None else torch.cat(parts).cpu()

    return Analysis(gather("embedding"), gather("factors"), gather("landmarks"))


class FaceModelUnavailable(RuntimeError):
    """A real-face model (or its runtime) is not installed here; the message says what to install or download."""


def _conv(cin: int, cout: int, stride: int = 1) -> list[torch.nn.Module]:
    return [torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(inplace=True)]


def _block(cin: int, cout: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(*_conv(cin, cout), *_conv(cout, cout), torch.nn.MaxPool2d(2))


class FaceAnalyzer(torch.nn.Module, Pretrained):
    """Strided stem and 3 conv blocks (/16) -> an FC trunk for the identity embedding; a separate FC branch on
    the /8 features for the factors; landmarks by soft-argmax over heatmaps at 1/4 resolution, built from the /4
    features plus the upsampled /8 features. With `landmark_stride=2` a refinement stage adds residual heatmap
    logits at 1/2 resolution from the stem's features (finer landmarks at little cost)."""

    kind = "face_analyzer"
    config_limits = {"resolution": 1024}

    def __init__(self, resolution: int = 64, width: int = 16, embed_dim: int = 128, hidden: int = 256,
                 landmark_stride: int = 4) -> None:
        super().__init__()
        if resolution % 16:
            raise ValueError("resolution must be a multiple of 16")
        if landmark_stride not in (2, 4):
            raise ValueError(f"landmark_stride must be 2 or 4, got {landmark_stride}")
        self.resolution = resolution
        self.embed_dim = embed_dim
        self.stem = torch.nn.Sequential(*_conv(3, width, stride=2))
        self.block1 = _block(width, width * 2)
        self.block2 = _block(width * 2, width * 4)
        self.block3 = _block(width * 4, width * 8)
        cells = (resolution // 16) ** 2
        self.trunk = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(width * 8 * cells, hidden),
                                         torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(inplace=True))
        self.identity_head = torch.nn.Linear(hidden, embed_dim)
        # Factors get a branch of their own (the identity loss teaches the shared trunk to ignore expression).
        # It reads the /8 features, the predicted landmarks (smile, widths and spacings are geometry) and the
        # colours of the input sampled at the landmarks (iris colour at the pupils).
        factor_in = width * 4 * cells * 4 + NUM_LANDMARKS * 2 + NUM_LANDMARKS * 3
        self.factor_head = torch.nn.Sequential(torch.nn.Linear(factor_in, hidden), torch.nn.ReLU(inplace=True),
                                               torch.nn.Linear(hidden, hidden), torch.nn.ReLU(inplace=True),
                                               torch.nn.Linear(hidden, NUM_FACTORS))
        self.landmark_lateral = torch.nn.Conv2d(width * 4, width * 2, 1)
        self.landmark_head = torch.nn.Sequential(*_conv(width * 4, width * 4), *_conv(width * 4, width * 4),
                                                 torch.nn.Conv2d(width * 4, NUM_LANDMARKS, 1))
        if landmark_stride == 2:
            self.landmark_refine = torch.nn.Sequential(*_conv(width + NUM_LANDMARKS, width * 2),
                                                       *_conv(width * 2, width * 2), *_conv(width * 2, width * 2),
                                                       torch.nn.Conv2d(width * 2, NUM_LANDMARKS, 1))
            # Zero residual at the start: a refined model begins as its coarse one, upsampled.
            torch.nn.init.zeros_(self.landmark_refine[-1].weight)
            torch.nn.init.zeros_(self.landmark_refine[-1].bias)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check [B, 3, H, W] images in [0, 1] and resize them to the analyzer's resolution."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [batch, 3, H, W], got {list(images.shape)}")
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            images = F.interpolate(images, size=(self.resolution, self.resolution), mode="bilinear",
                                   align_corners=False, antialias=True)
        return images

    def _features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """(resized input, feature maps, landmark heatmaps [B, L, h, w] as probabilities). The feature maps are the
        stem's and the first two blocks' activations (/2, /4, /8 of the analyzer's resolution): a perceptual feature
        space for faces, as VGG's early layers are for photos."""
        x = self.prepare(images)
        f0 = self.stem((x - self.mean) * 2)
        f1 = self.block1(f0)
        f2 = self.block2(f1)
        up = F.interpolate(self.landmark_lateral(f2), size=f1.shape[-2:], mode="bilinear", align_corners=False)
        heat = self.landmark_head(torch.cat([f1, up], dim=1))
        if hasattr(self, "landmark_refine"):
            heat = F.interpolate(heat, size=f0.shape[-2:], mode="bilinear", align_corners=False)
            heat = heat + self.landmark_refine(torch.cat([f0, heat], dim=1))
        b, n, hh, ww = heat.shape
        return x, [f0, f1, f2], torch.softmax(heat.view(b, n, hh * ww), dim=2).view(b, n, hh, ww)

    def landmark_confidence(self, images: torch.Tensor) -> torch.Tensor:
        """[B] mean over landmarks of the heatmap probability within 3x3 cells of its peak: high on faces, low
        where no landmark can be found (a window, not the peak alone, so finer heatmaps are not penalised)."""
        prob = self._features(images)[2]
        return (F.avg_pool2d(prob, 3, stride=1, padding=1) * 9).flatten(2).amax(2).mean(1)

    def raw(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Un-normalised head outputs: (embedding, factor logits, landmark fractions [B, L, 2])."""
        return self.raw_with_maps(images)[1:]

    def raw_with_maps(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor,
                                                            torch.Tensor]:
        """(the feature maps of `_features`, then `raw`'s outputs) from one pass, for a caller that needs both."""
        x, maps, prob = self._features(images)
        f2 = maps[2]
        h = self.trunk(self.block3(f2))
        b, n, hh, ww = prob.shape
        xs = (torch.arange(ww, dtype=prob.dtype, device=prob.device) + 0.5) / ww
        ys = (torch.arange(hh, dtype=prob.dtype, device=prob.device) + 0.5) / hh
        lm = torch.stack([(prob.sum(2) * xs).sum(2), (prob.sum(3) * ys).sum(2)], dim=2)
        colours = F.grid_sample(x, (lm * 2 - 1).unsqueeze(1), mode="bilinear", align_corners=False).flatten(1)
        factors = self.factor_head(torch.cat([f2.flatten(1), (lm.flatten(1) - 0.5) * 4, (colours - 0.5) * 2], dim=1))
        return maps, self.identity_head(h), factors, lm

    def forward(self, images: torch.Tensor) -> Analysis:
        emb, logits, lm = self.raw(images)
        size = images.shape[-1]
        return Analysis(embedding=F.normalize(emb, dim=1), factors=torch.sigmoid(logits), landmarks=lm * size - 0.5)
