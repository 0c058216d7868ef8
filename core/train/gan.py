"""Train a StyleGAN3 generator on SynthFaces against a StyleGAN2-style discriminator.

    python -m core.train gan --config configs/gan_synthfaces64.yaml [--resume] [--set key=value ...]
    accelerate launch --num_processes N -m core.train gan --config ...   (N GPUs: one process each)

The recipe follows the official StyleGAN3 training: non-saturating logistic loss, lazy R1 on reals every
`r1_interval` steps (with the Adam lr/betas correction for lazy regularisation), Adam(0, 0.99), an EMA copy of G
whose half-life grows with the images seen, and the discriminator's inputs blurred at the start of training.
Optional variation-predictability loss (`vp_weight` > 0; Zhu et al., 2020): in the generator step, one of the
first `vp_dims` latent dimensions is redrawn, and G and a predictor Q both minimise Q's cross-entropy in telling
from the image difference which dimension it was (a lower bound on their mutual information).
Real images are rendered on the fly, seeded by step and process, so a resumed run sees the same data.
Training goes through the run's Accelerator (`core.train.placement`): G, D and Q are DDP modules across processes,
and the R1 penalty's double backward runs inside D's own backward.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.checkpoints import read_config
from core.config import from_dict
from core.imaging import save_grid
from core.metrics.fd import analyzer_features, factor_match, frechet_distance
from core.metrics.vp import VarPredNet, vp_loss
from core.stylegan3.discriminator import Discriminator
from core.stylegan3.networks import Generator
from core.stylegan3.ops import upfirdn2d
from core.synthfaces.render import render_faces
from core.train.ema import update_ema
from core.train.rundir import RunConfig, TrainingRun, part

EVAL_FIRST_IDENTITY = 3_000_000  # the second real set of the real/real FD baseline uses unseen identities


@dataclass
class GanConfig(RunConfig):
    """Schema of configs/gan_*.yaml."""

    name: str = "gan_synthfaces64"
    resolution: int = 64
    train_identities: int = 100_000
    world_seed: int = 0
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 2
    channel_base: int = 2048
    channel_max: int = 64
    num_layers: int = 8
    margin_size: int = 10
    conv_kernel: int = 3
    num_fp16_res: int = 0
    d_channel_base: int = 2048
    d_channel_max: int = 128
    mbstd_group: int = 4
    batch_size: int = 16
    steps: int = 2000
    g_lr: float = 0.0025
    d_lr: float = 0.002
    r1_gamma: float = 0.5
    r1_interval: int = 16
    ema_images: float = 5000.0
    ema_rampup: float = 0.05
    blur_init_sigma: float = 10.0
    blur_fade_images: int = 100_000
    log_every: int = 10
    init_from: str = ""  # a generator checkpoint to start from (e.g. the distilled one), same architecture
    sample_every: int = 200
    checkpoint_every: int = 200
    eval_every: int = 1000
    eval_images: int = 1000
    analyzer: str = "synthfaces_analyzer"
    vp_weight: float = 0.0  # variation-predictability loss weight (0 = off)
    vp_dims: int = 8  # the first vp_dims latent dimensions carry the constraint
    vp_width: int = 16  # predictor width
    vp_lr: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vp_weight < 0 or not 2 <= self.vp_dims <= self.z_dim:
            raise ValueError(f"vp_weight must be >= 0 and vp_dims between 2 and z_dim ({self.z_dim})")
        if self.batch_size % min(self.mbstd_group, self.batch_size):
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of mbstd_group {self.mbstd_group}")

    def generator_kwargs(self) -> dict[str, Any]:
        return dict(z_dim=self.z_dim, c_dim=0, w_dim=self.w_dim, img_resolution=self.resolution, img_channels=3,
                    mapping_kwargs=dict(num_layers=self.mapping_layers), channel_base=self.channel_base,
                    channel_max=self.channel_max, num_layers=self.num_layers, margin_size=self.margin_size,
                    conv_kernel=self.conv_kernel, num_fp16_res=self.num_fp16_res, conv_clamp=256,
                    magnitude_ema_beta=0.5 ** (self.batch_size / 20_000))

    def discriminator_kwargs(self) -> dict[str, Any]:
        return dict(img_resolution=self.resolution, img_channels=3, channel_base=self.d_channel_base,
                    channel_max=self.d_channel_max, mbstd_group=self.mbstd_group)


def step_generator(cfg: GanConfig, step: int, rank: int = 0) -> torch.Generator:
    """The random stream of one step on one process (so resumed runs draw the same data and latents)."""
    return torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 64 + rank)


def real_images(cfg: GanConfig, count: int, gen: torch.Generator, first_identity: int = 0) -> torch.Tensor:
    """SynthFaces images in [0, 1] of random training identities with random attributes."""
    ids = first_identity + torch.randint(0, cfg.train_identities, (count,), generator=gen)
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen))
    return render_faces(ids, seed=seed, resolution=cfg.resolution, world_seed=cfg.world_seed).images


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of the discriminator's inputs (sigma in pixels; 0 = none)."""
    radius = int(math.floor(sigma * 3))
    if radius <= 0:
        return images
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    f = (x / sigma).square().neg().exp2()
    return upfirdn2d(images, (f / f.sum()).to(images.dtype), padding=radius)


