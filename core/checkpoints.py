"""The one checkpoint format, and the pretrained mixin every model class uses to save and load itself.

A checkpoint is `<stem>.safetensors` (tensors) beside `<stem>.json` (kind, constructor kwargs, notes, and the
SHA-256 of the tensor file). Writes are atomic (temp file + rename). Reading takes the file's bytes once, checks
their hash (a flipped bit, a truncation or a swapped file fails), then checks every tensor's name, shape and dtype
against the model, built first on the meta device, so a wrong file or an absurd config fails with a message that
names what is wrong before any memory is allocated.

Model classes mix in `Pretrained` and declare their `kind`; their constructor arguments are recorded by
themselves (`init_kwargs`), so `model.save_pretrained(path)` and `Class.from_pretrained(path)` are a pair and
`load_pretrained(path)` builds whichever registered kind a file holds (the diffusers and timm pattern).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import inspect
import json
import math
import sys
from pathlib import Path
from typing import Any, ClassVar, Optional, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from core.config import short
from core.files import atomic_write

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
HASH_KEY = "sha256"
# Modules whose import registers the model kinds (a kind found in none of them is unknown).
MODEL_MODULES = ("core.stylegan3.networks", "core.analysis.model", "core.vae", "core.nice", "core.encoder")
P = TypeVar("P", bound="Pretrained")


class CheckpointError(ValueError):
    """A checkpoint could not be found, read, verified, or matched to the model it is meant for."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's bytes are damaged: truncated, unreadable, or not what its recorded hash says."""


def _json_ready(value: Any) -> Any:
    """Config values as JSON-friendly data (tuples become lists, nested dicts are copied)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write tensors to `path` (.safetensors) and `config` plus the tensor file's SHA-256 to the .json beside it,
    each atomically (tensors first: a tensor file without its config is not a checkpoint yet)."""
    path = Path(path).with_suffix(".safetensors")
    if "kind" not in config:
        raise ValueError("checkpoint config needs a 'kind' (e.g. 'stylegan3')")
    data = save_bytes({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    text = json.dumps({**_json_ready(config), HASH_KEY: hashlib.sha256(data).hexdigest()}, indent=2, sort_keys=True)
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
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


def read_config(path_or_name: str | Path) -> tuple[Path, dict[str, Any]]:
    """(tensor file, its JSON config) without reading the tensors."""
    path = resolve_checkpoint(path_or_name)
    config_path = path.with_suffix(".json")
    if not config_path.is_file():
        raise CheckpointError(f"{path} has no config beside it (expected {config_path.name})")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"config {config_path} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"config {config_path} must hold a JSON object")
    return path, config


def _header(data: bytes, path: Path) -> dict[str, dict[str, Any]]:
    """The safetensors header (name -> dtype, shape) of a file's bytes, every entry checked for form."""
    def bad(why: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{path} ({len(data)} bytes) is corrupt or truncated and cannot be read: "
                                      f"bad header ({why})")
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + size])
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(str(e)[:120]) from e
    if not isinstance(header, dict):
        raise bad(f"a JSON {type(header).__name__}, not an object")
    header.pop("__metadata__", None)
    out = {}
    for name, entry in header.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape)
                or entry.get("dtype") not in _DTYPES):
            raise bad(f"entry {short(name)} is not a dtype and a shape")
        out[name] = {"dtype": entry["dtype"], "shape": shape}
    return out


MAX_SETTING = 2 ** 16  # any whole-number setting of a model config (dims, channels, resolution, counts)
MAX_PARAMETERS = 4_000_000_000  # tensor elements a checkpoint may declare (the largest official model has 30M)


def check_model_config(cls: type["Pretrained"], kwargs: dict[str, Any], source: str) -> None:
    """Refuse, before any module is built, a config whose numbers no model of this kind has: every number finite,
    every whole-number setting (nested ones included) from 0 to MAX_SETTING, or to the class's tighter
    `config_limits` (layer counts: building 200,000 layers would take minutes and gigabytes even on the meta
    device)."""
    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, str(key))
        elif isinstance(value, list):
            for item in value:
                walk(item, name)
        elif isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(f"{source}: config setting {short(name)} is {value}")
        elif isinstance(value, int) and not isinstance(value, bool):
            limit = min(MAX_SETTING, cls.config_limits.get(name, MAX_SETTING))
            if not 0 <= value <= limit:
                raise CheckpointError(f"{source}: config setting {short(name)} = {short(value)} is outside 0..{limit}"
                                      f" for a {cls.kind!r} model")
    walk(kwargs, "init_kwargs")


