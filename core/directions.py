"""Attribute directions in a generator's W space; an edit is `w + alpha * scale * d`.

- PCA (GANSpace-style): principal axes of W sampled through the mapping network.
- Supervised (InterFaceGAN-style): the normal of the least-squares linear boundary in W of each attribute. Its
  labels are the exact factors of z for the distilled generator (core.synthfaces.latent), else the face
  analyzer's readings of generated faces.
- NICE axes: principal axes of a trained NICE's identity code and of its attribute code. These live in code space:
  the edit is `decode(encode(w) + alpha * scale * d)`, so an identity axis leaves the attribute code untouched.
Every direction is a unit vector with a `scale`: the standard deviation of sampled W along it, so that
alpha = 1 is one typical step. Directions are stored beside the generator as `<generator>_directions`.

    python -m core.directions --generator synthfaces_stylegan3           # compute and save
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm import tqdm

from core.checkpoints import CHECKPOINT_DIR, CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint

SUPERVISED = ("smile", "mouth_open", "eye_open", "yaw", "pitch", "roll", "eyeglasses", "sunglasses",
              "light_direction", "background", "skin_tone", "hair_colour", "face_width")


@dataclass
class Direction:
    vector: torch.Tensor  # unit, [w_dim]
    scale: float  # std of sampled W along the vector
    kind: str  # "pca" | "supervised" (in W) | "nice_identity" | "nice_attribute" (in NICE code space)
    quality: float  # explained variance ratio (pca, nice_*) or R^2 of the linear fit (supervised)

    @property
    def in_code_space(self) -> bool:
        return self.kind.startswith("nice_")


@torch.no_grad()
def sample_w(G: torch.nn.Module, n: int, seed: int = 0, batch: int = 1000) -> torch.Tensor:
    """n latents mapped to W (first of the identical ws), without truncation."""
    gen = torch.Generator().manual_seed(seed)
    device = G.mapping.w_avg.device
    return torch.cat([G.mapping(torch.randn(min(batch, n - i), G.z_dim, generator=gen).to(device))[:, 0].cpu()
                      for i in range(0, n, batch)])


def pca_directions(w: torch.Tensor, k: int = 8) -> dict[str, Direction]:
    centred = w - w.mean(0)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    var = s.square() / (len(w) - 1)
    return {f"pca_{i}": Direction(vt[i], float(var[i].sqrt()), "pca", float(var[i] / var.sum())) for i in range(k)}


@torch.no_grad()
def nice_directions(nice: torch.nn.Module, w: torch.Tensor, k: int = 4) -> dict[str, Direction]:
    """The top-k principal axes of the identity code and of the attribute code of sampled W (code-space vectors)."""
    codes = nice.encode(w)
    out = {}
    for part, lo, hi in (("identity", 0, nice.id_dim), ("attribute", nice.id_dim, nice.dim)):
        for name, d in pca_directions(codes[:, lo:hi], min(k, hi - lo)).items():
            vector = torch.zeros(nice.dim)
            vector[lo:hi] = d.vector
            out[f"nice_{part}_{name.split('_')[1]}"] = Direction(vector, d.scale, f"nice_{part}", d.quality)
    return out


def fit_direction(w: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(unit normal of the least-squares linear fit target ~ w, R^2 of that fit)."""
    x = torch.cat([w - w.mean(0), torch.ones(len(w), 1)], dim=1).double()
    y = (target - target.mean()).double()
    coef = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)[:-1]
    pred = (w - w.mean(0)).double() @ coef
    r2 = 1 - (y - pred).square().sum() / y.square().sum().clamp_min(1e-12)
    return (coef / coef.norm().clamp_min(1e-12)).float(), float(r2)


@torch.no_grad()
def supervised_directions(G: torch.nn.Module, analyzer: Optional[torch.nn.Module] = None, n: int = 3000,
                          seed: int = 1, attributes: tuple[str, ...] = SUPERVISED, batch: int = 100,
                          progress: bool = True) -> dict[str, Direction]:
    """Directions whose moves change each attribute. For the distilled generator they are fitted on the exact
    factors of z (core.synthfaces.latent); for any other generator on what the analyzer reads in its faces."""
    from core.synthfaces import factor_index
    from core.synthfaces.latent import factors_from_z, is_distilled
    if n < 2 * (G.w_dim + 1):
        raise ValueError(f"a direction fit in {G.w_dim}-d W needs at least {2 * (G.w_dim + 1)} samples (twice its "
                         f"unknowns, else it fits noise), got {n}")
    if is_distilled(G):
        z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
        device = G.mapping.w_avg.device
        w = torch.cat([G.mapping(z[i:i + batch].to(device))[:, 0].cpu() for i in range(0, n, batch)])
        factors = factors_from_z(z)
    elif analyzer is None:
        raise ValueError("this generator's z does not map to SynthFaces factors: supervised directions need an "
                         "analyzer to read the factors of its faces")
    else:
        w = sample_w(G, n, seed)
        readings = []
        for i in tqdm(range(0, n, batch), disable=not progress, desc="labelling generated faces"):
            img = G.images_from_w(w[i:i + batch].to(G.mapping.w_avg.device)).clamp(0, 1)
            readings.append(analyzer(img).factors.cpu())
        factors = torch.cat(readings)
    out = {}
    for name in attributes:
        vector, r2 = fit_direction(w, factors[:, factor_index(name)])
        out[name] = Direction(vector, float(((w - w.mean(0)) @ vector).std()), "supervised", r2)
    return out


