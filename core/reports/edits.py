"""True edits: does a slider move its attribute and nothing else? Scored against the face the renderer draws.

    python -m core.reports.edits [--faces 500] [--alpha 2] [--out docs/edits]

On the distilled generator every face has exact factors, so for each supervised direction the *true* edit of a face
is known: `render(its factors, with only that factor moved)`. Each of `faces` held-out faces is edited by
`alpha` (in standard deviations of W along the direction); the analyzer reads how far the edited factor moved
(its reading after minus before), and the true edit moves that factor to the value the edit reached. Reported per
direction: that move, the leak (mean absolute change of the other factors' readings, over the factors the
analyzer reads reliably), and how close the edited face is to the true edit (analyzer identity cosine, pixel L1),
beside how close the unedited face is to it (the edit should bring the face nearer, not further). A picture strip
shows, per direction, the unedited face, the edit and the true edit.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from core.analysis.model import analyze
from core.directions import Direction, apply
from core.imaging import save_grid
from core.reports import write_report
from core.synthfaces.factors import BINARY_FACTORS, FACTOR_NAMES
from core.synthfaces.latent import eval_latents, factors_from_z, is_distilled
from core.synthfaces.render import render

RELIABLE_MAE = 0.12  # the analyzer's own error on rendered faces below which a factor's reading counts as a reading


@torch.no_grad()
def _faces(G: torch.nn.Module, w: torch.Tensor, batch: int = 100) -> torch.Tensor:
    device = G.mapping.w_avg.device
    return torch.cat([G.images_from_w(w[s:s + batch].to(device)).clamp(0, 1).cpu() for s in range(0, len(w), batch)])


def true_edits(G: torch.nn.Module, dirs: dict[str, Direction], analyzer: torch.nn.Module, faces: int = 500,
               alpha: float = 2.0, seed: int = 0, reliable: list[str] | None = None
               ) -> tuple[dict[str, Any], torch.Tensor]:
    """(the report, a picture strip [3 rows per direction shown, 3, H, W]) for every supervised direction."""
    if not is_distilled(G):
        raise ValueError("true edits need the distilled generator: another generator's z has no exact factors")
    supervised = {n: d for n, d in dirs.items() if d.kind == "supervised"}
    if not supervised:
        raise ValueError("no supervised directions to score (python -m core.directions computes them)")
    if faces < 2:
        raise ValueError(f"faces must be at least 2, got {faces}")
    z = eval_latents(faces, seed + 31)
    factors = factors_from_z(z)
    with torch.no_grad():
        w = G.mapping(z.to(G.mapping.w_avg.device))[:, 0].cpu()
    base = _faces(G, w)
    read_base = analyze(analyzer, base)
    others = reliable if reliable is not None else list(FACTOR_NAMES)
    rows, strip = {}, []
    for name, d in supervised.items():
        i = FACTOR_NAMES.index(name)
        edited_w = apply(w[:, None], {name: alpha}, dirs)[:, 0]
        edited = _faces(G, edited_w)
        read = analyze(analyzer, edited)
        moved = read.factors[:, i] - read_base.factors[:, i]
        target = factors.clone()
        if name in BINARY_FACTORS:  # the kind the edit reached, as the analyzer reads it
            target[:, i] = (read.factors[:, i] > 0.5).float()
            if name in ("eyeglasses", "sunglasses"):  # one kind of glasses at a time
                other = FACTOR_NAMES.index("sunglasses" if name == "eyeglasses" else "eyeglasses")
                target[target[:, i] > 0, other] = 0
        else:
            target[:, i] = (factors[:, i] + moved).clamp(0, 1)
        true = render(target, G.img_resolution)[0]
        read_true = analyze(analyzer, true)
        keep = [FACTOR_NAMES.index(n) for n in others if n != name]
        leak = (read.factors[:, keep] - read_base.factors[:, keep]).abs().mean()
        rows[name] = {
            "moved": float(moved.mean()), "moved_abs": float(moved.abs().mean()), "leak": float(leak),
            "identity_cosine_to_true_edit": float((read.embedding * read_true.embedding).sum(1).mean()),
            "l1_to_true_edit": float((edited - true).abs().mean()),
            "unedited_identity_cosine_to_true_edit": float((read_base.embedding * read_true.embedding).sum(1).mean()),
            "unedited_l1_to_true_edit": float((base - true).abs().mean()),
            "fit_r2": d.quality,
        }
        strip += [base[0], edited[0], true[0]]
    result = {"faces": faces, "alpha": alpha, "leak_factors": [n for n in others], "directions": rows}
    return result, torch.stack(strip)


def markdown(result: dict[str, Any]) -> str:
    """One row per direction."""
    lines = [f"{result['faces']} held-out faces, each edited by {result['alpha']} standard deviations of W along the "
             "direction; the true edit is the renderer's face with only that factor moved to where the edit took "
             "it.", "",
             "| direction | fit R² | factor moved (reading) | leak into other factors | identity cosine to true edit "
             "(unedited) | pixel L1 to true edit (unedited) |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in result["directions"].items():
        lines.append(f"| {name} | {r['fit_r2']:.2f} | {r['moved']:+.3f} | {r['leak']:.3f} | "
                     f"{r['identity_cosine_to_true_edit']:.3f} ({r['unedited_identity_cosine_to_true_edit']:.3f}) | "
                     f"{r['l1_to_true_edit']:.4f} ({r['unedited_l1_to_true_edit']:.4f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from core.models import load_models
    from core.reports.nice import reliable_factors
    p = argparse.ArgumentParser(prog="python -m core.reports.edits", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="embedded")
    p.add_argument("--faces", type=int, default=500)
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--out", default="docs/edits")
    args = p.parse_args(argv)
    try:
        models = load_models(args.models, ("generator", "directions", "analyzer"))
        result, strip = true_edits(models["generator"], models["directions"], models["analyzer"], args.faces,
                                   args.alpha, reliable=reliable_factors())
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write_report(out, result, markdown(result))
    save_grid(strip, out / "strip.png", 3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
