"""The VAE of the LFW notebook, and a convolutional variant.

MLP (the notebook's): a 45x45x3 image flattened to 6075 values; encoder 6075-1500-1000 with BatchNorm and ReLU;
linear heads for mu and logvar; decoder dim_z-1000-1500-6075 (BatchNorm + ReLU between, Sigmoid at the end).
Loss: summed binary cross-entropy of the reconstruction plus beta times the KL divergence to N(0, I), per image.
`variational=False` is the notebook's plain autoencoder baseline: the same networks with a deterministic code
(no logvar head, no sampling), trained on the reconstruction loss alone (beta 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.checkpoints import Pretrained
from core.metrics.ssim import ssim
from core.synthfaces.factors import factor_index

SIDE = 45
VAL_FIRST_IDENTITY = 2_000_000  # the validation split's first identity: identities no training set uses
INPUT = SIDE * SIDE * 3
ARCHITECTURES = ("mlp", "conv")


@dataclass
class VAEOutput:
    recon: torch.Tensor  # [B, 3, 45, 45] in [0, 1]
    mu: torch.Tensor
    logvar: torch.Tensor


def _dense(a: int, b: int) -> list[torch.nn.Module]:
    return [torch.nn.Linear(a, b), torch.nn.BatchNorm1d(b), torch.nn.ReLU(inplace=True)]


class VAE(torch.nn.Module, Pretrained):
    """Images [B, 3, 45, 45] in [0, 1] <-> codes [B, dim_z]; a VAE, or with variational=False an autoencoder."""

    kind = "vae"
    config_limits = {"dim_z": 4096, "width": 1024}

    def __init__(self, dim_z: int = 100, architecture: str = "mlp", width: int = 32, variational: bool = True) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if dim_z < 1:
            raise ValueError("dim_z must be >= 1")
        self.dim_z, self.architecture, self.variational = dim_z, architecture, variational
        if architecture == "mlp":
            self.encoder = torch.nn.Sequential(*_dense(INPUT, 1500), *_dense(1500, 1000))
            self.decoder = torch.nn.Sequential(*_dense(dim_z, 1000), *_dense(1000, 1500), torch.nn.Linear(1500, INPUT),
                                               torch.nn.Sigmoid())
            features = 1000
        else:  # 45 -> 22 -> 11 -> 5 by stride-2 convs; 6 -> 12 -> 24 -> 48 back, cropped to 45
            w = width
            self.encoder = torch.nn.Sequential(
                torch.nn.Conv2d(3, w, 4, 2, 1), torch.nn.BatchNorm2d(w), torch.nn.ReLU(inplace=True),
                torch.nn.Conv2d(w, 2 * w, 4, 2, 1), torch.nn.BatchNorm2d(2 * w), torch.nn.ReLU(inplace=True),
                torch.nn.Conv2d(2 * w, 4 * w, 4, 2, 1), torch.nn.BatchNorm2d(4 * w), torch.nn.ReLU(inplace=True),
                torch.nn.Flatten())
            features = 4 * w * 5 * 5
            self.decoder = torch.nn.Sequential(
                torch.nn.Linear(dim_z, 4 * w * 6 * 6), torch.nn.ReLU(inplace=True),
                torch.nn.Unflatten(1, (4 * w, 6, 6)),
                torch.nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), torch.nn.BatchNorm2d(2 * w),
                torch.nn.ReLU(inplace=True),
                torch.nn.ConvTranspose2d(2 * w, w, 4, 2, 1), torch.nn.BatchNorm2d(w), torch.nn.ReLU(inplace=True),
                torch.nn.ConvTranspose2d(w, 3, 4, 2, 1), torch.nn.Sigmoid())
        self.mu = torch.nn.Linear(features, dim_z)
        self.logvar = torch.nn.Linear(features, dim_z) if variational else None

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, SIDE, SIDE):
            raise ValueError(f"VAE images must be [batch, 3, {SIDE}, {SIDE}] in [0, 1], got {list(images.shape)}; "
                             "resize with core.vae.prepare_images")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        return images.flatten(1) if self.architecture == "mlp" else images

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | x); an autoencoder's code is mu, with logvar 0."""
        h = self.encoder(self._check(images))
        mu = self.mu(h)
        return mu, self.logvar(h) if self.logvar is not None else torch.zeros_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x | z), [B, 3, 45, 45] in [0, 1]."""
        if z.ndim != 2 or z.shape[1] != self.dim_z:
            raise ValueError(f"codes must be [batch, {self.dim_z}], got {list(z.shape)}")
        x = self.decoder(z)
        return x.reshape(-1, 3, SIDE, SIDE) if self.architecture == "mlp" else x[..., 1:SIDE + 1, 1:SIDE + 1]

    def forward(self, images: torch.Tensor, sample: bool = True) -> VAEOutput:
        mu, logvar = self.encode(images)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample and self.variational else mu  # reparam.
        return VAEOutput(self.decode(z), mu, logvar)


def vae_loss(images: torch.Tensor, out: VAEOutput,
             beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction BCE, KL), each summed over pixels / code dimensions and averaged over the batch."""
    bce = F.binary_cross_entropy(out.recon.flatten(1), images.flatten(1), reduction="sum") / len(images)
    kl = -0.5 * (1 + out.logvar - out.mu.square() - out.logvar.exp()).sum() / len(images)
    return bce + beta * kl, bce, kl


