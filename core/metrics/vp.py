"""Variation predictability (VP; Zhu, Xu & Tao, ECCV 2020): how well a small CNN can tell, from a pair of images,
which single latent dimension was changed between them. A disentangled latent space makes that easy.

Procedure (as in the authors' metric code): draw z1 ~ U(lo, hi)^D, copy it to z2 and redraw one dimension chosen
uniformly; render both; train a classifier (conv 7x7/2 - conv 3x3 + max-pool - conv 3x3 - conv 3x3 - global
pool - linear, BatchNorm + ReLU, input = the image difference) with Adam on a train split; the score is the best
held-out accuracy over the epochs. Repeated over independent runs (fresh pairs and splits): mean and spread.

Presets: `paper` follows the authors' defaults (10,000 pairs, 90 % held out, 60 epochs, Adam lr 0.01, batch 32,
U(-2, 2)); `fast` uses fewer pairs, a 50 % split and fewer epochs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class VPPreset:
    pairs: int
    test_ratio: float
    epochs: int
    lr: float
    batch_size: int
    runs: int
    width: int = 64
    resolution: Optional[int] = None  # images are area-resized to this side before the predictor (None: as drawn)
    heavy_pairs: Optional[int] = None  # pairs for spaces whose images are slow to draw (a generator), if fewer


PRESETS = {
    "paper": VPPreset(pairs=10_000, test_ratio=0.9, epochs=60, lr=0.01, batch_size=32, runs=3),
    "fast": VPPreset(pairs=3_000, test_ratio=0.5, epochs=12, lr=0.003, batch_size=64, runs=3, width=32),
    "interactive": VPPreset(pairs=2_000, test_ratio=0.5, epochs=35, lr=0.003, batch_size=50, runs=5, width=32,
                            resolution=32, heavy_pairs=250),
}
PRESET_NOTES = {
    "paper": "the authors' protocol: 10,000 pairs, 90 % held out, 60 epochs, Adam 0.01, batch 32, 3 runs",
    "fast": "3,000 pairs, 50 % held out, 12 epochs, a half-width predictor, 3 runs",
    "interactive": "2,000 pairs (250 for the generator's spaces, whose faces take 30 to 40 ms each to draw here) "
                   "at 32 px, 50 % held out, 35 epochs, a half-width predictor; the first of 5 runs answers, the "
                   "others refine the mean and its spread while you watch",
}


@dataclass
class VPResult:
    score: float  # mean over runs of the best held-out accuracy
    spread: float  # standard deviation over runs
    runs: list[float]
    per_dim: np.ndarray  # held-out accuracy per changed dimension (best epoch, pooled over runs)
    confusion: np.ndarray = field(repr=False)  # [true dim, predicted dim] counts, pooled over runs
    names: Optional[list[str]] = None  # a name per latent dimension, where the space has them


@dataclass
class VPUpdate:
    """One step of a running VP job: how far it is, what it is doing, and the result so far (after each run)."""

    fraction: float
    stage: str
    result: Optional[VPResult] = None


class VarPredNet(torch.nn.Module):
    """The VP predictor: image difference [B, 3, H, W] -> logits over latent dimensions."""

    def __init__(self, out_dim: int, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()

        def block(a: int, b: int, k: int = 3, stride: int = 1) -> list[torch.nn.Module]:
            return [torch.nn.Conv2d(a, b, k, stride, k // 2, bias=False), torch.nn.BatchNorm2d(b),
                    torch.nn.ReLU(inplace=True)]

        self.net = torch.nn.Sequential(*block(in_channels, width, 7, 2), *block(width, width),
                                       torch.nn.MaxPool2d(3, 2, 1), *block(width, 2 * width),
                                       *block(2 * width, 4 * width), torch.nn.AdaptiveAvgPool2d(1),
                                       torch.nn.Flatten(), torch.nn.Linear(4 * width, out_dim))

    def forward(self, diff: torch.Tensor) -> torch.Tensor:
        return self.net(diff)


def vp_loss(G: Callable[[torch.Tensor], torch.Tensor], Q: torch.nn.Module, z: torch.Tensor, fake: torch.Tensor,
            dims: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The VP training term (the paper's constraint, in the GAN and the VAE loops): (cross-entropy of Q telling which
    of the first `dims` latent dimensions was redrawn, Q's accuracy). `fake` is G(z), so one extra pass of G (a
    generator, a decoder) is needed; the generator and Q both minimise it."""
    which = torch.randint(0, dims, (len(z),), generator=gen).to(z.device)
    z2 = z.clone()
    z2[torch.arange(len(z), device=z.device), which] = torch.randn(len(z), generator=gen).to(z)
    logits = Q(G(z2) - fake)
    return F.cross_entropy(logits.float(), which), (logits.argmax(1) == which).float().mean()


def _resize(images: torch.Tensor, side: Optional[int]) -> torch.Tensor:
    if side is None or images.shape[-1] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="area" if images.shape[-1] > side else "bilinear")


