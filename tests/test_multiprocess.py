"""Every training loop through Accelerate: two CPU processes (gloo) trained in lockstep, resumed in one process,
a 2 x B run following a 1 x 2B run, the launch commands the README gives, and placements refused before any work."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.checkpoints import CheckpointError
from core.train.rundir import RunDir
from tests.conftest import tiny_kwargs
from tests.multiprocess_runs import configs, trainer

ROOT = Path(__file__).resolve().parent.parent
LOOPS = ("distill", "gan", "nice", "vae", "ae", "encoder", "analyzer")
EPOCH_LOOPS = ("vae", "ae", "analyzer")  # steps come from epochs over a data set
LOSS_KEY = {"gan": "loss_d"}  # the scalar every training line logs (default "loss")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[Path, Path]:
    """(runs folder, generator) after every loop trained in two processes started by torchrun."""
    from core.stylegan3 import Generator
    root = tmp_path_factory.mktemp("two_processes")
    torch.manual_seed(0)
    generator = Generator(**tiny_kwargs(resolution=32)).save_pretrained(root / "g")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "tests.multiprocess_runs", str(root / "runs"), str(generator)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs", generator


def _training_lines(run: RunDir, loop: str) -> list[dict]:
    return [r for r in run.records() if LOSS_KEY.get(loop, "loss") in r]


def _checkpoint_meta(run: RunDir) -> dict:
    return json.loads(run.checkpoint_paths()[-1].with_suffix(".json").read_text())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_loop_trains_in_two_processes_in_lockstep_and_resumes_in_one(launched, loop):
    runs, generator = launched
    run = RunDir(runs / loop)
    cfg = configs(runs, generator)[loop]
    status, meta = json.loads((run.path / "status.json").read_text()), _checkpoint_meta(run)
    assert status["state"] == "finished" and status["processes"] == 2 and meta["processes"] == 2
    # Both processes trained, on different data, and hold the same parameters at every checkpoint (DDP averaged
    # their gradients); the parameters moved from where they started.
    steps = sorted({int(p.stem.split("_")[1]) for p in run.path.glob("rank0_*.safetensors")})
    assert len(steps) >= 2
    for step in steps:
        a, b = (load_file(run.path / f"rank{r}_{step:08d}.safetensors") for r in (0, 1))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"processes differ at {step}"
    first, last = (load_file(run.path / f"rank0_{s:08d}.safetensors") for s in (steps[0], steps[-1]))
    assert any(not torch.equal(first[k], last[k]) for k in first)
    # The global batch counts both processes; one metrics file, no scalar logged twice at a step.
    assert meta["images_seen"] == meta["step"] * cfg.batch_size * 2
    lines = _training_lines(run, loop)
    assert [x["step"] for x in lines] == list(range(1, meta["step"] + 1))
    assert lines[-1]["images_seen"] == meta["images_seen"]
    pairs = [(r["step"], k) for r in run.records() for k in r if k not in ("step", "time")]
    assert len(pairs) == len(set(pairs))
    # Resumed in one process: the step count and the images seen continue.
    more = (dataclasses.replace(cfg, epochs=cfg.epochs + 1) if loop in EPOCH_LOOPS
            else dataclasses.replace(cfg, steps=cfg.steps + 2))
    trainer(loop)(more, resume=True, progress=False)
    after = _checkpoint_meta(run)
    added = after["step"] - meta["step"]
    assert added == (-(-32 // cfg.batch_size) if loop in EPOCH_LOOPS else 2)  # 32 images an epoch in these configs
    assert after["processes"] == 1 and after["images_seen"] == meta["images_seen"] + added * cfg.batch_size
    assert [x["step"] for x in _training_lines(run, loop)] == list(range(1, after["step"] + 1))


def test_two_processes_at_batch_b_follow_one_process_at_batch_2b(launched, tmp_path):
    """NICE: the same seed, two processes of 4 pairs against one of 8. Each process draws the global batch and
    trains on its half, so the per-pair losses agree (to float summation order, measured within 1e-4); the
    contrastive and confusion terms couple the pairs of a batch, so they differ a little (measured up to 5 %)."""
    runs, generator = launched
    one = dataclasses.replace(configs(runs, generator)["nice"], name="one", runs_dir=str(tmp_path), batch_size=8)
    trainer("nice")(one, progress=False)
    two = _training_lines(RunDir(runs / "nice"), "nice")[:one.steps]
    single = _training_lines(RunDir(tmp_path / "one"), "nice")
    assert len(two) == len(single) == one.steps
    for a, b in zip(two, single):
        for key in ("loss_identity", "loss_attributes", "loss_landmarks", "disc_attr_from_id", "disc_id_from_attr"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), (a["step"], key)
        for key in ("loss", "loss_contrastive", "loss_adversarial"):
            assert a[key] == pytest.approx(b[key], rel=0.1), (a["step"], key)


def test_the_readme_launch_command_starts_two_processes_and_prints_once(launched, tmp_path):
    runs, generator = launched
    cfg = configs(runs, generator)["nice"]
    sets = [f"{k}={getattr(cfg, k)}" for k in ("generator", "id_dim", "hidden", "depth", "batch_size", "steps",
                                               "checkpoint_every", "log_every")]
    done = subprocess.run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "-m", "core.train", "nice",
                           "--set", f"runs_dir={tmp_path}", "name=cli", *sets], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "cli" / "status.json").read_text())["processes"] == 2
    assert done.stdout.count("loss_identity") == 1  # the main process alone prints the report


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: device=cuda is valid here")
def test_a_gpu_that_is_not_there_and_fp16_on_a_cpu_are_refused_before_any_work(tmp_path, capsys):
    from core.train.__main__ import main
    from core.train.nice import NiceConfig
    with pytest.raises(ValueError, match="no CUDA GPU"):
        NiceConfig(runs_dir=str(tmp_path), device="cuda")
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        NiceConfig(runs_dir=str(tmp_path), mixed_precision="fp16")
    with pytest.raises(ValueError, match="'device' must be one of"):
        NiceConfig(runs_dir=str(tmp_path), device="tpu")
    assert main(["vae", "--set", f"runs_dir={tmp_path}", "device=cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_resume_that_changes_the_model_shape_is_refused_and_changes_nothing(tmp_path):
    from core.train.vae import VaeConfig, train_vae
    cfg = VaeConfig(name="v", runs_dir=str(tmp_path), architecture="conv", width=4, dim_z=8, train_identities=4,
                    per_identity=4, val_identities=2, val_per_identity=2, batch_size=8, epochs=1)
    train_vae(cfg, progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "v").rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=r"(?s)must keep the model.s shape.*shape mismatch"):
        train_vae(dataclasses.replace(cfg, dim_z=16, epochs=2), resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "v").rglob("*") if p.is_file()} == before


def test_checkpoints_hold_cpu_tensors_and_resume_on_the_device_the_config_asks_for(tmp_path):
    """A run's checkpoint is device-free (every tensor stored from the CPU); resuming places the model and the
    optimizer moments on the run's device (here the CPU; the CUDA test below does the GPU to CPU trip)."""
    from core.train.rundir import RunConfig, TrainingRun
    cfg = RunConfig(name="r", runs_dir=str(tmp_path), device="cpu")
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    run = TrainingRun(cfg)
    with run:
        run.advance(4)
        run.save(1, "test_training", {"m": model}, {"o": opt})
    resumed = TrainingRun(cfg, resume=True)
    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.Adam(fresh.parameters())
    assert resumed.restore({"m": fresh}, {"o": fresh_opt}) == 1 and resumed.images_seen == 4
    placed, placed_opt = resumed.prepare(fresh, fresh_opt)
    assert torch.equal(placed.weight, model.weight) and placed.weight.device == resumed.device
    assert all(v.device == resumed.device for s in placed_opt.state_dict()["state"].values() for v in s.values()
               if isinstance(v, torch.Tensor) and v.ndim)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (this machine has none)")