def r1_penalty(D: torch.nn.Module, real: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits on reals, per-sample squared gradient norm of D at the reals)."""
    real = real.detach().requires_grad_(True)
    logits = D(blur(real, sigma))
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return logits, grad.square().sum(dim=[1, 2, 3])


def discriminator_optimizer(D: torch.nn.Module, lr: float, r1_gamma: float, r1_interval: int) -> torch.optim.Adam:
    """Adam(0, 0.99) for D, with the official lr/beta correction for R1 applied every `r1_interval` steps."""
    ratio = r1_interval / (r1_interval + 1) if r1_gamma > 0 else 1.0
    return torch.optim.Adam(D.parameters(), lr=lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)


def discriminator_losses(D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, step: int, r1_gamma: float,
                         r1_interval: int, sigma: float = 0.0) -> dict[str, torch.Tensor]:
    """D's logistic loss on reals and fakes ([-1, 1], blurred by sigma) plus lazy R1 on the reals every
    `r1_interval` steps: loss_d, loss_r1 (zero between), logits_real, logits_fake and, when regularised, penalty."""
    out: dict[str, torch.Tensor] = {}
    if r1_gamma > 0 and step % r1_interval == 0:
        out["logits_real"], out["penalty"] = r1_penalty(D, real, sigma)
        out["loss_r1"] = out["penalty"].mean() * (r1_gamma / 2) * r1_interval
    else:
        out["logits_real"], out["loss_r1"] = D(blur(real, sigma)), torch.zeros((), device=real.device)
    out["logits_fake"] = D(blur(fake, sigma))
    out["loss_d"] = F.softplus(out["logits_fake"]).mean() + F.softplus(-out["logits_real"]).mean()
    return out


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return (images.float() + 1).mul(0.5).clamp(0, 1)


class Evaluator:
    """Analyzer-feature FD and per-factor match of G against a fixed set of real images."""

    def __init__(self, cfg: GanConfig, device: torch.device) -> None:
        from core.analysis import load_analyzer
        self.cfg, self.device = cfg, device
        self.analyzer = load_analyzer(cfg.analyzer, device=str(device))
        gen = torch.Generator().manual_seed(cfg.seed + 12345)
        self.real_feats, self.real_factors = analyzer_features(self.analyzer, real_images(cfg, cfg.eval_images, gen))
        other, _ = analyzer_features(self.analyzer, real_images(cfg, cfg.eval_images, gen, EVAL_FIRST_IDENTITY))
        self.baseline = frechet_distance(self.real_feats, other)

    @torch.no_grad()
    def __call__(self, G: Generator) -> dict[str, float]:
        gen = torch.Generator().manual_seed(self.cfg.seed + 54321)
        images = []
        for start in range(0, self.cfg.eval_images, 64):
            z = torch.randn(min(64, self.cfg.eval_images - start), G.z_dim, generator=gen).to(self.device)
            images.append(_to_unit(G(z, noise_mode="const")).cpu())
        feats, factors = analyzer_features(self.analyzer, torch.cat(images))
        match = factor_match(self.real_factors, factors)
        return {"fd_analyzer": frechet_distance(self.real_feats, feats), "fd_analyzer_real_real": self.baseline,
                "factor_w1_mean": sum(match.values()) / len(match), **{f"factor_w1/{k}": v for k, v in match.items()}}


def build_generator(cfg: GanConfig) -> Generator:
    """The generator a run starts from: `init_from` (its own architecture, e.g. the distilled one) or a fresh one
    built from the config."""
    if cfg.init_from:
        return Generator.from_pretrained(cfg.init_from).train().requires_grad_(True)
    return Generator(**cfg.generator_kwargs())


def train_gan(cfg: GanConfig, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) a GAN run; returns the last evaluation (analyzer FD, factor match)."""
    run = TrainingRun(cfg, resume, total_steps=cfg.steps)
    device, main = run.device, run.main
    torch.manual_seed(cfg.seed)
    G = build_generator(cfg)
    D = Discriminator(**cfg.discriminator_kwargs())
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.g_lr, betas=(0.0, 0.99), eps=1e-8)
    opt_d = discriminator_optimizer(D, cfg.d_lr, cfg.r1_gamma, cfg.r1_interval)
    Q = VarPredNet(cfg.vp_dims, cfg.vp_width) if cfg.vp_weight > 0 else None
    opt_q = torch.optim.Adam(Q.parameters(), lr=cfg.vp_lr) if Q is not None else None
    modules, optimizers = {"G": G, "D": D, "G_ema": G_ema, "Q": Q}, {"g": opt_g, "d": opt_d, "q": opt_q}
    run.restore(modules, optimizers)
    G_ema.to(device)
    G_train, D_train, opt_g, opt_d = run.prepare(G, D, opt_g, opt_d)
    if Q is not None:
        Q_train, opt_q = run.prepare(Q, opt_q)
    evaluator = Evaluator(cfg, device) if main and cfg.eval_images > 0 else None
    fixed_z = G.z_from_seed(cfg.seed, 32).to(device)
    with run:
        bar = tqdm(total=cfg.steps, initial=run.step, disable=not (progress and main), desc="gan")
        t0, t0_images = time.time(), run.images_seen
        while run.step < cfg.steps:
            step = run.step
            gen = run.stream(step, per_process=True)
            real = real_images(cfg, cfg.batch_size, gen).to(device) * 2 - 1
            z_d = torch.randn(cfg.batch_size, G.z_dim, generator=gen).to(device)
            z_g = torch.randn(cfg.batch_size, G.z_dim, generator=gen).to(device)
            seen = run.images_seen
            sigma = cfg.blur_init_sigma * max(0.0, 1 - seen / cfg.blur_fade_images) if cfg.blur_fade_images else 0.0

            # Discriminator: logistic loss on reals and fakes, plus lazy R1 on reals.
            D.requires_grad_(True)
            with torch.no_grad(), run.autocast():
                fake = G(z_d, update_emas=True)
            with run.autocast():
                d_out = discriminator_losses(D_train, real, fake, step, cfg.r1_gamma, cfg.r1_interval, sigma)
            loss_d, logits_real, logits_fake = d_out["loss_d"], d_out["logits_real"], d_out["logits_fake"]
            opt_d.zero_grad(set_to_none=True)
            run.backward((loss_d + d_out["loss_r1"]).float())
            opt_d.step()

            # Generator: non-saturating loss through a frozen D (the unwrapped one: its gradients stay unsynced).
            D.requires_grad_(False)
            with run.autocast():
                fake_g = G_train(z_g)
                logits_gen = D(blur(fake_g, sigma))
                loss_g = F.softplus(-logits_gen).mean()
                if Q is not None:  # G and Q both minimise Q's error (the VP mutual-information term)
                    loss_vp, vp_acc = vp_loss(G_train, Q_train, z_g, fake_g, cfg.vp_dims, gen)
            opt_g.zero_grad(set_to_none=True)
            if Q is not None:
                opt_q.zero_grad(set_to_none=True)
                run.backward(loss_g.float() + cfg.vp_weight * loss_vp)
                opt_q.step()
            else:
                run.backward(loss_g.float())
            opt_g.step()

            step = run.advance(cfg.batch_size)
            world_batch = cfg.batch_size * run.num_processes
            ema_images = (min(cfg.ema_images, run.images_seen * cfg.ema_rampup) if cfg.ema_rampup
                          else cfg.ema_images)
            update_ema(G_ema, G, 0.5 ** (world_batch / max(ema_images, 1e-8)))
            bar.update(1)
            if step % cfg.log_every == 0:
                measured = dict(loss_d=loss_d, loss_g=loss_g, logits_real=logits_real.mean(),
                                logits_fake=logits_fake.mean())
                if "penalty" in d_out:
                    measured["r1_penalty"] = d_out["penalty"].mean()
                if Q is not None:
                    measured.update(loss_vp=loss_vp, vp_accuracy=vp_acc)
                scalars = run.mean_scalars({k: v.detach() for k, v in measured.items()})
                rate = (run.images_seen - t0_images) / (time.time() - t0)
                run.log(step, **scalars, blur_sigma=sigma, images_per_s=rate, images_seen=run.images_seen)
                bar.set_postfix(d=f"{scalars['loss_d']:.3f}", g=f"{scalars['loss_g']:.3f}")
            if main and (step % cfg.sample_every == 0 or step == cfg.steps):
                with torch.no_grad():
                    save_grid(_to_unit(G_ema(fixed_z, noise_mode="const")).cpu(), run.samples / f"{step:08d}.png", 8)
            if evaluator is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                run.report = evaluator(G_ema)
                run.log(step, **run.report)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                run.save(step, "gan_training", modules, optimizers)
        bar.close()
        if evaluator is not None and not run.report:  # resumed at its last step: nothing trained, still report
            run.report = evaluator(G_ema)
        run.ship(G_ema, evaluation=f"analyzer FD over {cfg.eval_images} generated vs {cfg.eval_images} real images "
                                   f"(SynthFaces-analyzer features, not Inception FID)")
    return run.report


def export_model(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[str, Generator]:
    """The deployable generator (the EMA copy) of a GAN checkpoint."""
    cfg = from_dict(GanConfig, meta["config"])
    ema = part(tensors, "G_ema.")
    kwargs = read_config(cfg.init_from)[1]["init_kwargs"] if cfg.init_from else cfg.generator_kwargs()
    G = Generator(**kwargs)
    G.load_state_dict(ema)
    return "generator", G.eval()
