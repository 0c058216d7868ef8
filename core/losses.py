"""Losses of the disentanglement training (DisGAN on NICE codes); the VAE's loss lives beside it in core/vae.py.

Identity, landmark and contrastive terms read faces with the analyzer; the adversarial terms use two small
discriminators: one predicts the attribute readings from the identity code, the other the identity embedding
from the attribute code. The discriminators minimise their prediction error; NICE minimises how far their
predictions stray from the batch mean (a confusion loss: the codes should carry nothing to predict from).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["identity_loss", "landmark_loss", "contrastive_loss", "CodeDiscriminator", "discriminator_loss",
           "confusion_loss"]


def identity_loss(embedding: torch.Tensor, donor_embedding: torch.Tensor) -> torch.Tensor:
    """Switch loss: 1 - cosine between the mixed face's identity embedding and the identity donor's."""
    return (1 - F.cosine_similarity(embedding, donor_embedding.detach(), dim=1)).mean()


def landmark_loss(landmarks: torch.Tensor, donor_landmarks: torch.Tensor, image_size: int) -> torch.Tensor:
    """Mean absolute landmark offset (as a fraction of the image side) from the attribute donor's landmarks."""
    if landmarks.shape != donor_landmarks.shape:
        raise ValueError(f"landmark shapes differ: {list(landmarks.shape)} vs {list(donor_landmarks.shape)}")
    return (landmarks - donor_landmarks.detach()).abs().mean() / image_size


def contrastive_loss(codes: torch.Tensor, embeddings: torch.Tensor, same: float = 0.7, different: float = 0.3,
                     margin: float = 1.0) -> torch.Tensor:
    """Pull together identity codes of faces the analyzer calls the same person (embedding cosine >= `same`),
    push apart, up to `margin`, those it calls different (cosine <= `different`); pairs in between are ignored.
    Codes are L2-normalised first, so the margin is on the unit sphere."""
    z = F.normalize(codes, dim=1)
    e = F.normalize(embeddings.detach(), dim=1)
    sim = e @ e.t()
    dist = torch.cdist(z, z)
    off = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    pos = (sim >= same) & off
    neg = (sim <= different) & off
    terms = []
    if pos.any():
        terms.append(dist[pos].square().mean())
    if neg.any():
        terms.append(F.relu(margin - dist[neg]).square().mean())
    return torch.stack(terms).sum() if terms else codes.sum() * 0


class CodeDiscriminator(torch.nn.Module):
    """MLP from one code to what the other code should own (attribute readings, or an identity embedding)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, unit_output: bool = False) -> None:
        super().__init__()
        self.unit_output = unit_output
        self.net = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.LeakyReLU(0.2),
                                       torch.nn.Linear(hidden, hidden), torch.nn.LeakyReLU(0.2),
                                       torch.nn.Linear(hidden, out_dim))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        y = self.net(code)
        return F.normalize(y, dim=1) if self.unit_output else torch.sigmoid(y)


def discriminator_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The discriminator's own objective: mean squared prediction error."""
    return (pred - target.detach()).square().mean()


def confusion_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """NICE's adversarial objective: the discriminator's predictions should not vary from the batch-mean target."""
    return (pred - target.detach().mean(0, keepdim=True)).square().mean()
