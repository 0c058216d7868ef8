"""Everything the LFW VAE notebook does, as functions: reconstructions with error maps and SSIM, random faces,
latent interpolation, PCA / t-SNE of latent means coloured by attributes, and attribute editing by latent
arithmetic (mean code with the attribute minus mean code without), with its success measured by the analyzer.

    python -m core.reports.vae --checkpoint synthfaces_vae --out docs/vae     # grids, plots and report.json
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.analysis.model import analyze
from core.imaging import save_grid
from core.metrics.ssim import ssim, ssim_map
from core.synthfaces.factors import factor_index
from core.vae import (EDIT_ATTRIBUTES, VAE, VAL_FIRST_IDENTITY, attribute_direction, edit, evaluate_vae,
                      has_attribute, interpolate, latent_means, random_faces)


@torch.no_grad()
def reconstructions(model: VAE, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid rows: originals / reconstructions / error maps (1 - SSIM map, red), per-image SSIM)."""
    model.eval()
    recon = model(images, sample=False).recon
    error = 1 - torch.nn.functional.pad(ssim_map(recon, images), [5, 5, 5, 5], value=1.0).clamp(0, 1)
    heat = torch.stack([error, torch.zeros_like(error), torch.zeros_like(error)], dim=1)
    return torch.cat([images, recon, heat]), ssim(recon, images)


def pca_2d(codes: torch.Tensor) -> np.ndarray:
    """First two principal components of the codes."""
    x = codes.numpy() - codes.numpy().mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def tsne_2d(codes: torch.Tensor, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE
    return TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, len(codes) / 4)).fit_transform(
        codes.numpy())


def scatter(points: np.ndarray, factors: torch.Tensor, title: str, colour_by: tuple[str, ...] = EDIT_ATTRIBUTES
            + ("yaw", "skin_tone", "hair_colour")):
    """A plotly scatter of 2-D points, with a dropdown to colour them by each factor."""
    import plotly.graph_objects as go
    fig = go.Figure()
    for i, name in enumerate(colour_by):
        fig.add_trace(go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers", visible=i == 0, name=name,
                                   marker=dict(size=5, color=factors[:, factor_index(name)].numpy(),
                                               colorscale="Viridis", showscale=True)))
    buttons = [dict(label=name, method="update", args=[{"visible": [j == i for j in range(len(colour_by))]}])
               for i, name in enumerate(colour_by)]
    fig.update_layout(title=title, updatemenus=[dict(buttons=buttons, x=1.0, y=1.15)], height=520)
    return fig


@dataclass
class EditReport:
    attribute: str
    strength: float
    images: int  # held-out images that lack the attribute (the ones edited)
    reading_before: float  # mean analyzer reading of the attribute on the plain reconstruction
    reading_after: float  # ... on the edited reconstruction
    success_rate: float  # the analyzer reads the attribute (> 0.5) on the edited image
    baseline_rate: float  # ... on the plain reconstruction (before the edit)
    others_change: float  # mean |change| of the other factors' readings (what the edit moves besides)
    identity_cosine: float  # analyzer identity similarity, edited vs plain reconstruction
    kept_by_reconstruction: float  # correlation of the attribute's reading on reconstructions with that on inputs
    linear_in_codes: float  # R^2 of the true attribute from the codes by a linear probe (4-fold cross-validated)


def linear_probe_r2(codes: torch.Tensor, target: torch.Tensor) -> float:
    """How much of `target` a linear function of the codes explains on held-out folds: latent arithmetic (one
    vector added to every code) can only move what is linear in the codes."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_score
    probe = RidgeCV(alphas=np.logspace(-2, 3, 12))
    return float(cross_val_score(probe, codes.numpy(), target.numpy(), cv=4, scoring="r2").mean())


@torch.no_grad()
def edit_reports(model: VAE, analyzer: torch.nn.Module, images: torch.Tensor, factors: torch.Tensor,
                 codes: torch.Tensor, directions: dict[str, torch.Tensor], strength: float = 1.0) -> list[EditReport]:
    """For each attribute's vector, edit the images that lack the attribute: how far does the analyzer's reading
    of it move, how often does it then read it, what else moves, and is identity kept? Also: is the attribute
    linear in the codes (`latent_means` of the images), and does the reconstruction keep it at all? The
    reconstructions and both images' readings are made once for every attribute."""
    model.eval()
    whole = model.decode(codes)
    read_in, read_whole = analyze(analyzer, images), analyze(analyzer, whole)
    reports = []
    for name, direction in directions.items():
        idx = factor_index(name)
        kept = torch.corrcoef(torch.stack([read_in.factors[:, idx], read_whole.factors[:, idx]]))[0, 1]
        lacking = ~has_attribute(factors, name)
        edited = analyze(analyzer, model.decode(codes[lacking] + strength * direction))
        plain_factors, plain_embedding = read_whole.factors[lacking], read_whole.embedding[lacking]
        before, after = plain_factors[:, idx], edited.factors[:, idx]
        others = torch.ones(plain_factors.shape[1], dtype=torch.bool)
        others[idx] = False
        reports.append(EditReport(
            name, strength, int(lacking.sum()), float(before.mean()), float(after.mean()),
            float((after > 0.5).float().mean()), float((before > 0.5).float().mean()),
            float((edited.factors - plain_factors)[:, others].abs().mean()),
            float((plain_embedding * edited.embedding).sum(1).mean()), float(kept.nan_to_num(0.0)),
            linear_probe_r2(codes.cpu(), factors[:, idx].cpu())))
    return reports


