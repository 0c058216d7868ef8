"""Identity distance of mixed faces: analyzer cosine similarity of `mix(A, B)` to the identity donor A and to the
attribute donor B, over a fixed, seeded evaluation set of pairs. A good identity/attribute split scores high
towards A and low towards B."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class MixScores:
    to_identity_donor: float  # mean cosine(mix, A)
    to_attribute_donor: float  # mean cosine(mix, B)
    pairs: int


def split_w_mix(id_dim: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The raw-W baseline: the first id_dim coordinates from A, the rest from B."""
    return lambda a, b: torch.cat([a[:, :id_dim], b[:, id_dim:]], dim=1)


@torch.no_grad()
def mix_scores(sample_w: Callable[[int, torch.Generator], torch.Tensor], render: Callable[[torch.Tensor], torch.Tensor],
               analyzer: torch.nn.Module, mix: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               pairs: int = 256, seed: int = 123, batch: int = 64) -> MixScores:
    """Score a mixing function over `pairs` seeded (A, B) pairs; render maps w [B, w_dim] to images in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    to_a, to_b = [], []
    for start in range(0, pairs, batch):
        n = min(batch, pairs - start)
        a, b = sample_w(n, gen), sample_w(n, gen)
        ea = analyzer(render(a).clamp(0, 1)).embedding
        eb = analyzer(render(b).clamp(0, 1)).embedding
        em = analyzer(render(mix(a, b)).clamp(0, 1)).embedding
        to_a.append((em * ea).sum(1))
        to_b.append((em * eb).sum(1))
    return MixScores(float(torch.cat(to_a).mean()), float(torch.cat(to_b).mean()), pairs)


@dataclass
class FaceDistances:
    """Face-recognition distances of mixes to their donors (the DisGAN seed's identity metric on real faces)."""

    to_identity_donor: float  # mean distance(mix, A): low for a good mix
    to_attribute_donor: float  # mean distance(mix, B): high for a good mix
    same_person_rate: float  # share of mixes the recogniser calls the identity donor
    pairs: int  # pairs where all three faces were found


def face_distances(identity: list, attributes: list, mixes: list, backend) -> FaceDistances:
    """Distances between faces in uint8 RGB pictures ([H, W, 3] each) by a real-face backend (dlib's descriptor or
    ArcFace, core.analysis.faces_backend); pairs where a face is not found are left out and counted."""
    to_a, to_b, same = [], [], []
    for a, b, m in zip(identity, attributes, mixes):
        found = [backend.detect(x) for x in (a, b, m)]
        if not all(f and f[0].embedding is not None for f in found):
            continue
        ea, eb, em = (max(f, key=lambda face: face.area).embedding for f in found)
        to_a.append(backend.distance(em, ea))
        to_b.append(backend.distance(em, eb))
        same.append(to_a[-1] < backend.same_person_distance)
    if not to_a:
        raise ValueError("the face backend found no face in any pair; real-face distances need real faces")
    n = len(to_a)
    return FaceDistances(sum(to_a) / n, sum(to_b) / n, sum(same) / n, n)


@dataclass
class TrueMixScores:
    """A mix against the true mix, which only the distilled generator has: render(A's identity factors, B's
    attribute factors)."""

    identity_cosine: float  # mean analyzer cosine(mix, true mix): high for a good mix
    l1: float  # mean absolute pixel difference in [0, 1] from the true mix: low for a good mix
    pairs: int


@torch.no_grad()
def true_mix_scores(G: torch.nn.Module, analyzer: torch.nn.Module,
                    mix: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pairs: int = 256, seed: int = 123,
                    batch: int = 64) -> TrueMixScores:
    """Score a mixing function on W (`mix(w_a, w_b)`) of the distilled generator G against the true mix, over
    `pairs` seeded pairs of z (mapped without truncation, so that factors_from_z(z) are their exact factors)."""
    from core.synthfaces.factors import NUM_IDENTITY
    from core.synthfaces.latent import Z_DIM, factors_from_z, is_distilled
    from core.synthfaces.render import render
    if not is_distilled(G):
        raise ValueError("the true mix needs the distilled generator, whose z maps to SynthFaces factors")
    gen = torch.Generator().manual_seed(seed)
    device = G.mapping.w_avg.device
    cosines, l1 = [], []
    for start in range(0, pairs, batch):
        n = min(batch, pairs - start)
        z_a, z_b = torch.randn(n, Z_DIM, generator=gen), torch.randn(n, Z_DIM, generator=gen)
        f_a, f_b = factors_from_z(z_a), factors_from_z(z_b)
        true = render(torch.cat([f_a[:, :NUM_IDENTITY], f_b[:, NUM_IDENTITY:]], 1), G.img_resolution)[0].to(device)
        mixed = G.images_from_w(mix(G.mapping(z_a.to(device))[:, 0], G.mapping(z_b.to(device))[:, 0])).clamp(0, 1)
        cosines.append((analyzer(mixed).embedding * analyzer(true).embedding).sum(1).cpu())
        l1.append((mixed - true).abs().flatten(1).mean(1).cpu())
    return TrueMixScores(float(torch.cat(cosines).mean()), float(torch.cat(l1).mean()), pairs)
