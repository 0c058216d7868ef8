"""Does the VP term make a VAE more disentangled? The VP study's VAEs, with and without the term, on the report card.

    python -m core.train vae --config configs/vae_vp_study.yaml --ship     # the six VAEs, into runs/vae_vp_study/
    python -m core.reports.vp_training [--models runs/vae_vp_study] [--out docs/vp_training] [--quick]

The VP seed claims that its constraint "is effective for disentanglement learning". Each VAE of the study is scored
on every metric of the report card against SynthFaces' ground truth (DCI, MIG, SAP, FactorVAE, beta-VAE, VP) and
its held-out reconstruction is read from its checkpoint. Runs with the same seed saw the same faces from the same
start, so the effect of the term is measured per seed (with minus without) and stated only where every seed agrees.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from core.checkpoints import read_config
from core.reports import write_figure, write_report
from core.reports.disentanglement import LABELS, METRICS, QUICK, SIZES, Space, encoder_codes, score

COST = ("val_neg_elbo", "val_bce", "val_ssim")  # the reconstruction side, from each checkpoint's held-out figures
COLUMNS = (*METRICS, *COST)


def study_models(folder: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """(checkpoint, its metadata) for each VAE in the folder; the study needs runs with and without the term."""
    found = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        _, meta = read_config(path)
        if meta.get("kind") == "vae" and "vp_weight" in meta.get("trained_with", {}):
            found.append((path, meta))
    weights = {meta["trained_with"]["vp_weight"] > 0 for _, meta in found}
    if weights != {False, True}:
        raise ValueError(f"{folder} holds no VAE pair with and without the VP term (train them with "
                         f"`python -m core.train vae --config configs/vae_vp_study.yaml --ship`)")
    return found


def score_models(models: list[tuple[Path, dict[str, Any]]], sizes: dict[str, int] = SIZES,
                 vp_preset: Optional[str] = "interactive", progress: bool = True) -> list[dict[str, Any]]:
    """One row per VAE: how it was trained, every metric of the card, its held-out reconstruction."""
    from core.spaces import latent_space
    rows = []
    for path, meta in models:
        if progress:
            print(f"scoring {path.stem} ...", file=sys.stderr, flush=True)
        space = Space(path.stem, encoder_codes(str(path)), lambda p=path: latent_space(f"vae:{p}"))
        trained = meta["trained_with"]
        rows.append({"model": path.stem, "vp_weight": trained["vp_weight"], "seed": trained["seed"],
                     "beta": trained["beta"], **score(space, sizes, vp_preset),
                     **{k: meta["metrics"][k] for k in COST}})
    return rows


def arms(rows: list[dict[str, Any]]) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], list[int]]:
    """(rows with the term by seed, rows without it by seed, the seeds that have both)."""
    with_term = {r["seed"]: r for r in rows if r["vp_weight"] > 0}
    without = {r["seed"]: r for r in rows if r["vp_weight"] == 0}
    return with_term, without, sorted(set(with_term) & set(without))


def paired(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric: the mean of each arm, and the per-seed differences (with the term minus without), their mean,
    and whether every seed moves the same way."""
    with_term, without, seeds = arms(rows)
    out = {}
    for metric in COLUMNS:
        if any(r.get(metric) is None for r in rows):
            continue
        diffs = [with_term[s][metric] - without[s][metric] for s in seeds]
        out[metric] = {"without": float(np.mean([without[s][metric] for s in seeds])),
                       "with": float(np.mean([with_term[s][metric] for s in seeds])),
                       "differences": diffs, "mean_difference": float(np.mean(diffs)),
                       "every_seed": "up" if all(d > 0 for d in diffs) else "down" if all(d < 0 for d in diffs)
                       else "mixed"}
    return out


def markdown(result: dict[str, Any]) -> str:
    names = {**LABELS, "val_neg_elbo": "-ELBO", "val_bce": "BCE", "val_ssim": "SSIM"}
    lines = ["| VAE | VP weight | seed | " + " | ".join(names[m] for m in COLUMNS) + " |",
             "|---|---:|---:|" + "---:|" * len(COLUMNS)]
    for r in result["rows"]:
        cells = " | ".join("—" if r.get(m) is None else f"{r[m]:.1f}" if m in COST[:2] else f"{r[m]:.3f}"
                           for m in COLUMNS)
        lines.append(f"| {r['model']} | {r['vp_weight']:g} | {r['seed']} | {cells} |")
    lines += ["", f"With the term against without, per seed ({len(result['seeds'])} seeds; same faces and start):",
              "", "| metric | without | with | difference (mean) | per seed | every seed |",
              "|---|---:|---:|---:|---|---|"]
    for metric, p in result["paired"].items():
        lines.append(f"| {names[metric]} | {p['without']:.3f} | {p['with']:.3f} | {p['mean_difference']:+.3f} | "
                     + ", ".join(f"{d:+.3f}" for d in p["differences"]) + f" | {p['every_seed']} |")
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any]):
    """The term's effect on each disentanglement metric, one bar per seed."""
    import plotly.graph_objects as go
    metrics = [m for m in METRICS if m in result["paired"]]
    fig = go.Figure([go.Bar(x=[LABELS[m] for m in metrics], name=f"seed {seed}",
                            y=[result["paired"][m]["differences"][i] for m in metrics])
                     for i, seed in enumerate(result["seeds"])])
    fig.update_layout(title="The VP term's effect per seed (with minus without)", barmode="group", width=760,
                      height=440, yaxis_title="difference in score")
    return fig


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.reports.vp_training", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="runs/vae_vp_study", help="the folder the study config ships to")
    p.add_argument("--out", default="docs/vp_training")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (not a report)")
    args = p.parse_args(argv)
    try:
        models = study_models(args.models)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else SIZES
    rows = score_models(models, sizes)
    result = {"models": args.models, "sizes": sizes, "rows": rows, "seeds": arms(rows)[2], "paired": paired(rows)}
    out = Path(args.out)
    write_report(out, result, markdown(result))
    write_figure(figure(result), out, "effect")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