def edits_markdown(name: str, edits: list[dict]) -> str:
    """The edit table of a report, as markdown."""
    rows = [f"| {e['attribute']} | {e['linear_in_codes']:.2f} | {e['kept_by_reconstruction']:.2f} | "
            f"{e['reading_before']:.3f} -> "
            f"{e['reading_after']:.3f} | {e['baseline_rate']:.2f} -> {e['success_rate']:.2f} | "
            f"{e['others_change']:.3f} | {e['identity_cosine']:.2f} | {e['images']} |" for e in edits]
    return "\n".join([
        f"# Attribute edits: {name}", "",
        f"Latent arithmetic at strength {edits[0]['strength']:g} (mean code with the attribute minus mean code "
        "without) on held-out faces that lack the attribute, read by the SynthFaces analyzer. `linear` is the R^2 "
        "of the true attribute from the codes by a cross-validated linear probe (arithmetic moves only what is "
        "linear in the codes); `kept` the correlation of the attribute's reading on the reconstructions with its "
        "reading on the inputs (0: the decoder does not draw it); `others` the mean change of the other 23 "
        "factors' readings.", "",
        "| attribute | linear | kept | mean reading before -> after | read above 0.5 | others | identity cosine | "
        "faces |", "|---|---|---|---|---|---|---|---|", *rows, ""])


def edit_strip(model: VAE, images: torch.Tensor, direction: torch.Tensor, strengths: list[float]) -> torch.Tensor:
    """Rows of one image each, edited at each strength: [n * len(strengths), 3, 45, 45]."""
    return torch.stack([edit(model, images, direction, s) for s in strengths], dim=1).flatten(0, 1)


def run_workflow(model: VAE, analyzer: torch.nn.Module, images: torch.Tensor, factors: torch.Tensor, out: Path,
                 strength: float = 1.5) -> dict:
    """Write every grid and plot of the notebook to `out` and return the report (SSIM, edit success)."""
    out.mkdir(parents=True, exist_ok=True)
    grid, scores = reconstructions(model, images[:12])
    save_grid(grid, out / "reconstructions.png", 12)
    save_grid(random_faces(model, 24), out / "random_faces.png", 12)
    save_grid(torch.cat([interpolate(model, images[2 * i], images[2 * i + 1], 10) for i in range(4)]),
              out / "interpolation.png", 10)
    codes = latent_means(model, images)
    scatter(pca_2d(codes), factors, "PCA of latent means").write_html(out / "pca.html", include_plotlyjs="cdn")
    scatter(tsne_2d(codes[:1000]), factors[:1000], "t-SNE of latent means").write_html(out / "tsne.html",
                                                                                      include_plotlyjs="cdn")
    directions = {name: attribute_direction(codes, factors, name) for name in EDIT_ATTRIBUTES}
    strengths = [0.0, 0.5, 1.0, 1.5, 2.0]
    for name, direction in directions.items():
        lacking = images[~has_attribute(factors, name)][:6]
        save_grid(edit_strip(model, lacking, direction, strengths), out / f"edit_{name}.png", len(strengths))
    report = {"validation": evaluate_vae(model, images, beta=1.0),
              "edits": [e.__dict__ for e in edit_reports(model, analyzer, images, factors, codes, directions,
                                                         strength)]}
    report["reconstruction_ssim_shown"] = scores.tolist()
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "edits.md").write_text(edits_markdown(out.name, report["edits"]))
    return report


def main(argv: list[str] | None = None) -> int:
    from core.analysis import load_analyzer
    from core.synthfaces.dataset import SynthFacesDataset
    p = argparse.ArgumentParser(prog="python -m core.reports.vae", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="synthfaces_vae")
    p.add_argument("--out", default="docs/vae")
    p.add_argument("--identities", type=int, default=300)
    p.add_argument("--strength", type=float, default=1.5)
    args = p.parse_args(argv)
    try:
        model = VAE.from_pretrained(args.checkpoint)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = SynthFacesDataset(args.identities, 4, 45, seed=4242, first_identity=VAL_FIRST_IDENTITY + 500_000)
    report = run_workflow(model, load_analyzer("synthfaces"), data.images, data.factors, Path(args.out), args.strength)
    print(json.dumps(report["validation"], indent=2))
    for e in report["edits"]:
        print(f"{e['attribute']:>11}: reading {e['reading_before']:.3f} -> {e['reading_after']:.3f}, read on "
              f"{e['baseline_rate']:.2f} -> {e['success_rate']:.2f}, others {e['others_change']:.3f}, identity "
              f"cosine {e['identity_cosine']:.2f}, kept {e['kept_by_reconstruction']:.2f}, "
              f"linear {e['linear_in_codes']:.2f} ({e['images']} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
