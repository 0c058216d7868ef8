"""Does the VP term make a VAE more disentangled? The VP study's VAEs, with and without the term, on the report card.

    python -m core.train vae --config configs/vae_vp_study.yaml --ship     # the VAEs, into runs/vae_vp_study/
    python -m core.reports.vp_training [--models runs/vae_vp_study] [--out docs/vp_training] [--quick] [--update]

The VP seed claims that its constraint "is effective for disentanglement learning". Each VAE of the study is scored
on every metric of the report card against SynthFaces' ground truth (DCI, MIG, SAP, FactorVAE, beta-VAE, VP) and
its held-out reconstruction is read from its checkpoint. Runs with the same seed saw the same faces from the same
start, so the effect of the term is measured per seed (with minus without), for each weight tried, and stated only
where every seed agrees.
"""
from __future__ import annotations

import argparse
import json
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


def by_weight(rows: list[dict[str, Any]]) -> dict[float, dict[int, dict[str, Any]]]:
    """The rows by VP weight, then by seed."""
    out: dict[float, dict[int, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(float(r["vp_weight"]), {})[r["seed"]] = r
    return dict(sorted(out.items()))


def paired(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per VP weight above 0, per metric: the mean of each arm over the seeds both have, and the per-seed
    differences (with the term minus without), their mean, and whether every seed moves the same way."""
    arms = by_weight(rows)
    without = arms.pop(0.0, {})
    out = {}
    for weight, with_term in arms.items():
        seeds = sorted(set(with_term) & set(without))
        out[f"{weight:g}"] = per_metric = {"seeds": seeds}
        for metric in COLUMNS:
            if not seeds or any(r.get(metric) is None for r in rows):
                continue
            diffs = [with_term[s][metric] - without[s][metric] for s in seeds]
            per_metric[metric] = {
                "without": float(np.mean([without[s][metric] for s in seeds])),
                "with": float(np.mean([with_term[s][metric] for s in seeds])),
                "differences": diffs, "mean_difference": float(np.mean(diffs)),
                "every_seed": "up" if all(d > 0 for d in diffs) else "down" if all(d < 0 for d in diffs)
                else "mixed"}
    return out


NAMES = {**LABELS, "val_neg_elbo": "-ELBO", "val_bce": "BCE", "val_ssim": "SSIM"}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| VAE | VP weight | seed | " + " | ".join(NAMES[m] for m in COLUMNS) + " |",
             "|---|---:|---:|" + "---:|" * len(COLUMNS)]
    for r in result["rows"]:
        cells = " | ".join("—" if r.get(m) is None else f"{r[m]:.1f}" if m in COST[:2] else f"{r[m]:.3f}"
                           for m in COLUMNS)
        lines.append(f"| {r['model']} | {r['vp_weight']:g} | {r['seed']} | {cells} |")
    weights = list(result["paired"])
    lines += ["", "Each weight against no term, per seed (same faces and start): the mean with the term, the mean "
              "difference, and whether every seed moves the same way (up, down or mixed).", "",
              "| metric | without | " + " | ".join(f"VP weight {w}" for w in weights) + " |",
              "|---|---:|" + "---|" * len(weights)]
    for metric in COLUMNS:
        cells = [result["paired"][w].get(metric) for w in weights]
        if any(c is None for c in cells):
            continue
        lines.append(f"| {NAMES[metric]} | {cells[0]['without']:.3f} | " + " | ".join(
            f"{c['with']:.3f} ({c['mean_difference']:+.3f}, {c['every_seed']})" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any]):
    """Each metric's change against the term's weight: the mean over seeds, with the seeds' range as the bar; the
    disentanglement metrics on the left, the reconstruction's SSIM (a larger change) on the right."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    weights = list(result["paired"])
    fig = make_subplots(rows=1, cols=2, column_widths=[0.7, 0.3],
                        subplot_titles=("disentanglement metrics", "held-out SSIM"))
    for col, metrics in ((1, METRICS), (2, ("val_ssim",))):
        for metric in metrics:
            cells = [result["paired"][w].get(metric) for w in weights]
            if any(c is None for c in cells):
                continue
            mean = [c["mean_difference"] for c in cells]
            fig.add_trace(go.Scatter(x=weights, y=mean, mode="lines+markers", name=NAMES[metric], error_y=dict(
                type="data", symmetric=False, array=[max(c["differences"]) - m for c, m in zip(cells, mean)],
                arrayminus=[m - min(c["differences"]) for c, m in zip(cells, mean)])), row=1, col=col)
        fig.add_hline(y=0, line_color="grey", row=1, col=col)
        fig.update_xaxes(title_text="VP weight", type="category", row=1, col=col)
    fig.update_yaxes(title_text="with minus without", row=1, col=1)
    fig.update_layout(title="The VP term's effect by its weight (the mean over seeds; bars: the seeds' range)",
                      width=900, height=440)
    return fig


def kept_rows(path: Path, sizes: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The rows of an earlier report at `path` by model name, for an update at the same sizes."""
    if not path.exists():
        raise ValueError(f"--update keeps the rows of {path}, which does not exist: run without --update")
    earlier = json.loads(path.read_text())
    if earlier.get("sizes") != sizes:
        raise ValueError(f"{path} was scored at other sizes: run without --update to score every VAE again")
    return {r["model"]: r for r in earlier.get("rows", [])}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.reports.vp_training", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="runs/vae_vp_study", help="the folder the study config ships to")
    p.add_argument("--out", default="docs/vp_training")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (not a report)")
    p.add_argument("--update", action="store_true", help="keep the rows of the VAEs --out already scored (same "
                   "sizes) and score only the new ones")
    args = p.parse_args(argv)
    sizes, out = QUICK if args.quick else SIZES, Path(args.out)
    try:
        models = study_models(args.models)
        kept = kept_rows(out / "report.json", sizes) if args.update else {}
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    new = score_models([(path, meta) for path, meta in models if path.stem not in kept], sizes)
    rows = sorted([*(kept[path.stem] for path, _ in models if path.stem in kept), *new],
                  key=lambda r: (r["vp_weight"], r["seed"]))
    result = {"models": args.models, "sizes": sizes, "rows": rows, "paired": paired(rows)}
    write_report(out, result, markdown(result))
    write_figure(figure(result), out, "effect")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
