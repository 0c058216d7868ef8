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


def train_analyzer(cfg: AnalyzerConfig, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) a run; returns the final validation report."""
    torch.manual_seed(cfg.seed)
    model, frozen, base = build_model(cfg)
    head = ArcFaceHead(cfg.embed_dim, cfg.train_identities, cfg.arcface_scale, cfg.arcface_margin)
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(cfg.train_identities * cfg.per_identity / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    val = SynthFacesDataset(cfg.val_identities, cfg.val_per_identity, cfg.resolution, seed=VAL_SEED,
                            first_identity=VAL_FIRST_IDENTITY)
    with TrainingRun(cfg, resume, total_steps=total) as run:
        run.restore({"model": model, "head": head}, {"opt": opt})
        start_epoch = run.meta["epoch"] + 1 if "epoch" in run.meta else 0
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)), last_epoch=run.step - 1)
        data = None
        for epoch in range(start_epoch, cfg.epochs):
            if data is None or epoch % cfg.refresh_every == 0:
                # Seeded by the epoch of the last refresh, so a resumed run sees the same images.
                data = SynthFacesDataset(cfg.train_identities, cfg.per_identity, cfg.resolution,
                                         seed=cfg.seed + epoch - epoch % cfg.refresh_every)
            model.train()
            for m in frozen:
                m.eval()
            order = torch.randperm(len(data))
            t0 = time.time()
            bar = tqdm(range(steps_per_epoch), disable=not progress, desc=f"epoch {epoch + 1}/{cfg.epochs}")
            for i in bar:
                idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                batch = {"image": data.images[idx], "identity": data.identity[idx], "factors": data.factors[idx],
                         "landmarks": data.landmarks[idx]}
                margin_scale = min(1.0, run.step / max(1, cfg.margin_warmup_epochs * steps_per_epoch))
                out = losses(model, head, batch, cfg, margin_scale)
                opt.zero_grad(set_to_none=True)
                out["loss"].backward()
                opt.step()
                sched.step()
                run.step += 1
                if run.step % cfg.log_every == 0:
                    run.log(run.step, lr=sched.get_last_lr()[0], **{k: v.item() for k, v in out.items()},
                            images_per_s=(i + 1) * cfg.batch_size / (time.time() - t0))
                    bar.set_postfix(loss=f"{out['loss'].item():.3f}")
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