def _read_verified(path: Path, config: dict[str, Any]) -> bytes:
    data = path.read_bytes()
    expected = config.get(HASH_KEY)
    if expected is None:
        raise CheckpointError(f"{path.with_suffix('.json')} records no {HASH_KEY} of its tensors, so their integrity "
                              f"cannot be checked; if you trust the file, add it: python -m core.checkpoints rehash "
                              f"{path}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CorruptCheckpointError(f"{path} ({len(data)} bytes) is corrupt or truncated: its SHA-256 is "
                                     f"{actual[:16]}..., its config records {str(expected)[:16]}...; restore or "
                                     f"re-download the file")
    return data


def load_checkpoint(path_or_name: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read (state dict, config) of a checkpoint, the file read once and its hash verified."""
    path, config = read_config(path_or_name)
    data = _read_verified(path, config)
    try:
        return load_bytes(data), config
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptCheckpointError(f"{path} ({len(data)} bytes) is corrupt or truncated and cannot be read: {e}"
                                     ) from e


STORAGE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def check_state_dict(module: torch.nn.Module, state: dict[str, Any], source: str = "checkpoint",
                     storage_dtype: Optional[str] = None) -> None:
    """Raise CheckpointError naming every missing, unexpected, shape- or dtype-mismatched tensor. `state` maps
    names to tensors or to safetensors header entries ({"dtype", "shape"}); `module` may live on the meta device.
    Floating tensors may be stored as `storage_dtype` (e.g. 'float16' for a half-precision shipped model)."""
    expected = module.state_dict()
    if storage_dtype not in (None, *STORAGE_DTYPES):
        raise CheckpointError(f"{source}: unknown storage_dtype {short(storage_dtype)}; known: "
                              f"{', '.join(STORAGE_DTYPES)}")
    stored = STORAGE_DTYPES[storage_dtype] if storage_dtype else None

    def shape_dtype(v: Any) -> tuple[tuple[int, ...], Optional[torch.dtype]]:
        if isinstance(v, torch.Tensor):
            return tuple(v.shape), v.dtype
        return tuple(v["shape"]), _DTYPES.get(v["dtype"])

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched, wrong_dtype = [], []
    for k, v in expected.items():
        if k not in state:
            continue
        shape, dtype = shape_dtype(state[k])
        if shape != tuple(v.shape):
            mismatched.append(f"{k}: file {list(shape)} vs model {list(v.shape)}")
        allowed = {v.dtype} | ({stored} if stored is not None and v.is_floating_point() else set())
        if dtype not in allowed:
            wrong_dtype.append(f"{k}: file {dtype} vs model {v.dtype}")
    if not (missing or unexpected or mismatched or wrong_dtype):
        return
    lines = [f"{source} does not match {type(module).__name__}:"]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched),
                         ("dtype mismatch", wrong_dtype)):
        if items:
            shown = items[:12] + ([f"... and {len(items) - 12} more"] if len(items) > 12 else [])
            lines.append(f"  {label} ({len(items)}): " + "; ".join(shown))
    raise CheckpointError("\n".join(lines))


_KINDS: dict[str, type["Pretrained"]] = {}


def model_class(kind: str) -> type["Pretrained"]:
    """The registered class of a checkpoint kind (importing the model modules on first use)."""
    if kind not in _KINDS:
        for name in MODEL_MODULES:
            importlib.import_module(name)
    if kind not in _KINDS:
        raise CheckpointError(f"no model class for checkpoints of kind {kind!r}; "
                              f"known kinds: {', '.join(sorted(_KINDS))}")
    return _KINDS[kind]


def _record_init(init: Any) -> Any:
    """Wrap a constructor so that the instance records its arguments (defaults filled in) as `init_kwargs`."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        recorded: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                recorded.update(value)
            else:
                recorded[name] = value
        self.init_kwargs = _json_ready(recorded)  # the outermost constructor's call wins (it runs last)

    return wrapped


class Pretrained:
    """Mixin for model classes: a registered `kind`, recorded constructor kwargs, and the pair
    `save_pretrained(path, **notes)` / `from_pretrained(path_or_name, device)`."""

    kind: ClassVar[str]
    config_limits: ClassVar[dict[str, int]] = {}  # tighter ceilings than MAX_SETTING, by setting name
    init_kwargs: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _record_init(cls.__dict__["__init__"])
        if "kind" in cls.__dict__:
            _KINDS[cls.kind] = cls

    def save_pretrained(self, path: str | Path, dtype: Optional[torch.dtype] = None, **notes: Any) -> Path:
        """Write the weights (floating tensors cast to `dtype` if given) and a config with the kind, the constructor
        kwargs and any notes (metrics, the training config, ...)."""
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
                 for k, v in self.state_dict().items()}
        extra = {"storage_dtype": str(dtype).removeprefix("torch.")} if dtype is not None else {}
        return save_checkpoint(path, state, {"kind": self.kind, "init_kwargs": self.init_kwargs, **extra, **notes})

    @classmethod
    def from_pretrained(cls: type[P], path_or_name: str | Path, device: str | torch.device = "cpu") -> P:
        """Load a checkpoint of this class's kind (a path, or an embedded name in checkpoints/), checked, on
        `device`, in eval mode."""
        model, _ = load_pretrained(path_or_name, device, kind=cls.kind)
        return model