@pytest.mark.parametrize("loop", LOOPS)
def test_on_a_gpu_every_model_of_a_step_sits_on_it_and_the_checkpoint_resumes_on_the_cpu(tmp_path, loop):
    from core.stylegan3 import Generator
    torch.manual_seed(0)
    generator = Generator(**tiny_kwargs(resolution=32)).save_pretrained(tmp_path / "g")
    cfg = dataclasses.replace(configs(tmp_path / "runs", generator)[loop], device="cuda")
    seen: set[str] = set()
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, args, out: seen.update(a.device.type for a in args if isinstance(a, torch.Tensor)))
    try:
        trainer(loop)(cfg, progress=False)
    finally:
        hook.remove()
    assert seen == {"cuda"}
    run = RunDir(tmp_path / "runs" / loop)
    before = _checkpoint_meta(run)["step"]
    more = (dataclasses.replace(cfg, epochs=cfg.epochs + 1, device="cpu") if loop in EPOCH_LOOPS
            else dataclasses.replace(cfg, steps=cfg.steps + 1, device="cpu"))
    trainer(loop)(more, resume=True, progress=False)
    assert _checkpoint_meta(run)["step"] > before


def test_every_recipe_loads_and_names_where_it_trains():
    import importlib

    from core.config import load_config, read_yaml
    from core.train.__main__ import LOOPS as TRAINING_LOOPS
    recipes = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(recipes) >= 6
    for path in recipes:
        loop = {"ae": "vae"}.get(path.stem.split("_")[0], path.stem.split("_")[0])
        module, schema, _ = TRAINING_LOOPS[loop]
        cfg = load_config(getattr(importlib.import_module(module), schema), path)
        raw = read_yaml(path.read_text())
        assert raw["device"] == cfg.device == "auto" and raw["mixed_precision"] == cfg.mixed_precision == "no", path
