"""Where a distillation run starts: a fresh generator, a generator checkpoint, or a distillation run directory (its
EMA copy, discriminator and Adam moments carried over), with the built glasses layer put in front of the mapping
network when the config asks for it and the start lacks it (layer surgery: the moments of the layers behind it move
to their new index)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from core.checkpoints import load_pretrained
from core.config import from_dict
from core.stylegan3.discriminator import Discriminator
from core.stylegan3.networks import Generator
from core.stylegan3.quantize import quantize_input
from core.synthfaces.latent import GLASSES_CUTS_Z, GLASSES_MIDDLES_Z, Z_DIM
from core.train.distill_config import DistillConfig
from core.train.rundir import RunDir, part, saved_optimizer_state


def quantize_glasses(G: Generator) -> Generator:
    """G with the built glasses layer in front of its mapping: every latent gets the W that G gives it with the
    glasses coordinate at the middle of its kind's interval, which renders the same face."""
    return quantize_input(G, Z_DIM - 1, GLASSES_CUTS_Z, GLASSES_MIDDLES_Z)


@dataclass
class Start:
    """What a run starts from: its generator and EMA copy (training mode and eval mode), where they came from
    (`origin`, recorded when the run ships), and, when `init_from` is a distillation run directory, that run's
    newest checkpoint, whose discriminator and optimizer moments `carry_training_state` hands on."""

    G: Generator
    G_ema: Generator
    origin: dict[str, Any]
    checkpoint: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
    added_layers: int = 0  # mapping layers put in front of the start's (the glasses layer): 0 or 1

    def carry_training_state(self, cfg: DistillConfig, opt: torch.optim.Optimizer, D: Discriminator | None,
                             opt_d: torch.optim.Optimizer | None) -> None:
        """From a run directory: the discriminator and its optimizer as they were, and G's Adam moments for every
        parameter that kept its meaning. The layer the glasses layer folded its decoding into starts its moments
        afresh; the layers behind it keep theirs under their new index."""
        if self.checkpoint is None:
            return
        tensors, meta = self.checkpoint
        run_cfg = from_dict(DistillConfig, meta["config"])
        if D is not None and any(k.startswith("D.") for k in tensors):
            if run_cfg.discriminator_kwargs() != cfg.discriminator_kwargs():
                raise ValueError(f"init_from {cfg.init_from!r} trained a discriminator built with "
                                 f"{run_cfg.discriminator_kwargs()}; this config builds {cfg.discriminator_kwargs()}")
            D.load_state_dict(part(tensors, "D."))
            if "d_optimizer" in meta:  # the moments as they were; the rate and betas from this config
                opt_d.load_state_dict({"state": saved_optimizer_state(part(tensors, "d_"), meta["d_optimizer"]),
                                       "param_groups": opt_d.state_dict()["param_groups"]})
        old = _optimized_names(Generator(**run_cfg.generator_kwargs()), run_cfg.quantize_glasses)
        new = {name: i for i, name in enumerate(_optimized_names(self.G, cfg.quantize_glasses))}
        saved = saved_optimizer_state(part(tensors, "g_"), meta["g_optimizer"])
        state = {}
        for i, name in enumerate(old):
            moved = _moved(name, self.added_layers)
            if moved in new and i in saved:
                state[new[moved]] = saved[i]
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
        self.checkpoint = None  # handed on: let the source's tensors go


def _optimized_names(G: Generator, quantized: bool) -> list[str]:
    """G's parameter names in the order of the run's Adam: synthesis, then the mapping's trained layers."""
    return ([f"synthesis.{n}" for n, _ in G.synthesis.named_parameters()] +
            [f"mapping.{n}" for n, _ in G.mapping.named_parameters() if not (quantized and n.startswith("fc0."))])


