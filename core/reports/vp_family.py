"""Does VP agree with the ground-truth metrics? A controlled family of spaces whose disentanglement is known.

    python -m core.reports.vp_family [--ts 0,0.05,0.1,0.2,0.3,0.5,1] [--vp-preset interactive] [--out docs/vp_family]

Every space has the factors' own size (24 dimensions) and is the factor space turned by a rotation R(t) = expm(t A)
(A skew-symmetric, expm(A) a full random rotation): t = 0 is the factors themselves (the ceiling), t = 1 a random
rotation of them (the floor), and the steps between mix the factors ever more, closer together near 0 where DCI
falls fastest (measured at smoke-test sizes: DCI D 1.00, 0.86, 0.74, 0.51, 0.34, 0.16, 0.11 at the default t).
Codes are R(t) (f - 0.5); faces are drawn by the renderer from R(t)^T u + 0.5. Every metric of the report card is
scored on each space (DCI, MIG, SAP, FactorVAE, beta-VAE, and VP), then Spearman's and Kendall's rank correlations
of VP against each ground-truth metric, with a bootstrap interval that redraws each space's VP from its runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from core.reports import write_figure, write_report
from core.reports.disentanglement import METRICS, QUICK, SIZES, Space, score
from core.synthfaces.factors import NUM_FACTORS

GROUND_TRUTH = [m for m in METRICS if m != "vp"]
TS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def rotation_family(ts: tuple[float, ...] = TS, seed: int = 123) -> list[tuple[float, np.ndarray]]:
    """(t, R(t)) for each t in [0, 1]: rotations of the factor space from none to a full random one."""
    from scipy.linalg import expm, logm
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(NUM_FACTORS, NUM_FACTORS)))[0]
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]  # a proper rotation, so that it has a real logarithm
    a = np.real(logm(q))
    a = (a - a.T) / 2  # skew-symmetric to float precision
    return [(float(t), np.real(expm(t * a))) for t in ts]


def family_space(t: float, rotation: np.ndarray, resolution: int = 32) -> Space:
    """The rotated space as the card scores it: codes of factors, and faces of codes for VP."""
    from core.spaces import LatentSpace
    from core.synthfaces.render import render
    r = torch.from_numpy(rotation).float()

    def sample(u: torch.Tensor) -> torch.Tensor:
        return render(((u - 0.5) @ r + 0.5).clamp(0, 1), resolution)[0]

    return Space(f"rotation t={t:.2f}", lambda f: (f - 0.5) @ rotation.T,
                 lambda: LatentSpace(sample, NUM_FACTORS, (0.0, 1.0)))


def rank_correlations(vp: list[float], truth: list[float]) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr
    if len(set(vp)) < 2 or len(set(truth)) < 2:  # a constant side has no ranking to agree with
        return {"spearman": float("nan"), "kendall": float("nan")}
    return {"spearman": float(spearmanr(vp, truth).statistic), "kendall": float(kendalltau(vp, truth).statistic)}


def bootstrap(vp_runs: list[list[float]], truth: list[float], draws: int = 1000, seed: int = 0
              ) -> dict[str, tuple[float, float]]:
    """95 % intervals of the rank correlations when each space's VP is redrawn as the mean of its runs drawn with
    replacement."""
    rng = np.random.default_rng(seed)
    found: dict[str, list[float]] = {"spearman": [], "kendall": []}
    for _ in range(draws):
        vp = [float(np.mean(rng.choice(runs, size=len(runs)))) for runs in vp_runs]
        for k, v in rank_correlations(vp, truth).items():
            if np.isfinite(v):
                found[k].append(v)
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else (float("nan"),) * 2
            for k, v in found.items()}


def family_report(ts: tuple[float, ...] = TS, sizes: dict[str, int] = SIZES, vp_preset: Optional[str] = "interactive",
                  seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Every metric on every space of the family, and VP's rank correlations with the others (without a VP
    preset: the ground-truth metrics alone)."""
    from core.metrics.vp import vp_score
    rows, vp_runs = [], []
    for t, rotation in rotation_family(ts):
        space = family_space(t, rotation)
        if progress:
            print(f"scoring {space.name} ...", file=sys.stderr, flush=True)
        row = {"t": float(t), "label": space.name, **score(space, sizes, vp_preset=None, seed=seed)}
        if vp_preset:
            latent = space.vp()
            result = vp_score(latent.sample_fn, latent.dim, vp_preset, latent.latent_range, seed=seed)
            row["vp"], row["vp_spread"], row["vp_runs"] = result.score, result.spread, list(result.runs)
            vp_runs.append(list(result.runs))
        rows.append(row)
    correlations = correlate(rows, vp_runs) if vp_preset else {}
    return {"ts": list(ts), "sizes": sizes, "vp_preset": vp_preset, "rows": rows, "correlations": correlations}


