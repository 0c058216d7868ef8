"""The one run-directory format shared by every training loop.

runs/<name>/
  config.yaml                 resolved config of the run
  metrics.jsonl               one JSON object per line: {"step", "time", <scalar>: value, ...}
  samples/<step>.png          sample grids
  checkpoints/<step>.safetensors (+ .json)   written atomically; the newest one is what --resume continues from
  status.json                 {"state": running | finished | failed, "step", "updated", ...}

`TrainingRun` is the lifecycle every loop shares (create or reopen, restore, log, save, finish or fail), and
`RunConfig` the fields every training config shares.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Optional

import torch
import yaml

from core.checkpoints import CheckpointError, check_state_dict, load_checkpoint, save_checkpoint
from core.files import atomic_write_text
from core.train.placement import accelerator_for, check_placement

STATES = ("running", "finished", "failed")


class RunDir:
    """A run's folder: config, metrics log, samples, checkpoints and status, all written safely."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.samples = self.path / "samples"
        self.checkpoints = self.path / "checkpoints"

    @classmethod
    def create(cls, path: str | Path, config: Any, resume: bool = False) -> "RunDir":
        """Make (or, with resume, reopen) a run folder and write its resolved config."""
        run = cls(path)
        if not resume:
            run.refuse_overwrite()
        run.samples.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        for orphan in run.checkpoints.glob(".*.tmp"):  # a write that a kill interrupted (never renamed into place)
            orphan.unlink(missing_ok=True)
        data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        atomic_write_text(run.path / "config.yaml", yaml.safe_dump(data, sort_keys=False))
        return run

    def refuse_overwrite(self) -> None:
        """Raise FileExistsError when the folder already holds a run with checkpoints (a new run may not replace it)."""
        if self.path.exists() and any(self.checkpoints.glob("*.safetensors")):
            raise FileExistsError(f"{self.path} already holds a run; pass --resume to continue it or pick a new name")

    def log(self, step: int, **scalars: float) -> None:
        """Append one metrics line in a single write, so a killed run leaves whole lines (a kill inside the write
        leaves at most a half line, which `rewind` drops); NaN or infinite values are refused (divergence)."""
        bad = [k for k, v in scalars.items() if not math.isfinite(float(v))]
        if bad:
            raise FloatingPointError(f"non-finite metrics at step {step}: {', '.join(bad)}")
        record = {"step": int(step), "time": time.time(), **{k: float(v) for k, v in scalars.items()}}
        fd = os.open(self.path / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        """The metric lines of metrics.jsonl in order, parsed; a half-written line from a killed process is skipped."""
        path = self.path / "metrics.jsonl"
        out = []
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def rewind(self, step: int) -> None:
        """Drop metric lines logged after `step` (by a run killed after its last checkpoint), atomically."""
        if (self.path / "metrics.jsonl").exists():
            kept = [r for r in self.records() if isinstance(r.get("step"), int) and r["step"] <= step]
            atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    def logged(self, step: int) -> dict[str, float]:
        """The scalars logged at `step` (every line of that step merged; empty when nothing was logged there)."""
        return {k: v for r in self.records() if r.get("step") == step
                for k, v in r.items() if k not in ("step", "time")}

    def set_status(self, state: str, step: int, **extra: Any) -> None:
        """Atomically replace status.json."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        atomic_write_text(self.path / "status.json", json.dumps({
            "state": state, "step": int(step), "updated": time.time(), "pid": os.getpid(),
            "host": socket.gethostname(), **extra}))

    def save(self, step: int, tensors: dict[str, torch.Tensor], config: dict[str, Any], keep: int = 3) -> Path:
        """Write checkpoints/<step>.safetensors atomically and keep only the newest `keep`."""
        path = save_checkpoint(self.checkpoints / f"{step:08d}.safetensors", tensors, {**config, "step": int(step)})
        for old in self.checkpoint_paths()[:-keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
        return path

    def checkpoint_paths(self) -> list[Path]:
        """Complete checkpoints, oldest first: a kill between writing the tensors and their config leaves a
        .safetensors without its .json, which is skipped so that a resume starts from the one before."""
        return sorted(p for p in self.checkpoints.glob("*.safetensors") if p.with_suffix(".json").is_file())

    def latest(self) -> Optional[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
        """(tensors, config) of the newest checkpoint, or None when the run has none."""
        paths = self.checkpoint_paths()
        return load_checkpoint(paths[-1]) if paths else None


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state into tensors (for safetensors) and JSON metadata (hyper-parameters, scalars)."""
    state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with `prefix`, named without it: one module's or optimizer's share of a
    checkpoint that `pack_state` wrote."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def saved_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The per-parameter state (moments, step counts) that `optimizer_tensors` split, keyed by parameter index."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, entries in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entries)
    return state


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of `optimizer_tensors`: restore moments, step counts and hyper-parameters."""
    opt.load_state_dict({"state": saved_optimizer_state(tensors, meta),
                         "param_groups": regroup(meta["param_groups"], opt)})


def regroup(saved: list[dict[str, Any]], opt: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Saved parameter groups laid out like the optimizer's own when both hold the same parameters in the same order
    but split differently (a resumed run that gives part of the model its own rate); each new group takes the
    hyper-parameters of the saved group its first parameter came from. Other layouts are returned unchanged."""
    sizes = [len(g["params"]) for g in opt.param_groups]
    flat = [i for g in saved for i in g["params"]]
    if [len(g["params"]) for g in saved] == sizes or len(flat) != sum(sizes):
        return saved
    groups, start = [], 0
    for size in sizes:
        owner = next(g for g in saved if flat[start] in g["params"])
        groups.append({**owner, "params": flat[start:start + size]})
        start += size
    return groups


