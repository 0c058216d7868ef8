"""The distillation's config (`configs/distill_*.yaml`): the generator's size, the loss terms and their weights,
the phases (`adversarial_from`, `analyzer_from`), the rate schedule and where a run starts (`init_from`). Every
setting is one the shipped recipe, its fine-tune or a pilot in the lab notebook (docs/distill/README.md) uses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from core.synthfaces.latent import Z_DIM
from core.train.rundir import RunConfig


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX). Without it bfloat16 is emulated: a
    64-channel convolution ran 100x slower than in float32 on an AVX2-only EPYC, a training step 12x slower."""
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported",
                                                                         "_is_amx_tile_supported"))


@dataclass
class DistillConfig(RunConfig):
    """Schema of configs/distill_*.yaml."""

    name: str = "distill_synthfaces64"
    may_be_zero: ClassVar[tuple[str, ...]] = ("steps",)  # with init_from: ship the start as built, untrained
    resolution: int = 64
    w_dim: int = 256
    mapping_layers: int = 2  # trained layers; with quantize_glasses one built layer goes in front of them
    mapping_lr_multiplier: float = 0.01
    quantize_glasses: bool = False  # the mapping's first layer reads the glasses coordinate as its kind: a fixed,
    # built layer (core.stylegan3.quantize) that makes W jump at the cuts, which trained layers never learn to do
    init_from: str = ""  # start from this generator (checkpoint path or embedded name; same config), not at random,
    # or from a distillation run directory: its newest checkpoint's G, EMA copy, discriminator and optimizer moments
    mapping_lr_scale: float = 1.0  # the mapping network's Adam rate is lr x this: a resumed run can let W bend
    # faster without changing mapping_lr_multiplier, which is part of the checkpoint's parametrisation
    channel_base: int = 1536
    channel_max: int = 48
    num_layers: int = 6
    margin_size: int = 6
    conv_kernel: int = 3
    first_cutoff: float = 2.0  # the first layer's cutoff frequency (StyleGAN3's default: 2)
    first_stopband: float = 2 ** 2.1  # and its stopband (default 2^2.1); it sets the early layers' sampling rates
    batch_size: int = 16
    steps: int = 2000
    lr: float = 0.002
    lr_decay_from: int = -1  # from this step the rate falls on a cosine to lr_final at `steps`; -1 (or >= steps): never
    lr_final: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    ema_images: float = 5000.0  # half-life of the EMA copy, in images
    pixel_scales: list[int] = field(default_factory=lambda: [1, 2, 4])  # distance at full, 1/2 and 1/4 size
    pixel_norm: str = "l1"  # l1 (mean absolute error) or l2 (mean squared error: large errors, features, count more)
    weight_pixel: float = 1.0
    weight_edges: float = 0.0  # L1 of horizontal and vertical pixel differences: edges and small features
    weight_features: float = 0.0  # L1 weighted by bumps on the true eye, nose and mouth landmarks: small features
    feature_sigma: float = 0.05  # the bumps' radius (standard deviation) as a fraction of the image side
    weight_glasses: float = 0.0  # L1 on the pixels the glasses change (frames, lenses; exact, from a second render)
    glasses_boundary_fraction: float = 0.0  # this share of each batch draws its glasses coordinate near a cut
    glasses_boundary_width: float = 0.25  # ... uniformly within this distance (in z) of one of the two cuts
    eyeglasses_turned_fraction: float = 0.0  # this share of each batch wears eyeglasses on a turned face, where
    eyeglasses_turned_yaw: float = 0.15  # ... the yaw factor lies at least this far from frontal (0.5), either side
    weight_identity: float = 0.0  # 1 - cosine of the analyzer's identity embeddings
    weight_factors: float = 0.0   # L1 of the analyzer's factor readings
    weight_landmarks: float = 0.0  # L1 of the analyzer's landmarks, in image fractions
    analyzer_from: int = 0  # the analyzer terms count from this step on (pixels alone shape the face first)
    weight_adversarial: float = 0.0  # non-saturating GAN loss of G through a discriminator (rendered vs generated)
    adversarial_from: int = 0  # the step the discriminator starts training (a resumed run may add it later)
    d_landmarks: bool = False  # D also sees the target's landmark map (bumps of feature_sigma): a conditional D
    d_channel_base: int = 2048
    d_channel_max: int = 128
    d_lr: float = 0.002
    r1_gamma: float = 0.5  # lazy R1 on the rendered faces every r1_interval steps, as in the GAN loop
    r1_interval: int = 16
    analyzer: str = "synthfaces"
    aux_precision: str = "fp32"  # bf16: D and the analyzer run under bfloat16 autocast (faster on a CPU with
    # AVX512-BF16 or AMX, far slower without); auto: bf16 where the CPU has it, else fp32. G, its pixel losses and
    # its EMA stay in float32
    log_every: int = 10
    sample_every: int = 200
    checkpoint_every: int = 100
    eval_every: int = 500
    eval_images: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.pixel_scales or any(s < 1 or self.resolution % s for s in self.pixel_scales):
            raise ValueError(f"pixel_scales must be divisors of the resolution ({self.resolution}), got "
                             f"{self.pixel_scales}")
        if min(self.weight_pixel, self.weight_edges, self.weight_features, self.weight_glasses, self.weight_identity,
               self.weight_factors, self.weight_landmarks, self.weight_adversarial, self.r1_gamma) < 0:
            raise ValueError("loss weights and r1_gamma must be >= 0")
        if self.steps == 0 and not self.init_from:
            raise ValueError("steps may be 0 only with init_from (a run that ships its start as built)")
        if self.mapping_lr_scale <= 0:
            raise ValueError(f"mapping_lr_scale must be > 0, got {self.mapping_lr_scale}")
        if not 0 <= self.glasses_boundary_fraction <= 1 or self.glasses_boundary_width <= 0:
            raise ValueError(f"glasses_boundary_fraction must be in [0, 1] and glasses_boundary_width > 0, got "
                             f"{self.glasses_boundary_fraction} and {self.glasses_boundary_width}")
        if not (0 <= self.eyeglasses_turned_fraction and self.eyeglasses_turned_fraction
                + self.glasses_boundary_fraction <= 1 + 1e-9 and 0 < self.eyeglasses_turned_yaw < 0.5):
            raise ValueError(f"eyeglasses_turned_fraction must be in [0, 1 - glasses_boundary_fraction] and "
                             f"eyeglasses_turned_yaw in (0, 0.5), got {self.eyeglasses_turned_fraction} and "
                             f"{self.eyeglasses_turned_yaw}")
        if self.pixel_norm not in ("l1", "l2"):
            raise ValueError(f"pixel_norm must be l1 or l2, got {self.pixel_norm!r}")
        if self.aux_precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"aux_precision must be fp32, bf16 or auto, got {self.aux_precision!r}")

    @property
    def uses_analyzer(self) -> bool:
        return max(self.weight_identity, self.weight_factors, self.weight_landmarks) > 0

    def aux_autocast(self, device_type: str = "cpu") -> torch.autocast:
        """The precision context of the auxiliary networks (discriminator, analyzer) during training on a device
        of `device_type` (auto: bfloat16 on a GPU, and on a CPU that computes it natively)."""
        native = device_type != "cpu" or native_bf16()
        bf16 = self.aux_precision == "bf16" or (self.aux_precision == "auto" and native)
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16)

    def generator_kwargs(self, quantized: bool | None = None) -> dict[str, Any]:
        """The generator's constructor arguments; `quantized=False` leaves out the glasses layer (what it is
        built onto), None follows the config."""
        layers = self.mapping_layers + (self.quantize_glasses if quantized is None else quantized)
        return dict(z_dim=Z_DIM, c_dim=0, w_dim=self.w_dim, img_resolution=self.resolution, img_channels=3,
                    mapping_kwargs=dict(num_layers=layers, lr_multiplier=self.mapping_lr_multiplier,
                                        normalize_z=False),
                    channel_base=self.channel_base, channel_max=self.channel_max, num_layers=self.num_layers,
                    margin_size=self.margin_size, conv_kernel=self.conv_kernel, first_cutoff=self.first_cutoff,
                    first_stopband=self.first_stopband, num_fp16_res=0, conv_clamp=256,
                    magnitude_ema_beta=0.5 ** (self.batch_size / 20_000))

    def discriminator_kwargs(self) -> dict[str, Any]:
        return dict(img_resolution=self.resolution, img_channels=3 + self.d_landmarks, channel_base=self.d_channel_base,
                    channel_max=self.d_channel_max)
