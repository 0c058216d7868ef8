"""How closely generated faces match their ground truth (the distilled generator against the renderer).

For each generated face there is an exact target, `render(factors_from_z(z))`, with its factors and landmarks.
`fidelity` compares the two images pixel by pixel and through the analyzer: identity cosine between their
embeddings, landmark NME of the analyzer's reading of the generated face against the true landmarks, and the
error of its factor readings against the true factors.
"""
from __future__ import annotations

import torch

from core.analysis.evaluate import landmark_errors
from core.metrics.ssim import ssim
from core.synthfaces.factors import BINARY_FACTORS, FACTOR_NAMES

_BINARY = torch.tensor([n in BINARY_FACTORS for n in FACTOR_NAMES])


@torch.no_grad()
def fidelity(generated: torch.Tensor, rendered: torch.Tensor, landmarks: torch.Tensor, factors: torch.Tensor,
             analyzer: torch.nn.Module, batch: int = 256) -> dict[str, float]:
    """Generated vs rendered [N, 3, H, W] images in [0, 1], with the true landmarks [N, L, 2] (pixels) and factors
    [N, F]: mean L1, mean SSIM, median and mean identity cosine, landmark error (px, NME), factor error (mean
    absolute error over continuous factors, accuracy over the glasses factors)."""
    if generated.shape != rendered.shape:
        raise ValueError(f"generated {list(generated.shape)} and rendered {list(rendered.shape)} differ in shape")
    device = next(analyzer.parameters()).device
    cos, lms, facs, ssims = [], [], [], []
    for s in range(0, len(generated), batch):
        g, r = generated[s:s + batch].to(device), rendered[s:s + batch].to(device)
        a_g, a_r = analyzer(g), analyzer(r)
        cos.append((a_g.embedding * a_r.embedding).sum(1).cpu())
        lms.append(a_g.landmarks.cpu())
        facs.append(a_g.factors.cpu())
        ssims.append(ssim(g, r).cpu())
    cos_all, read = torch.cat(cos), torch.cat(facs)
    px, nme = landmark_errors(torch.cat(lms), landmarks)
    err = (read - factors).abs()
    return {
        "l1": float((generated - rendered).abs().mean()),
        "ssim": float(torch.cat(ssims).mean()),
        "identity_cosine_median": float(cos_all.median()),
        "identity_cosine_mean": float(cos_all.mean()),
        "landmark_px": px,
        "landmark_nme": nme,
        "factor_mae": float(err[:, ~_BINARY].mean()),
        "glasses_accuracy": float(((read[:, _BINARY] > 0.5) == (factors[:, _BINARY] > 0.5)).all(1).float().mean()),
    }
