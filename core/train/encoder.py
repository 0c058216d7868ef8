"""Train the encoder image -> W of a frozen generator on (face, w) pairs it draws itself.

    python -m core.train encoder --config configs/encoder_synthfaces64.yaml [--resume] [--ship] [--set key=value]

Each step draws latents z; the generator maps them to w (each face at its own truncation in [psi_min, 1], the range
the app's slider covers) and draws the faces. For the distilled generator a share of each batch (`render_fraction`)
is the SynthFaces renderer's own face of the same z with its untruncated w instead, so the encoder also learns from
the faces the generator imitates. Losses: the w error in W's per-dimension standard deviations (latent), and, from
`image_from` on, the face drawn from the encoder's w against the input: pixel L1 at several scales and the frozen
analyzer's identity embedding (1 - cosine). Through the run's Accelerator like every loop (CPU, one GPU or several).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.checkpoints import read_config as checkpoint_config
from core.config import from_dict
from core.encoder import Encoder
from core.imaging import save_grid
from core.train.rundir import RunConfig, TrainingRun, part


@dataclass
class EncoderConfig(RunConfig):
    """Schema of configs/encoder_*.yaml."""

    name: str = "encoder_synthfaces64"
    generator: str = "synthfaces_stylegan3"
    analyzer: str = "synthfaces"  # the identity term's analyzer; '' for none (then weight_identity must be 0)
    width: int = 32
    channel_max: int = 128
    blocks: int = 2
    hidden: int = 512
    batch_size: int = 32
    steps: int = 3000
    lr: float = 0.001
    psi_min: float = 0.5  # generated faces are drawn at a truncation uniform in [psi_min, 1]
    render_fraction: float = 0.25  # share of each batch drawn by the SynthFaces renderer (distilled generator only)
    weight_latent: float = 1.0
    weight_pixel: float = 1.0
    weight_identity: float = 0.5
    pixel_scales: list[int] = field(default_factory=lambda: [1, 2, 4])
    image_from: int = 1000  # the image terms join at this step (the latent term alone first: far cheaper)
    log_every: int = 10
    sample_every: int = 250
    checkpoint_every: int = 250
    ship_half: bool = True  # store shipped weights as float16

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.psi_min <= 1 or not 0 <= self.render_fraction <= 1:
            raise ValueError(f"psi_min must be in (0, 1] and render_fraction in [0, 1], got {self.psi_min} and "
                             f"{self.render_fraction}")
        if min(self.weight_latent, self.weight_pixel, self.weight_identity) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.weight_identity > 0 and not self.analyzer:
            raise ValueError("weight_identity > 0 needs an analyzer (its identity embedding)")


class Pairs:
    """The frozen generator (and the analyzer), and the (face, w) pairs of a step drawn from them."""

    def __init__(self, cfg: EncoderConfig, device: torch.device) -> None:
        from core.analysis import load_analyzer
        from core.stylegan3 import Generator
        from core.synthfaces.latent import is_distilled
        self.cfg, self.device = cfg, device
        self.G = Generator.from_pretrained(cfg.generator, device=device).requires_grad_(False)
        self.analyzer = (load_analyzer(cfg.analyzer, device=str(device)).requires_grad_(False).eval()
                         if cfg.analyzer else None)
        self.distilled = is_distilled(self.G)
        with torch.no_grad():
            w = self.G.mapping(torch.randn(4000, self.G.z_dim, generator=torch.Generator().manual_seed(0)
                                           ).to(device))[:, 0]
        self.w_std = w.std(0).clamp_min(1e-6)

    @torch.no_grad()
    def draw(self, z: torch.Tensor, psi: torch.Tensor, rendered: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(faces [B, 3, R, R] in [0, 1], their w [B, w_dim]): the generator's faces at truncations psi, and, where
        `rendered`, the renderer's face of z with its untruncated w."""
        from core.synthfaces.latent import targets
        z, psi = z.to(self.device), psi.to(self.device)
        w_full = self.G.mapping(z)[:, 0]
        w = torch.where(rendered.to(self.device)[:, None], w_full, self.G.mapping.w_avg.lerp(w_full, psi[:, None]))
        faces = self.G.images_from_w(w).clamp(0, 1)
        if rendered.any():
            faces[rendered] = targets(z[rendered].cpu(), self.G.img_resolution)[0].to(self.device)
        return faces, w


def pixel_loss(fake: torch.Tensor, real: torch.Tensor, scales: list[int]) -> torch.Tensor:
    """Mean over scales of the L1 distance between the images average-pooled by each scale."""
    return sum((F.avg_pool2d(fake, s) - F.avg_pool2d(real, s) if s > 1 else fake - real).abs().mean()
               for s in scales) / len(scales)


