"""Convert an official StyleGAN3 network pickle to safetensors + JSON, without running any code from the pickle.

Official pickles embed the Python source of their network classes and rebuild objects by executing it. This
converter never does: a restricted unpickler resolves only an allow-list of globals (tensor and numpy
rebuilders, OrderedDict, EasyDict) and replaces NVIDIA's persistence hook with a function that merely records
(class name, constructor kwargs, tensors). Any other global is refused with an error naming it.

    python -m core.stylegan3.convert stylegan3-t-ffhq-1024x1024.pkl checkpoints/ --name ffhq-t-1024
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import io
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from core.checkpoints import CheckpointError, check_state_dict, save_checkpoint
from core.stylegan3.networks import Generator


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list (it would run code to load)."""


@dataclass
class PersistentObject:
    """What NVIDIA's persistence layer pickled for one network: its class name, source text (never run) and state."""

    class_name: str
    module_src: str
    state: dict[str, Any] = field(default_factory=dict)


class _EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict: a plain dict."""


def _capture_persistent(meta: dict[str, Any]) -> PersistentObject:
    if meta.get("type") != "class":
        raise UnsafePickleError(f"unsupported persistent object type {meta.get('type')!r}")
    return PersistentObject(class_name=str(meta.get("class_name")), module_src=str(meta.get("module_src", "")),
                            state=dict(meta.get("state") or {}))


def _load_storage_from_bytes(b: bytes) -> Any:
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


_MULTIARRAY = (getattr(np, "_core", None) or np.core).multiarray
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _capture_persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib.easydict", "EasyDict"): _EasyDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _MULTIARRAY._reconstruct
    _ALLOWED[(_mod, "scalar")] = _MULTIARRAY.scalar


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and never imports or executes pickled source."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: it is not on the converter's allow-list "
                f"(the pickle would run code to build it). Only official StyleGAN3 network pickles are supported."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refusing persistent id {pid!r}: not produced by official network pickles")


def load_network_pickle(f: BinaryIO) -> dict[str, Any]:
    """Unpickle an official snapshot dict (G, D, G_ema, ...) into PersistentObject records, safely."""
    try:
        data = RestrictedUnpickler(f).load()
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"not a readable network pickle (truncated or corrupt?): {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"expected a dict of networks (G, D, G_ema, ...), got {type(data).__name__}")
    return data


def flatten_state(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict a torch module would produce: parameters and persistent buffers, recursively."""
    out: dict[str, torch.Tensor] = {}
    state = obj.state
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is None or (group == "_buffers" and name in skip):
                continue
            out[prefix + name] = t.detach().clone() if isinstance(t, torch.Tensor) else torch.as_tensor(t)
    for name, sub in (state.get("_modules") or {}).items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentObject):
            raise CheckpointError(f"submodule {prefix + name} is not a persistent network object")
        out.update(flatten_state(sub, prefix + name + "."))
    return out


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"constructor argument of unsupported type {type(value).__name__}: {value!r}")


def convert_pickle(pkl_path: str | Path, out_dir: str | Path, key: str = "G_ema", name: str | None = None) -> Path:
    """Convert network `key` of an official pickle to `<out_dir>/<name>.safetensors` + `.json`; returns the path."""
    pkl_path = Path(pkl_path)
    raw = pkl_path.read_bytes()
    data = load_network_pickle(io.BytesIO(raw))
    if key not in data:
        raise CheckpointError(f"{pkl_path} has no network {key!r}; it holds {sorted(map(str, data))}")
    net = data[key]
    if not isinstance(net, PersistentObject):
        raise CheckpointError(f"{key!r} in {pkl_path} is not a persistent network object")
    if net.class_name != "Generator":
        raise CheckpointError(f"{key!r} is a {net.class_name}, not a Generator")
    if "class SynthesisInput" not in net.module_src:
        raise CheckpointError(f"{key!r} is not a StyleGAN3 generator (no SynthesisInput in its source); "
                              "StyleGAN2 / StyleGAN2-ADA networks are not supported")
    init_args = net.state.get("_init_args") or ()
    if init_args:
        raise CheckpointError(f"unexpected positional constructor arguments {init_args!r}")
    init_kwargs = _to_json(dict(net.state.get("_init_kwargs") or {}))
    tensors = flatten_state(net)
    try:
        model = Generator(**init_kwargs)
    except TypeError as e:
        raise CheckpointError(f"constructor arguments not understood: {e}") from e
    check_state_dict(model, tensors, source=f"{pkl_path}[{key}]")
    config = {
        "kind": "stylegan3",
        "init_kwargs": init_kwargs,
        "source": {"file": pkl_path.name, "network": key, "sha256": hashlib.sha256(raw).hexdigest()},
    }
    out = Path(out_dir) / f"{name or pkl_path.stem}.safetensors"
    return save_checkpoint(out, tensors, config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.stylegan3.convert", description=__doc__.splitlines()[0])
    parser.add_argument("pkl", help="official network pickle (e.g. stylegan3-t-ffhq-1024x1024.pkl)")
    parser.add_argument("out_dir", help="folder for <name>.safetensors and <name>.json")
    parser.add_argument("--key", default="G_ema", help="network inside the pickle (default: G_ema)")
    parser.add_argument("--name", default=None, help="output stem (default: the pickle's stem)")
    args = parser.parse_args(argv)
    try:
        path = convert_pickle(args.pkl, args.out_dir, key=args.key, name=args.name)
    except (CheckpointError, UnsafePickleError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