def pack_state(modules: Mapping[str, Optional[torch.nn.Module]],
               optimizers: Mapping[str, Optional[torch.optim.Optimizer]]) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of named modules (`<name>.<key>`) and optimizers (`<name>_optim.<idx>.<key>`, with
    their hyper-parameters under `<name>_optimizer`); None entries are skipped."""
    tensors = {f"{name}.{k}": v for name, m in modules.items() if m is not None for k, v in m.state_dict().items()}
    meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        if opt is None:
            continue
        t, m = optimizer_tensors(opt)
        tensors.update({f"{name}_{k}": v for k, v in t.items()})
        meta[f"{name}_optimizer"] = m
    return tensors, meta


def unpack_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                 modules: Mapping[str, Optional[torch.nn.Module]],
                 optimizers: Mapping[str, Optional[torch.optim.Optimizer]], joining: Iterable[str] = ()) -> None:
    """Inverse of `pack_state`: load every named module and optimizer in place. Names in `joining` (a module or
    optimizer that a resumed run adds, e.g. the discriminator of a phase that starts later) may be absent from the
    checkpoint and then keep their initial state; any other absent name is an error."""
    joining = set(joining)
    for name, m in modules.items():
        own = part(tensors, f"{name}.")
        if m is not None and (own or name not in joining):
            m.load_state_dict(own)
    for name, opt in optimizers.items():
        if opt is not None and (f"{name}_optimizer" in meta or name not in joining):
            load_optimizer_tensors(opt, part(tensors, f"{name}_"), meta[f"{name}_optimizer"])


POSITIVE = ("steps", "epochs", "batch_size", "resolution", "disc_steps", "mbstd_group")  # and *_every, *_interval, *lr


@dataclasses.dataclass
class RunConfig:
    """Fields every training config shares; each loop's schema extends it. `batch_size` is per process: a run
    launched in N processes learns from N x batch_size images per step."""

    name: str = "run"
    runs_dir: str = "runs"
    seed: int = 0
    log_every: int = 20
    device: str = "auto"  # auto (the GPU when there is one) | cpu | cuda
    mixed_precision: str = "no"  # no | fp16 (GPU only) | bf16: autocast of the trained networks, by Accelerate
    ship: bool = False  # at the end, write the trained model to `ship_to` (the CLI's --ship); off by default
    ship_to: str = ""   # where a shipping run writes (recipes name checkpoints/...); empty: nowhere
    may_be_zero: ClassVar[tuple[str, ...]] = ()  # counts that a loop accepts at zero (its schema says what it means)

    def __post_init__(self) -> None:
        """Refuse, before any work, what no run can use: a NaN or infinite number, and a zero or negative count,
        interval (a step modulo it) or learning rate, and a device or precision this machine cannot give."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"config key {f.name!r} must be a finite number, got {value}")
            counted = f.name in POSITIVE or f.name.endswith(("_every", "_interval", "lr"))
            if f.name in self.may_be_zero and value == 0:
                continue
            if counted and isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"config key {f.name!r} must be > 0, got {value}")
        check_placement(self.device, self.mixed_precision)


