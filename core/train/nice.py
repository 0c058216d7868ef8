"""Train NICE on a frozen generator's W so that its codes split into identity and attributes (DisGAN losses).

    train-disentanglement --config configs/nice_synthfaces.yaml [--resume] [--set key=value ...]
    train-discriminators  --config configs/nice_synthfaces.yaml [--set nice=runs/NAME]

Each step draws two faces A and B, mixes them (`nice.mix`: identity codes of A, attribute codes of B), renders
the mix with the frozen generator and reads all three faces with the frozen analyzer. Losses, each weighted in the
config (0 switches one off): identity (the mix has A's identity embedding), attributes (the mix has B's attribute
readings), landmarks (the mix has B's landmarks), contrastive (identity codes grouped like the analyzer groups
faces) and adversarial (code discriminators, trained in the same loop, cannot predict attributes from identity
codes nor identity from attribute codes). `train-discriminators` trains fresh discriminators against a finished
NICE (or raw W) and reports how much each code leaks.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.config import from_dict
from core.imaging import save_grid
from core.losses import (CodeDiscriminator, confusion_loss, contrastive_loss, discriminator_loss, identity_loss,
                         landmark_loss)
from core.nice import NICE
from core.world import Frozen, WorldConfig, attribute_reading, code_discriminators, probe_leakage
from core.train.placement import launch_rank
from core.train.rundir import RunConfig, TrainingRun

@dataclass
class NiceConfig(RunConfig, WorldConfig):
    """Schema of configs/nice_*.yaml: the frozen world and the probe's settings (WorldConfig), and the training's."""

    name: str = "nice_synthfaces"
    layers: int = 4
    hidden: int = 512
    depth: int = 3
    steps: int = 2000
    lr: float = 0.0003
    weight_identity: float = 1.0
    weight_attributes: float = 2.0
    weight_landmarks: float = 10.0
    weight_contrastive: float = 0.1
    weight_adversarial: float = 0.5
    log_every: int = 10
    sample_every: int = 200
    checkpoint_every: int = 200
    nice: str = ""  # train-discriminators: the NICE checkpoint to probe ('' = raw W split at id_dim)


def _frozen_call(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`module(x)` with its parameters held constant: the gradient reaches x, never the module."""
    return torch.func.functional_call(module, {k: v.detach() for k, v in module.named_parameters()}, (x,))


def disentanglement_losses(cfg: NiceConfig, nice: NICE, world: Frozen, w_a: torch.Tensor, w_b: torch.Tensor,
                           disc_attr: CodeDiscriminator, disc_id: CodeDiscriminator) -> dict[str, torch.Tensor]:
    """Every weighted loss of one step for NICE (`loss`), the two discriminators' own losses (on detached codes),
    and `total`, their sum: NICE's confusion term goes through the discriminators held constant, and their losses
    see detached codes, so one backward of `total` gives each network exactly its own objective's gradient."""
    with torch.no_grad():
        _, read_a = world.read(w_a)
        _, read_b = world.read(w_b)
    id_a, attr_a = nice(w_a)
    id_b, attr_b = nice(w_b)
    img_mix, read_mix = world.read(nice.inverse(id_a, attr_b))
    size = img_mix.shape[-1]
    out = {
        "loss_identity": identity_loss(read_mix.embedding, read_a.embedding),
        "loss_attributes": F.mse_loss(attribute_reading(read_mix, size), attribute_reading(read_b, size)),
        "loss_landmarks": landmark_loss(read_mix.landmarks, read_b.landmarks, img_mix.shape[-1]),
        "loss_contrastive": contrastive_loss(torch.cat([id_a, id_b]), torch.cat([read_a.embedding, read_b.embedding])),
    }
    ids, attrs = torch.cat([id_a, id_b]), torch.cat([attr_a, attr_b])
    att_target = torch.cat([attribute_reading(read_a, size), attribute_reading(read_b, size)])
    emb_target = torch.cat([read_a.embedding, read_b.embedding])
    out["loss_adversarial"] = (confusion_loss(_frozen_call(disc_attr, ids), att_target)
                               + confusion_loss(_frozen_call(disc_id, attrs), emb_target))
    out["loss"] = (cfg.weight_identity * out["loss_identity"] + cfg.weight_attributes * out["loss_attributes"]
                   + cfg.weight_landmarks * out["loss_landmarks"] + cfg.weight_contrastive * out["loss_contrastive"]
                   + cfg.weight_adversarial * out["loss_adversarial"])
    out["disc_attr_from_id"] = discriminator_loss(disc_attr(ids.detach()), att_target)
    out["disc_id_from_attr"] = discriminator_loss(disc_id(attrs.detach()), emb_target)
    out["total"] = out["loss"] + out["disc_attr_from_id"] + out["disc_id_from_attr"]
    return out


class Objective(torch.nn.Module):
    """NICE and its two code discriminators as one module whose forward is a step's losses: what the run's
    Accelerator prepares (one DDP module across processes, one gradient average per step)."""

    def __init__(self, cfg: NiceConfig, nice: NICE, disc_attr: CodeDiscriminator, disc_id: CodeDiscriminator) -> None:
        super().__init__()
        self.cfg, self.nice, self.disc_attr, self.disc_id = cfg, nice, disc_attr, disc_id

    def forward(self, world: Frozen, w_a: torch.Tensor, w_b: torch.Tensor) -> dict[str, torch.Tensor]:
        return disentanglement_losses(self.cfg, self.nice, world, w_a, w_b, self.disc_attr, self.disc_id)


