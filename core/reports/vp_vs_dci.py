"""Does variation predictability agree with DCI disentanglement? The paper's main claim, checked on our models.

    python -m core.reports.vp_vs_dci [--preset fast] [--out docs/vp] [--update]

Spaces: the beta-VAE family (same architecture, beta 0.5 to 8; DCI of the encoder means against the SynthFaces
ground-truth factors of rendered faces) and the embedded generator's W and NICE codes (DCI read from
core.reports.nice's report.json: against the exact factors of z for a distilled generator, the analyzer's readings
otherwise). VP scores come from `vp_score` on each decoder.
Writes vp_vs_dci.json and vp_vs_dci.svg; prints the table and Spearman rank correlations. `--update` re-scores only
the generator's points (after a new generator or NICE) and keeps the beta-VAE family's rows from the report in
`--out`, which must have used the same preset.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from core.metrics.vp import VPPreset, vp_score
from core.spaces import latent_space

FAMILY = ("synthfaces_vae_family_beta0p5", "synthfaces_vae_family_beta1", "synthfaces_vae_family_beta4",
          "synthfaces_vae_family_beta8")


def vae_dci(name: str, seed: int = 0) -> float:
    """DCI disentanglement (disentanglement_lib's reference computation) of a VAE's encoder means against the
    ground-truth factors of the faces they encode: the report card's DCI D for that model."""
    from core.reports.disentanglement import SIZES, encoder_codes, space_dci
    return space_dci(encoder_codes(name), SIZES, np.random.default_rng(seed), seed).disentanglement


def collect(preset: str | VPPreset = "fast", nice_report_path: str | Path = "docs/nice/report.json",
            family: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per space: name, group, latent dims, VP score and spread, DCI disentanglement. `family`: the
    beta-VAE family's rows of an earlier report with the same preset, kept instead of scored again."""
    report = json.loads(Path(nice_report_path).read_text())
    rows = list(family or [])
    for name in FAMILY if family is None else ():
        space = latent_space(f"vae:{name}")
        vp = vp_score(space.sample_fn, space.dim, preset, space.latent_range)
        rows.append(dict(space=name.replace("synthfaces_vae_family_", "VAE "), group="beta-VAE family", dims=space.dim,
                         vp=vp.score, vp_spread=vp.spread, dci_d=vae_dci(name)))
    for label, name in (("W", "generator-w"), ("NICE", "generator-nice")):
        space = latent_space(name)
        vp = vp_score(space.sample_fn, space.dim, preset, space.latent_range)
        rows.append(dict(space=label, group="generator", dims=space.dim, vp=vp.score, vp_spread=vp.spread,
                         dci_d=report["spaces"][label]["dci_disentanglement"]))
    return rows


def kept_family(path: Path, preset: str) -> list[dict[str, Any]]:
    """The beta-VAE family's rows of the report at `path`, for an update with the same preset."""
    if not path.is_file():
        raise ValueError(f"--update keeps the beta-VAE rows of {path}, which does not exist: run without --update")
    earlier = json.loads(path.read_text())
    if earlier.get("preset") != preset:
        raise ValueError(f"{path} used VP preset {earlier.get('preset')!r}, not {preset!r}: an update must keep the "
                         f"preset, or run without --update to score every space again")
    family = [r for r in earlier.get("rows", []) if r.get("group") == "beta-VAE family"]
    if not family:
        raise ValueError(f"{path} holds no beta-VAE family rows to keep: run without --update")
    return family


def rank_correlation(rows: list[dict[str, Any]]) -> float:
    """Spearman correlation of VP and DCI disentanglement over the rows (nan for fewer than 3)."""
    if len(rows) < 3:
        return float("nan")
    return float(scipy.stats.spearmanr([r["vp"] for r in rows], [r["dci_d"] for r in rows])[0])


def svg_scatter(rows: list[dict[str, Any]], title: str, width: int = 560, height: int = 400) -> str:
    """A small self-contained SVG scatter of VP (x) against DCI disentanglement (y), one labelled point per row."""
    pad = 60
    xs, ys = np.array([r["vp"] for r in rows]), np.array([r["dci_d"] for r in rows])

    def scale(v: np.ndarray, lo: float, hi: float, a: float, b: float) -> np.ndarray:
        span = hi - lo if hi > lo else 1.0
        return a + (v - lo) / span * (b - a)

    x0, x1 = xs.min() - 0.05 * (np.ptp(xs) or 1), xs.max() + 0.05 * (np.ptp(xs) or 1)
    y0, y1 = ys.min() - 0.05 * (np.ptp(ys) or 1), ys.max() + 0.05 * (np.ptp(ys) or 1)
    px, py = scale(xs, x0, x1, pad, width - pad), scale(ys, y0, y1, height - pad, pad)
    colours = {"beta-VAE family": "#1f77b4", "generator": "#d62728"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">VP score (held-out accuracy)</text>',
             f'<text x="15" y="{height / 2}" text-anchor="middle" transform="rotate(-90 15 {height / 2})">'
             f'DCI disentanglement</text>']
    for value, pos in ((x0, pad), (x1, width - pad)):
        parts.append(f'<text x="{pos}" y="{height - pad + 16}" text-anchor="middle">{value:.3f}</text>')
    for value, pos in ((y0, height - pad), (y1, pad)):
        parts.append(f'<text x="{pad - 6}" y="{pos + 4}" text-anchor="end">{value:.3f}</text>')
    placed: list[tuple[float, float, float]] = []  # labels drawn so far: x, baseline y, width (about 7 px a letter)
    for r, x, y in zip(rows, px, py):
        c = colours.get(r["group"], "black")
        ly, w = y - 6, 7.0 * len(r["space"])
        while any(x < qx + qw and qx < x + w and abs(ly - qy) < 13 for qx, qy, qw in placed):
            ly -= 14  # lift a label that would overlap one already placed, so close points stay readable
        placed.append((x, ly, w))
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{c}"/>')
        parts.append(f'<text x="{x + 8:.1f}" y="{ly:.1f}" fill="{c}">{r["space"]}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="fast")
    p.add_argument("--nice-report", default="docs/nice/report.json", help="written by python -m core.reports.nice")
    p.add_argument("--out", default="docs/vp")
    p.add_argument("--update", action="store_true",
                   help="re-score only the generator's W and NICE; keep the beta-VAE rows of <out>/vp_vs_dci.json")
    args = p.parse_args(argv)
    try:
        family = kept_family(Path(args.out) / "vp_vs_dci.json", args.preset) if args.update else None
        rows = collect(args.preset, args.nice_report, family)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    family = [r for r in rows if r["group"] == "beta-VAE family"]
    generator = [r for r in rows if r["group"] == "generator"]
    summary = {"preset": args.preset, "rows": rows, "spearman_family": rank_correlation(family),
               "generator_orders_agree": bool(np.sign(generator[1]["vp"] - generator[0]["vp"])
                                              == np.sign(generator[1]["dci_d"] - generator[0]["dci_d"]))}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vp_vs_dci.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "vp_vs_dci.svg").write_text(svg_scatter(rows, f"VP ({args.preset} preset) vs DCI disentanglement"))
    print(f"{'space':>12} {'dims':>5} {'VP':>7} {'spread':>7} {'DCI D':>7}")
    for r in rows:
        print(f"{r['space']:>12} {r['dims']:>5} {r['vp']:>7.3f} {r['vp_spread']:>7.3f} {r['dci_d']:>7.3f}")
    print(f"Spearman (beta-VAE family): {summary['spearman_family']:.2f}; W vs NICE orders agree: "
          f"{summary['generator_orders_agree']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
