"""Uploads into W: a picture checked (readable, not huge, a face the analyzer knows) and projected into a generator's
W, by the model set's encoder (core.encoder) and an optional short optimisation in the analyzer's feature space
(identity embedding, factors, landmarks, plus a light pixel term), or by that optimisation alone where the set has
no encoder. Real photos, for real model sets, are detected, FFHQ-aligned and inverted (core.inversion). Used by
face mixing and by the sliders' uploads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image

from core.imaging import ImageInputError, read_image


class FaceInputError(ImageInputError):
    """An input face cannot be used; the message says why in words a user understands."""


def load_face_image(path: str | Path, resolution: int) -> torch.Tensor:
    """An uploaded picture as a [3, R, R] tensor in [0, 1]: centre-cropped to a square and resized."""
    try:
        array, _ = read_image(path)
    except ImageInputError as e:
        raise FaceInputError(str(e)) from None
    h, w = array.shape[:2]
    side = min(w, h)
    im = Image.fromarray(array).crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side,
                                      (h - side) // 2 + side))
    im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _features(analysis, size: int) -> torch.Tensor:
    """Analyzer features used to recognise faces: embedding, factors and landmarks (as image fractions)."""
    return torch.cat([analysis.embedding, analysis.factors, (analysis.landmarks / size).flatten(1)], dim=1)


class FaceCheck:
    """Is this a face of the world the analyzer knows? Two tests, each calibrated on reference faces: the landmark
    heatmaps must be as peaked as on faces, and the analyzer features must lie near the reference faces'
    (Mahalanobis distance). Thresholds sit beyond every held-out reference face by a margin."""

    def __init__(self, analyzer: torch.nn.Module, reference: torch.Tensor, distance_margin: float = 1.5,
                 confidence_margin: float = 0.7) -> None:
        half = len(reference) // 2
        with torch.no_grad():
            fit = _features(analyzer(reference[:half]), reference.shape[-1]).double()
            held = _features(analyzer(reference[half:]), reference.shape[-1]).double()
            held_conf = analyzer.landmark_confidence(reference[half:])
        self.analyzer, self.mean = analyzer, fit.mean(0)
        cov = torch.cov((fit - self.mean).T)
        cov += torch.eye(len(cov), dtype=cov.dtype) * cov.diagonal().mean() * 0.05  # shrinkage: stable inverse
        self.precision = torch.linalg.inv(cov)
        self.max_distance = float(self._distance(held).max()) * distance_margin
        self.min_confidence = float(held_conf.min()) * confidence_margin

    def _distance(self, features: torch.Tensor) -> torch.Tensor:
        d = features.double() - self.mean
        return ((d @ self.precision) * d).sum(1).clamp_min(0).sqrt()

    @torch.no_grad()
    def measure(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B] feature distances, [B] landmark confidences) of [B, 3, H, W] images in [0, 1]."""
        return (self._distance(_features(self.analyzer(images), images.shape[-1])),
                self.analyzer.landmark_confidence(images).double())

    def is_face(self, images: torch.Tensor) -> torch.Tensor:
        distance, confidence = self.measure(images)
        return (distance <= self.max_distance) & (confidence >= self.min_confidence)

    def require_face(self, image: torch.Tensor) -> None:
        """Raise FaceInputError when [3, H, W] holds no face the analyzer can read."""
        distance, confidence = (float(v[0]) for v in self.measure(image.unsqueeze(0)))
        if not np.isfinite(distance) or distance > self.max_distance or confidence < self.min_confidence:
            raise FaceInputError(
                f"no face found in the image (landmark confidence {confidence:.2f}, faces have at least "
                f"{self.min_confidence:.2f}; distance from known faces {distance:.0f}, faces lie within "
                f"{self.max_distance:.0f}). Upload a frontal face picture like the SynthFaces examples.")


@dataclass
class Projection:
    w: torch.Tensor  # [1, w_dim]
    image: torch.Tensor  # [3, H, W] the generated face
    identity_similarity: float  # analyzer cosine between the upload and its projection
    steps: int  # optimisation steps after the start
    encoded: bool = False  # started from the encoder's answer (else from the best of random starts)


