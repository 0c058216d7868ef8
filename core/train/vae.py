"""Train the VAE on SynthFaces at 45x45, with a held-out validation split of unseen identities.

    python -m core.train vae --config configs/vae_synthfaces45.yaml [--resume] [--set key=value ...]
    python -m core.train vae --config configs/vae_beta_family.yaml     (one run per value in `betas`)

Each epoch logs the training loss terms, the validation ELBO (its negative: BCE + KL, in nats per image) and the
mean validation SSIM, and writes a grid of validation reconstructions above random faces from N(0, I).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from core.checkpoints import save_checkpoint
from core.imaging import save_grid
from core.metrics.ssim import ssim
from core.synthfaces.dataset import SynthFacesDataset
from core.train.rundir import RunDir, load_optimizer_tensors, optimizer_tensors
from core.vae import SIDE, VAE, vae_loss

VAL_FIRST_IDENTITY = 2_000_000


@dataclass
class VaeConfig:
    """Schema of configs/vae_*.yaml."""

    name: str = "vae_synthfaces45"
    runs_dir: str = "runs"
    architecture: str = "mlp"
    dim_z: int = 100
    width: int = 32
    beta: float = 1.0
    betas: str = ""  # e.g. "0.5,1,4,8": train one run per beta (named <name>_beta<value>)
    train_identities: int = 2000
    per_identity: int = 10
    val_identities: int = 200
    val_per_identity: int = 5
    batch_size: int = 128
    epochs: int = 20
    lr: float = 0.001
    seed: int = 0
    log_every: int = 20
    ship_to: str = ""
    ship_half: bool = True  # store shipped weights as float16 (the MLP is 21M parameters)


@torch.no_grad()
def evaluate(model: VAE, images: torch.Tensor, beta: float, batch: int = 500) -> dict[str, float]:
    """Validation: negative ELBO (BCE + KL, nats per image), its terms, the beta-weighted loss and mean SSIM."""
    model.eval()
    total = {"bce": 0.0, "kl": 0.0, "ssim": 0.0}
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        out = model(x, sample=True)
        _, bce, kl = vae_loss(x, out, beta)
        total["bce"] += bce.item() * len(x)
        total["kl"] += kl.item() * len(x)
        total["ssim"] += ssim(model(x, sample=False).recon, x).sum().item()
    n = len(images)
    bce, kl = total["bce"] / n, total["kl"] / n
    return {"val_neg_elbo": bce + kl, "val_bce": bce, "val_kl": kl, "val_loss": bce + beta * kl,
            "val_ssim": total["ssim"] / n}


def train_vae(cfg: VaeConfig, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) one run, or with `betas` set, one run per beta; returns the (last) validation report."""
    if cfg.betas:
        report: dict[str, float] = {}
        for beta in (float(b) for b in cfg.betas.split(",")):
            tag = f"{beta:g}".replace(".", "p")
            ship = f"{cfg.ship_to}_beta{tag}" if cfg.ship_to else ""
            one = replace(cfg, betas="", beta=beta, name=f"{cfg.name}_beta{tag}", ship_to=ship)
            report = {**report, **{f"beta{tag}/{k}": v for k, v in train_vae(one, resume, progress).items()}}
        return report
    torch.manual_seed(cfg.seed)
    run = RunDir.create(Path(cfg.runs_dir) / cfg.name, cfg, resume=resume)
    model = VAE(cfg.dim_z, cfg.architecture, cfg.width)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train = SynthFacesDataset(cfg.train_identities, cfg.per_identity, SIDE, seed=cfg.seed)
    val = SynthFacesDataset(cfg.val_identities, cfg.val_per_identity, SIDE, seed=cfg.seed + 999,
                            first_identity=VAL_FIRST_IDENTITY)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    start_epoch, step = 0, 0
    latest = run.latest() if resume else None
    if latest is not None:
        tensors, meta = latest
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        load_optimizer_tensors(opt, tensors, meta["optimizer"])
        start_epoch, step = meta["epoch"] + 1, meta["step"]
        run.rewind(step)
    fixed = val.images[:16]
    noise = torch.randn(16, cfg.dim_z, generator=torch.Generator().manual_seed(cfg.seed))
    run.set_status("running", step, epochs=cfg.epochs)
    report: dict[str, float] = {}
    try:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
            t0 = time.time()
            bar = tqdm(range(steps_per_epoch), disable=not progress, desc=f"{cfg.name} epoch {epoch + 1}/{cfg.epochs}")
            for i in bar:
                x = train.images[order[i * cfg.batch_size:(i + 1) * cfg.batch_size]]
                if len(x) < 2:  # BatchNorm needs two samples
                    continue
                loss, bce, kl = vae_loss(x, model(x), cfg.beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step % cfg.log_every == 0:
                    run.log(step, loss=loss.item(), bce=bce.item(), kl=kl.item(),
                            images_per_s=(i + 1) * cfg.batch_size / (time.time() - t0))
                    bar.set_postfix(loss=f"{loss.item():.1f}")
            report = evaluate(model, val.images, cfg.beta)
            run.log(step, epoch=epoch, **report)
            with torch.no_grad():
                grid = torch.cat([fixed, model(fixed, sample=False).recon, model.decode(noise)])
            save_grid(grid, run.samples / f"{step:08d}.png", 16)
            opt_tensors, opt_meta = optimizer_tensors(opt)
            run.save(step, {**{f"model.{k}": v for k, v in model.state_dict().items()}, **opt_tensors},
                     {"kind": "vae_training", "epoch": epoch, "optimizer": opt_meta, "config": asdict(cfg)})
            run.set_status("running", step, epochs=cfg.epochs)
    except BaseException as e:
        run.set_status("failed", step, error=f"{type(e).__name__}: {e}")
        raise
    if cfg.ship_to:
        state = {k: (v.half() if cfg.ship_half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
        save_checkpoint(cfg.ship_to, state, {
            "kind": "vae", "init_kwargs": model.init_kwargs, "metrics": report, "trained_with": asdict(cfg),
            "evaluation": f"{cfg.val_identities} held-out identities x {cfg.val_per_identity} images at {SIDE} px"})
    run.set_status("finished", step, metrics=report)
    return report