def load_pretrained(path_or_name: str | Path, device: str | torch.device = "cpu",
                    kind: Optional[str] = None) -> tuple[Any, dict[str, Any]]:
    """(model, config) of any registered kind; with `kind`, the file must hold that kind. The file is read once;
    its hash, tensor names, shapes and dtypes are checked before the model's memory is allocated."""
    path, config = read_config(path_or_name)
    found = config.get("kind")
    if kind is not None and found != kind:
        raise CheckpointError(f"checkpoint {path_or_name!s} holds a {found!r} model, not a {kind!r} one")
    cls = model_class(str(found))
    kwargs = config.get("init_kwargs")
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"checkpoint {path_or_name!s} has no init_kwargs object in its config")
    check_model_config(cls, kwargs, f"checkpoint {path_or_name!s}")
    data = _read_verified(path, config)
    header = _header(data, path)
    declared = sum(math.prod(v["shape"]) for v in header.values())
    if declared > MAX_PARAMETERS:
        raise CheckpointError(f"checkpoint {path_or_name!s} declares {declared:,} tensor elements, more than any "
                              f"model here ({MAX_PARAMETERS:,})")
    try:
        with torch.device("meta"):
            shell = cls(**kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path_or_name!s} has an unusable config: {e}") from e
    check_state_dict(shell, header, source=str(path), storage_dtype=config.get("storage_dtype"))
    try:
        state = load_bytes(data)
    except (SafetensorError, ValueError) as e:
        raise CorruptCheckpointError(f"{path} ({len(data)} bytes) is corrupt and cannot be read: {e}") from e
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint {path_or_name!s} has non-finite values in: {', '.join(bad[:8])}")
    model = cls(**kwargs)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), config


def verify(path_or_name: str | Path) -> str:
    """Check a checkpoint and say what it holds: a model (hash, names, shapes, dtypes, finite values, as loading
    does) or a training run's checkpoint (`<loop>_training`: hash, readable tensors, finite values; its model is
    checked by `python -m core.publish` when it is exported)."""
    _, config = read_config(path_or_name)
    kind = str(config.get("kind"))
    if not kind.endswith("_training"):
        return load_pretrained(path_or_name)[1]["kind"]
    tensors, config = load_checkpoint(path_or_name)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path_or_name}: non-finite values in {', '.join(bad[:8])}")
    return f"{kind} at step {config.get('step')}, {len(tensors)} tensors"


def rehash(path_or_name: str | Path) -> str:
    """Record the SHA-256 of a checkpoint's tensor file in its config (for files you trust); returns it."""
    path, config = read_config(path_or_name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    text = json.dumps({**config, HASH_KEY: digest}, indent=2, sort_keys=True)
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    return digest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.checkpoints", description="Checkpoint tools.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rehash", help="record the SHA-256 of trusted checkpoints in their configs")
    r.add_argument("paths", nargs="+")
    v = sub.add_parser("verify", help="check hashes, names, shapes and dtypes of model and run checkpoints")
    v.add_argument("paths", nargs="+")
    args = p.parse_args(argv)
    status = 0
    for item in args.paths:
        try:
            if args.command == "rehash":
                print(f"{item}: sha256 {rehash(item)}")
            else:
                print(f"{item}: ok ({verify(item)})")
        except CheckpointError as e:
            print(f"{item}: {e}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":  # through the imported module, whose kind registry the model modules fill
    from core.checkpoints import main as checkpoints_main
    raise SystemExit(checkpoints_main())
