"""How well the encoder puts a face into W: reconstructions of held-out faces, with and without refinement.

    python -m core.reports.encoder [--faces 1000] [--refine-faces 100] [--refine-steps 30] [--out docs/encoder]

Two sets of held-out faces: SynthFaces renders of identities no training step drew (not generator outputs), with
their true factors and landmarks, and faces of the generator itself (untruncated, so their factors are exact). Each
face is encoded and redrawn by the generator; the redrawn face is compared with the input: the analyzer's identity
cosine (median; goal >= 0.9), pixel L1, the error of the analyzer's factor readings against the true factors, and
the landmark NME of the analyzer's landmarks against the true ones. A subset is also refined by the projection's
optimisation (`core.projection`). Times per face: the encoder alone (batch 1), and with the refinement.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from core.analysis.evaluate import landmark_errors
from core.analysis.model import analyze
from core.imaging import save_grid
from core.projection import FaceInputError
from core.reports import write_report
from core.synthfaces.factors import BINARY_FACTORS, FACTOR_NAMES
from core.synthfaces.latent import eval_latents, targets

FIRST_IDENTITY = 5_000_000  # the renders' identities: none the generator's or the encoder's training drew
CONTINUOUS = [i for i, n in enumerate(FACTOR_NAMES) if n not in BINARY_FACTORS]


def held_out(kind: str, count: int, resolution: int, G: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """(images, true factors, true landmarks) of `count` held-out faces: 'renders' or 'generator'."""
    if kind == "renders":
        from core.synthfaces import render_faces
        batch = render_faces(torch.arange(FIRST_IDENTITY, FIRST_IDENTITY + count), seed=4321, resolution=resolution)
        return batch.images, batch.factors, batch.landmarks
    z = eval_latents(count, 55)
    _, landmarks, factors = targets(z, resolution)
    with torch.no_grad():
        w = G.mapping(z.to(G.mapping.w_avg.device))[:, 0]
        images = torch.cat([G.images_from_w(w[s:s + 100]).clamp(0, 1).cpu() for s in range(0, count, 100)])
    return images, factors, landmarks


def scores(images: torch.Tensor, redrawn: torch.Tensor, factors: torch.Tensor, landmarks: torch.Tensor,
           analyzer: torch.nn.Module) -> dict[str, float]:
    """How close the redrawn faces are to their inputs, and to the inputs' true factors and landmarks."""
    a, b = analyze(analyzer, images), analyze(analyzer, redrawn)
    cosine = (a.embedding * b.embedding).sum(1)
    _, nme = landmark_errors(b.landmarks, landmarks)
    return {"identity_cosine_median": float(cosine.median()), "identity_cosine_mean": float(cosine.mean()),
            "pixel_l1": float((images - redrawn).abs().mean()),
            "factor_error": float((b.factors[:, CONTINUOUS] - factors[:, CONTINUOUS]).abs().mean()),
            "landmark_nme": nme}


def encoder_report(uploads: Any, analyzer: torch.nn.Module, faces: int = 1000, refine_faces: int = 100,
                   refine_steps: int = 30) -> tuple[dict[str, Any], torch.Tensor]:
    """(the report, a picture: inputs above their reconstructions) for a `core.projection.Uploads` with an
    encoder."""
    if uploads.encoder is None:
        raise ValueError("the model set has no encoder: python -m core.train encoder --config "
                         "configs/encoder_synthfaces64.yaml --ship builds one")
    G, E = uploads.G, uploads.encoder
    result: dict[str, Any] = {"faces": faces, "refine_faces": refine_faces, "refine_steps": refine_steps}
    pictures = []
    for kind in ("renders", "generator"):
        images, factors, landmarks = held_out(kind, faces, G.img_resolution, G)
        with torch.no_grad():
            w = torch.cat([E(images[s:s + 100].to(uploads.device)) for s in range(0, faces, 100)])
        redrawn = uploads.render(w)
        entry = {"encoder": scores(images, redrawn, factors, landmarks, analyzer)}
        n = min(refine_faces, faces)
        started, refined, skipped = time.perf_counter(), [], 0
        for i in range(n):
            try:
                refined.append(uploads.project(images[i], steps=refine_steps).image[None])
            except FaceInputError:  # the face check refused it: scored as the encoder alone drew it
                refined.append(redrawn[i:i + 1])
                skipped += 1
        refined = torch.cat(refined)
        entry["refine_ms_per_face"] = (time.perf_counter() - started) / n * 1000
        entry["refine_skipped_by_face_check"] = skipped
        entry["encoder_on_refined_subset"] = scores(images[:n], redrawn[:n], factors[:n], landmarks[:n], analyzer)
        entry["encoder_and_refinement"] = scores(images[:n], refined, factors[:n], landmarks[:n], analyzer)
        result[kind] = entry
        pictures += [images[:8], redrawn[:8], refined[:8]]
    one = images[:1].to(uploads.device)
    with torch.no_grad():
        E(one)
        times = []
        for _ in range(50):
            started = time.perf_counter()
            E(one)
            times.append((time.perf_counter() - started) * 1000)
    result["encoder_ms_per_face"] = statistics.median(times)
    return result, torch.cat(pictures)


def markdown(result: dict[str, Any]) -> str:
    rows = [("identity_cosine_median", "identity cosine to the input, median (goal >= 0.9)", ".3f"),
            ("identity_cosine_mean", "identity cosine to the input, mean", ".3f"),
            ("pixel_l1", "pixel L1 (pixels in [0, 1])", ".4f"),
            ("factor_error", "factor reading error against the true factors (MAE)", ".3f"),
            ("landmark_nme", "landmark NME against the true landmarks", ".2%")]
    sets = [(k, label) for k, label in (("renders", "held-out renders"), ("generator", "generator faces"))
            if k in result]
    head = " | ".join(f"{label}: encoder | {label}: encoder + {result['refine_steps']} steps" for _, label in sets)
    lines = [f"{result['faces']} faces per set for the encoder alone; the refined columns are the first "
             f"{result['refine_faces']} of them (the encoder alone on those in brackets).", "",
             f"| measure | {head} |", "|---|" + "---:|" * (2 * len(sets))]
    for key, label, fmt in rows:
        cells = []
        for kind, _ in sets:
            r = result[kind]
            cells += [format(r["encoder"][key], fmt),
                      f"{format(r['encoder_and_refinement'][key], fmt)} "
                      f"({format(r['encoder_on_refined_subset'][key], fmt)})"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    refine_ms = " and ".join(f"{result[k]['refine_ms_per_face']:.0f} ms ({label})" for k, label in sets)
    lines += ["", f"Time per face: the encoder alone {result['encoder_ms_per_face']:.1f} ms (goal < 20 ms); with "
              f"{result['refine_steps']} refinement steps {refine_ms}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from core.models import load_models
    from core.projection import Uploads
    p = argparse.ArgumentParser(prog="python -m core.reports.encoder", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="embedded")
    p.add_argument("--faces", type=int, default=1000)
    p.add_argument("--refine-faces", type=int, default=100)
    p.add_argument("--refine-steps", type=int, default=30)
    p.add_argument("--out", default="docs/encoder")
    args = p.parse_args(argv)
    try:
        models = load_models(args.models, ("generator", "analyzer", "encoder"))
        result, pictures = encoder_report(Uploads.from_models(models), models["analyzer"], args.faces,
                                          args.refine_faces, args.refine_steps)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write_report(out, result, markdown(result))
    save_grid(pictures, out / "reconstructions.png", 8)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
