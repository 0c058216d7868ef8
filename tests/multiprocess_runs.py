"""Every training loop on a tiny config, run by tests/test_multiprocess.py in two CPU processes:

    torchrun --standalone --nproc_per_node 2 -m tests.multiprocess_runs OUT_DIR

Each process also writes the parameters it holds at every checkpoint to OUT_DIR/<loop>/rank<r>_<step>.safetensors,
so the test can check that the processes stayed identical. `configs` is shared with the test, which resumes each
run in one process.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from core.train.rundir import RunConfig, TrainingRun

SMALL = dict(log_every=1, device="cpu")


def configs(root: Path, generator: Path) -> dict[str, RunConfig]:
    """One tiny config per loop, each a run folder under `root`; the NICE trains on the generator at `generator`."""
    from core.train.analyzer import AnalyzerConfig
    from core.train.distill_config import DistillConfig
    from core.train.encoder import EncoderConfig
    from core.train.gan import GanConfig
    from core.train.nice import NiceConfig
    from core.train.vae import VaeConfig
    runs = dict(runs_dir=str(root), **SMALL)
    vae = dict(architecture="conv", width=4, dim_z=8, train_identities=8, per_identity=4, val_identities=4,
               val_per_identity=2, batch_size=8, epochs=2, **runs)
    return {
        "distill": DistillConfig(name="distill", resolution=32, w_dim=16, channel_base=256, channel_max=16,
                                 num_layers=3, margin_size=2, batch_size=4, steps=4, checkpoint_every=2,
                                 sample_every=4, eval_images=0, weight_adversarial=0.1, r1_interval=2, **runs),
        "gan": GanConfig(name="gan", resolution=32, z_dim=16, w_dim=16, channel_base=256, channel_max=16, num_layers=3,
                         margin_size=2, d_channel_base=256, d_channel_max=32, batch_size=4, steps=4, r1_interval=2,
                         checkpoint_every=2, sample_every=4, eval_images=0, vp_weight=0.1, vp_dims=4, vp_width=8,
                         **runs),
        "nice": NiceConfig(name="nice", generator=str(generator), id_dim=12, hidden=32, depth=2, batch_size=4,
                           steps=4, checkpoint_every=2, sample_every=4, **runs),
        "vae": VaeConfig(name="vae", vp_weight=1.0, vp_dims=4, vp_width=8, **vae),  # with the VP term (Q in DDP too)
        "ae": VaeConfig(name="ae", variational=False, beta=0.0, **vae),
        "encoder": EncoderConfig(name="encoder", generator=str(generator), width=8, channel_max=16, hidden=32,
                                 batch_size=4, steps=4, image_from=2, checkpoint_every=2, sample_every=4, **runs),
        "analyzer": AnalyzerConfig(name="analyzer", train_identities=8, per_identity=4, val_identities=4,
                                   val_per_identity=2, width=4, hidden=32, embed_dim=16, batch_size=8, epochs=2,
                                   **runs),
    }


def trainer(loop: str):
    """The training function of a loop."""
    from core.train import analyzer, distill, encoder, gan, nice, vae
    return {"distill": distill.train_distill, "gan": gan.train_gan, "nice": nice.train_nice, "vae": vae.train_vae,
            "ae": vae.train_vae, "encoder": encoder.train_encoder, "analyzer": analyzer.train_analyzer}[loop]


def _record_every_process(out: Path) -> None:
    """Make every process, not only the main one, write its parameters when the run checkpoints."""
    save = TrainingRun.save

    def save_and_record(run: TrainingRun, step: int, kind: str, modules, optimizers={}, **meta):
        params = {f"{name}.{k}": p.detach().cpu().contiguous() for name, m in modules.items() if m is not None
                  for k, p in m.named_parameters()}
        save_file(params, str(out / run.cfg.name / f"rank{run.rank}_{step:08d}.safetensors"))
        save(run, step, kind, modules, optimizers, **meta)

    TrainingRun.save = save_and_record


def main(out: str, generator: str) -> None:
    torch.set_num_threads(1)
    root = Path(out)
    for name in configs(root, Path(generator)):
        (root / name).mkdir(parents=True, exist_ok=True)
    _record_every_process(root)
    for name, cfg in configs(root, Path(generator)).items():
        trainer(name)(cfg, progress=False)


if __name__ == "__main__":
    main(*sys.argv[1:3])