class RealPhotoError(FaceInputError):
    """A real photo given to the embedded (SynthFaces) world: it was found and aligned, but this generator only
    draws SynthFaces faces, so it cannot be projected. Carries the aligned crop to show."""

    def __init__(self, message: str, aligned: np.ndarray) -> None:
        super().__init__(message)
        self.aligned = aligned


class Uploads:
    """Uploads into a generator's W: a picture is checked (readable, not huge, a face) and projected, by the
    model set's encoder where it has one (then optionally refined), else by optimisation alone.

    Two worlds: the embedded one (a SynthFaces analyzer; uploads are checked against SynthFaces renders and
    projected in the analyzer's feature space) and real model sets (an identity model without factors, e.g.
    insightface's ArcFace; uploads are real photos: detected, FFHQ-aligned and inverted by core.inversion)."""

    def __init__(self, G: torch.nn.Module, analyzer: torch.nn.Module, encoder: Optional[torch.nn.Module] = None,
                 reference: Optional[torch.Tensor] = None, faces: Optional[Callable[[], object]] = None) -> None:
        # frozen: projection back-propagates into w only, not into the models' weights
        self.G, self.analyzer = (m.eval().requires_grad_(False) for m in (G, analyzer))
        self.encoder = encoder.eval().requires_grad_(False) if encoder is not None else None
        self.device = G.mapping.w_avg.device
        self.resolution = G.img_resolution
        self._check = FaceCheck(analyzer, reference) if reference is not None else None
        self._faces_factory, self._faces = faces, None

    @classmethod
    def from_models(cls, models: Any) -> "Uploads":
        """Uploads for a loaded model set: its generator, its analyzer (else insightface's models under
        $LATENT_LAB_INSIGHTFACE, default ~/.insightface) and its encoder when it has one; the embedded world checks
        uploads against SynthFaces renders."""
        import os

        from core.analysis import FaceAnalyzer, faces_backend, load_analyzer
        from core.synthfaces import render_faces
        G, analyzer = models["generator"], models.get("analyzer")
        device = G.mapping.w_avg.device
        if analyzer is None:
            root = os.environ.get("LATENT_LAB_INSIGHTFACE", "~/.insightface")
            analyzer = load_analyzer(f"insightface:{root}", device=str(device))
        encoder = models.get("encoder")
        if encoder is not None and (encoder.w_dim != G.w_dim or encoder.resolution != G.img_resolution):
            encoder = None  # an encoder for another generator: optimisation alone
        reference = None
        if isinstance(analyzer, FaceAnalyzer):
            reference = render_faces(torch.arange(10_000, 10_512), seed=4242, resolution=G.img_resolution
                                     ).images.to(device)
        return cls(G, analyzer, encoder, reference, faces_backend)

    @property
    def real(self) -> bool:
        """True for real model sets (no SynthFaces references to check uploads against)."""
        return self._check is None

    @property
    def faces(self):
        """The real-face backend for photos (made on first use: loading dlib's models takes a moment), or None."""
        if self._faces is None and self._faces_factory is not None:
            self._faces = _optional_faces(self._faces_factory)
        return self._faces

    def render(self, w: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images in [0, 1] (on the CPU) of W vectors [B, w_dim]."""
        with torch.no_grad():
            return self.G.images_from_w(w.to(self.device)).clamp(0, 1).float().cpu()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[B, D] analyzer identity embeddings (unit norm, on the CPU) of [B, 3, H, W] images."""
        with torch.no_grad():
            return self.analyzer(images.to(self.device)).embedding.cpu()

    def similarity(self, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """[B] analyzer cosine similarity of each image to its reference (one reference broadcasts)."""
        return (self.embed(images) * self.embed(reference)).sum(1)

    def photo(self, path: str | Path) -> torch.Tensor:
        """An uploaded picture as the generator's input face [3, R, R]: a real photo is detected and FFHQ-aligned
        (real model sets); in the embedded world a SynthFaces-like picture is centre-cropped and checked, and a
        real photo raises RealPhotoError with its aligned crop."""
        from core.analysis.photos import NoFaceError, find_face
        if self.real:
            if self.faces is None:
                raise FaceInputError("real photos need a face detector: pip install dlib-bin face-recognition-models,"
                                     " or set LATENT_LAB_FACES=insightface:ROOT")
            array, _ = read_image(path)
            try:
                face = find_face(array, self.faces, self.resolution)
            except NoFaceError as e:
                raise FaceInputError(str(e)) from None
            return torch.from_numpy(face.ffhq.astype(np.float32) / 255).permute(2, 0, 1).contiguous()
        image = load_face_image(path, self.resolution)
        try:
            self.check_face(image)
        except FaceInputError:
            if self.faces is None:
                raise
            try:
                face = find_face(read_image(path)[0], self.faces, 256)
            except (NoFaceError, ImageInputError):
                raise FaceInputError("no face found in the image, neither a SynthFaces-like face nor a real one")
            raise RealPhotoError(
                "this looks like a real photo: its face was found and aligned (shown), but the embedded generator "
                "only draws SynthFaces faces, so it cannot be projected into it. Start the suite with a real model "
                "set (e.g. --models ffhq with a NICE for FFHQ W) to mix real faces.", face.ffhq) from None
        return image

    def check_face(self, image: torch.Tensor) -> None:
        """Raise FaceInputError when an uploaded [3, R, R] image holds no face (no check without references)."""
        if self._check is not None:
            self._check.require_face(image.to(self.device))

    def project(self, image: torch.Tensor, steps: int = 60, lr: float = 0.03, starts: int = 16, seed: int = 0,
                callback: Optional[Callable[[int, int], None]] = None) -> Projection:
        """Find w whose face reads like `image` [3, R, R] to the analyzer: the encoder's answer where there is an
        encoder (else the best of `starts` random faces), then `steps` of Adam on the analyzer-feature loss (0: the
        start as it is); callback(step, steps) reports progress."""
        if image.shape != (3, self.resolution, self.resolution):
            raise FaceInputError(f"expected a [3, {self.resolution}, {self.resolution}] image, got {list(image.shape)}")
        if not torch.isfinite(image).all():
            raise FaceInputError("the image holds NaN or infinite values")
        if self.real:
            from core.inversion import invert
            result = invert(self.G, image, self.analyzer, steps=steps, seed=seed, callback=callback)
            similarity = float(self.similarity(result.image[None], image[None])[0])
            return Projection(result.w, result.image, similarity, steps)
        target_img = image.to(self.device).unsqueeze(0).clamp(0, 1)
        self.check_face(image)
        with torch.no_grad():
            target = self.analyzer(target_img)
            if self.encoder is not None:
                start = self.encoder(target_img)
            else:
                gen = torch.Generator().manual_seed(seed)
                candidates = self.G.mapping(torch.randn(starts, self.G.z_dim, generator=gen).to(self.device),
                                            truncation_psi=0.7)[:, 0]
                start = candidates[int(self._loss(candidates, target, target_img).argmin())].unsqueeze(0)
        w = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        for step in range(steps):
            loss = self._loss(w, target, target_img).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if callback is not None:
                callback(step + 1, steps)
        w = w.detach()
        img = self.render(w)
        return Projection(w, img[0], float(self.similarity(img, target_img.cpu())[0]), steps, self.encoder is not None)

    def _loss(self, w: torch.Tensor, target, target_img: torch.Tensor) -> torch.Tensor:
        """[B] projection losses: identity (1 - cosine), factors, landmarks (fraction of the side), pixels."""
        img = self.G.images_from_w(w).clamp(0, 1)
        out = self.analyzer(img)
        size = img.shape[-1]
        return ((1 - (out.embedding * target.embedding).sum(1))
                + (out.factors - target.factors).square().mean(1) * 4
                + (out.landmarks - target.landmarks).abs().mean((1, 2)) / size * 10
                + (img - target_img).square().mean((1, 2, 3)))

def _optional_faces(make):
    """A real-face backend, or None where none is installed."""
    from core.analysis import FaceModelUnavailable
    try:
        return make()
    except FaceModelUnavailable:
        return None