def correlate(rows: list[dict[str, Any]], vp_runs: list[list[float]]) -> dict[str, dict[str, Any]]:
    """VP's rank correlations with each ground-truth metric across the rows, with their bootstrap intervals."""
    vp = [float(np.mean(runs)) for runs in vp_runs]
    return {metric: {**rank_correlations(vp, [r[metric] for r in rows]),
                     "interval_95": bootstrap(vp_runs, [r[metric] for r in rows])} for metric in GROUND_TRUTH}


def verdict(result: dict[str, Any]) -> str:
    """The answer in one sentence per ground-truth metric: does VP rank the family as the metric does? Agreement
    is claimed only where the whole 95 % interval of Spearman's correlation is above zero."""
    lines = []
    for metric, c in result["correlations"].items():
        lo, hi = c["interval_95"]["spearman"]
        answer = ("agrees" if lo > 0 else "ranks them in reverse" if hi < 0 else "shows no reliable agreement")
        lines.append(f"- {metric}: VP {answer} (Spearman {c['spearman']:+.2f}, 95 % interval [{lo:+.2f}, {hi:+.2f}])")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"The factor space turned by R(t), t from 0 (the factors) to 1 (a random rotation); VP preset "
             f"`{result['vp_preset']}`.", "", "| t | " + " | ".join(m for m in GROUND_TRUTH) + " | VP (spread) |",
             "|---|" + "---:|" * (len(GROUND_TRUTH) + 1)]
    for r in result["rows"]:
        lines.append(f"| {r['t']:.2f} | " + " | ".join(f"{r[m]:.3f}" for m in GROUND_TRUTH)
                     + f" | {r['vp']:.3f} ({r['vp_spread']:.3f}) |")
    lines += ["", "Rank correlation of VP with each ground-truth metric across the family (95 % bootstrap "
              "interval over VP's runs):", "", "| metric | Spearman | interval | Kendall | interval |",
              "|---|---:|---|---:|---|"]
    for metric, c in result["correlations"].items():
        (s_lo, s_hi), (k_lo, k_hi) = c["interval_95"]["spearman"], c["interval_95"]["kendall"]
        lines.append(f"| {metric} | {c['spearman']:+.2f} | [{s_lo:+.2f}, {s_hi:+.2f}] | {c['kendall']:+.2f} | "
                     f"[{k_lo:+.2f}, {k_hi:+.2f}] |")
    lines += ["", "Across this family, whose disentanglement is known by construction:", "", verdict(result)]
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any]):
    import plotly.graph_objects as go
    rows = result["rows"]
    fig = go.Figure(go.Scatter(x=[r["dci_disentanglement"] for r in rows], y=[r["vp"] for r in rows],
                               error_y=dict(array=[r["vp_spread"] for r in rows]), mode="markers+text",
                               text=[f"t={r['t']:.2f}" for r in rows], textposition="top center"))
    fig.update_layout(title="VP against DCI disentanglement across the rotation family", width=720, height=480,
                      xaxis_title="DCI disentanglement (ground truth)", yaxis_title="VP")
    return fig


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.reports.vp_family", description=__doc__.splitlines()[0])
    p.add_argument("--ts", default=",".join(f"{t:g}" for t in TS), help="the rotation amounts, 0 to 1")
    p.add_argument("--vp-preset", default="interactive")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (not a report)")
    p.add_argument("--out", default="docs/vp_family")
    args = p.parse_args(argv)
    ts = tuple(float(t) for t in args.ts.split(","))
    if len(ts) < 3 or not all(0 <= t <= 1 for t in ts):
        p.error("a family needs at least 3 rotation amounts, each from 0 to 1")
    result = family_report(ts, QUICK if args.quick else SIZES, args.vp_preset)
    out = Path(args.out)
    write_report(out, result, markdown(result))
    write_figure(figure(result), out, "vp_vs_dci")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