def save_directions(path: str | Path, dirs: dict[str, Direction], generator: str) -> Path:
    tensors = {name: d.vector for name, d in dirs.items()}
    meta = {name: {"scale": d.scale, "kind": d.kind, "quality": d.quality} for name, d in dirs.items()}
    return save_checkpoint(path, tensors, {"kind": "directions", "generator": generator, "directions": meta})


def load_directions(path_or_name: str | Path) -> dict[str, Direction]:
    """Stored directions, checked: every named direction has its tensor, a unit vector of finite values and a
    finite positive scale (a damaged file is a CheckpointError that says which direction is wrong)."""
    tensors, config = load_checkpoint(path_or_name)
    if config.get("kind") != "directions":
        raise CheckpointError(f"{path_or_name} holds {config.get('kind')!r}, not directions")
    meta = config.get("directions")
    if not isinstance(meta, dict) or not meta:
        raise CheckpointError(f"{path_or_name}: its config lists no directions")
    missing = sorted(set(meta) - set(tensors))
    if missing:
        raise CheckpointError(f"{path_or_name}: no tensor for direction(s) {', '.join(missing)} (tensors: "
                              f"{', '.join(sorted(tensors))})")
    out = {}
    for name, m in meta.items():
        vector = tensors[name]
        try:
            scale, quality, kind = float(m["scale"]), float(m["quality"]), str(m["kind"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path_or_name}: direction {name!r} lacks a numeric scale, quality or kind"
                                  ) from None
        if vector.ndim != 1 or not torch.isfinite(vector).all() or not (scale > 0 and scale < float("inf")):
            raise CheckpointError(f"{path_or_name}: direction {name!r} holds non-finite values or a bad scale")
        out[name] = Direction(vector.float(), scale, kind, quality)
    return out


def directions(name: str = "synthfaces_stylegan3") -> dict[str, Direction]:
    """The stored directions of a generator checkpoint (`<generator>_directions` beside it)."""
    try:
        generator = resolve_checkpoint(name)
    except ValueError:
        generator = CHECKPOINT_DIR / f"{name}.safetensors"
    path = generator.with_name(f"{generator.stem}_directions.safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"no directions for {name}: compute them with "
                                f"python -m core.directions --generator {name}")
    return load_directions(path)


def fitted(G: torch.nn.Module, dirs: Optional[dict[str, Direction]], why: str = "",
           name: str = "<generator>") -> tuple[dict[str, Direction], str]:
    """(directions, note): `dirs` when they fit G's W, else PCA computed now with a note saying why (`why`: none
    were found; or they do not fit this generator) and how to add supervised ones."""
    if dirs is None:
        return pca_directions(sample_w(G, 5000)), f"{why} (showing PCA directions only)".strip()
    wrong = [n for n, d in dirs.items() if not d.in_code_space and d.vector.numel() != G.w_dim]
    if wrong:
        return pca_directions(sample_w(G, 5000)), (f"the stored directions do not fit this generator's {G.w_dim}-d W "
                                                   f"({', '.join(wrong)}); recompute them with python -m "
                                                   f"core.directions --generator {name} (showing PCA directions only)")
    return dirs, ""


def for_generator(G: torch.nn.Module, name: str) -> tuple[dict[str, Direction], str]:
    """(directions, note) of a generator checkpoint given by path or name: the directions stored beside it, or PCA
    with a note (see `fitted`)."""
    try:
        return fitted(G, directions(name), name=name)
    except (FileNotFoundError, CheckpointError) as e:
        return fitted(G, None, str(e), name)


