"""The one run-directory format shared by every training loop.

runs/<name>/
  config.yaml                 resolved config of the run
  metrics.jsonl               one JSON object per line: {"step", "time", <scalar>: value, ...}
  samples/<step>.png          sample grids
  checkpoints/<step>.safetensors (+ .json)   written atomically; the newest one is what --resume continues from
  status.json                 {"state": running | finished | failed, "step", "updated", ...}
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from core.checkpoints import load_checkpoint, save_checkpoint

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
        if run.path.exists() and any(run.checkpoints.glob("*.safetensors")) and not resume:
            raise FileExistsError(f"{run.path} already holds a run; pass --resume to continue it or pick a new name")
        run.samples.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        (run.path / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        return run

    def log(self, step: int, **scalars: float) -> None:
        """Append one metrics line; NaN or infinite values are refused (they mean the run has diverged)."""
        bad = [k for k, v in scalars.items() if not math.isfinite(float(v))]
        if bad:
            raise FloatingPointError(f"non-finite metrics at step {step}: {', '.join(bad)}")
        record = {"step": int(step), "time": time.time(), **{k: float(v) for k, v in scalars.items()}}
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def rewind(self, step: int) -> None:
        """Drop metric lines logged after `step` (by a run killed after its last checkpoint), atomically."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a half-written last line from the killed process
        tmp = self.path / ".metrics.jsonl.tmp"
        tmp.write_text("".join(x + "\n" for x in kept))
        os.replace(tmp, path)

    def set_status(self, state: str, step: int, **extra: Any) -> None:
        """Atomically replace status.json."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        tmp = self.path / ".status.json.tmp"
        tmp.write_text(json.dumps({"state": state, "step": int(step), "updated": time.time(), "pid": os.getpid(),
                                   "host": socket.gethostname(), **extra}))
        os.replace(tmp, self.path / "status.json")

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


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of `optimizer_tensors`: restore moments, step counts and hyper-parameters."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, entries in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entries)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
