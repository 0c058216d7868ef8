"""Distil the SynthFaces renderer into the embedded StyleGAN3: supervised regression of G(z) onto render(factors(z)).

    python -m core.train distill --config configs/distill_synthfaces64.yaml [--resume] [--ship] [--set key=value]

A GAN trained from scratch on a 2-core CPU stays a blob; here every step has a full-image target instead of a
discriminator's noisy signal. z has one coordinate per factor (`core.synthfaces.latent`), the generator is our
StyleGAN3 (mapping + synthesis, unchanged, z left un-normalised so that its scale keeps its meaning), and the loss
is pixel L1 at several scales plus, each weighted in the config, L1 on the facial features and on the glasses (the
renderer says exactly where they are), the frozen analyzer's identity embedding, factor readings and landmarks of
the generated face against those of the rendered one, and optionally a non-saturating GAN term through a
discriminator trained on rendered against generated faces (logistic loss, lazy R1, as in `core.train.gan`; from
`adversarial_from` on, so a resumed run can add it). Adam with beta1 0.9 learns this far faster than the GAN's
Adam(0, 0.99). An EMA copy of G is what ships. The latents of each step come from a stream seeded by the step, so a
resumed run sees exactly what an uninterrupted one would. The rate (constant, then optionally a cosine decay) and
the step the analyzer terms join are read from the config at every step, so a resume can change them.

With `quantize_glasses` the mapping network's first layer is built, not trained: it passes the continuous
coordinates through and reads the glasses coordinate as its kind, so W jumps at the cuts between kinds (see
`core.stylegan3.quantize`); `init_from` puts that layer in front of an already trained generator.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.analysis.model import analyze
from core.checkpoints import load_pretrained
from core.config import from_dict
from core.imaging import save_grid
from core.metrics.fidelity import fidelity
from core.stylegan3.discriminator import Discriminator
from core.stylegan3.networks import Generator, estimate_w_avg
from core.stylegan3.quantize import quantize_input
from core.synthfaces.factors import FACTOR_NAMES
from core.synthfaces.latent import GLASSES_CUTS_Z, GLASSES_MIDDLES_Z, LATENT_NAMES, Z_DIM, factors_from_z
from core.synthfaces.render import LANDMARK_NAMES, render
from core.train.ema import update_ema
from core.train.gan import discriminator_losses, discriminator_optimizer
from core.train.rundir import RunConfig, RunDir, TrainingRun, part, saved_optimizer_state

EVAL_SEED = 777_777  # held-out latents: a stream no training step draws from
NUM_FEATURE_LANDMARKS = LANDMARK_NAMES.index("lower_lip") + 1  # eyes, pupils, nose tip and mouth: not the jaw
LATENT_NOTE = "z -> SynthFaces factors by core.synthfaces.latent.factors_from_z; G(z) ~ render(factors_from_z(z))"


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


def quantize_glasses(G: Generator) -> Generator:
    """G with the built glasses layer in front of its mapping: every latent gets the W that G gives it with the
    glasses coordinate at the middle of its kind's interval, which renders the same face."""
    return quantize_input(G, Z_DIM - 1, GLASSES_CUTS_Z, GLASSES_MIDDLES_Z)