class Objective(torch.nn.Module):
    """The encoder and its losses as one module (what the run's Accelerator prepares)."""

    def __init__(self, cfg: EncoderConfig, encoder: Encoder) -> None:
        super().__init__()
        self.cfg, self.encoder = cfg, encoder

    def forward(self, pairs: Pairs, faces: torch.Tensor, w: torch.Tensor, image_terms: bool) -> dict[str, Any]:
        cfg = self.cfg
        w_hat = self.encoder(faces)
        out = {"loss_latent": ((w_hat - w) / pairs.w_std).square().mean()}
        if image_terms:
            drawn = pairs.G.images_from_w(w_hat)
            out["loss_pixel"] = pixel_loss(drawn, faces, cfg.pixel_scales)
            if cfg.weight_identity > 0:
                emb = F.normalize(pairs.analyzer.raw(drawn.clamp(0, 1))[0], dim=1)
                with torch.no_grad():
                    target = F.normalize(pairs.analyzer.raw(faces)[0], dim=1)
                out["loss_identity"] = 1 - (emb * target).sum(1).mean()
        out["loss"] = (cfg.weight_latent * out["loss_latent"] + cfg.weight_pixel * out.get("loss_pixel", 0)
                       + cfg.weight_identity * out.get("loss_identity", 0))
        return out


def step_latents(run: TrainingRun, cfg: EncoderConfig, z_dim: int, distilled: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This process's share of the step's (z, truncation, rendered?) draws, seeded by the step."""
    gen = run.stream(run.step)
    n = cfg.batch_size * run.num_processes
    z = torch.randn(n, z_dim, generator=gen)
    psi = cfg.psi_min + (1 - cfg.psi_min) * torch.rand(n, generator=gen)
    rendered = (torch.rand(n, generator=gen) < cfg.render_fraction) & distilled
    return run.shard(z), run.shard(psi), run.shard(rendered)


def train_encoder(cfg: EncoderConfig, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) an encoder run; returns the last logged losses."""
    run = TrainingRun(cfg, resume, total_steps=cfg.steps)
    torch.manual_seed(cfg.seed)
    pairs = Pairs(cfg, run.device)
    G = pairs.G
    encoder = Encoder(G.img_resolution, G.w_dim, cfg.width, cfg.channel_max, cfg.blocks, cfg.hidden)
    encoder.w_avg.copy_(G.mapping.w_avg.cpu())
    opt = torch.optim.Adam(encoder.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    run.restore({"encoder": encoder}, {"opt": opt})
    objective, opt = run.prepare(Objective(cfg, encoder), opt)
    fixed = pairs.draw(*step_latents_fixed(cfg, G.z_dim, pairs.distilled))[0]
    with run:
        bar = tqdm(total=cfg.steps, initial=run.step, disable=not (progress and run.main), desc=cfg.name)
        t0, t0_images = time.time(), run.images_seen
        while run.step < cfg.steps:
            faces, w = pairs.draw(*step_latents(run, cfg, G.z_dim, pairs.distilled))
            objective.train()
            with run.autocast():
                out = objective(pairs, faces, w, run.step >= cfg.image_from)
            opt.zero_grad(set_to_none=True)
            run.backward(out["loss"])
            opt.step()
            step = run.advance(cfg.batch_size)
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                run.report = run.mean_scalars({k: v for k, v in out.items() if isinstance(v, torch.Tensor)})
                run.log(step, **run.report, images_per_s=(run.images_seen - t0_images) / (time.time() - t0),
                        images_seen=run.images_seen)
                bar.set_postfix(loss=f"{run.report['loss']:.4f}")
            if run.main and (step % cfg.sample_every == 0 or step == cfg.steps):
                encoder.eval()
                with torch.no_grad():  # rows: inputs, then the generator's faces of the encoder's w
                    grid = torch.cat([fixed, G.images_from_w(encoder(fixed)).clamp(0, 1)])
                save_grid(grid.cpu(), run.samples / f"{step:08d}.png", len(fixed))
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                run.save(step, "encoder_training", {"encoder": encoder}, {"opt": opt})
        bar.close()
        if not run.report and run.main:  # resumed at its last step: the losses it logged there
            run.report = {k: v for k, v in run.dir.logged(run.step).items() if k.startswith("loss")}
        run.ship(encoder.eval(), dtype=torch.float16 if cfg.ship_half else None, generator=cfg.generator)
    return run.report


def step_latents_fixed(cfg: EncoderConfig, z_dim: int, distilled: bool
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sample grid's eight faces: four generated at truncation 0.7, four rendered (or generated at 1)."""
    z = torch.randn(8, z_dim, generator=torch.Generator().manual_seed(cfg.seed + 777))
    return z, torch.tensor([0.7] * 4 + [1.0] * 4), torch.tensor([False] * 4 + [distilled] * 4)


def export_model(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[str, Encoder]:
    """The trained encoder of an encoder-training checkpoint."""
    cfg = from_dict(EncoderConfig, meta["config"])
    state = part(tensors, "encoder.")
    G_kwargs = checkpoint_config(cfg.generator)[1]["init_kwargs"]
    encoder = Encoder(G_kwargs["img_resolution"], G_kwargs["w_dim"], cfg.width, cfg.channel_max, cfg.blocks,
                      cfg.hidden)
    encoder.load_state_dict(state)
    return "encoder", encoder.eval()
