"""Face mixing: the identity of face A on the expression, pose and glasses of face B, through a trained NICE.

Faces come from seeds or from uploaded pictures (projected into W by `core.projection.Uploads`: the encoder, then an
optional short optimisation). Every result carries the analyzer's cosine similarity to the identity donor and to the
attribute donor.
"""
from __future__ import annotations

from typing import Any

import torch

from core.projection import Uploads


class FaceMixer:
    """Generator + analyzer + NICE: faces by seed or upload, mixes, grids and interpolation strips with scores."""

    ROLES: tuple[str, ...] = ("generator", "nice")  # what it takes from a model set
    OPTIONAL: tuple[str, ...] = ("analyzer", "encoder")  # without an analyzer: insightface's models

    def __init__(self, nice: torch.nn.Module, uploads: Uploads) -> None:
        if nice.dim != uploads.G.w_dim:
            raise ValueError(f"the NICE model works on {nice.dim}-d latents but the generator's W is "
                             f"{uploads.G.w_dim}-d")
        self.nice, self.uploads = nice.eval().requires_grad_(False), uploads
        self.G, self.analyzer, self.device = uploads.G, uploads.analyzer, uploads.device
        self.render, self.embed, self.similarity = uploads.render, uploads.embed, uploads.similarity
        self.photo, self.check_face, self.project = uploads.photo, uploads.check_face, uploads.project

    @property
    def real(self) -> bool:
        return self.uploads.real

    @classmethod
    def from_models(cls, models: Any) -> "FaceMixer":
        """The mixer of a loaded model set (`core.models.load_models(set, ROLES, OPTIONAL)`)."""
        return cls(models["nice"], Uploads.from_models(models))

    @classmethod
    def load(cls, models: str = "embedded", device: str = "cpu") -> "FaceMixer":
        """The mixer of model set `models`, through the one loader."""
        from core.models import load_models
        return cls.from_models(load_models(models, cls.ROLES, cls.OPTIONAL, device))

    def w_from_seed(self, seed: int, psi: float = 0.7) -> torch.Tensor:
        with torch.no_grad():
            return self.G.mapping(self.G.z_from_seed(int(seed)), truncation_psi=float(psi))[:, 0]

    def mix(self, w_identity: torch.Tensor, w_attributes: torch.Tensor) -> torch.Tensor:
        """W of identity donors [B, w_dim] on attribute donors [B, w_dim]."""
        with torch.no_grad():
            return self.nice.mix(w_identity.to(self.device), w_attributes.to(self.device))

    def grid(self, w_identities: torch.Tensor, w_attributes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [N*M, 3, H, W] of every identity (rows) on every attribute donor (columns), and [N*M, 2] scores
        (similarity to the row's identity donor, to the column's attribute donor)."""
        n, m = len(w_identities), len(w_attributes)
        images = self.render(self.mix(w_identities.repeat_interleave(m, dim=0), w_attributes.repeat(n, 1)))
        # each donor is rendered and read once; its embedding is repeated over its row or column
        e_id, e_attr = self.embed(self.render(w_identities)), self.embed(self.render(w_attributes))
        return images, _pair_scores(self.embed(images), e_id.repeat_interleave(m, dim=0), e_attr.repeat(n, 1))

    def strip(self, w_a: torch.Tensor, w_b: torch.Tensor, part: str,
              steps: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
        """Move only the identity ('identity') or only the attributes ('attributes') of A towards B through NICE, or
        all of A in a straight line in W ('w'): images [steps, 3, H, W] and [steps, 2] similarities to A and to B."""
        if not 2 <= steps <= 32:
            raise ValueError("an interpolation strip has 2 to 32 steps")
        t = torch.linspace(0, 1, steps, device=self.device)
        w_a, w_b = w_a.to(self.device), w_b.to(self.device)
        with torch.no_grad():
            w = w_a.lerp(w_b, t[:, None]) if part == "w" else self.nice.interpolate(w_a, w_b, t, part)
            images = self.render(w)
        return images, self.scores(images, self.render(w_a), self.render(w_b))

    def scores(self, images: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """[B, 2] analyzer similarity of each image to `first` and to `second` (each [B] or [1] images)."""
        return _pair_scores(self.embed(images), self.embed(first), self.embed(second))



def _pair_scores(embedding: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """[B, 2] cosine of each embedding to `first` and to `second` (unit embeddings, [B] or [1] each)."""
    return torch.stack([(embedding * first).sum(1), (embedding * second).sum(1)], dim=1)
