"""Writes network pickles in the layout of NVIDIA's `torch_utils.persistence`, for testing the converter.

The official pickles store each network as `_reconstruct_persistent_obj(meta)` with meta = {type, version,
module_src, class_name, state}, where state is the module's __dict__ (with `_init_args` / `_init_kwargs`) and
sub-networks are persistent objects themselves. Stand-in `torch_utils.persistence` and `dnnlib.util` modules
are registered so that pickle records the same global names as the official code does.
"""
from __future__ import annotations

import copy
import inspect
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

import core.stylegan3.networks as sg3_networks


def _install_standin_modules() -> types.ModuleType:
    if "torch_utils.persistence" in sys.modules:
        return sys.modules["torch_utils.persistence"]
    torch_utils = types.ModuleType("torch_utils")
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta: dict) -> Any:  # only referenced by name when pickling
        raise RuntimeError("stand-in persistence module cannot rebuild objects")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils.persistence = persistence
    dnnlib = types.ModuleType("dnnlib")
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    dnnlib.util = util
    sys.modules.update({"torch_utils": torch_utils, "torch_utils.persistence": persistence,
                        "dnnlib": dnnlib, "dnnlib.util": util})
    return persistence


class _Persistent:
    """Pickles as the official persistent_class decorator does."""

    def __init__(self, module: torch.nn.Module, init_kwargs: dict, module_src: str) -> None:
        state = dict(module.__dict__)
        state["_modules"] = OrderedDict(
            (name, _Persistent(sub, {}, module_src) if sub is not None else None)
            for name, sub in module._modules.items())
        state["_init_args"] = ()
        state["_init_kwargs"] = init_kwargs
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=type(module).__name__, state=state)

    def __reduce__(self) -> tuple:
        persistence = _install_standin_modules()
        return persistence._reconstruct_persistent_obj, (self.meta,), None


def write_official_pickle(path: Path, G: sg3_networks.Generator, extra: dict[str, Any] | None = None,
                          module_src: str | None = None) -> Path:
    """Pickle {'G', 'D', 'G_ema', ...} as an official training snapshot would hold them."""
    _install_standin_modules()
    src = module_src if module_src is not None else inspect.getsource(sg3_networks)
    kwargs = sys.modules["dnnlib.util"].EasyDict(copy.deepcopy(G.init_kwargs))
    snap = {"G": _Persistent(G, kwargs, src), "G_ema": _Persistent(G, kwargs, src), "augment_pipe": None,
            "training_set_kwargs": sys.modules["dnnlib.util"].EasyDict(path="data.zip", resolution=G.img_resolution)}
    snap.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(snap, f)
    return path
