"""Analyzer quality on held-out identities: verification TAR at a fixed FAR, per-factor error, landmark error."""
from __future__ import annotations

import torch

from core.synthfaces.factors import BINARY_FACTORS, FACTOR_NAMES
from core.synthfaces.render import LANDMARK_NAMES


def tar_at_far(embeddings: torch.Tensor, identities: torch.Tensor, far: float = 1e-3) -> tuple[float, float]:
    """(TAR, threshold): the share of same-identity pairs whose cosine similarity beats the threshold that lets
    through a fraction `far` of different-identity pairs."""
    sims = embeddings @ embeddings.t()
    same = identities.view(-1, 1) == identities.view(1, -1)
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    genuine = sims[same & upper]
    impostor = sims[~same & upper]
    if genuine.numel() == 0 or impostor.numel() == 0:
        raise ValueError("need at least two images of one identity and two identities")
    k = max(1, int(far * impostor.numel()))
    threshold = impostor.topk(k).values[-1]
    return float((genuine > threshold).float().mean()), float(threshold)


def landmark_errors(pred: torch.Tensor, true: torch.Tensor) -> tuple[float, float]:
    """(mean error in pixels, NME: mean error / outer inter-ocular distance)."""
    err = (pred - true).norm(dim=-1)
    outer = true[:, LANDMARK_NAMES.index("right_eye_outer")] - true[:, LANDMARK_NAMES.index("left_eye_outer")]
    return float(err.mean()), float((err.mean(dim=1) / outer.norm(dim=-1)).mean())


def factor_errors(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """Per factor: mean absolute error (continuous factors, in [0, 1] units) or accuracy (binary factors)."""
    out = {}
    for i, name in enumerate(FACTOR_NAMES):
        if name in BINARY_FACTORS:
            out[f"acc_{name}"] = float(((pred[:, i] > 0.5) == (true[:, i] > 0.5)).float().mean())
        else:
            out[f"mae_{name}"] = float((pred[:, i] - true[:, i]).abs().mean())
    return out


@torch.no_grad()
def evaluate_analyzer(model: torch.nn.Module, images: torch.Tensor, identities: torch.Tensor, factors: torch.Tensor,
                      landmarks: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """Run the analyzer over a labelled set and report every quality figure in one flat dict."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        outs = [model(images[i:i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]
    model.train(was_training)
    emb = torch.cat([o.embedding for o in outs]).cpu()
    fac = torch.cat([o.factors for o in outs]).cpu()
    lms = torch.cat([o.landmarks for o in outs]).cpu()
    tar3, thr = tar_at_far(emb, identities, 1e-3)
    tar2, _ = tar_at_far(emb, identities, 1e-2)
    px, nme = landmark_errors(lms, landmarks)
    return {"tar_at_far1e-3": tar3, "tar_at_far1e-2": tar2, "threshold_far1e-3": thr, "landmark_px": px,
            "landmark_nme": nme, **factor_errors(fac, factors)}