class TrainingRun:
    """The lifecycle every training loop shares: where it trains (an `accelerate.Accelerator`), what it resumes
    from, what it writes.

        run = TrainingRun(cfg, resume, total_steps=cfg.steps)     # placement checked, newest checkpoint read
        step = run.restore({"G": G}, {"g": opt_g})                 # 0, or the checkpoint's step (shapes checked)
        G_train, opt_g = run.prepare(G, opt_g)                     # on the run's device; DDP across processes
        with run:                                                  # now the folder is written
            ...  run.backward(loss); opt_g.step(); run.advance(cfg.batch_size)
            run.log(run.step, loss=...); run.save(run.step, "x_training", {"G": G}, {"g": opt_g})
            run.report = {...}                                     # ends up in status.json when the run finishes

    Nothing is written before the block opens, so a refused resume (a config that changes the model's shape) or
    placement leaves the run as it was. Opening creates the folder and writes the resolved config (refusing to
    overwrite a run unless resuming); a resume drops metric lines logged after its checkpoint (all of them when the
    run was killed before its first checkpoint) and the temporary files of a write that a kill interrupted, so the
    log continues exactly. Leaving the block marks the run finished, or failed with the error that ended it. Only
    the main process writes. `images_seen` counts every process's images, and carries across resumes with another
    number of processes.
    """

    def __init__(self, cfg: RunConfig, resume: bool = False, total_steps: Optional[int] = None) -> None:
        self.cfg, self.resume = cfg, resume
        self.accelerator = accelerator_for(cfg.device, cfg.mixed_precision)
        self.main = self.accelerator.is_main_process
        self.dir = RunDir(Path(cfg.runs_dir) / cfg.name)
        if not resume:
            self.dir.refuse_overwrite()
        self.latest = self.dir.latest() if resume else None
        self.meta: dict[str, Any] = self.latest[1] if self.latest else {}
        self.step = int(self.meta.get("step", 0))
        self.images_seen = int(self.meta.get("images_seen", self.step * getattr(cfg, "batch_size", 0)))
        self.total_steps = total_steps
        self.report: dict[str, float] = {}

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def samples(self) -> Path:
        return self.dir.samples

    def restore(self, modules: Mapping[str, Optional[torch.nn.Module]],
                optimizers: Mapping[str, Optional[torch.optim.Optimizer]] = {}, joining: Iterable[str] = ()) -> int:
        """Load the newest checkpoint into the named modules and optimizers (before `prepare`), if resuming;
        returns its step. Every module's tensors are checked first, so a config that changed a model's shape is
        refused with the names and shapes that differ. Names in `joining` may be missing from the checkpoint (see
        `unpack_state`)."""
        if self.latest is not None:
            tensors = self.latest[0]
            joining = set(joining)
            for name, m in modules.items():
                own = part(tensors, f"{name}.")
                if m is not None and (own or name not in joining):
                    try:
                        check_state_dict(m, own, source=f"{self.dir.checkpoint_paths()[-1]} ({name})")
                    except CheckpointError as e:
                        raise CheckpointError(f"cannot resume {self.dir.path}: its checkpoint does not fit the model "
                                              f"this config builds (a resume must keep the model's shape; start a new "
                                              f"run name for another model). {e}") from None
            unpack_state(tensors, self.meta, modules, optimizers, joining)
        return self.step

    def prepare(self, *objects: Any) -> Any:
        """Models, optimizers and data loaders placed by the run's Accelerator (on its device; models wrapped in
        DDP when several processes train). Keep the unwrapped models for saving, sampling and evaluation."""
        return self.accelerator.prepare(*objects)

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate (gradient scaling under fp16, gradient averaging across processes)."""
        self.accelerator.backward(loss)

    def autocast(self):
        """The mixed-precision context of the trained networks' forward passes."""
        return self.accelerator.autocast()

    def stream(self, step: int, per_process: bool = False) -> torch.Generator:
        """The random stream of one step: the same on every process (draw the global batch, keep `shard` of it),
        or, with `per_process`, one stream per process. Seeded by the step, so a resumed run draws what an
        uninterrupted one would."""
        seed = self.cfg.seed * 1_000_003 + step
        return torch.Generator().manual_seed(seed * 64 + self.rank if per_process else seed)

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's share of a global batch drawn by every process alike (rows split in process order)."""
        return batch.chunk(self.num_processes)[self.rank]

    def loader(self, dataset: torch.utils.data.Dataset, batch_size: int, epoch: int) -> Any:
        """One epoch of `dataset` in batches of `batch_size` per process, placed on the run's device: the order is
        shuffled by the seed and the epoch (the same on every process, so a resumed run sees the same epochs), and
        Accelerate hands each process its own batches (the last ones filled up from the start, so that every
        process takes the same number of steps)."""
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch))
        return self.accelerator.prepare_data_loader(
            torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=order.tolist()))

    def mean_scalars(self, values: Mapping[str, Any]) -> dict[str, float]:
        """Scalars (tensors or numbers) averaged over the processes, as floats: each process measured its share of
        the global batch, so the mean is the global batch's value for per-sample averages. Every process must call
        it at the same step."""
        stacked = torch.tensor([float(v.detach() if isinstance(v, torch.Tensor) else v) for v in values.values()],
                               dtype=torch.float64, device=self.device)
        if self.num_processes > 1:
            stacked = self.accelerator.reduce(stacked, reduction="mean")
        return dict(zip(values, stacked.tolist()))

    def advance(self, images: int) -> int:
        """One optimisation step done on `images` images per process; returns the new step."""
        self.step += 1
        self.images_seen += images * self.num_processes
        return self.step

    def status(self, step: int) -> None:
        if self.main:
            self.step = step
            self.dir.set_status("running", step, total_steps=self.total_steps, processes=self.num_processes)

    def log(self, step: int, **scalars: float) -> None:
        if self.main:
            self.dir.log(step, **scalars)

    def save(self, step: int, kind: str, modules: Mapping[str, Optional[torch.nn.Module]],
             optimizers: Mapping[str, Optional[torch.optim.Optimizer]] = {}, **meta: Any) -> None:
        """Checkpoint the named (unwrapped) modules and optimizers, the images seen and JSON metadata, and mark
        the run running at `step`. Tensors are stored on the CPU, so any device resumes them."""
        if not self.main:
            return
        tensors, opt_meta = pack_state(modules, optimizers)
        self.dir.save(step, tensors, {"kind": kind, **opt_meta, "images_seen": self.images_seen,
                                      "processes": self.num_processes, **meta,
                                      "config": dataclasses.asdict(self.cfg)})
        self.status(step)

    def ship(self, model: Any, dtype: Optional[torch.dtype] = None, **notes: Any) -> Optional[Path]:
        """Write the trained model (a `Pretrained`) to `ship_to` when the run was asked to ship; the config records
        the report, the training config, the step and the images seen. Returns the path written, or None."""
        if not (self.main and self.cfg.ship and self.cfg.ship_to):
            return None
        return model.save_pretrained(self.cfg.ship_to, dtype=dtype, **{
            "metrics": self.report, "step": self.step, "images_seen": self.images_seen,
            "trained_with": dataclasses.asdict(self.cfg), **notes})

    def __enter__(self) -> "TrainingRun":
        if self.main:
            RunDir.create(self.dir.path, self.cfg, resume=self.resume)
            if self.resume:
                self.dir.rewind(self.step)
        self.status(self.step)
        self.accelerator.wait_for_everyone()
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        if exc is None:
            self.accelerator.wait_for_everyone()
        if not self.main:
            return
        if exc is not None:
            self.dir.set_status("failed", self.step, error=f"{type(exc).__name__}: {exc}")
        else:
            self.dir.set_status("finished", self.step, metrics=self.report, total_steps=self.total_steps,
                                processes=self.num_processes)