@dataclass
class Start:
    """What a run starts from: its generator and EMA copy (training mode and eval mode), where they came from
    (`origin`, recorded when the run ships), and, when `init_from` is a distillation run directory, that run's
    newest checkpoint, whose discriminator and optimizer moments `carry_training_state` hands on."""

    G: Generator
    G_ema: Generator
    origin: dict[str, Any]
    checkpoint: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
    added_layers: int = 0  # mapping layers put in front of the start's (the glasses layer): 0 or 1

    def carry_training_state(self, cfg: DistillConfig, opt: torch.optim.Optimizer, D: Discriminator | None,
                             opt_d: torch.optim.Optimizer | None) -> None:
        """From a run directory: the discriminator and its optimizer as they were, and G's Adam moments for every
        parameter that kept its meaning. The layer the glasses layer folded its decoding into starts its moments
        afresh; the layers behind it keep theirs under their new index."""
        if self.checkpoint is None:
            return
        tensors, meta = self.checkpoint
        run_cfg = from_dict(DistillConfig, meta["config"])
        if D is not None and any(k.startswith("D.") for k in tensors):
            if run_cfg.discriminator_kwargs() != cfg.discriminator_kwargs():
                raise ValueError(f"init_from {cfg.init_from!r} trained a discriminator built with "
                                 f"{run_cfg.discriminator_kwargs()}; this config builds {cfg.discriminator_kwargs()}")
            D.load_state_dict(part(tensors, "D."))
            if "d_optimizer" in meta:  # the moments as they were; the rate and betas from this config
                opt_d.load_state_dict({"state": saved_optimizer_state(part(tensors, "d_"), meta["d_optimizer"]),
                                       "param_groups": opt_d.state_dict()["param_groups"]})
        old = _optimized_names(Generator(**run_cfg.generator_kwargs()), run_cfg.quantize_glasses)
        new = {name: i for i, name in enumerate(_optimized_names(self.G, cfg.quantize_glasses))}
        saved = saved_optimizer_state(part(tensors, "g_"), meta["g_optimizer"])
        state = {}
        for i, name in enumerate(old):
            moved = _moved(name, self.added_layers)
            if moved in new and i in saved:
                state[new[moved]] = saved[i]
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
        self.checkpoint = None  # handed on: let the source's tensors go


def _optimized_names(G: Generator, quantized: bool) -> list[str]:
    """G's parameter names in the order of the run's Adam: synthesis, then the mapping's trained layers."""
    return ([f"synthesis.{n}" for n, _ in G.synthesis.named_parameters()] +
            [f"mapping.{n}" for n, _ in G.mapping.named_parameters() if not (quantized and n.startswith("fc0."))])


def _moved(name: str, added_layers: int) -> str | None:
    """A parameter's name after `added_layers` mapping layers went in front; None for the first mapping layer when
    one did, since the glasses layer's decoding was folded into it and its moments no longer fit."""
    if not added_layers or not name.startswith("mapping.fc"):
        return name
    layer, rest = name[len("mapping.fc"):].split(".", 1)
    return None if layer == "0" else f"mapping.fc{int(layer) + added_layers}.{rest}"


def build_generator(cfg: DistillConfig, resumed: dict[str, Any] | None = None) -> Start:
    """What a run starts from: `init_from` (a generator checkpoint, or a distillation run directory whose newest
    checkpoint also carries the EMA copy, the discriminator and the optimizers) or a fresh generator; given the
    built glasses layer when the config asks for it and the start lacks it. `resumed` is the metadata of the run's
    own newest checkpoint when it resumes: the run then rebuilds its own architecture for the checkpoint to fill and
    keeps the origin recorded there, without reading `init_from` again (it may have moved on, or be gone)."""
    if resumed is not None and (not cfg.init_from or "started_from" in resumed):
        return _ready(cfg, Generator(**cfg.generator_kwargs()), None,
                      resumed.get("started_from", {"images_seen": 0}))
    origin: dict[str, Any] = {"images_seen": 0}
    G_ema = checkpoint = None
    source_quantized = False
    if cfg.init_from and RunDir(cfg.init_from).checkpoints.is_dir():
        checkpoint = RunDir(cfg.init_from).latest()
        if checkpoint is None or checkpoint[1].get("kind") != "distill_training":
            raise ValueError(f"init_from {cfg.init_from!r} is a run directory without a complete distillation "
                             f"checkpoint")
        tensors, meta = checkpoint
        run_cfg = from_dict(DistillConfig, meta["config"])
        G, G_ema = (Generator(**run_cfg.generator_kwargs()) for _ in range(2))
        G.load_state_dict(part(tensors, "G."))
        G_ema.load_state_dict(part(tensors, "G_ema."))
        origin = {"init_from": str(cfg.init_from), "step": meta["step"],
                  "images_seen": int(meta.get("images_seen", meta["step"] * run_cfg.batch_size))}
        source_quantized = run_cfg.quantize_glasses
    elif cfg.init_from:
        G, config = load_pretrained(cfg.init_from, kind=Generator.kind)
        origin = {"init_from": str(cfg.init_from), "step": config.get("step"),
                  "images_seen": int(config.get("images_seen") or 0)}
        source_quantized = bool(config.get("trained_with", {}).get("quantize_glasses", False))
    else:
        G = Generator(**cfg.generator_kwargs(False))
    if source_quantized and not cfg.quantize_glasses:
        raise ValueError(f"init_from {cfg.init_from!r} has the built glasses layer in front of its mapping network; "
                         f"continue it with quantize_glasses=true")
    expected = Generator(**cfg.generator_kwargs(source_quantized)).init_kwargs
    if G.init_kwargs != expected:
        raise ValueError(f"init_from {cfg.init_from!r} was built with {G.init_kwargs}, which this config cannot "
                         f"continue: it builds {expected}")
    added = int(cfg.quantize_glasses and not source_quantized)
    if added:
        G = quantize_glasses(G)
        G_ema = quantize_glasses(G_ema) if G_ema is not None else None
    return _ready(cfg, G, G_ema, origin, checkpoint, added)