def analyzer_terms(analyzer: torch.nn.Module, recon: torch.Tensor,
                   images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(perceptual, readings): the frozen analyzer's judgement of reconstructions against their inputs, from one
    pass over each, both averaged over the batch. Pixel BCE at 45 px leaves out what a few pixels carry (a smile
    is the height of the mouth's corners, an eyeglass frame a line one pixel wide).
    - perceptual: the mean squared difference of the analyzer's early feature maps (`raw_with_maps`), summed over
      its three stages (as the deep feature consistent VAE of Hou et al., 2017, does with VGG);
    - readings: the squared error of every factor reading in [0, 1] and of the landmarks (fractions of the side,
      x 10), summed per image."""
    def look(x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        maps, _, logits, landmarks = analyzer.raw_with_maps(x)  # float32 even under a bf16 autocast
        return [m.float() for m in maps], torch.cat([torch.sigmoid(logits.float()), landmarks.float().flatten(1) * 10],
                                                    dim=1)
    with torch.no_grad():
        target_maps, target_readings = look(images)
    maps, readings = look(recon)
    perceptual = sum(((a - b).square().flatten(1).mean(1) for a, b in zip(maps, target_maps)),
                     torch.zeros(len(recon), device=recon.device)).mean()
    return perceptual, (readings - target_readings).square().sum(1).mean()


@torch.no_grad()
def evaluate_vae(model: VAE, images: torch.Tensor, beta: float, batch: int = 500) -> dict[str, float]:
    """Validation: negative ELBO (BCE + KL, nats per image), its terms, the beta-weighted loss and mean SSIM.

    An autoencoder has no posterior, so it gets no ELBO or KL: its loss is the reconstruction BCE alone."""
    model.eval()
    total = {"bce": 0.0, "kl": 0.0, "ssim": 0.0}
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        out = model(x, sample=True)
        _, bce, kl = vae_loss(x, out, beta)
        total["bce"] += bce.item() * len(x)
        total["kl"] += kl.item() * len(x)
        total["ssim"] += ssim(model(x, sample=False).recon, x).sum().item()
    n = len(images)
    bce, kl = total["bce"] / n, total["kl"] / n
    if not model.variational:
        return {"val_bce": bce, "val_loss": bce, "val_ssim": total["ssim"] / n}
    return {"val_neg_elbo": bce + kl, "val_bce": bce, "val_kl": kl, "val_loss": bce + beta * kl,
            "val_ssim": total["ssim"] / n}


def prepare_images(images: torch.Tensor) -> torch.Tensor:
    """Any [B, 3, H, W] images in [0, 1] -> the VAE's 45x45 (area-averaged, so small faces stay sharp)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [batch, 3, H, W], got {list(images.shape)}")
    return F.interpolate(images, size=(SIDE, SIDE), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@torch.no_grad()
def random_faces(model: VAE, count: int, seed: int = 0) -> torch.Tensor:
    """Decode codes drawn from N(0, I)."""
    model.eval()
    z = torch.randn(count, model.dim_z, generator=torch.Generator().manual_seed(seed))
    return model.decode(z)


@torch.no_grad()
def latent_means(model: VAE, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model.encode(images[i:i + batch])[0] for i in range(0, len(images), batch)])


@torch.no_grad()
def interpolate(model: VAE, a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """Decoded straight line between the latent means of images a and b ([steps, 3, 45, 45])."""
    mu = latent_means(model, torch.stack([a, b]))
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    return model.decode(mu[0:1].lerp(mu[1:2], t))


def has_attribute(factors: torch.Tensor, name: str) -> torch.Tensor:
    """Boolean mask: the ground-truth attribute is present (binary factors) or high (> 0.5, continuous)."""
    return factors[:, factor_index(name)] > 0.5


def attribute_direction(codes: torch.Tensor, factors: torch.Tensor, name: str) -> torch.Tensor:
    """Mean code of images with the attribute minus mean code of those without (the notebook's arithmetic)."""
    mask = has_attribute(factors, name)
    if mask.all() or not mask.any():
        raise ValueError(f"need images both with and without {name!r} to find its direction")
    return codes[mask].mean(0) - codes[~mask].mean(0)


@torch.no_grad()
def edit(model: VAE, images: torch.Tensor, direction: torch.Tensor, strength: float) -> torch.Tensor:
    """Decode (latent mean + strength * direction)."""
    return model.decode(latent_means(model, images) + strength * direction)


EDIT_ATTRIBUTES = ("smile", "sunglasses", "eyeglasses")


class VAEEditor:
    """A VAE (or the autoencoder baseline) with the notebook's attribute vectors: the mean code of labelled
    SynthFaces faces with each attribute minus the mean code of those without. Used by the VAE tab."""

    def __init__(self, model: VAE, faces: int = 2000, seed: int = 0) -> None:
        from core.synthfaces import render_faces
        self.model = model.eval()
        self.device = next(model.parameters()).device
        batch = render_faces(torch.arange(50_000, 50_000 + faces), seed=seed)
        codes = latent_means(model, prepare_images(batch.images).to(self.device)).cpu()
        self.directions = {name: attribute_direction(codes, batch.factors, name) for name in EDIT_ATTRIBUTES}


    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructions, SSIM to the input) of any [B, 3, H, W] images in [0, 1], at 45x45."""
        x = prepare_images(images).to(self.device)
        recon = self.model(x, sample=False).recon
        return recon.cpu(), ssim(recon, x).cpu()

    def sample(self, count: int, seed: int) -> torch.Tensor:
        """Faces decoded from codes drawn from N(0, I) (for the autoencoder, codes it was never trained on)."""
        return random_faces(self.model, count, seed).cpu()

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
        """The straight line between two images' codes, decoded ([steps, 3, 45, 45])."""
        pair = prepare_images(torch.stack([a, b])).to(self.device)
        return interpolate(self.model, pair[0], pair[1], steps).cpu()

    def edit(self, image: torch.Tensor, strengths: dict[str, float]) -> torch.Tensor:
        """[3, 45, 45]: the image's code moved by strength x each named attribute vector, decoded."""
        unknown = sorted(set(strengths) - set(self.directions))
        if unknown:
            raise ValueError(f"unknown attribute(s) {unknown}; known: {', '.join(self.directions)}")
        shift = sum((s * self.directions[n] for n, s in strengths.items()), torch.zeros(self.model.dim_z))
        return edit(self.model, prepare_images(image[None]).to(self.device), shift.to(self.device), 1.0)[0].cpu()
