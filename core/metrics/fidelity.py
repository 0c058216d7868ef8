"""How closely generated faces match their ground truth (the distilled generator against the renderer).

For each generated face there is an exact target, `render(factors_from_z(z))`, with its factors and landmarks.
`fidelity` compares the two images pixel by pixel and through the analyzer's readings of both: identity
cosine between their embeddings, landmark NME of the analyzer's reading of the generated face against the true
landmarks, and the error of its factor readings against the true factors. `glasses_breakdown` shows where the
glasses kind goes wrong: which kind is read for which, and how the errors grow near the cuts between kinds in z.
"""
from __future__ import annotations

import torch

from core.analysis.evaluate import landmark_errors
from core.analysis.model import Analysis
from core.metrics.ssim import ssim
from core.synthfaces.factors import BINARY_FACTORS, FACTOR_NAMES, GLASSES_KINDS, glasses_kind

_BINARY = torch.tensor([n in BINARY_FACTORS for n in FACTOR_NAMES])


def fidelity(generated: torch.Tensor, rendered: torch.Tensor, landmarks: torch.Tensor, factors: torch.Tensor,
             read_generated: Analysis, read_rendered: Analysis) -> dict[str, float]:
    """Generated vs rendered [N, 3, H, W] images in [0, 1], with the true landmarks [N, L, 2] (pixels) and factors
    [N, F] and the analyzer's readings of both sets (`core.analysis.analyze`): mean L1, mean SSIM, median and mean
    identity cosine, landmark error (px, NME), factor error (mean absolute error over continuous factors, accuracy
    over the glasses factors)."""
    if generated.shape != rendered.shape:
        raise ValueError(f"generated {list(generated.shape)} and rendered {list(rendered.shape)} differ in shape")
    if not len(generated) == len(read_generated.embedding) == len(read_rendered.embedding):
        raise ValueError(f"need one reading per face: {len(generated)} faces, {len(read_generated.embedding)} and "
                         f"{len(read_rendered.embedding)} readings")
    cos = (read_generated.embedding * read_rendered.embedding).sum(1)
    px, nme = landmark_errors(read_generated.landmarks, landmarks)
    read = read_generated.factors
    err = (read - factors).abs()
    return {
        "l1": float((generated - rendered).abs().mean()),
        "ssim": float(ssim(generated, rendered).mean()),
        "identity_cosine_median": float(cos.median()),
        "identity_cosine_mean": float(cos.mean()),
        "landmark_px": px,
        "landmark_nme": nme,
        "factor_mae": float(err[:, ~_BINARY].mean()),
        "glasses_accuracy": float((glasses_kind(read) == glasses_kind(factors)).float().mean()),
    }


CUT_DISTANCE_EDGES = (0.0, 0.05, 0.1, 0.2, 0.4, float("inf"))  # bins of the distance in z to the nearer glasses cut


def glasses_breakdown(read_generated: Analysis, read_rendered: Analysis, factors: torch.Tensor,
                      cut_distance: torch.Tensor) -> dict:
    """The glasses kind the analyzer reads on generated and on rendered faces against the true kind: a confusion
    matrix each (rows true, columns read, in GLASSES_KINDS order) and the wrong readings per bin of `cut_distance`
    (each face's distance in z to the nearer cut between kinds), so the analyzer's own misreadings stand apart."""
    if not len(read_generated.factors) == len(read_rendered.factors) == len(factors) == len(cut_distance):
        raise ValueError(f"the readings of generated and rendered faces, factors and cut_distance must have one row "
                         f"per face, got {len(read_generated.factors)}, {len(read_rendered.factors)}, {len(factors)} "
                         f"and {len(cut_distance)}")
    true = glasses_kind(factors)
    read = {"generated": glasses_kind(read_generated.factors), "rendered": glasses_kind(read_rendered.factors)}
    out: dict = {"kinds": list(GLASSES_KINDS)}
    for name, kinds in read.items():
        confusion = torch.zeros(len(GLASSES_KINDS), len(GLASSES_KINDS), dtype=torch.int64)
        confusion.index_put_((true, kinds), torch.ones_like(true), accumulate=True)
        out[f"confusion_{name}"] = confusion.tolist()
    out["by_cut_distance"] = []
    for lo, hi in zip(CUT_DISTANCE_EDGES, CUT_DISTANCE_EDGES[1:]):
        inside = (cut_distance >= lo) & (cut_distance < hi)
        out["by_cut_distance"].append({"from": lo, "to": hi if hi < float("inf") else None, "faces": int(inside.sum()),
                                       **{f"wrong_{name}": int((kinds != true)[inside].sum())
                                          for name, kinds in read.items()}})
    return out