@torch.no_grad()
def iter_pairs(sample_fn: Callable[[torch.Tensor], torch.Tensor], latent_dim: int, count: int, seed: int,
               latent_range: tuple[float, float] = (-2.0, 2.0), batch: int = 100, resolution: Optional[int] = None
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of (image differences [n, 3, H, W] in [-1, 1] units, index of the changed dimension [n])."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = latent_range
    for start in range(0, count, batch):
        n = min(batch, count - start)
        z1 = lo + (hi - lo) * torch.rand(n, latent_dim, generator=gen)
        dim = torch.randint(0, latent_dim, (n,), generator=gen)
        z2 = z1.clone()
        z2[torch.arange(n), dim] = lo + (hi - lo) * torch.rand(n, generator=gen)
        x1, x2 = sample_fn(z1), sample_fn(z2)
        if x1.ndim != 4 or x1.shape[1] != 3 or x1.shape != x2.shape:
            raise ValueError(f"sample_fn must return [N, 3, H, W] images, got {list(x1.shape)}")
        yield _resize(((x1 - x2) * 2).float().cpu(), resolution), dim


def make_pairs(sample_fn: Callable[[torch.Tensor], torch.Tensor], latent_dim: int, count: int, seed: int,
               latent_range: tuple[float, float] = (-2.0, 2.0), batch: int = 100,
               resolution: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(image differences [N, 3, H, W] scaled to [-1, 1] units, index of the changed dimension [N])."""
    diffs, labels = zip(*iter_pairs(sample_fn, latent_dim, count, seed, latent_range, batch, resolution))
    return torch.cat(diffs), torch.cat(labels)


def _train_runs(diffs: torch.Tensor, labels: torch.Tensor, latent_dim: int, preset: VPPreset, seed: int,
               device: str) -> Iterator[Optional[tuple[float, np.ndarray]]]:
    """Train one predictor; yields None after every few batches (so a caller can stop it within a moment), then
    (best held-out accuracy, its confusion matrix) at the end."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    n_train = max(1, int(round(len(labels) * (1 - preset.test_ratio))))
    tr, te = order[:n_train], order[n_train:]
    torch.manual_seed(seed)
    model = VarPredNet(latent_dim, preset.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=preset.lr)
    best, best_conf = -1.0, np.zeros((latent_dim, latent_dim))
    for _ in range(preset.epochs):
        model.train()
        perm = tr[torch.randperm(len(tr), generator=gen)]
        for i in range(0, len(perm), preset.batch_size):
            idx = perm[i:i + preset.batch_size]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(diffs[idx].to(device)), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            yield None
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(diffs[te[i:i + 512]].to(device)).argmax(1).cpu() for i in range(0, len(te), 512)])
        acc = float((pred == labels[te]).float().mean())
        if acc > best:
            best = acc
            best_conf = np.zeros((latent_dim, latent_dim))
            np.add.at(best_conf, (labels[te].numpy(), pred.numpy()), 1)
    yield best, best_conf


def _preset(preset: str | VPPreset) -> VPPreset:
    if isinstance(preset, VPPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown VP preset {preset!r}; known: {', '.join(PRESETS)}")
    return PRESETS[preset]


def vp_stream(sample_fn: Callable[[torch.Tensor], torch.Tensor], latent_dim: int, preset: str | VPPreset = "fast",
              latent_range: tuple[float, float] = (-2.0, 2.0), seed: int = 0, device: str = "cpu",
              names: Optional[list[str]] = None, heavy: bool = False) -> Iterator[VPUpdate]:
    """Run the VP procedure step by step: updates come every batch of pairs or of training, and each finished run
    brings the result so far (mean and spread over the runs done). Closing the iterator stops the work at once,
    which is how a cancelled job in the app stops computing. `heavy` samplers use the preset's heavy_pairs."""
    preset = _preset(preset)
    if heavy and preset.heavy_pairs:
        preset = replace(preset, pairs=preset.heavy_pairs)
    if latent_dim < 2:
        raise ValueError("VP needs at least two latent dimensions")
    if names is not None and len(names) != latent_dim:
        raise ValueError(f"{len(names)} names for {latent_dim} latent dimensions")
    n_train = max(1, int(round(preset.pairs * (1 - preset.test_ratio))))
    render_units, train_units = preset.pairs, preset.epochs * max(1, -(-n_train // preset.batch_size))
    total, done = preset.runs * (render_units + train_units), 0
    scores: list[float] = []
    confusion = np.zeros((latent_dim, latent_dim))
    for run in range(preset.runs):
        diffs, labels = [], []
        for d, lab in iter_pairs(sample_fn, latent_dim, preset.pairs, seed * 1000 + run, latent_range,
                                 resolution=preset.resolution):
            diffs.append(d)
            labels.append(lab)
            done += len(lab)
            yield VPUpdate(done / total, f"run {run + 1}/{preset.runs}: rendering image pairs")
        steps = _train_runs(torch.cat(diffs), torch.cat(labels), latent_dim, preset, seed * 1000 + run, device)
        for out in steps:
            if out is None:
                done += 1
                yield VPUpdate(min(done / total, 1.0), f"run {run + 1}/{preset.runs}: training the predictor")
        best, conf = out
        scores.append(best)
        confusion += conf
        done = (run + 1) * (render_units + train_units)
        per_dim = np.diag(confusion) / np.clip(confusion.sum(1), 1, None)
        result = VPResult(float(np.mean(scores)), float(np.std(scores)), list(scores), per_dim, confusion.copy(),
                          names)
        yield VPUpdate(done / total, f"{run + 1} of {preset.runs} runs done", result)


def vp_score(sample_fn: Callable[[torch.Tensor], torch.Tensor], latent_dim: int, preset: str | VPPreset = "fast",
             latent_range: tuple[float, float] = (-2.0, 2.0), seed: int = 0, device: str = "cpu",
             progress: Optional[Callable[[float, str], None]] = None, names: Optional[list[str]] = None,
             heavy: bool = False) -> VPResult:
    """VP score of a sampler (latent codes [N, latent_dim] -> images [N, 3, H, W] in [0, 1])."""
    result = None
    for update in vp_stream(sample_fn, latent_dim, preset, latent_range, seed, device, names, heavy):
        if progress:
            progress(update.fraction, update.stage)
        result = update.result or result
    return result
