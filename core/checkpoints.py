"""The one checkpoint format: `<stem>.safetensors` (tensors) beside `<stem>.json` (kind, constructor kwargs, notes).

Writes are atomic (temp file + rename). Loading resolves a path or an embedded name in `checkpoints/`, and checks
every tensor name and shape against the module before anything is copied, so a wrong file fails with a message
that names what is missing, unexpected or mismatched.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
M = TypeVar("M", bound=torch.nn.Module)


class CheckpointError(ValueError):
    """A checkpoint could not be found, read, or matched to the model it is meant for."""


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write tensors to `path` (.safetensors) and `config` to the .json beside it, each atomically."""
    path = Path(path).with_suffix(".safetensors")
    if "kind" not in config:
        raise ValueError("checkpoint config needs a 'kind' (e.g. 'stylegan3')")
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(clean, tmp))
    text = json.dumps(config, indent=2, sort_keys=True)
    _atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    return path


def available_names(directory: Path = CHECKPOINT_DIR) -> list[str]:
    """Names of the embedded checkpoints (stems of `checkpoints/*.safetensors`)."""
    return sorted(p.stem for p in directory.glob("*.safetensors")) if directory.is_dir() else []


def resolve_checkpoint(path_or_name: str | Path) -> Path:
    """A path to an existing .safetensors file, or the embedded checkpoint of that name."""
    p = Path(path_or_name)
    candidates = [p, p.with_suffix(".safetensors"), CHECKPOINT_DIR / f"{p.name}.safetensors"]
    if p.is_dir():
        candidates = sorted(p.glob("*.safetensors")) + candidates
    for c in candidates:
        if c.is_file() and c.suffix == ".safetensors":
            return c
    names = ", ".join(available_names()) or "none"
    raise CheckpointError(
        f"no checkpoint at {str(path_or_name)!r}: not a .safetensors file and not an embedded name "
        f"(embedded checkpoints: {names}). Official .pkl files must be converted first: "
        f"python -m core.stylegan3.convert NETWORK.pkl OUT_DIR")


def load_checkpoint(path_or_name: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read (state dict, config) of a checkpoint; corrupt or truncated files raise CheckpointError."""
    path = resolve_checkpoint(path_or_name)
    config_path = path.with_suffix(".json")
    if not config_path.is_file():
        raise CheckpointError(f"{path} has no config beside it (expected {config_path.name})")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"config {config_path} is not valid JSON: {e}") from e
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        size = path.stat().st_size
        raise CheckpointError(f"{path} ({size} bytes) is corrupt or truncated and cannot be read: {e}") from e
    return state, config


def check_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise CheckpointError naming every missing, unexpected or shape-mismatched tensor."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: file {list(state[k].shape)} vs model {list(v.shape)}"
                  for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{source} does not match {type(module).__name__}:"]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = items[:12] + ([f"... and {len(items) - 12} more"] if len(items) > 12 else [])
            lines.append(f"  {label} ({len(items)}): " + "; ".join(shown))
    raise CheckpointError("\n".join(lines))


def load_module(cls: type[M], path_or_name: str | Path, kind: str, device: str | torch.device = "cpu",
                build: Optional[Callable[[dict[str, Any]], M]] = None) -> M:
    """Build `cls(**config['init_kwargs'])` (or `build(config)`), check and load the tensors, move to device, eval mode."""
    state, config = load_checkpoint(path_or_name)
    if config.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path_or_name!s} holds a {config.get('kind')!r} model, not a {kind!r} one")
    try:
        module = build(config) if build else cls(**config["init_kwargs"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path_or_name!s} has an unusable config: {e}") from e
    check_state_dict(module, state, source=str(resolve_checkpoint(path_or_name)))
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint {path_or_name!s} has non-finite values in: {', '.join(bad[:8])}")
    module.load_state_dict(state, strict=True)
    return module.to(device).eval()