def _moved(name: str, added_layers: int) -> str | None:
    """A parameter's name after `added_layers` mapping layers went in front; None for the first mapping layer when
    one did, since the glasses layer's decoding was folded into it and its moments no longer fit."""
    if not added_layers or not name.startswith("mapping.fc"):
        return name
    layer, rest = name[len("mapping.fc"):].split(".", 1)
    return None if layer == "0" else f"mapping.fc{int(layer) + added_layers}.{rest}"


def build_generator(cfg: DistillConfig, resumed: dict[str, Any] | None = None) -> Start:
    """What a run starts from: `init_from` (a generator checkpoint, or a distillation run directory whose newest
    checkpoint also carries the EMA copy, the discriminator and the optimizers) or a fresh generator; given the
    built glasses layer when the config asks for it and the start lacks it. `resumed` is the metadata of the run's
    own newest checkpoint when it resumes: the run then rebuilds its own architecture for the checkpoint to fill and
    keeps the origin recorded there, without reading `init_from` again (it may have moved on, or be gone)."""
    if resumed is not None and (not cfg.init_from or "started_from" in resumed):
        return _ready(cfg, Generator(**cfg.generator_kwargs()), None,
                      resumed.get("started_from", {"images_seen": 0}))
    origin: dict[str, Any] = {"images_seen": 0}
    G_ema = checkpoint = None
    source_quantized = False
    if cfg.init_from and RunDir(cfg.init_from).checkpoints.is_dir():
        checkpoint = RunDir(cfg.init_from).latest()
        if checkpoint is None or checkpoint[1].get("kind") != "distill_training":
            raise ValueError(f"init_from {cfg.init_from!r} is a run directory without a complete distillation "
                             f"checkpoint")
        tensors, meta = checkpoint
        run_cfg = from_dict(DistillConfig, meta["config"])
        G, G_ema = (Generator(**run_cfg.generator_kwargs()) for _ in range(2))
        G.load_state_dict(part(tensors, "G."))
        G_ema.load_state_dict(part(tensors, "G_ema."))
        origin = {"init_from": str(cfg.init_from), "step": meta["step"],
                  "images_seen": int(meta.get("images_seen", meta["step"] * run_cfg.batch_size))}
        source_quantized = run_cfg.quantize_glasses
    elif cfg.init_from:
        G, config = load_pretrained(cfg.init_from, kind=Generator.kind)
        origin = {"init_from": str(cfg.init_from), "step": config.get("step"),
                  "images_seen": int(config.get("images_seen") or 0)}
        source_quantized = bool(config.get("trained_with", {}).get("quantize_glasses", False))
    else:
        G = Generator(**cfg.generator_kwargs(False))
    if source_quantized and not cfg.quantize_glasses:
        raise ValueError(f"init_from {cfg.init_from!r} has the built glasses layer in front of its mapping network; "
                         f"continue it with quantize_glasses=true")
    expected = Generator(**cfg.generator_kwargs(source_quantized)).init_kwargs
    if G.init_kwargs != expected:
        raise ValueError(f"init_from {cfg.init_from!r} was built with {G.init_kwargs}, which this config cannot "
                         f"continue: it builds {expected}")
    added = int(cfg.quantize_glasses and not source_quantized)
    if added:
        G = quantize_glasses(G)
        G_ema = quantize_glasses(G_ema) if G_ema is not None else None
    return _ready(cfg, G, G_ema, origin, checkpoint, added)


def _ready(cfg: DistillConfig, G: Generator, G_ema: Generator | None, origin: dict[str, Any],
           checkpoint: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None, added: int = 0) -> Start:
    """G in training mode with the built glasses layer frozen, and its EMA copy (G's, unless given) in eval mode."""
    G.train().requires_grad_(True)
    if cfg.quantize_glasses:
        G.mapping.fc0.requires_grad_(False)  # built, not trained
    G_ema = (G_ema if G_ema is not None else copy.deepcopy(G)).eval().requires_grad_(False)
    return Start(G, G_ema, origin, checkpoint, added)
