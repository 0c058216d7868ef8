"""Train the SynthFaces face analyzer: ArcFace identity loss + factor loss + landmark loss.

    python -m core.train analyzer --config configs/analyzer_synthfaces64.yaml [--resume] [--set key=value ...]

The ArcFace margin grows from 0 over the first `margin_warmup_epochs`. Training identities are ids 0..N-1;
validation uses held-out ids from 1,000,000 on. Attributes are re-rendered every `refresh_every` epochs so that
the analyzer sees each identity in many poses and expressions.

Fine-tuning: `init_from` starts from an analyzer checkpoint and `train_parts` names the sub-modules that train;
the others stay frozen, batch-norm statistics included, so e.g. a landmark fine-tune leaves the identity
embedding bit-identical.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.analysis.evaluate import evaluate_analyzer
from core.analysis.model import FaceAnalyzer
from core.checkpoints import check_state_dict, load_checkpoint
from core.config import from_dict
from core.synthfaces.dataset import SynthFacesDataset
from core.synthfaces.factors import BINARY_FACTORS, FACTOR_NAMES
from core.train.rundir import RunConfig, TrainingRun, part

VAL_FIRST_IDENTITY = 1_000_000
VAL_SEED = 999  # one held-out set for every run, so reports compare across configs


@dataclass
class AnalyzerConfig(RunConfig):
    """Schema of configs/analyzer_*.yaml."""

    name: str = "analyzer_synthfaces64"
    resolution: int = 64
    train_identities: int = 1500
    per_identity: int = 12
    val_identities: int = 200
    val_per_identity: int = 4
    width: int = 16
    embed_dim: int = 128
    hidden: int = 256
    landmark_stride: int = 4
    batch_size: int = 128
    epochs: int = 10
    lr: float = 0.002
    weight_decay: float = 0.0005
    arcface_scale: float = 30.0
    arcface_margin: float = 0.4
    weight_identity: float = 1.0
    weight_factors: float = 4.0
    weight_landmarks: float = 50.0
    margin_warmup_epochs: float = 2.0
    refresh_every: int = 1
    init_from: str = ""
    train_parts: list[str] = field(default_factory=list)


class ArcFaceHead(torch.nn.Module):
    """Additive angular margin softmax (ArcFace): logits s*cos(theta + m) for the true class, s*cos(theta) else."""

    def __init__(self, embed_dim: int, classes: int, scale: float, margin: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(classes, embed_dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor, margin_scale: float = 1.0) -> torch.Tensor:
        cos = F.normalize(embedding, dim=1) @ F.normalize(self.weight, dim=1).t()
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = torch.cos(theta + self.margin * margin_scale)
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        return F.cross_entropy(self.scale * torch.where(onehot, target, cos), labels)


BINARY = torch.tensor([name in BINARY_FACTORS for name in FACTOR_NAMES])


def factor_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error for continuous factors (on the sigmoid), cross-entropy for the binary ones."""
    mse = (torch.sigmoid(logits[:, ~BINARY]) - target[:, ~BINARY]).square().mean()
    bce = F.binary_cross_entropy_with_logits(logits[:, BINARY], target[:, BINARY])
    return mse * 10 + bce


def losses(model: FaceAnalyzer, head: ArcFaceHead, batch: dict[str, torch.Tensor], cfg: AnalyzerConfig,
           margin_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """The three weighted losses and their sum for one batch."""
    emb, logits, lm = model.raw(batch["image"])
    target_lm = (batch["landmarks"] + 0.5) / batch["image"].shape[-1]
    out = {
        "loss_identity": head(emb, batch["identity"], margin_scale),
        "loss_factors": factor_loss(logits, batch["factors"]),
        "loss_landmarks": F.smooth_l1_loss(lm, target_lm, beta=0.01),
    }
    out["loss"] = (cfg.weight_identity * out["loss_identity"] + cfg.weight_factors * out["loss_factors"]
                   + cfg.weight_landmarks * out["loss_landmarks"])
    return out


class Objective(torch.nn.Module):
    """The analyzer and its ArcFace head as one module whose forward is a batch's losses: what the run's
    Accelerator prepares (one DDP module across processes)."""

    def __init__(self, cfg: AnalyzerConfig, model: FaceAnalyzer, head: ArcFaceHead) -> None:
        super().__init__()
        self.cfg, self.model, self.head = cfg, model, head

    def forward(self, batch: dict[str, torch.Tensor], margin_scale: float) -> dict[str, torch.Tensor]:
        return losses(self.model, self.head, batch, self.cfg, margin_scale)


def build_model(cfg: AnalyzerConfig) -> tuple[FaceAnalyzer, list[torch.nn.Module], dict]:
    """(model, its frozen sub-modules, metadata of the checkpoint it starts from) as the config asks."""
    model = FaceAnalyzer(cfg.resolution, cfg.width, cfg.embed_dim, cfg.hidden, cfg.landmark_stride)
    base: dict = {}
    if cfg.init_from:
        state, base = load_checkpoint(cfg.init_from)
        if base.get("kind") != "face_analyzer":
            raise ValueError(f"init_from {cfg.init_from!r} is a {base.get('kind')!r} checkpoint, not a face analyzer")
        base_kwargs = {"landmark_stride": 4, **base.get("init_kwargs", {})}
        ours = dict(model.init_kwargs)
        if base_kwargs["landmark_stride"] == 4 and ours["landmark_stride"] == 2:
            # Growing the refinement stage onto a coarse analyzer: it starts from its zero initialisation.
            base_kwargs["landmark_stride"] = 2
            state = {**{k: v for k, v in model.state_dict().items() if k.startswith("landmark_refine.")}, **state}
        if base_kwargs != ours:
            raise ValueError(f"init_from {cfg.init_from!r} was built with {base.get('init_kwargs')}, but the config "
                             f"asks for {model.init_kwargs}")
        check_state_dict(model, state, source=str(cfg.init_from))
        model.load_state_dict(state)
    names = [name for name, _ in model.named_children()]
    if not isinstance(cfg.train_parts, list) or not all(isinstance(n, str) for n in cfg.train_parts):
        raise ValueError(f"train_parts must be a list of part names (e.g. [landmark_head]), got {cfg.train_parts!r}")
    unknown = sorted(set(cfg.train_parts) - set(names))
    if unknown:
        raise ValueError(f"unknown train_parts {unknown}; the analyzer's parts are {names}")
    frozen = [m for name, m in model.named_children() if cfg.train_parts and name not in cfg.train_parts]
    for m in frozen:
        m.requires_grad_(False)
    return model, frozen, base


def learning_rate(cfg: AnalyzerConfig, progress: float) -> float:
    """The rate after `progress` epochs: a cosine from lr to zero over the run's epochs (the same schedule for any
    number of processes, since it follows epochs, not steps)."""
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, cfg.epochs) / cfg.epochs))