def _ready(cfg: DistillConfig, G: Generator, G_ema: Generator | None, origin: dict[str, Any],
           checkpoint: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None, added: int = 0) -> Start:
    """G in training mode with the built glasses layer frozen, and its EMA copy (G's, unless given) in eval mode."""
    G.train().requires_grad_(True)
    if cfg.quantize_glasses:
        G.mapping.fc0.requires_grad_(False)  # built, not trained
    G_ema = (G_ema if G_ema is not None else copy.deepcopy(G)).eval().requires_grad_(False)
    return Start(G, G_ema, origin, checkpoint, added)


def targets(z: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images in [0, 1], landmarks in pixels, factors) that the generator must reproduce for latents z."""
    factors = factors_from_z(z)
    images, landmarks = render(factors, resolution)
    return images, landmarks, factors


def generate(G: Generator, z: torch.Tensor) -> torch.Tensor:
    """G's images in [0, 1] (unclamped, for the loss) for latents z."""
    return (G(z, noise_mode="const") + 1) * 0.5


def pixel_loss(fake: torch.Tensor, real: torch.Tensor, scales: list[int], norm: str = "l1") -> torch.Tensor:
    """Mean over scales of the L1 (or squared L2) distance between the images average-pooled by each scale."""
    power = {"l1": 1, "l2": 2}[norm]
    return sum(((F.avg_pool2d(fake, s) - F.avg_pool2d(real, s)) if s > 1 else (fake - real)).abs().pow(power).mean()
               for s in scales) / len(scales)


def edge_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 distance between the images' horizontal and vertical neighbour differences (what blur loses first)."""
    d = fake - real  # differencing is linear: the neighbour differences of the error
    return ((d[..., :, 1:] - d[..., :, :-1]).abs().mean() + (d[..., 1:, :] - d[..., :-1, :]).abs().mean()) / 2


def feature_map(landmarks: torch.Tensor, resolution: int, sigma: float) -> torch.Tensor:
    """[B, 1, R, R] in [0, 1]: the largest Gaussian bump (radius sigma x R) over the eye, nose and mouth landmarks."""
    points = landmarks[:, :NUM_FEATURE_LANDMARKS]
    grid = torch.arange(resolution, dtype=points.dtype, device=points.device)
    dx = (grid.view(1, 1, -1) - points[..., 0:1]) ** 2  # [B, L, R]
    dy = (grid.view(1, 1, -1) - points[..., 1:2]) ** 2
    d2 = dy.unsqueeze(3) + dx.unsqueeze(2)  # [B, L, R(y), R(x)]
    return torch.exp(-d2.amin(dim=1, keepdim=True) / (2 * (sigma * resolution) ** 2))


