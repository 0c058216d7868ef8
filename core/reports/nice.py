"""Raw W against NICE codes on one generator: identity similarity of mixes, DCI (disentanglement_lib's reference
computation) against the factors, leakage between the codes, PCA plots of the identity and attribute codes, and
with --faces the face-recognition distances of the mixes (real model sets). On the distilled generator the factors
are exact (those of z) and each mix is also compared with the true mix, render(A's identity factors, B's attribute
factors); on any other generator the factors are those the analyzer reads reliably.

    python -m core.reports.nice [--config configs/nice_synthfaces.yaml] [--nice synthfaces_nice] [--out docs/nice]

The raw-W baseline splits W at the same place (first id_dim coordinates = 'identity'). Writes report.json,
report.md (the table) and pca.html (plotly; pca.png too where kaleido can draw it) into --out.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from core.metrics.disentanglement import dci_reference
from core.metrics.identity import mix_scores, split_w_mix, true_mix_scores
from core.nice import NICE
from core.reports import write_figure, write_report
from core.synthfaces import FACTOR_NAMES
from core.synthfaces.latent import Z_DIM, factors_from_z, is_distilled
from core.world import Frozen, WorldConfig, probe_leakage

RELIABLE_MAE = 0.1  # DCI uses the factors the analyzer reads to within this mean absolute error (its own report)


MIN_SAMPLES = 40


def reliable_factors(analyzer: str = "synthfaces") -> list[str]:
    """Factors the analyzer (a load_analyzer name) reads well enough to serve as ground truth for generated faces."""
    from core.analysis import analyzer_checkpoint
    from core.checkpoints import load_checkpoint
    metrics = load_checkpoint(analyzer_checkpoint(analyzer))[1].get("metrics", {})
    names = [n for n in FACTOR_NAMES if metrics.get(f"mae_{n}", 1.0) <= RELIABLE_MAE
             or metrics.get(f"acc_{n}", 0.0) >= 0.95]
    return names or list(FACTOR_NAMES)


@torch.no_grad()
def read_codes(world: Frozen, nice: NICE, n: int, seed: int = 5, batch: int = 250) -> tuple[np.ndarray, ...]:
    """(W [n, d], NICE codes [n, d], factors [n, F]) of n seeded faces. The factors are exact for the distilled
    generator (factors_from_z of untruncated z); otherwise they are what the analyzer reads."""
    exact = is_distilled(world.G)
    gen = torch.Generator().manual_seed(seed)
    ws, codes, factors = [], [], []
    for start in range(0, n, batch):
        if exact:
            z = torch.randn(min(batch, n - start), Z_DIM, generator=gen)
            w = world.G.mapping(z.to(world.device))[:, 0]
            factors.append(factors_from_z(z))
        else:
            w = world.sample_w(min(batch, n - start), gen)
            factors.append(world.read(w)[1].factors)
        ws.append(w)
        codes.append(nice.encode(w))
    return tuple(torch.cat(x).cpu().numpy() for x in (ws, codes, factors))


def real_face_distances(world: Frozen, mix, backend, pairs: int, seed: int = 321) -> dict[str, Any]:
    """The seed's face-recognition distances of mixes (real model sets): rendered donors and mixes through a real
    backend. On SynthFaces no real face is found, and the result says so."""
    from core.metrics.identity import face_distances
    gen = torch.Generator().manual_seed(seed)
    a, b = world.sample_w(pairs, gen), world.sample_w(pairs, gen)

    def pictures(w: torch.Tensor) -> list[np.ndarray]:
        with torch.no_grad():
            images = world.render(w).clamp(0, 1)
        return [(x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for x in images]

    try:
        d = face_distances(pictures(a), pictures(b), pictures(mix(a, b)), backend)
    except ValueError as e:
        return {"note": str(e)}
    return {"distance_to_identity_donor": d.to_identity_donor, "distance_to_attribute_donor": d.to_attribute_donor,
            "same_person_rate": d.same_person_rate, "pairs_with_faces": d.pairs}


def report(cfg: WorldConfig, nice_path: str, samples: int = 2000, pairs: int = 256,
           progress: bool = True, faces: Optional[str] = None, dci_trees: int = 100
           ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The W-vs-NICE numbers, and the arrays the PCA plots need; with `faces` (a real-face backend name) also the
    face-recognition distances of the mixes. `dci_trees` below disentanglement_lib's 100 only for smoke tests."""
    if samples < MIN_SAMPLES or pairs < 1:
        raise ValueError(f"samples must be at least {MIN_SAMPLES} (DCI fits on 3/4 of them and scores the rest, at "
                         f"least 10) and pairs at least 1; got samples={samples}, pairs={pairs}")
    world = Frozen(cfg)
    nice = NICE.from_pretrained(nice_path).eval()
    if nice.dim != world.G.w_dim:
        raise ValueError(f"{nice_path} works on {nice.dim}-d latents; {cfg.generator} has {world.G.w_dim}-d W")
    cfg = replace(cfg, id_dim=nice.id_dim)
    w, codes, factors = read_codes(world, nice, samples)
    exact = is_distilled(world.G)
    names = list(FACTOR_NAMES) if exact else reliable_factors(cfg.analyzer)
    cols = [FACTOR_NAMES.index(n) for n in names]
    out: dict[str, Any] = {"generator": cfg.generator, "nice": str(nice_path), "samples": samples, "pairs": pairs,
                           "dci_factors": names, "factors": "exact (distilled generator)" if exact else "analyzer",
                           "spaces": {}}
    mixers = {"W": split_w_mix(nice.id_dim), "NICE": nice.mix}
    leaks = dict(zip(("W", "NICE"), probe_leakage(cfg, ["", str(nice_path)], progress=progress)))
    for space, code in (("W", w), ("NICE", codes)):
        scores = mix_scores(world.sample_w, world.render, world.analyzer, mixers[space], pairs=pairs)
        cut = len(code) * 3 // 4  # disentanglement_lib's way: classifiers fit on one part, accuracy on the rest
        d = dci_reference(code[:cut], factors[:cut][:, cols], code[cut:], factors[cut:][:, cols], trees=dci_trees)
        leak = leaks[space]
        out["spaces"][space] = {
            "similarity_to_identity_donor": scores.to_identity_donor,
            "similarity_to_attribute_donor": scores.to_attribute_donor,
            "dci_disentanglement": d.disentanglement, "dci_completeness": d.completeness,
            "dci_informativeness": d.informativeness_test,
            "leak_attributes_from_identity_code": 1 - leak["attributes_from_identity_code"],
            "leak_identity_from_attribute_code": 1 - leak["identity_from_attribute_code"],
        }
        if exact:
            true = true_mix_scores(world.G, world.analyzer, mixers[space], pairs=pairs)
            out["spaces"][space].update(identity_cosine_to_true_mix=true.identity_cosine, l1_to_true_mix=true.l1)
        if faces:
            from core.analysis import faces_backend
            out["spaces"][space]["real_faces"] = real_face_distances(world, mixers[space], faces_backend(faces),
                                                                     min(pairs, 64))
    arrays = {"identity_code": codes[:, :nice.id_dim], "attribute_code": codes[:, nice.id_dim:], "factors": factors}
    return out, arrays


