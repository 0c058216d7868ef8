"""The disentanglement report card: several latent spaces scored side by side against SynthFaces' ground truth.

    python -m core.reports.disentanglement [--out docs/report_card] [--spaces factors,rotation,...] [--quick]
    python -m core.reports.disentanglement --spaces generator-z,generator-w,generator-nice --update

Spaces: SynthFaces factors themselves (the ceiling), a random rotation of them (the floor), the distilled
generator's z (its coordinates are the factors through a fixed map) and W, the NICE codes of that W, the beta-VAE
family, the notebook VAE and its autoencoder baseline (encoder means of rendered faces). Scores: DCI (reference
mode, as disentanglement_lib: classifiers on factors cut into 5 classes), MIG, SAP (continuous factors), the
FactorVAE and beta-VAE scores (core.metrics.disentanglement) and VP (the interactive preset). Sample sizes are
below disentanglement_lib's defaults so that the card runs on a CPU; report.json records them. Writes
report.json, report.md and card.html / card.png (a plotly heatmap; the PNG needs kaleido).
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from core.reports import write_figure, write_report
from core.metrics.disentanglement import DCIReference, beta_vae_score, dci_reference, factor_vae_score, mig, sap
from core.synthfaces.factors import NUM_FACTORS
from core.synthfaces.latent import Z_DIM, factors_from_z, is_distilled, z_from_factors

SIZES = {"dci_train": 1500, "dci_test": 500, "mig": 3000, "sap": 3000, "variance": 2000, "votes_train": 300,
         "votes_eval": 150, "batch": 64}
QUICK = {"dci_train": 300, "dci_test": 100, "mig": 400, "sap": 400, "variance": 300, "votes_train": 40,
         "votes_eval": 20, "batch": 16, "dci_trees": 20}  # a smoke test: DCI's classifiers with 20 stages, not 100
METRICS = ("dci_disentanglement", "dci_completeness", "dci_informativeness", "mig", "sap", "factor_vae",
           "beta_vae", "vp")


@dataclass
class Space:
    """A latent space as the card sees it: codes of factors, and (for VP) a named latent space to sample."""

    name: str
    codes: Callable[[np.ndarray], np.ndarray]  # factors [N, K] -> codes [N, D]
    vp: Optional[Callable[[], Any]] = None  # -> core.metrics.vp.LatentSpace


def draw_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    """Factors as the world draws them (through the distilled generator's latent map)."""
    return factors_from_z(torch.from_numpy(rng.standard_normal((n, Z_DIM))).float()).numpy().astype(np.float64)


@functools.lru_cache(maxsize=4)
def _vae(name: str):
    from core.vae import VAE
    return VAE.from_pretrained(name)


def encoder_codes(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Codes of factors: the encoder means of the faces rendered from them (the VAE loads on first use)."""
    from core.synthfaces.render import render
    from core.vae import latent_means, prepare_images

    @torch.no_grad()
    def codes(factors: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(factors), 256):
            images = render(torch.from_numpy(factors[s:s + 256]).float(), 64)[0]
            out.append(latent_means(_vae(name), prepare_images(images)))
        return torch.cat(out).numpy().astype(np.float64)
    return codes


def spaces(models: str = "embedded") -> dict[str, Space]:
    """Every space the card knows, made lazily (a space whose models are missing raises when asked)."""
    from core.spaces import LatentSpace, latent_space
    rotation = np.linalg.qr(np.random.default_rng(123).normal(size=(NUM_FACTORS, NUM_FACTORS)))[0]

    def rotated_vp() -> LatentSpace:
        base = latent_space("synthfaces", resolution=32)
        q = torch.from_numpy(rotation).float()
        return LatentSpace(lambda u: base.sample_fn(((u - 0.5) @ q.T + 0.5).clamp(0, 1)), NUM_FACTORS, (0.0, 1.0))

    def generator(part: str) -> Callable[[np.ndarray], np.ndarray]:
        from core.models import load_models

        @torch.no_grad()
        def codes(factors: np.ndarray) -> np.ndarray:
            loaded = load_models(models, ("generator", "nice") if part == "nice" else ("generator",))
            G = loaded["generator"]
            if not is_distilled(G):
                raise ValueError("the generator is not the distilled one: its z does not map to SynthFaces factors")
            z = z_from_factors(torch.from_numpy(factors).float())
            if part == "z":
                return z.numpy().astype(np.float64)
            w = G.mapping(z)[:, 0]
            if part == "nice":
                w = loaded["nice"].encode(w)
            return w.numpy().astype(np.float64)
        return codes

    out = {
        "factors": Space("SynthFaces factors (ceiling)", lambda f: f,
                         lambda: latent_space("synthfaces", resolution=32)),
        "rotation": Space("random rotation of the factors (floor)", lambda f: (f - 0.5) @ rotation, rotated_vp),
        "generator-z": Space("generator z (distilled)", generator("z"), lambda: latent_space("generator-z", models)),
        "generator-w": Space("generator W", generator("w"), lambda: latent_space("generator-w", models)),
        "generator-nice": Space("NICE codes of W", generator("nice"), lambda: latent_space("generator-nice", models)),
        "vae": Space("VAE (notebook MLP)", encoder_codes("synthfaces_vae"), lambda: latent_space("vae", models)),
        "ae": Space("autoencoder baseline", encoder_codes("synthfaces_ae"), lambda: latent_space("vae:synthfaces_ae")),
    }
    for beta in ("0p5", "1", "4", "8"):
        name = f"synthfaces_vae_family_beta{beta}"
        out[f"vae-beta{beta}"] = Space(f"beta-VAE, beta {beta.replace('p', '.')}", encoder_codes(name),
                                       (lambda n: lambda: latent_space(f"vae:{n}"))(name))
    return out


def space_dci(codes: Callable[[np.ndarray], np.ndarray], sizes: dict[str, int], rng: np.random.Generator,
              seed: int = 0) -> DCIReference:
    """disentanglement_lib's DCI of a space on fresh train and test factors (the card's first draw from rng)."""
    f_tr, f_te = draw_factors(sizes["dci_train"], rng), draw_factors(sizes["dci_test"], rng)
    return dci_reference(codes(f_tr), f_tr, codes(f_te), f_te, seed=seed, trees=sizes.get("dci_trees", 100))


def score(space: Space, sizes: dict[str, int], vp_preset: Optional[str] = "interactive", seed: int = 0
          ) -> dict[str, Any]:
    """Every metric of the card for one space."""
    rng = np.random.default_rng(seed)
    codes = space.codes
    start = time.time()
    d = space_dci(codes, sizes, rng, seed)
    f_mig = draw_factors(max(sizes["mig"], sizes["sap"]), rng)
    c_mig = codes(f_mig)
    row: dict[str, Any] = {
        "dci_disentanglement": d.disentanglement, "dci_completeness": d.completeness,
        "dci_informativeness": d.informativeness_test, "mig": mig(c_mig[:sizes["mig"]], f_mig[:sizes["mig"]]),
        "sap": sap(c_mig[:sizes["sap"]], f_mig[:sizes["sap"]]),
        "factor_vae": factor_vae_score(codes, draw_factors, NUM_FACTORS, sizes["batch"], sizes["votes_train"],
                                       sizes["votes_eval"], sizes["variance"], seed=seed)["eval_accuracy"],
        "beta_vae": beta_vae_score(codes, draw_factors, NUM_FACTORS, sizes["batch"], sizes["votes_train"],
                                   sizes["votes_eval"], seed=seed)["eval_accuracy"],
        "vp": None,
    }
    if vp_preset and space.vp is not None:
        from core.metrics.vp import vp_score
        latent = space.vp()
        row["vp"] = vp_score(latent.sample_fn, latent.dim, vp_preset, latent.latent_range, seed=seed,
                             heavy=latent.heavy).score
    row["seconds"] = time.time() - start
    return row


LABELS = {"dci_disentanglement": "DCI D", "dci_completeness": "DCI C", "dci_informativeness": "DCI I (acc.)",
          "mig": "MIG", "sap": "SAP", "factor_vae": "FactorVAE", "beta_vae": "beta-VAE", "vp": "VP"}


def markdown(card: dict[str, Any]) -> str:
    lines = ["| space | " + " | ".join(LABELS[m] for m in METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for row in card["rows"]:
        if "error" in row:
            lines.append(f"| {row['label']} | " + " | ".join("—" for _ in METRICS) + " |")
            continue
        lines.append(f"| {row['label']} | " + " | ".join("—" if row[m] is None else f"{row[m]:.3f}" for m in METRICS)
                     + " |")
    skipped = [f"- {row['label']}: {row['error']}" for row in card["rows"] if "error" in row]
    return "\n".join(lines + ([""] + skipped if skipped else []) + ["", VP_COMPARABLE]) + "\n"


VP_COMPARABLE = ("VP compares spaces of one latent size only: its chance level is 1 / the number of dimensions and "
                 "its task changes with them, so read it within a group of equal size (the factors and their "
                 "rotation: 24; generator z: 23; W and NICE: 256; the VAE and the autoencoder: 100; the beta-VAEs: "
                 "10), never across groups. docs/vp_family tests it where the size is fixed and disentanglement is "
                 "known by construction.")


def figure(card: dict[str, Any]):
    """A heatmap: spaces (rows) x metrics (columns), each cell its score."""
    import plotly.graph_objects as go
    rows = [r for r in card["rows"] if "error" not in r]
    z = [[np.nan if r[m] is None else r[m] for m in METRICS] for r in rows]
    text = [["—" if r[m] is None else f"{r[m]:.2f}" for m in METRICS] for r in rows]
    fig = go.Figure(go.Heatmap(z=z, x=[LABELS[m] for m in METRICS], y=[r["label"] for r in rows], text=text,
                               texttemplate="%{text}", colorscale="Viridis", zmin=0, zmax=1))
    fig.update_layout(title="Disentanglement report card (SynthFaces ground truth; higher is better)",
                      yaxis_autorange="reversed", height=80 + 38 * len(rows), width=980,
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


def report_card(names: list[str], models: str = "embedded", sizes: dict[str, int] = SIZES,
                vp_preset: Optional[str] = "interactive", progress: bool = True) -> dict[str, Any]:
    known = spaces(models)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown space(s) {unknown}; known: {', '.join(known)}")
    rows = []
    for name in names:
        if progress:
            print(f"scoring {name} ...", file=sys.stderr, flush=True)
        try:
            rows.append({"space": name, "label": known[name].name, **score(known[name], sizes, vp_preset)})
        except (ValueError, OSError) as e:  # a space whose models are missing or do not fit: said in the card
            rows.append({"space": name, "label": known[name].name, "error": str(e)})
    return {"sizes": sizes, "vp_preset": vp_preset, "models": models, "rows": rows}


def merge_cards(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` with the rows of `new` in place of its rows for the same spaces (new spaces go last), so that one
    re-scored space does not cost the whole card; both must use the same sizes, VP preset and model set."""
    for key in ("sizes", "vp_preset", "models"):
        if old.get(key) != new.get(key):
            raise ValueError(f"the existing card was scored with {key}={old.get(key)!r}, this run with "
                             f"{new.get(key)!r}: re-score every space instead of --update")
    fresh = {row["space"]: row for row in new["rows"]}
    rows = [fresh.pop(row["space"], row) for row in old["rows"]]
    return {**old, "rows": rows + list(fresh.values())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.reports.disentanglement", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/report_card")
    p.add_argument("--models", default="embedded")
    p.add_argument("--spaces", default="factors,rotation,generator-z,generator-w,generator-nice,vae,ae,"
                                       "vae-beta0p5,vae-beta1,vae-beta4,vae-beta8")
    p.add_argument("--no-vp", action="store_true", help="leave VP out (it renders image pairs: the slow part)")
    p.add_argument("--quick", action="store_true", help="tiny sample sizes (a smoke test, not a report)")
    p.add_argument("--update", action="store_true",
                   help="re-score only --spaces and keep the other rows of the card already in --out")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        sizes, vp_preset = QUICK if args.quick else SIZES, None if args.no_vp else "interactive"
        old = json.loads((out / "report.json").read_text()) if args.update else None
        if old is not None:  # a card that cannot be merged fails before the scoring, not after it
            merge_cards(old, {"sizes": sizes, "vp_preset": vp_preset, "models": args.models, "rows": []})
        card = report_card(args.spaces.split(","), args.models, sizes, vp_preset)
        if old is not None:
            card = merge_cards(old, card)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_report(out, card, markdown(card))
    write_figure(figure(card), out, "card")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