def _models(cfg: NiceConfig, world: Frozen) -> tuple[NICE, CodeDiscriminator, CodeDiscriminator]:
    nice = NICE(world.G.w_dim, cfg.id_dim, cfg.layers, cfg.hidden, cfg.depth)
    return (nice, *code_discriminators(world, cfg.id_dim, cfg.disc_hidden))


def train_nice(cfg: NiceConfig, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) a NICE run; returns the last logged losses. In N processes each draws the same global
    batch of N x batch_size pairs and trains on its share, so the run follows a one-process run at the global
    batch size."""
    run = TrainingRun(cfg, resume, total_steps=cfg.steps)
    torch.manual_seed(cfg.seed)
    world = Frozen(cfg, device=run.device)
    nice, disc_attr, disc_id = _models(cfg, world)
    opt = torch.optim.Adam(nice.parameters(), lr=cfg.lr)
    opt_d = torch.optim.Adam([*disc_attr.parameters(), *disc_id.parameters()], lr=cfg.disc_lr)
    modules, optimizers = {"nice": nice, "disc_attr": disc_attr, "disc_id": disc_id}, {"n": opt, "d": opt_d}
    run.restore(modules, optimizers)
    objective, opt, opt_d = run.prepare(Objective(cfg, nice, disc_attr, disc_id), opt, opt_d)
    fixed = world.sample_w(8, torch.Generator().manual_seed(cfg.seed + 777))
    with run:
        bar = tqdm(total=cfg.steps, initial=run.step, disable=not (progress and run.main), desc=cfg.name)
        t0, t0_step = time.time(), run.step
        while run.step < cfg.steps:
            gen = run.stream(run.step)
            global_batch = cfg.batch_size * run.num_processes
            z_a, z_b = (torch.randn(global_batch, world.G.z_dim, generator=gen) for _ in range(2))
            w_a, w_b = world.map(run.shard(z_a)), world.map(run.shard(z_b))
            with run.autocast():
                out = objective(world, w_a, w_b)
            opt.zero_grad(set_to_none=True)
            opt_d.zero_grad(set_to_none=True)
            run.backward(out["total"])
            opt.step()
            opt_d.step()
            step = run.advance(cfg.batch_size)
            run.report = run.mean_scalars({k: v.detach() for k, v in out.items() if k != "total"})
            bar.update(1)
            if step % cfg.log_every == 0:
                run.log(step, **run.report, steps_per_s=(step - t0_step) / (time.time() - t0),
                        images_seen=run.images_seen)
            if run.main and (step % cfg.sample_every == 0 or step == cfg.steps):
                with torch.no_grad():  # rows: identity donors, attribute donors, mixes (A's identity, B's rest)
                    a, b = fixed[:4], fixed[4:]
                    grid = torch.cat([world.render(a), world.render(b), world.render(nice.mix(a, b))]).clamp(0, 1)
                save_grid(grid.cpu(), run.samples / f"{step:08d}.png", 4)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                run.save(step, "nice_training", modules, optimizers)
        bar.close()
        if not run.report and run.main:  # resumed at its last step: the losses it logged there
            run.report = {k: v for k, v in run.dir.logged(run.step).items() if k not in ("steps_per_s", "images_seen")}
        run.ship(nice, generator=cfg.generator)
    return run.report


def export_model(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[str, NICE]:
    """The trained NICE of a NICE-training checkpoint."""
    cfg = from_dict(NiceConfig, meta["config"])
    state = {k[5:]: v for k, v in tensors.items() if k.startswith("nice.")}
    nice = NICE(int(state["log_scale"].numel()), cfg.id_dim, cfg.layers, cfg.hidden, cfg.depth)
    nice.load_state_dict(state)
    return "nice", nice.eval()


def _cli(argv: list[str] | None, probe: bool) -> int:
    from core.config import USER_ERRORS, load_config, one_line, parse_overrides
    from core.hub import HubError
    name = "train-discriminators" if probe else "train-disentanglement"
    p = argparse.ArgumentParser(prog=name, description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML config under configs/")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--ship", action="store_true", help="write the trained NICE to the config's ship_to")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        if args.ship:
            overrides["ship"] = True
        cfg = load_config(NiceConfig, args.config, overrides)
        report = probe_leakage(cfg, [cfg.nice], cfg.device)[0] if probe else train_nice(cfg, resume=args.resume)
    except (*USER_ERRORS, HubError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    if launch_rank() == 0:
        for key, value in report.items():
            print(f"{key:>32}: {value:.4f}")
    return 0


def train_disentanglement(argv: list[str] | None = None) -> int:
    """Console entry point `train-disentanglement`."""
    return _cli(argv, probe=False)


def train_discriminators(argv: list[str] | None = None) -> int:
    """Console entry point `train-discriminators`."""
    return _cli(argv, probe=True)