ROWS = [("similarity_to_identity_donor", "mix vs identity donor (cosine, higher is better; target >= 0.8)"),
        ("similarity_to_attribute_donor", "mix vs attribute donor (cosine, lower is better; target <= 0.3)"),
        ("dci_disentanglement", "DCI disentanglement"), ("dci_completeness", "DCI completeness"),
        ("dci_informativeness", "DCI informativeness (accuracy)"),
        ("leak_attributes_from_identity_code", "attributes predictable from identity code (R², lower is better)"),
        ("leak_identity_from_attribute_code", "identity predictable from attribute code (R², lower is better)"),
        ("identity_cosine_to_true_mix", "mix vs true mix (analyzer cosine, higher is better; distilled generator)"),
        ("l1_to_true_mix", "mix vs true mix (pixel L1, lower is better; distilled generator)")]


def markdown(result: dict[str, Any]) -> str:
    """The report as a Markdown table: one row per measure, a column per space."""
    spaces = list(result["spaces"])
    lines = ["| measure | " + " | ".join(spaces) + " |", "|---|" + "---:|" * len(spaces)]
    for key, label in ROWS:
        if key not in result["spaces"][spaces[0]]:
            continue
        lines.append(f"| {label} | " + " | ".join(f"{result['spaces'][s][key]:.3f}" for s in spaces) + " |")
    return "\n".join(lines) + "\n"


def pca_figure(arrays: dict[str, np.ndarray], identity_factor: str = "hair_colour", attribute_factor: str = "yaw"):
    """Plotly 2 x 2: each code's first two principal components, coloured by an identity and an attribute factor."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    titles = [f"{code} code, colour = {f}" for code in ("identity", "attribute")
              for f in (identity_factor, attribute_factor)]
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.08, vertical_spacing=0.12)
    for r, code in enumerate(("identity_code", "attribute_code")):
        x = arrays[code] - arrays[code].mean(0)
        pcs = x @ np.linalg.svd(x, full_matrices=False)[2][:2].T
        for c, factor in enumerate((identity_factor, attribute_factor)):
            fig.add_trace(go.Scattergl(x=pcs[:, 0], y=pcs[:, 1], mode="markers", showlegend=False,
                                       marker=dict(size=4, color=arrays["factors"][:, FACTOR_NAMES.index(factor)],
                                                   colorscale="Viridis", cmin=0, cmax=1)), row=r + 1, col=c + 1)
    fig.update_layout(height=800, width=900, title="PCA of NICE codes (a factor should organise only its own code)")
    return fig


def main(argv: list[str] | None = None) -> int:
    from core.config import load_config
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/nice_synthfaces.yaml")
    p.add_argument("--nice", default="synthfaces_nice")
    p.add_argument("--out", default="docs/nice")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--pairs", type=int, default=256)
    p.add_argument("--faces", help="also score mixes with a real-face backend (dlib, insightface:ROOT): real sets")
    args = p.parse_args(argv)
    try:
        cfg = load_config(WorldConfig, args.config, known_only=True)  # its part of the NICE recipe
        result, arrays = report(cfg, args.nice, args.samples, args.pairs, faces=args.faces)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write_report(out, result, markdown(result))
    write_figure(pca_figure(arrays), out, "pca")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