def glasses_map(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """[B, 1, R, R] in {0, 1}: the pixels where the rendered faces differ from the same faces rendered without
    glasses (frames, lenses, bridge), grown by one pixel; all zero for a face without glasses."""
    bare = factors.clone()
    bare[:, [FACTOR_NAMES.index("eyeglasses"), FACTOR_NAMES.index("sunglasses")]] = 0
    mask = torch.zeros_like(images[:, :1])
    worn = torch.nonzero(bare.ne(factors).any(dim=1)).flatten()
    if len(worn):
        without = render(bare[worn], images.shape[-1])[0]
        mask[worn] = ((images[worn] - without).abs().amax(dim=1, keepdim=True) > 1 / 255).to(images.dtype)
    return F.max_pool2d(mask, 3, stride=1, padding=1)


def feature_loss(fake: torch.Tensor, real: torch.Tensor, weight_map: torch.Tensor) -> torch.Tensor:
    """Mean absolute error weighted by a map: the features (or glasses) it covers count, the background does not."""
    return ((fake - real).abs() * weight_map).mean()


def analyzer_losses(analyzer: torch.nn.Module, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Analyzer readings of the generated faces against those of the rendered ones (identity, factors, landmarks)."""
    with torch.no_grad():
        emb_r, logits_r, lm_r = (t.float() for t in analyzer.raw(real))  # float32 even under a bf16 autocast
    emb_f, logits_f, lm_f = (t.float() for t in analyzer.raw(fake))
    return {"loss_identity": 1 - F.cosine_similarity(emb_f, emb_r, dim=1).mean(),
            "loss_factors": (torch.sigmoid(logits_f) - torch.sigmoid(logits_r)).abs().mean(),
            "loss_landmarks": (lm_f - lm_r).abs().mean()}


def discriminator_input(images: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """Images in [0, 1] (and the optional landmark-map channel) as the discriminator reads them, in [-1, 1]."""
    return (images if condition is None else torch.cat([images, condition], 1)) * 2 - 1


def discriminator_step(D: Discriminator, D_train: torch.nn.Module, opt: torch.optim.Optimizer, fake: torch.Tensor,
                       real: torch.Tensor, condition: torch.Tensor | None, cfg: DistillConfig, run: TrainingRun,
                       aux_autocast: Callable[[], torch.autocast]) -> dict[str, torch.Tensor]:
    """One update of D (trained as `D_train`, its DDP form across processes) on rendered (real) against generated
    faces in [0, 1], both with the same condition: logistic loss, lazy R1 on the reals (the GAN loop's recipe).
    Returns the logged scalars."""
    D.requires_grad_(True)
    with aux_autocast():
        out = discriminator_losses(D_train, discriminator_input(real, condition),
                                   discriminator_input(fake.detach(), condition), run.step, cfg.r1_gamma,
                                   cfg.r1_interval)
    opt.zero_grad(set_to_none=True)
    run.backward(out["loss_d"].float() + out["loss_r1"].float())
    opt.step()
    D.requires_grad_(False)
    return {"loss_d": out["loss_d"].detach(), "logits_real": out["logits_real"].detach().mean(),
            "logits_fake": out["logits_fake"].detach().mean()}


def learning_rate(cfg: DistillConfig, step: int) -> float:
    """The learning rate of one step: constant, then (from `lr_decay_from`) a cosine down to `lr_final`."""
    if cfg.lr_decay_from < 0 or step < cfg.lr_decay_from:
        return cfg.lr
    t = (step - cfg.lr_decay_from) / (cfg.steps - cfg.lr_decay_from)
    return cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * t))


def step_latents(cfg: DistillConfig, step: int, count: int | None = None) -> torch.Tensor:
    """The `count` (default: batch_size) latents of one training step, seeded by the step, so resumed runs draw
    the same; several processes draw the global batch alike and each keeps its share. The first
    `glasses_boundary_fraction` of them move their glasses coordinate near a cut between two glasses kinds, where
    the generator has to draw a sharp change that plain N(0, 1) draws rarely show it. The next
    `eyeglasses_turned_fraction` wear eyeglasses on a face turned at least `eyeglasses_turned_yaw` from frontal,
    where thin frames are easiest to lose."""
    count = cfg.batch_size if count is None else count
    rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    z = torch.randn(count, Z_DIM, generator=rng)
    near = round(cfg.glasses_boundary_fraction * count)
    if near:
        cuts = torch.tensor(GLASSES_CUTS_Z)[torch.randint(len(GLASSES_CUTS_Z), (near,), generator=rng)]
        z[:near, -1] = cuts + (2 * torch.rand(near, generator=rng) - 1) * cfg.glasses_boundary_width
    turned = min(round(cfg.eyeglasses_turned_fraction * count), count - near)
    if turned:
        rows = slice(near, near + turned)
        lo, hi = torch.special.ndtr(torch.tensor(GLASSES_CUTS_Z))  # the eyeglasses interval, as Phi(z)
        z[rows, -1] = torch.special.ndtri(lo + (hi - lo) * torch.rand(turned, generator=rng))
        away = cfg.eyeglasses_turned_yaw + (0.5 - cfg.eyeglasses_turned_yaw) * torch.rand(turned, generator=rng)
        side = torch.randint(2, (turned,), generator=rng) * 2 - 1
        z[rows, LATENT_NAMES.index("yaw")] = torch.special.ndtri((0.5 + side * away).clamp(1e-6, 1 - 1e-6))
    return z



def eval_latents(count: int, seed: int = 0) -> torch.Tensor:
    """Held-out latents for evaluation and reports."""
    return torch.randn(count, Z_DIM, generator=torch.Generator().manual_seed(EVAL_SEED + seed))


class Evaluator:
    """Fidelity of G on fixed held-out latents against their rendered targets (see core.metrics.fidelity)."""

    def __init__(self, cfg: DistillConfig, analyzer: torch.nn.Module) -> None:
        self.z = eval_latents(cfg.eval_images, cfg.seed)
        self.images, self.landmarks, self.factors = targets(self.z, cfg.resolution)
        self.analyzer = analyzer
        self.read_images = analyze(analyzer, self.images)  # the targets never change: read them once

    @torch.no_grad()
    def __call__(self, G: Generator) -> dict[str, float]:
        fake = torch.cat([generate(G, self.z[s:s + 64]).clamp(0, 1) for s in range(0, len(self.z), 64)])
        return {f"eval_{k}": v for k, v in fidelity(fake, self.images, self.landmarks, self.factors,
                                                     analyze(self.analyzer, fake), self.read_images).items()}


def train_distill(cfg: DistillConfig, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) a distillation run; returns the last evaluation. In N processes each draws the same global
    batch of N x batch_size latents and trains on its share."""
    from core.analysis import load_analyzer

    run = TrainingRun(cfg, resume, total_steps=cfg.steps)
    torch.manual_seed(cfg.seed)
    start = build_generator(cfg, run.meta if run.latest else None)
    if "images_seen" not in run.meta:  # a fresh run counts from its start's images
        run.images_seen = start.origin["images_seen"] + run.step * cfg.batch_size
    device = run.device
    G, G_ema = start.G, start.G_ema
    trained = [p for p in G.mapping.parameters() if p.requires_grad]
    opt = torch.optim.Adam([{"params": G.synthesis.parameters()}, {"params": trained}], lr=cfg.lr,
                           betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    D = opt_d = None
    if cfg.weight_adversarial > 0:
        D = Discriminator(**cfg.discriminator_kwargs()).requires_grad_(False)
        opt_d = discriminator_optimizer(D, cfg.d_lr, cfg.r1_gamma, cfg.r1_interval)
    start.carry_training_state(cfg, opt, D, opt_d)
    modules, optimizers = {"G": G, "G_ema": G_ema, "D": D}, {"g": opt, "d": opt_d}
    run.restore(modules, optimizers, joining=("D", "d"))
    G_ema.to(device)
    G_train, opt = run.prepare(G, opt)
    if D is not None:
        D.requires_grad_(True)  # DDP syncs the parameters that train
        D_train, opt_d = run.prepare(D, opt_d)
        D.requires_grad_(False)
    analyzer = load_analyzer(cfg.analyzer, device=str(device)).requires_grad_(False).eval() if (
        cfg.uses_analyzer or cfg.eval_images > 0) else None
    evaluator = Evaluator(cfg, analyzer) if run.main and cfg.eval_images > 0 else None
    fixed_z = eval_latents(8, cfg.seed + 1).to(device)
    fixed_real = targets(fixed_z.cpu(), cfg.resolution)[0]
    beta = 0.5 ** (cfg.batch_size * run.num_processes / max(cfg.ema_images, 1e-8))
    weights = {"loss_pixel": cfg.weight_pixel, "loss_edges": cfg.weight_edges,
               "loss_features": cfg.weight_features, "loss_glasses": cfg.weight_glasses,
               "loss_identity": cfg.weight_identity,
               "loss_factors": cfg.weight_factors, "loss_landmarks": cfg.weight_landmarks,
               "loss_adversarial": cfg.weight_adversarial}
    aux_autocast = partial(cfg.aux_autocast, device.type)
    with run:
        bar = tqdm(total=cfg.steps, initial=run.step, disable=not (progress and run.main), desc="distill")
        t0, t0_images = time.time(), run.images_seen
        while run.step < cfg.steps:
            z = run.shard(step_latents(cfg, run.step, cfg.batch_size * run.num_processes))
            real, landmarks, factors = (t.to(device) for t in targets(z, cfg.resolution))
            z = z.to(device)
            with run.autocast():
                fake = generate(G_train, z)
            losses = {"loss_pixel": pixel_loss(fake, real, cfg.pixel_scales, cfg.pixel_norm)}
            if cfg.weight_edges > 0:
                losses["loss_edges"] = edge_loss(fake, real)
            if cfg.weight_features > 0:
                losses["loss_features"] = feature_loss(fake, real,
                                                       feature_map(landmarks, cfg.resolution, cfg.feature_sigma))
            if cfg.weight_glasses > 0:
                losses["loss_glasses"] = feature_loss(fake, real, glasses_map(real, factors))
            if cfg.uses_analyzer and run.step >= cfg.analyzer_from:
                with aux_autocast():
                    losses.update(analyzer_losses(analyzer, fake, real))
            adversarial = D is not None and run.step >= cfg.adversarial_from
            if adversarial:
                condition = feature_map(landmarks, cfg.resolution, cfg.feature_sigma) if cfg.d_landmarks else None
                with aux_autocast():  # the unwrapped D: G's step leaves D's gradients alone
                    logits = D(discriminator_input(fake, condition)).float()
                losses["loss_adversarial"] = F.softplus(-logits).mean()
            loss = sum(weights[k] * v for k, v in losses.items())
            opt.zero_grad(set_to_none=True)
            run.backward(loss)
            for group, scale in zip(opt.param_groups, (1.0, cfg.mapping_lr_scale)):  # from the config, not the
                group["lr"] = learning_rate(cfg, run.step) * scale  # checkpoint: a resume may change the schedule
            opt.step()
            d_scalars = (discriminator_step(D, D_train, opt_d, fake, real, condition, cfg, run, aux_autocast)
                         if adversarial else {})
            update_ema(G_ema, G, beta)
            step = run.advance(cfg.batch_size)
            bar.update(1)
            if step % cfg.log_every == 0:
                scalars = run.mean_scalars({"loss": loss.detach(), **{k: v.detach() for k, v in losses.items()},
                                            **d_scalars})
                rate = (run.images_seen - t0_images) / (time.time() - t0)
                run.log(step, **scalars, lr=opt.param_groups[0]["lr"], images_per_s=rate,
                        images_seen=run.images_seen)
                bar.set_postfix(loss=f"{scalars['loss']:.4f}")
            if run.main and (step % cfg.sample_every == 0 or step == cfg.steps):
                with torch.no_grad():
                    save_grid(torch.cat([fixed_real, generate(G_ema, fixed_z).clamp(0, 1).cpu()]),
                              run.samples / f"{step:08d}.png", 8)
            if evaluator is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                run.report = evaluator(G_ema)
                run.log(step, **run.report)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                run.save(step, "distill_training", modules, optimizers,
                         **({"started_from": start.origin} if cfg.init_from else {}))
        bar.close()
        if evaluator is not None and not run.report:  # resumed at its last step: still report
            run.report = evaluator(G_ema)
        if cfg.ship and run.main:
            G_ema.mapping.w_avg.copy_(estimate_w_avg(G_ema.mapping))  # training never tracks it
        run.ship(G_ema, latent=LATENT_NOTE, **({"started_from": start.origin} if cfg.init_from else {}))
    return run.report


def export_model(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[str, Generator]:
    """The deployable generator (the EMA copy) of a distillation checkpoint, with its W average estimated."""
    G = Generator(**from_dict(DistillConfig, meta["config"]).generator_kwargs())
    G.load_state_dict(part(tensors, "G_ema."))
    G.mapping.w_avg.copy_(estimate_w_avg(G.mapping))
    return "generator", G.eval()
