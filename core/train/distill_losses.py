"""The distillation's loss terms: pixel distance at several scales, maps that weight the facial features and the
glasses (the renderer says exactly where they are), the frozen analyzer's readings of the generated face against
the rendered one's, and the discriminator's update on rendered against generated faces."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from core.stylegan3.discriminator import Discriminator
from core.stylegan3.networks import Generator
from core.synthfaces.factors import FACTOR_NAMES
from core.synthfaces.render import LANDMARK_NAMES, render
from core.train.distill_config import DistillConfig
from core.train.gan import discriminator_losses
from core.train.rundir import TrainingRun

NUM_FEATURE_LANDMARKS = LANDMARK_NAMES.index("lower_lip") + 1  # eyes, pupils, nose tip and mouth: not the jaw


def generate(G: Generator, z: torch.Tensor) -> torch.Tensor:
    """G's images in [0, 1] (unclamped, for the loss) for latents z."""
    return (G(z, noise_mode="const") + 1) * 0.5


def pixel_loss(fake: torch.Tensor, real: torch.Tensor, scales: list[int], norm: str = "l1") -> torch.Tensor:
    """Mean over scales of the L1 (or squared L2) distance between the images average-pooled by each scale."""
    power = {"l1": 1, "l2": 2}[norm]
    return sum(((F.avg_pool2d(fake, s) - F.avg_pool2d(real, s)) if s > 1 else (fake - real)).abs().pow(power).mean()
               for s in scales) / len(scales)


def edge_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 distance between the images' horizontal and vertical neighbour differences (what blur loses first)."""
    d = fake - real  # differencing is linear: the neighbour differences of the error
    return ((d[..., :, 1:] - d[..., :, :-1]).abs().mean() + (d[..., 1:, :] - d[..., :-1, :]).abs().mean()) / 2


def feature_map(landmarks: torch.Tensor, resolution: int, sigma: float) -> torch.Tensor:
    """[B, 1, R, R] in [0, 1]: the largest Gaussian bump (radius sigma x R) over the eye, nose and mouth landmarks."""
    points = landmarks[:, :NUM_FEATURE_LANDMARKS]
    grid = torch.arange(resolution, dtype=points.dtype, device=points.device)
    dx = (grid.view(1, 1, -1) - points[..., 0:1]) ** 2  # [B, L, R]
    dy = (grid.view(1, 1, -1) - points[..., 1:2]) ** 2
    d2 = dy.unsqueeze(3) + dx.unsqueeze(2)  # [B, L, R(y), R(x)]
    return torch.exp(-d2.amin(dim=1, keepdim=True) / (2 * (sigma * resolution) ** 2))


def glasses_map(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """[B, 1, R, R] in {0, 1}: the pixels where the rendered faces differ from the same faces rendered without
    glasses (frames, lenses, bridge), grown by one pixel; all zero for a face without glasses."""
    bare = factors.clone()
    bare[:, [FACTOR_NAMES.index("eyeglasses"), FACTOR_NAMES.index("sunglasses")]] = 0
    mask = torch.zeros_like(images[:, :1])
    worn = torch.nonzero(bare.ne(factors).any(dim=1)).flatten()
    if len(worn):
        without = render(bare[worn], images.shape[-1])[0]
        mask[worn] = ((images[worn] - without).abs().amax(dim=1, keepdim=True) > 1 / 255).to(images.dtype)
    return F.max_pool2d(mask, 3, stride=1, padding=1)


def feature_loss(fake: torch.Tensor, real: torch.Tensor, weight_map: torch.Tensor) -> torch.Tensor:
    """Mean absolute error weighted by a map: the features (or glasses) it covers count, the background does not."""
    return ((fake - real).abs() * weight_map).mean()


def analyzer_losses(analyzer: torch.nn.Module, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Analyzer readings of the generated faces against those of the rendered ones (identity, factors, landmarks)."""
    with torch.no_grad():
        emb_r, logits_r, lm_r = (t.float() for t in analyzer.raw(real))  # float32 even under a bf16 autocast
    emb_f, logits_f, lm_f = (t.float() for t in analyzer.raw(fake))
    return {"loss_identity": 1 - F.cosine_similarity(emb_f, emb_r, dim=1).mean(),
            "loss_factors": (torch.sigmoid(logits_f) - torch.sigmoid(logits_r)).abs().mean(),
            "loss_landmarks": (lm_f - lm_r).abs().mean()}


def discriminator_input(images: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """Images in [0, 1] (and the optional landmark-map channel) as the discriminator reads them, in [-1, 1]."""
    return (images if condition is None else torch.cat([images, condition], 1)) * 2 - 1


def discriminator_step(D: Discriminator, D_train: torch.nn.Module, opt: torch.optim.Optimizer, fake: torch.Tensor,
                       real: torch.Tensor, condition: torch.Tensor | None, cfg: DistillConfig, run: TrainingRun,
                       aux_autocast: Callable[[], torch.autocast]) -> dict[str, torch.Tensor]:
    """One update of D (trained as `D_train`, its DDP form across processes) on rendered (real) against generated
    faces in [0, 1], both with the same condition: logistic loss, lazy R1 on the reals (the GAN loop's recipe).
    Returns the logged scalars."""
    D.requires_grad_(True)
    with aux_autocast():
        out = discriminator_losses(D_train, discriminator_input(real, condition),
                                   discriminator_input(fake.detach(), condition), run.step, cfg.r1_gamma,
                                   cfg.r1_interval)
    opt.zero_grad(set_to_none=True)
    run.backward(out["loss_d"].float() + out["loss_r1"].float())
    opt.step()
    D.requires_grad_(False)
    return {"loss_d": out["loss_d"].detach(), "logits_real": out["logits_real"].detach().mean(),
            "logits_fake": out["logits_fake"].detach().mean()}
