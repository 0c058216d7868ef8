"""The frozen world that NICE trains on and its reports read: a generator and an analyzer, faces drawn through
them, what the attribute code must carry, and the leakage probe (fresh code discriminators against a fixed split).
Shared by the NICE training loop and the NICE report, so that neither imports the other."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from tqdm import tqdm

from core.analysis.model import Analysis
from core.losses import CodeDiscriminator, discriminator_loss
from core.nice import NICE
from core.synthfaces.factors import ATTRIBUTE_FACTORS, FACTOR_NAMES
from core.devices import resolve_device

ATTRIBUTE_INDEX = torch.tensor([FACTOR_NAMES.index(n) for n in ATTRIBUTE_FACTORS])


@dataclass
class WorldConfig:
    """The settings of the frozen world and of the leakage probe: the part of configs/nice_*.yaml that the NICE
    report reads too (NiceConfig extends it with the training's own settings)."""

    generator: str = "synthfaces_stylegan3"
    analyzer: str = "synthfaces"
    truncation_psi: float = 0.8
    id_dim: int = 128
    batch_size: int = 16
    seed: int = 0
    disc_hidden: int = 256
    disc_lr: float = 0.001
    disc_steps: int = 500  # the leakage probe's steps


class Frozen:
    """The frozen generator and analyzer, and faces drawn from them."""

    def __init__(self, cfg: WorldConfig, device: str | torch.device = "cpu") -> None:
        from core.analysis import load_analyzer
        from core.stylegan3 import Generator
        self.G = Generator.from_pretrained(cfg.generator, device=device).requires_grad_(False)
        self.analyzer = load_analyzer(cfg.analyzer, device=device).requires_grad_(False)
        self.psi, self.device = cfg.truncation_psi, device

    def map(self, z: torch.Tensor) -> torch.Tensor:
        """W of latents z (truncated towards the W average by the config's psi)."""
        with torch.no_grad():
            return self.G.mapping(z.to(self.device), truncation_psi=self.psi)[:, 0]

    def sample_w(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return self.map(torch.randn(n, self.G.z_dim, generator=gen))

    def render(self, w: torch.Tensor) -> torch.Tensor:
        return self.G.images_from_w(w)

    def read(self, w: torch.Tensor):
        img = self.render(w)
        return img, self.analyzer(img.clamp(0, 1))


def attribute_reading(read: Analysis, size: int) -> torch.Tensor:
    """What the attribute code must carry: the SynthFaces attribute factors, or, for an analyzer that reads no
    factors (insightface on real faces), the landmarks as fractions of the image (expression and pose)."""
    if read.factors is not None:
        return read.factors[:, ATTRIBUTE_INDEX.to(read.factors.device)]
    if read.landmarks is None:
        raise ValueError("the analyzer reads neither factors nor landmarks, so there is no attribute target")
    return (read.landmarks / size).flatten(1)




def code_discriminators(world: Frozen, id_dim: int, hidden: int) -> tuple[CodeDiscriminator, CodeDiscriminator]:
    """(attributes from the identity code, identity from the attribute code), sized for what the world reads."""
    dim = world.G.w_dim
    with torch.no_grad():
        probe = world.read(world.sample_w(2, torch.Generator().manual_seed(0)))[1]
    emb_dim, att_dim = probe.embedding.shape[1], attribute_reading(probe, world.G.img_resolution).shape[1]
    return (CodeDiscriminator(id_dim, att_dim, hidden),
            CodeDiscriminator(dim - id_dim, emb_dim, hidden, unit_output=True))


def probe_leakage(cfg: WorldConfig, nice_paths: Sequence[str] = ("",), device: str = "cpu",
                  progress: bool = True) -> list[dict[str, float]]:
    """For each split (a NICE checkpoint, or '' for raw W cut at id_dim), train fresh code discriminators and report
    their held-out error relative to always predicting the mean (1.0 = nothing leaks, 0.0 = fully predictable).
    The splits read the same faces, drawn and read once: each split's result is what probing it alone gives."""
    device = resolve_device(device)
    world = Frozen(cfg, device=device)
    probes = []
    for path in nice_paths:
        torch.manual_seed(cfg.seed)
        nice = NICE.from_pretrained(path, device=device) if path else None
        disc_attr, disc_id = (m.to(device) for m in code_discriminators(world, cfg.id_dim, cfg.disc_hidden))
        opt = torch.optim.Adam([*disc_attr.parameters(), *disc_id.parameters()], lr=cfg.disc_lr)
        probes.append((nice, disc_attr, disc_id, opt))

    def batch(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w = world.sample_w(n, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            _, read = world.read(w)
        return w, attribute_reading(read, world.G.img_resolution), read.embedding

    def codes(nice: Optional[NICE], w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return nice(w) if nice is not None else (w[:, :cfg.id_dim], w[:, cfg.id_dim:])

    test_w, test_att, test_emb = batch(10 ** 9 + cfg.seed, 256)
    for step in tqdm(range(cfg.disc_steps), disable=not progress, desc="discriminators"):
        w, att, emb = batch(cfg.seed * 1_000_003 + step, cfg.batch_size * 2)
        for nice, disc_attr, disc_id, opt in probes:
            ids, attrs = codes(nice, w)
            loss = discriminator_loss(disc_attr(ids), att) + discriminator_loss(disc_id(attrs), emb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    out = []
    for nice, disc_attr, disc_id, _ in probes:
        ids, attrs = codes(nice, test_w)
        with torch.no_grad():
            rel_attr = discriminator_loss(disc_attr(ids), test_att) / (test_att - test_att.mean(0)).square().mean()
            rel_id = discriminator_loss(disc_id(attrs), test_emb) / (test_emb - test_emb.mean(0)).square().mean()
        out.append({"attributes_from_identity_code": float(rel_attr), "identity_from_attribute_code": float(rel_id)})
    return out
