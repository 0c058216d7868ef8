"""How faithfully the distilled generator draws SynthFaces: every face against its exact target.

    python -m core.reports.generator [--generator synthfaces_stylegan3] [--samples 1000] [--out docs/generator]

For held-out z, the generated face G(z) is compared with render(factors_from_z(z)): mean L1 in [0, 1] pixels,
SSIM, the analyzer's identity cosine, landmark NME of the analyzer's reading against the true landmarks, the
factor-reading error, the analyzer FD between the two sets with the real/real baseline (two independent rendered
sets), Inception FID when torchvision's weights are on disk, the share of generated faces that pass the
analyzer's face check, the perceptual path length in W and Z (with the analyzer's feature distance, since
LPIPS's weights cannot be downloaded here), and where the glasses kind goes wrong (a confusion matrix, and the
errors by distance to the cuts between kinds in z, on generated and on rendered faces). Writes report.json,
report.md (the table with the goals) and a contact sheet: rendered row above generated row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from core.imaging import save_grid
from core.analysis.model import analyze
from core.metrics.fd import FeatureModelUnavailable, analysis_features, frechet_distance, inception_features
from core.metrics.fidelity import fidelity, glasses_breakdown
from core.metrics.ppl import analyzer_distance, ppl
from core.reports import write_report
from core.synthfaces.latent import Z_DIM, eval_latents, glasses_cut_distance, targets

CONTACT_SHEET = 16  # faces on the contact sheet: two rows of rendered faces, each above its generated row
GOALS = {  # metric: (goal, higher is better)
    "identity_cosine_median": (0.8, True),
    "landmark_nme": (0.05, False),
    "fd_ratio": (3.0, False),
    "face_check_pass_rate": (0.99, True),
}


@torch.no_grad()
def draw_faces(G: torch.nn.Module, z: torch.Tensor, batch: int = 100) -> torch.Tensor:
    return torch.cat([((G(z[s:s + batch], noise_mode="const") + 1) / 2).clamp(0, 1) for s in range(0, len(z), batch)])


def report(G: torch.nn.Module, analyzer: torch.nn.Module, samples: int = 1000, seed: int = 1) -> tuple[dict, dict]:
    """(numbers, images for the contact sheet) of G against its targets on `samples` held-out latents."""
    from core.projection import FaceCheck
    if samples < CONTACT_SHEET:
        raise ValueError(f"samples must be at least {CONTACT_SHEET} (the contact sheet shows {CONTACT_SHEET} faces), "
                         f"got {samples}; the report's figures are meant for about 1,000")
    if G.z_dim != Z_DIM:
        raise ValueError(f"the generator's z has {G.z_dim} dimensions; a distilled generator's has {Z_DIM} (one per "
                         f"SynthFaces factor), so it has no targets to compare with")
    z = eval_latents(samples, seed)
    real, landmarks, factors = targets(z, G.img_resolution)
    fake = draw_faces(G, z)
    read_real, read_fake = analyze(analyzer, real), analyze(analyzer, fake)
    out: dict[str, Any] = {"samples": samples, **fidelity(fake, real, landmarks, factors, read_fake, read_real)}
    out["glasses"] = glasses_breakdown(read_fake, read_real, factors, glasses_cut_distance(z))
    other = targets(eval_latents(samples, seed + 1), G.img_resolution)[0]  # an independent rendered set
    real_f, fake_f, other_f = (analysis_features(r) for r in (read_real, read_fake, analyze(analyzer, other)))
    out["fd_analyzer"] = frechet_distance(real_f, fake_f)
    out["fd_analyzer_real_real"] = frechet_distance(real_f, other_f)
    out["fd_ratio"] = out["fd_analyzer"] / out["fd_analyzer_real_real"]
    try:
        out["fid_inception"] = frechet_distance(inception_features(real), inception_features(fake))
    except FeatureModelUnavailable as e:
        out["fid_inception"] = None
        out["fid_inception_note"] = str(e)
    distance = analyzer_distance(analyzer)
    for space, sampling in (("w", "end"), ("z", "full")):  # the StyleGAN papers' two usual variants
        out[f"ppl_{space}_{sampling}_analyzer"] = ppl(G, distance, space, sampling, samples=min(samples, 500),
                                                      crop=False, seed=seed)
    reference = targets(eval_latents(512, seed + 2), G.img_resolution)[0]
    check = FaceCheck(analyzer, reference)
    out["face_check_pass_rate"] = float(check.is_face(fake).float().mean())
    out["face_check_pass_rate_rendered"] = float(check.is_face(real).float().mean())
    out["goals"] = {k: {"goal": g, "met": bool(out[k] >= g if up else out[k] <= g)} for k, (g, up) in GOALS.items()}
    return out, {"real": real[:CONTACT_SHEET], "fake": fake[:CONTACT_SHEET]}


ROWS = [("l1", "mean L1 (pixels in [0, 1])", "{:.4f}"), ("ssim", "SSIM", "{:.3f}"),
        ("identity_cosine_median", "identity cosine, median (goal >= 0.8)", "{:.3f}"),
        ("identity_cosine_mean", "identity cosine, mean", "{:.3f}"),
        ("landmark_nme", "landmark NME vs true landmarks (goal <= 5 %)", "{:.2%}"),
        ("landmark_px", "landmark error (px)", "{:.2f}"),
        ("factor_mae", "factor reading error (MAE, continuous factors)", "{:.3f}"),
        ("glasses_accuracy", "glasses kind read correctly", "{:.3f}"),
        ("fd_analyzer", "analyzer FD generated vs rendered", "{:.3f}"),
        ("fd_analyzer_real_real", "analyzer FD rendered vs rendered (baseline)", "{:.3f}"),
        ("fd_ratio", "FD ratio to the baseline (goal <= 3)", "{:.2f}"),
        ("face_check_pass_rate", "face check passes, generated (goal >= 99 %)", "{:.1%}"),
        ("face_check_pass_rate_rendered", "face check passes, rendered", "{:.1%}"),
        ("ppl_w_end_analyzer", "PPL in W, end sampling (analyzer distance, not LPIPS)", "{:.1f}"),
        ("ppl_z_full_analyzer", "PPL in Z, full sampling (analyzer distance, not LPIPS)", "{:.1f}")]


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Generated against rendered on {result['samples']} held-out latents:", "", "| measure | value |",
             "|---|---:|"]
    lines += [f"| {label} | {fmt.format(result[key])} |" for key, label, fmt in ROWS]
    fid = result.get("fid_inception")
    lines.append(f"| Inception FID | {fid:.2f} |" if fid is not None else
                 "| Inception FID | not computed: torchvision's Inception weights are not on disk |")
    met = [k for k, v in result["goals"].items() if v["met"]]
    lines += ["", f"Goals met: {len(met)} of {len(result['goals'])} ({', '.join(met) or 'none'}).", ""]
    return "\n".join(lines + glasses_markdown(result["glasses"])) + "\n"


def glasses_markdown(glasses: dict[str, Any]) -> list[str]:
    """The glasses breakdown as two tables: kinds read against true kinds, and wrong kinds by distance to a cut."""
    def share(wrong: int, faces: int) -> str:
        return f"{wrong} ({wrong / faces:.0%})" if faces else "0"

    kinds = glasses["kinds"]
    lines = ["Glasses kind read by the analyzer on generated faces (on their rendered targets in brackets):", "",
             "| true kind | " + " | ".join(f"read {k}" for k in kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for i, kind in enumerate(kinds):
        cells = (f"{g} ({r})" for g, r in zip(glasses["confusion_generated"][i], glasses["confusion_rendered"][i]))
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "Wrong glasses kinds by the glasses coordinate's distance in z to the nearer cut between kinds:", "",
              "| distance | faces | wrong, generated | wrong, rendered |", "|---|---:|---:|---:|"]
    for b in glasses["by_cut_distance"]:
        span = f"{b['from']:g} to {b['to']:g}" if b["to"] is not None else f"over {b['from']:g}"
        lines.append(f"| {span} | {b['faces']} | {share(b['wrong_generated'], b['faces'])} | "
                     f"{share(b['wrong_rendered'], b['faces'])} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    from core.analysis import load_analyzer
    from core.checkpoints import CheckpointError
    from core.stylegan3 import Generator
    p = argparse.ArgumentParser(prog="python -m core.reports.generator", description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="synthfaces_stylegan3")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--out", default="docs/generator")
    args = p.parse_args(argv)
    try:
        result, images = report(Generator.from_pretrained(args.generator), load_analyzer("synthfaces"), args.samples)
    except (ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write_report(out, result, markdown(result))
    half = CONTACT_SHEET // 2
    rows = torch.cat([torch.cat([images["real"][i:i + half], images["fake"][i:i + half]]) for i in (0, half)])
    save_grid(rows, out / "contact_sheet.png", half)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