def train_analyzer(cfg: AnalyzerConfig, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) a run; returns the final validation report."""
    run = TrainingRun(cfg, resume)
    torch.manual_seed(cfg.seed)
    model, frozen, base = build_model(cfg)
    head = ArcFaceHead(cfg.embed_dim, cfg.train_identities, cfg.arcface_scale, cfg.arcface_margin)
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    images = cfg.train_identities * cfg.per_identity
    steps_per_epoch = math.ceil(images / (cfg.batch_size * run.num_processes))
    start_epoch = run.meta["epoch"] + 1 if "epoch" in run.meta else 0
    run.total_steps = run.step + steps_per_epoch * (cfg.epochs - start_epoch)
    val = SynthFacesDataset(cfg.val_identities, cfg.val_per_identity, cfg.resolution, seed=VAL_SEED,
                            first_identity=VAL_FIRST_IDENTITY)
    run.restore({"model": model, "head": head}, {"opt": opt})
    objective, opt = run.prepare(Objective(cfg, model, head), opt)
    with run:
        data = None
        for epoch in range(start_epoch, cfg.epochs):
            if data is None or epoch % cfg.refresh_every == 0:
                # Seeded by the epoch of the last refresh, so a resumed run sees the same images.
                data = SynthFacesDataset(cfg.train_identities, cfg.per_identity, cfg.resolution,
                                         seed=cfg.seed + epoch - epoch % cfg.refresh_every)
            objective.train()
            for m in frozen:
                m.eval()
            t0, seen = time.time(), 0
            bar = tqdm(run.loader(data, cfg.batch_size, epoch), disable=not (progress and run.main),
                       desc=f"epoch {epoch + 1}/{cfg.epochs}")
            for i, batch in enumerate(bar):
                done = epoch + i / steps_per_epoch
                margin_scale = min(1.0, done / cfg.margin_warmup_epochs) if cfg.margin_warmup_epochs > 0 else 1.0
                for group in opt.param_groups:
                    group["lr"] = learning_rate(cfg, done)
                with run.autocast():
                    out = objective(batch, margin_scale)
                opt.zero_grad(set_to_none=True)
                run.backward(out["loss"])
                opt.step()
                run.advance(len(batch["image"]))
                seen += len(batch["image"]) * run.num_processes
                if run.step % cfg.log_every == 0:
                    scalars = run.mean_scalars({k: v.detach() for k, v in out.items()})
                    run.log(run.step, lr=opt.param_groups[0]["lr"], **scalars,
                            images_per_s=seen / (time.time() - t0), images_seen=run.images_seen)
                    bar.set_postfix(loss=f"{scalars['loss']:.3f}")
            if run.main:
                run.report = evaluate_analyzer(model, val.images, val.identity, val.factors, val.landmarks)
                run.log(run.step, epoch=epoch, **{f"val_{k}": v for k, v in run.report.items()})
            run.save(run.step, "analyzer_training", {"model": model, "head": head}, {"opt": opt}, epoch=epoch)
        # A fine-tune keeps the recipes it grew from, oldest first.
        history = base.get("history", []) + ([base["trained_with"]] if "trained_with" in base else [])
        run.ship(model, history=history, evaluation=f"{cfg.val_identities} held-out identities x "
                                                     f"{cfg.val_per_identity} images at {cfg.resolution} px")
    return run.report


def export_model(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[str, FaceAnalyzer]:
    """The trained analyzer of an analyzer-training checkpoint."""
    cfg = from_dict(AnalyzerConfig, meta["config"])
    model = FaceAnalyzer(cfg.resolution, cfg.width, cfg.embed_dim, cfg.hidden, cfg.landmark_stride)
    model.load_state_dict(part(tensors, "model."))
    return "analyzer", model.eval()
