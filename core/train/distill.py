"""Distil the SynthFaces renderer into the embedded StyleGAN3: supervised regression of G(z) onto render(factors(z)).

    python -m core.train distill --config configs/distill_synthfaces64.yaml [--resume] [--ship] [--set key=value]

A GAN trained from scratch on a 2-core CPU stays a blob; here every step has a full-image target instead of a
discriminator's noisy signal. z has one coordinate per factor (`core.synthfaces.latent`), the generator is our
StyleGAN3 (mapping + synthesis, unchanged, z left un-normalised so that its scale keeps its meaning), and the loss
is pixel L1 at several scales plus, each weighted in the config, L1 on the facial features and on the glasses (the
renderer says exactly where they are), the frozen analyzer's identity embedding, factor readings and landmarks of
the generated face against those of the rendered one, and optionally a non-saturating GAN term through a
discriminator trained on rendered against generated faces (logistic loss, lazy R1, as in `core.train.gan`; from
`adversarial_from` on, so a resumed run can add it). Adam with beta1 0.9 learns this far faster than the GAN's
Adam(0, 0.99). An EMA copy of G is what ships. The latents of each step come from a stream seeded by the step, so a
resumed run sees exactly what an uninterrupted one would. The rate (constant, then optionally a cosine decay) and
the step the analyzer terms join are read from the config at every step, so a resume can change them.

With `quantize_glasses` the mapping network's first layer is built, not trained: it passes the continuous
coordinates through and reads the glasses coordinate as its kind, so W jumps at the cuts between kinds (see
`core.stylegan3.quantize`); `init_from` puts that layer in front of an already trained generator.
"""
from __future__ import annotations

import math
import time
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.analysis.model import analyze
from core.config import from_dict
from core.imaging import save_grid
from core.metrics.fidelity import fidelity
from core.stylegan3.discriminator import Discriminator
from core.stylegan3.networks import Generator, estimate_w_avg
from core.synthfaces.latent import GLASSES_CUTS_Z, LATENT_NAMES, Z_DIM, eval_latents, targets
from core.train.distill_config import DistillConfig
from core.train.distill_losses import (analyzer_losses, discriminator_input, discriminator_step, edge_loss,
                                       feature_loss, feature_map, generate, glasses_map, pixel_loss)
from core.train.distill_start import build_generator
from core.train.ema import update_ema
from core.train.gan import discriminator_optimizer
from core.train.rundir import TrainingRun, part

LATENT_NOTE = "z -> SynthFaces factors by core.synthfaces.latent.factors_from_z; G(z) ~ render(factors_from_z(z))"


def learning_rate(cfg: DistillConfig, step: int) -> float:
    """The learning rate of one step: constant, then (from `lr_decay_from`) a cosine down to `lr_final`."""
    if cfg.lr_decay_from < 0 or step < cfg.lr_decay_from:
        return cfg.lr
    t = (step - cfg.lr_decay_from) / (cfg.steps - cfg.lr_decay_from)
    return cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * t))


def step_latents(cfg: DistillConfig, step: int, count: int | None = None) -> torch.Tensor:
    """The `count` (default: batch_size) latents of one training step, seeded by the step, so resumed runs draw
    the same; several processes draw the global batch alike and each keeps its share. The first
    `glasses_boundary_fraction` of them move their glasses coordinate near a cut between two glasses kinds, where
    the generator has to draw a sharp change that plain N(0, 1) draws rarely show it. The next
    `eyeglasses_turned_fraction` wear eyeglasses on a face turned at least `eyeglasses_turned_yaw` from frontal,
    where thin frames are easiest to lose."""
    count = cfg.batch_size if count is None else count
    rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    z = torch.randn(count, Z_DIM, generator=rng)
    near = round(cfg.glasses_boundary_fraction * count)
    if near:
        cuts = torch.tensor(GLASSES_CUTS_Z)[torch.randint(len(GLASSES_CUTS_Z), (near,), generator=rng)]
        z[:near, -1] = cuts + (2 * torch.rand(near, generator=rng) - 1) * cfg.glasses_boundary_width
    turned = min(round(cfg.eyeglasses_turned_fraction * count), count - near)
    if turned:
        rows = slice(near, near + turned)
        lo, hi = torch.special.ndtr(torch.tensor(GLASSES_CUTS_Z))  # the eyeglasses interval, as Phi(z)
        z[rows, -1] = torch.special.ndtri(lo + (hi - lo) * torch.rand(turned, generator=rng))
        away = cfg.eyeglasses_turned_yaw + (0.5 - cfg.eyeglasses_turned_yaw) * torch.rand(turned, generator=rng)
        side = torch.randint(2, (turned,), generator=rng) * 2 - 1
        z[rows, LATENT_NAMES.index("yaw")] = torch.special.ndtri((0.5 + side * away).clamp(1e-6, 1 - 1e-6))
    return z



