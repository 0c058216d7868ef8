"""Train the VAE on SynthFaces at 45x45, with a held-out validation split of unseen identities.

    python -m core.train vae --config configs/vae_synthfaces45.yaml [--resume] [--set key=value ...]
    python -m core.train vae --config configs/vae_beta_family.yaml     (one run per value in `betas`)
    python -m core.train vae --config configs/vae_vp_study.yaml        (one run per vp_weight and seed)
    python -m core.train vae --config configs/vae_feature_synthfaces45.yaml   (the feature VAE)

With `vp_weight` > 0 each step adds the variation-predictability term (Zhu et al., 2020; `core.metrics.vp.vp_loss`):
latents drawn from the prior, one of the first `vp_dims` redrawn, both decoded, and a predictor Q and the decoder
both minimise Q's error in naming the redrawn dimension from the image difference.

With `feature_weight` or `reading_weight` > 0 the frozen analyzer judges each reconstruction against its input: its
early feature maps and its factor and landmark readings (`core.vae.analyzer_terms`). They
make the decoder draw what a few pixels carry, which pixel BCE leaves out (the glasses; see docs/guide/vae.md).

With `guided` factors and `guide_weight` > 0 the first code dimensions are trained to hold those factors (their true
values, standardised over the training faces), as the excitation half of the guided VAE (Ding et al., 2020) does: a
factor the ELBO finds too costly to encode (the smile) is then in the codes, and on one axis of them.

Each epoch logs the training loss terms, the validation ELBO (its negative: BCE + KL, in nats per image) and the
mean validation SSIM, and writes a grid of validation reconstructions above random faces from N(0, I).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from tqdm import tqdm

from core.config import from_dict, short
from core.imaging import save_grid
from core.metrics.vp import VarPredNet, vp_loss
from core.synthfaces.dataset import SynthFacesDataset
from core.synthfaces.factors import factor_index
from core.train.rundir import RunConfig, TrainingRun, part
from core.vae import SIDE, VAE, VAL_FIRST_IDENTITY, analyzer_terms, evaluate_vae, vae_loss



@dataclass
class VaeConfig(RunConfig):
    """Schema of configs/vae_*.yaml."""

    name: str = "vae_synthfaces45"
    architecture: str = "mlp"
    dim_z: int = 100
    width: int = 32
    variational: bool = True  # False: the notebook's plain autoencoder baseline (train it with beta 0)
    beta: float = 1.0
    betas: str = ""  # e.g. "0.5,1,4,8": train one run per beta (named <name>_beta<value>)
    vp_weights: str = ""  # e.g. "0,200": one run per VP weight (named <name>_vp<value>), crossed with betas
    seeds: str = ""  # e.g. "0,1,2": one run per seed (named <name>_seed<value>), crossed with the others
    train_identities: int = 2000
    per_identity: int = 10
    val_identities: int = 200
    val_per_identity: int = 5
    batch_size: int = 128
    epochs: int = 20
    lr: float = 0.001
    ship_half: bool = True  # store shipped weights as float16 (the MLP is 21M parameters)
    vp_weight: float = 0.0  # variation-predictability term weight, in nats per image like the ELBO (0 = off)
    vp_dims: int = 10  # the first vp_dims latent dimensions carry the constraint
    vp_width: int = 16  # predictor width
    vp_lr: float = 0.001
    feature_weight: float = 0.0  # perceptual term weight (the analyzer's feature maps), nats per image (0 = off)
    reading_weight: float = 0.0  # analyzer-readings term weight (factors and landmarks of the reconstruction), nats
    analyzer: str = "synthfaces"  # the frozen analyzer of both terms
    guided: str = ""  # e.g. "smile,eyeglasses": factors the first code dimensions are trained to hold, in order
    guide_weight: float = 0.0  # weight of the guided dimensions' squared error, nats per image (0 = off)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vp_weight < 0 or (self.vp_weight > 0 and not 2 <= self.vp_dims <= self.dim_z):
            raise ValueError(f"vp_weight must be >= 0 and vp_dims between 2 and dim_z ({self.dim_z})")
        if min(self.feature_weight, self.reading_weight) < 0 or (
                max(self.feature_weight, self.reading_weight) > 0 and not self.analyzer):
            raise ValueError("feature_weight and reading_weight must be >= 0, and above 0 need an analyzer")
        if self.guide_weight < 0 or (self.guide_weight > 0) != bool(self.guided):
            raise ValueError("guide_weight must be >= 0, and above 0 exactly when `guided` names factors")
        for name in self.guided_factors:
            try:
                factor_index(name)
            except KeyError as e:
                raise ValueError(f"guided: {e.args[0]}") from None
        if len(self.guided_factors) > self.dim_z:
            raise ValueError(f"guided names {len(self.guided_factors)} factors, more than dim_z ({self.dim_z})")

    @property
    def guided_factors(self) -> list[str]:
        return [name for name in self.guided.split(",") if name]


FAMILY = (("betas", "beta", float), ("vp_weights", "vp_weight", float), ("seeds", "seed", int))  # list, key, type


def family(cfg: VaeConfig) -> list[VaeConfig]:
    """One config per combination of the listed values (betas x vp_weights x seeds), each named (and shipped) with
    a suffix per listed key: <name>_beta4_vp200_seed1."""
    configs = [cfg]
    for listed, key, kind in FAMILY:
        text = getattr(cfg, listed)
        if not text:
            continue
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise ValueError(f"{listed} must be comma-separated numbers, got {short(text)}") from None
        tags = [f"{key.split('_')[0]}{v:g}".replace(".", "p") for v in values]
        configs = [replace(c, **{listed: "", key: v}, name=f"{c.name}_{tag}",
                           ship_to=f"{c.ship_to}_{tag}" if c.ship_to else "")
                   for c in configs for v, tag in zip(values, tags)]
    return configs


def train_vae(cfg: VaeConfig, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) one run, or with `betas`, `vp_weights` or `seeds` set, one run per combination (`family`);
    returns the (last) validation report."""
    if cfg.betas or cfg.vp_weights or cfg.seeds:
        report: dict[str, float] = {}
        for one in family(cfg):
            tag = one.name[len(cfg.name) + 1:]
            report = {**report, **{f"{tag}/{k}": v for k, v in train_vae(one, resume, progress).items()}}
        return report
    run = TrainingRun(cfg, resume)
    torch.manual_seed(cfg.seed)
    model = VAE(cfg.dim_z, cfg.architecture, cfg.width, cfg.variational)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    Q = VarPredNet(cfg.vp_dims, cfg.vp_width) if cfg.vp_weight > 0 else None
    opt_q = torch.optim.Adam(Q.parameters(), lr=cfg.vp_lr) if Q is not None else None
    train = SynthFacesDataset(cfg.train_identities, cfg.per_identity, SIDE, seed=cfg.seed)
    val = SynthFacesDataset(cfg.val_identities, cfg.val_per_identity, SIDE, seed=cfg.seed + 999,
                            first_identity=VAL_FIRST_IDENTITY)
    guided = train.factors[:, [factor_index(n) for n in cfg.guided_factors]]
    if cfg.guided_factors:  # standardised, the prior's scale
        guided = (guided - guided.mean(0)) / guided.std(0).clamp(min=1e-6)
    images = torch.utils.data.TensorDataset(train.images, guided)
    analyzer = None
    if cfg.feature_weight > 0 or cfg.reading_weight > 0:
        from core.analysis import load_analyzer
        analyzer = load_analyzer(cfg.analyzer, device=str(run.device)).requires_grad_(False).eval()
    steps_per_epoch = math.ceil(len(train) / (cfg.batch_size * run.num_processes))
    run.total_steps = run.step + steps_per_epoch * (cfg.epochs - (run.meta["epoch"] + 1 if "epoch" in run.meta else 0))
    fixed = val.images[:16].to(run.device)
    noise = torch.randn(16, cfg.dim_z, generator=torch.Generator().manual_seed(cfg.seed)).to(run.device)
    modules, optimizers = {"model": model, "Q": Q}, {"opt": opt, "q": opt_q}
    run.restore(modules, optimizers)
    trained, opt = run.prepare(model, opt)
    if Q is not None:
        Q_train, opt_q = run.prepare(Q, opt_q)
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * run.rank)  # the VP term's latents, one stream per process
    torch.manual_seed(cfg.seed + 7919 * run.rank)  # each process draws its own reparameterisation noise
    with run:
        start_epoch = run.meta["epoch"] + 1 if "epoch" in run.meta else 0
        for epoch in range(start_epoch, cfg.epochs):
            trained.train()
            t0, seen = time.time(), 0
            bar = tqdm(run.loader(images, cfg.batch_size, epoch), disable=not (progress and run.main),
                       desc=f"{cfg.name} epoch {epoch + 1}/{cfg.epochs}")
            for x, target in bar:
                if len(x) < 2:  # BatchNorm needs two samples
                    continue
                with run.autocast():
                    out = trained(x)
                    loss, bce, kl = vae_loss(x, out, cfg.beta)
                    terms = {"loss": loss, "bce": bce, **({"kl": kl} if model.variational else {})}
                    if analyzer is not None:  # the reconstruction's feature maps and readings match the input's
                        judged = dict(zip(("features", "readings"), analyzer_terms(analyzer, out.recon, x)))
                        for name, weight in (("features", cfg.feature_weight), ("readings", cfg.reading_weight)):
                            if weight > 0:
                                terms[name] = judged[name]
                                loss = loss + weight * judged[name]
                    if cfg.guide_weight > 0:  # the first code dimensions hold the guided factors, standardised
                        terms["guide"] = (out.mu[:, :target.shape[1]].float() - target).square().sum(1).mean()
                        loss = loss + cfg.guide_weight * terms["guide"]
                    if Q is not None:  # the decoder and Q both minimise Q's error; the prior's latents
                        z = torch.randn(len(x), cfg.dim_z, generator=gen).to(x.device)
                        terms["loss_vp"], terms["vp_accuracy"] = vp_loss(model.decode, Q_train, z, model.decode(z),
                                                                         cfg.vp_dims, gen)
                        loss = loss + cfg.vp_weight * terms["loss_vp"]
                opt.zero_grad(set_to_none=True)
                if Q is not None:
                    opt_q.zero_grad(set_to_none=True)
                run.backward(loss)
                opt.step()
                if Q is not None:
                    opt_q.step()
                run.advance(len(x))
                seen += len(x) * run.num_processes
                if run.step % cfg.log_every == 0:
                    scalars = run.mean_scalars({k: v.detach() for k, v in terms.items()})
                    run.log(run.step, **scalars, images_per_s=seen / (time.time() - t0), images_seen=run.images_seen)
                    bar.set_postfix(loss=f"{scalars['loss']:.1f}")
            if run.main:
                run.report = evaluate_vae(model, val.images.to(run.device), cfg.beta)
                run.log(run.step, epoch=epoch, **run.report)
                with torch.no_grad():
                    grid = torch.cat([fixed, model(fixed, sample=False).recon, model.decode(noise)])
                save_grid(grid.cpu(), run.samples / f"{run.step:08d}.png", 16)
            run.save(run.step, "vae_training", modules, optimizers, epoch=epoch)
        run.ship(model, dtype=torch.float16 if cfg.ship_half else None,
                 evaluation=f"{cfg.val_identities} held-out identities x {cfg.val_per_identity} images at {SIDE} px")
    return run.report


def export_model(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[str, VAE]:
    """The trained VAE of a VAE-training checkpoint."""
    cfg = from_dict(VaeConfig, meta["config"])
    model = VAE(cfg.dim_z, cfg.architecture, cfg.width, cfg.variational)
    model.load_state_dict(part(tensors, "model."))
    return "vae", model.eval()