def apply(ws: torch.Tensor, edits: dict[str, float], dirs: dict[str, Direction],
          nice: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """ws [B, num_ws, w_dim] moved by alpha * scale along each named direction (NICE axes through `nice`)."""
    out = ws.clone()
    code_shift = None
    for name, alpha in edits.items():
        if alpha:
            d = dirs[name]
            step = (alpha * d.scale) * d.vector.to(ws.device, ws.dtype)
            if d.in_code_space:
                code_shift = step if code_shift is None else code_shift + step
            else:
                out = out + step
    if code_shift is not None:
        if nice is None:
            raise ValueError("NICE axes need the NICE model they were computed with")
        flat = out.reshape(-1, out.shape[-1])
        out = nice.decode(nice.encode(flat) + code_shift).reshape(out.shape)
    return out


class Editor:
    """A generator with its directions, for interactive editing: W per (seed, truncation) is cached, so moving a
    slider costs one synthesis pass. ROLES and OPTIONAL are what it takes from a model set (`editor_from`)."""

    ROLES: tuple[str, ...] = ("generator",)
    OPTIONAL: tuple[str, ...] = ("directions", "nice")

    def __init__(self, G: torch.nn.Module, dirs: dict[str, Direction], nice: Optional[torch.nn.Module] = None) -> None:
        self.G, self.dirs, self.nice = G, dirs, nice
        self._cache: dict[tuple[int, float], torch.Tensor] = {}

    def ws(self, seed: int, psi: float) -> torch.Tensor:
        key = (int(seed), round(float(psi), 4))
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            with torch.no_grad():
                self._cache[key] = self.G.mapping(self.G.z_from_seed(int(seed)), truncation_psi=float(psi))
        return self._cache[key]

    @torch.no_grad()
    def image(self, seed: int, psi: float, edits: dict[str, float] | None = None,
              transform: Optional[torch.Tensor] = None, w: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[3, H, W] image in [0, 1] of a seed (or of a given w [1, w_dim], e.g. an encoded upload), edited along
        the named directions, moved and turned by a StyleGAN3 input `transform` (networks.user_transform)."""
        ws = self.ws(seed, psi) if w is None else w.to(self.G.mapping.w_avg).unsqueeze(1).expand(-1, self.G.num_ws, -1)
        ws = apply(ws, edits or {}, self.dirs, self.nice)
        return (self.G.synthesis(ws, transform=transform, noise_mode="const")[0].float().cpu() + 1).mul(0.5).clamp(0, 1)


def editor_from(models: Any) -> tuple["Editor", str]:
    """The editor of a loaded model set (`core.models.load_models(set, Editor.ROLES, Editor.OPTIONAL)`): its
    generator, its directions (or PCA with a note), and the NICE identity and attribute axes when the set has a
    NICE for that generator; plus a note for the page."""
    G = models["generator"]
    dirs, note = fitted(G, models.get("directions"), models.notes.get("directions", ""))
    nice = models.get("nice")
    if nice is not None and nice.dim != G.w_dim:
        note, nice = f"{note} The model set's NICE does not fit this generator's W.".strip(), None
    elif nice is not None:
        dirs = {**dirs, **nice_directions(nice, sample_w(G, 5000).to(G.mapping.w_avg.device))}
    elif "nice" in models.notes and "has no" not in models.notes["nice"]:
        note = f"{note} NICE axes unavailable: {models.notes['nice']}".strip()
    return Editor(G, dirs, nice), note


def main(argv: list[str] | None = None) -> int:
    from core.analysis import load_analyzer
    from core.stylegan3 import Generator
    p = argparse.ArgumentParser(prog="python -m core.directions", description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="synthfaces_stylegan3")
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--pca", type=int, default=8)
    args = p.parse_args(argv)
    try:
        G = Generator.from_pretrained(args.generator)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from core.synthfaces.latent import is_distilled
    exact = is_distilled(G)
    if not 0 <= args.pca <= G.w_dim:
        print(f"error: --pca must be between 0 and W's {G.w_dim} dimensions, got {args.pca}", file=sys.stderr)
        return 2
    try:
        supervised = supervised_directions(G, None if exact else load_analyzer("synthfaces"), args.samples)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dirs = {**supervised, **pca_directions(sample_w(G, 10_000, seed=2), args.pca)}
    print("supervised directions fitted on the " + ("exact factors of z (the distilled generator)" if exact else
                                                    "analyzer's readings of generated faces"))
    path = resolve_checkpoint(args.generator)
    out = save_directions(path.with_name(f"{path.stem}_directions"), dirs, args.generator)
    for name, d in dirs.items():
        measure = "R^2" if d.kind == "supervised" else "var"
        print(f"{name:>16} {d.kind:>10}  {measure} {d.quality:.3f}  scale {d.scale:.3f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