class Evaluator:
    """Fidelity of G on fixed held-out latents against their rendered targets (see core.metrics.fidelity)."""

    def __init__(self, cfg: DistillConfig, analyzer: torch.nn.Module) -> None:
        self.z = eval_latents(cfg.eval_images, cfg.seed)
        self.images, self.landmarks, self.factors = targets(self.z, cfg.resolution)
        self.analyzer = analyzer
        self.read_images = analyze(analyzer, self.images)  # the targets never change: read them once

    @torch.no_grad()
    def __call__(self, G: Generator) -> dict[str, float]:
        fake = torch.cat([generate(G, self.z[s:s + 64]).clamp(0, 1) for s in range(0, len(self.z), 64)])
        return {f"eval_{k}": v for k, v in fidelity(fake, self.images, self.landmarks, self.factors,
                                                     analyze(self.analyzer, fake), self.read_images).items()}


def train_distill(cfg: DistillConfig, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) a distillation run; returns the last evaluation. In N processes each draws the same global
    batch of N x batch_size latents and trains on its share."""
    from core.analysis import load_analyzer

    run = TrainingRun(cfg, resume, total_steps=cfg.steps)
    torch.manual_seed(cfg.seed)
    start = build_generator(cfg, run.meta if run.latest else None)
    if "images_seen" not in run.meta:  # a fresh run counts from its start's images
        run.images_seen = start.origin["images_seen"] + run.step * cfg.batch_size
    device = run.device
    G, G_ema = start.G, start.G_ema
    trained = [p for p in G.mapping.parameters() if p.requires_grad]
    opt = torch.optim.Adam([{"params": G.synthesis.parameters()}, {"params": trained}], lr=cfg.lr,
                           betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    D = opt_d = None
    if cfg.weight_adversarial > 0:
        D = Discriminator(**cfg.discriminator_kwargs()).requires_grad_(False)
        opt_d = discriminator_optimizer(D, cfg.d_lr, cfg.r1_gamma, cfg.r1_interval)
    start.carry_training_state(cfg, opt, D, opt_d)
    modules, optimizers = {"G": G, "G_ema": G_ema, "D": D}, {"g": opt, "d": opt_d}
    run.restore(modules, optimizers, joining=("D", "d"))
    G_ema.to(device)
    G_train, opt = run.prepare(G, opt)
    if D is not None:
        D.requires_grad_(True)  # DDP syncs the parameters that train
        D_train, opt_d = run.prepare(D, opt_d)
        D.requires_grad_(False)
    analyzer = load_analyzer(cfg.analyzer, device=str(device)).requires_grad_(False).eval() if (
        cfg.uses_analyzer or cfg.eval_images > 0) else None
    evaluator = Evaluator(cfg, analyzer) if run.main and cfg.eval_images > 0 else None
    fixed_z = eval_latents(8, cfg.seed + 1).to(device)
    fixed_real = targets(fixed_z.cpu(), cfg.resolution)[0]
    beta = 0.5 ** (cfg.batch_size * run.num_processes / max(cfg.ema_images, 1e-8))
    weights = {"loss_pixel": cfg.weight_pixel, "loss_edges": cfg.weight_edges,
               "loss_features": cfg.weight_features, "loss_glasses": cfg.weight_glasses,
               "loss_identity": cfg.weight_identity,
               "loss_factors": cfg.weight_factors, "loss_landmarks": cfg.weight_landmarks,
               "loss_adversarial": cfg.weight_adversarial}
    aux_autocast = partial(cfg.aux_autocast, device.type)
    with run:
        bar = tqdm(total=cfg.steps, initial=run.step, disable=not (progress and run.main), desc="distill")
        t0, t0_images = time.time(), run.images_seen
        while run.step < cfg.steps:
            z = run.shard(step_latents(cfg, run.step, cfg.batch_size * run.num_processes))
            real, landmarks, factors = (t.to(device) for t in targets(z, cfg.resolution))
            z = z.to(device)
            with run.autocast():
                fake = generate(G_train, z)
            losses = {"loss_pixel": pixel_loss(fake, real, cfg.pixel_scales, cfg.pixel_norm)}
            if cfg.weight_edges > 0:
                losses["loss_edges"] = edge_loss(fake, real)
            if cfg.weight_features > 0:
                losses["loss_features"] = feature_loss(fake, real,
                                                       feature_map(landmarks, cfg.resolution, cfg.feature_sigma))
            if cfg.weight_glasses > 0:
                losses["loss_glasses"] = feature_loss(fake, real, glasses_map(real, factors))
            if cfg.uses_analyzer and run.step >= cfg.analyzer_from:
                with aux_autocast():
                    losses.update(analyzer_losses(analyzer, fake, real))
            adversarial = D is not None and run.step >= cfg.adversarial_from
            if adversarial:
                condition = feature_map(landmarks, cfg.resolution, cfg.feature_sigma) if cfg.d_landmarks else None
                with aux_autocast():  # the unwrapped D: G's step leaves D's gradients alone
                    logits = D(discriminator_input(fake, condition)).float()
                losses["loss_adversarial"] = F.softplus(-logits).mean()
            loss = sum(weights[k] * v for k, v in losses.items())
            opt.zero_grad(set_to_none=True)
            run.backward(loss)
            for group, scale in zip(opt.param_groups, (1.0, cfg.mapping_lr_scale)):  # from the config, not the
                group["lr"] = learning_rate(cfg, run.step) * scale  # checkpoint: a resume may change the schedule
            opt.step()
            d_scalars = (discriminator_step(D, D_train, opt_d, fake, real, condition, cfg, run, aux_autocast)
                         if adversarial else {})
            update_ema(G_ema, G, beta)
            step = run.advance(cfg.batch_size)
            bar.update(1)
            if step % cfg.log_every == 0:
                scalars = run.mean_scalars({"loss": loss.detach(), **{k: v.detach() for k, v in losses.items()},
                                            **d_scalars})
                rate = (run.images_seen - t0_images) / (time.time() - t0)
                run.log(step, **scalars, lr=opt.param_groups[0]["lr"], images_per_s=rate,
                        images_seen=run.images_seen)
                bar.set_postfix(loss=f"{scalars['loss']:.4f}")
            if run.main and (step % cfg.sample_every == 0 or step == cfg.steps):
                with torch.no_grad():
                    save_grid(torch.cat([fixed_real, generate(G_ema, fixed_z).clamp(0, 1).cpu()]),
                              run.samples / f"{step:08d}.png", 8)
            if evaluator is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                run.report = evaluator(G_ema)
                run.log(step, **run.report)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                run.save(step, "distill_training", modules, optimizers,
                         **({"started_from": start.origin} if cfg.init_from else {}))
        bar.close()
        if evaluator is not None and not run.report:  # resumed at its last step: still report
            run.report = evaluator(G_ema)
        if cfg.ship and run.main:
            G_ema.mapping.w_avg.copy_(estimate_w_avg(G_ema.mapping))  # training never tracks it
        run.ship(G_ema, latent=LATENT_NOTE, **({"started_from": start.origin} if cfg.init_from else {}))
    return run.report


def export_model(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[str, Generator]:
    """The deployable generator (the EMA copy) of a distillation checkpoint, with its W average estimated."""
    G = Generator(**from_dict(DistillConfig, meta["config"]).generator_kwargs())
    G.load_state_dict(part(tensors, "G_ema."))
    G.mapping.w_avg.copy_(estimate_w_avg(G.mapping))
    return "generator", G.eval()
